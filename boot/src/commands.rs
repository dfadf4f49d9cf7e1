//! Console commands that need the machine: memory figures, time, power,
//! benchmarks. The portable shell (parsing, `help`, `echo`, `expect`) lives
//! in `kernel::console`.

use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use alloc::vec::Vec;
use kernel::console::{CmdError, CmdResult, Command, Output, Shell};

use crate::{heap, memory};

static HALT_REQUESTED: AtomicBool = AtomicBool::new(false);
static CONSOLE_READY_TSC: AtomicU64 = AtomicU64::new(0);

/// Whether `halt` ran; the console loop then powers off.
pub fn halt_requested() -> bool {
    HALT_REQUESTED.load(Ordering::Relaxed)
}

/// Records the moment the console became ready, for `bench boot`.
pub fn mark_console_ready() {
    CONSOLE_READY_TSC.store(arch::cpu::rdtsc(), Ordering::Relaxed);
}

fn mem(out: &mut Output<'_>, _args: &[&str]) -> CmdResult {
    let frames = memory::frames().stats();
    let heap = heap::stats();
    Ok(writeln!(
        out,
        "{frames} heap_bytes={} heap_used={} heap_growths={} boot_map_frames={}",
        heap.bytes,
        heap.used,
        heap.growths,
        memory::boot_map_frames()
    )?)
}

/// The memory manager's counters, Linux's `/proc/vmstat` names.
fn vmstat(out: &mut Output<'_>, _args: &[&str]) -> CmdResult {
    Ok(writeln!(out, "{}", crate::task::system().vm_stats())?)
}

fn uptime(out: &mut Output<'_>, _args: &[&str]) -> CmdResult {
    let ns = arch::timer::uptime_ns();
    Ok(writeln!(
        out,
        "uptime_ms={} ticks={} hz={}",
        ns / 1_000_000,
        arch::timer::ticks(),
        arch::timer::HZ
    )?)
}

fn halt(out: &mut Output<'_>, _args: &[&str]) -> CmdResult {
    writeln!(out, "halting")?;
    HALT_REQUESTED.store(true, Ordering::Relaxed);
    Ok(())
}

fn breakpoint(out: &mut Output<'_>, _args: &[&str]) -> CmdResult {
    arch::cpu::breakpoint();
    let n = arch::trap::BREAKPOINTS.load(Ordering::Relaxed);
    Ok(writeln!(out, "breakpoint returned breakpoints={n}")?)
}

fn bench(out: &mut Output<'_>, args: &[&str]) -> CmdResult {
    match args {
        ["boot"] => bench_boot(out),
        ["timer"] => bench_timer(out),
        ["switch"] => bench_switch(out),
        ["ipi"] => bench_ipi(out),
        ["tlb"] => bench_tlb(out),
        _ => Err(CmdError::Usage),
    }
}

/// TSC from the PVH entry to the console: instructions under `-icount`.
fn bench_boot(out: &mut Output<'_>) -> CmdResult {
    let entry = crate::booted().map(|b| b.entry_tsc).unwrap_or(0);
    let ready = CONSOLE_READY_TSC.load(Ordering::Relaxed);
    Ok(writeln!(
        out,
        "boot_to_prompt_instructions={}",
        ready.saturating_sub(entry)
    )?)
}

/// The cost of one timer interrupt as seen by the code it interrupts: spin
/// reading the TSC and the tick count; a step in which the tick count moved
/// had the interrupt in it. The figure is the median of those steps minus
/// the shortest ordinary step (the loop's own cost).
fn bench_timer(out: &mut Output<'_>) -> CmdResult {
    const SAMPLES: usize = 31;
    // Far more than SAMPLES ticks' worth of iterations: a dead timer must
    // end in an error, not a hang.
    const MAX_STEPS: u64 = 1 << 32;
    let mut gaps = Vec::with_capacity(SAMPLES);
    let mut ordinary = u64::MAX;
    let mut last_tsc = arch::cpu::rdtsc();
    let mut last_tick = arch::timer::ticks();
    for _ in 0..MAX_STEPS {
        let tsc = arch::cpu::rdtsc();
        let tick = arch::timer::ticks();
        let step = tsc - last_tsc;
        if tick != last_tick {
            gaps.push(step);
            if gaps.len() == SAMPLES {
                break;
            }
        } else {
            ordinary = ordinary.min(step);
        }
        (last_tsc, last_tick) = (tsc, tick);
    }
    if gaps.len() < SAMPLES {
        return Err(CmdError::Failed("the timer stopped ticking".into()));
    }
    gaps.sort_unstable();
    let median = gaps[SAMPLES / 2];
    Ok(writeln!(
        out,
        "timer_irq_roundtrip_cycles={} samples={SAMPLES}",
        median.saturating_sub(ordinary)
    )?)
}

fn ps(out: &mut Output<'_>, _args: &[&str]) -> CmdResult {
    // Formatted under the scheduler lock, printed after it.
    let mut lines = Vec::new();
    crate::task::system().describe_tasks(|l| lines.push(alloc::format!("{l}")));
    for l in lines {
        writeln!(out, "{l}")?;
    }
    Ok(())
}

/// One line a program, `NAME builtin|module size=BYTES`: whether the
/// image is in the kernel or came in the boot archive. Contents are not
/// judged here; `run` says why a module cannot be loaded.
fn programs(out: &mut Output<'_>, _args: &[&str]) -> CmdResult {
    for p in crate::programs::all() {
        writeln!(out, "{} {} size={}", p.name, p.origin.name(), p.image.len())?;
    }
    Ok(())
}

/// The environment programs started from the console get (`env`).
static ENV: spin::Mutex<Vec<alloc::string::String>> = spin::Mutex::new(Vec::new());

/// `ENV`, a plain spin lock: its holder runs with interrupts on and may be
/// preempted, so a taker with interrupts off (an interrupt handler, or
/// code under an `IrqMutex`) could spin for ever on the CPU the holder
/// needs. Outside the lock order (docs/locking.md), so checked here.
fn env_vars() -> spin::MutexGuard<'static, Vec<alloc::string::String>> {
    debug_assert!(
        arch::cpu::interrupts_enabled(),
        "lock order: took the console's ENV with interrupts off"
    );
    ENV.lock()
}

/// `env` prints the environment programs get; `env NAME=VALUE...` adds to
/// it (replacing a NAME already there); `env -` empties it.
fn env(out: &mut Output<'_>, args: &[&str]) -> CmdResult {
    let mut vars = env_vars();
    for &arg in args {
        if arg == "-" {
            vars.clear();
            continue;
        }
        let Some((name, _)) = arg.split_once('=').filter(|(n, _)| !n.is_empty()) else {
            return Err(CmdError::Failed(alloc::format!(
                "env: '{arg}' is not NAME=VALUE"
            )));
        };
        vars.retain(|v| v.split_once('=').map(|(n, _)| n) != Some(name));
        vars.push(arg.into());
    }
    if args.is_empty() {
        for v in vars.iter() {
            writeln!(out, "{v}")?;
        }
    }
    Ok(())
}

fn start_program(args: &[&str]) -> Result<u32, CmdError> {
    let Some(&name) = args.first() else {
        return Err(CmdError::Usage);
    };
    let program = crate::programs::lookup(name)
        .ok_or_else(|| CmdError::Failed(alloc::format!("no program '{name}' (try programs)")))?;
    let vars = env_vars().clone();
    let envp: Vec<&str> = vars.iter().map(|v| v.as_str()).collect();
    crate::task::system()
        .spawn_program_argv(name, program.image, args, &envp)
        .map_err(|e| {
            CmdError::Failed(alloc::format!(
                "{name} ({} program): {e}",
                program.origin.name()
            ))
        })
}

fn parse_tid(text: &str) -> Result<u32, CmdError> {
    let n = kernel::console::parse_u64(text)?;
    u32::try_from(n).map_err(|_| CmdError::BadNumber(text.into()))
}

fn report_exit(out: &mut Output<'_>, tid: u32, result: Result<i64, abi::Errno>) -> CmdResult {
    match result {
        // A program's status is Linux's wait status: "exited
        // exit_status=N", or "killed by SIGNAME ... wait_status=0x..".
        Ok(status) => Ok(writeln!(out, "task {tid} {}", abi::WaitStatus(status))?),
        Err(e) => Err(CmdError::Failed(alloc::format!("task {tid}: {}", e.name()))),
    }
}

/// Ctrl-C on the console.
const INTERRUPT: u8 = 0x03;
/// Runs a program in the foreground: the console waits for it, and Ctrl-C
/// sends it SIGINT, as a terminal does (other keys typed meanwhile are
/// dropped: programs cannot read the console yet).
fn run(out: &mut Output<'_>, args: &[&str]) -> CmdResult {
    let tid = start_program(args)?;
    while !crate::task::system().process_ended(tid) {
        if arch::serial::try_read_byte() == Some(INTERRUPT) {
            let _ = crate::task::system().signal_process(tid, abi::sig::SIGINT);
            writeln!(out, "^C")?;
        }
        crate::task::sleep_ns(crate::task::TICK_NS);
    }
    let result = crate::task::system().join_process(tid, crate::task::TICK_NS);
    report_exit(out, tid, result)
}

/// Starts a program in the background.
fn spawn(out: &mut Output<'_>, args: &[&str]) -> CmdResult {
    let tid = start_program(args)?;
    Ok(writeln!(out, "started tid={tid}")?)
}

fn wait(out: &mut Output<'_>, args: &[&str]) -> CmdResult {
    let tid = parse_tid(args.first().copied().unwrap_or(""))?;
    if !crate::task::system().is_process(tid) {
        return Err(CmdError::Failed(alloc::format!(
            "no program with tid {tid}"
        )));
    }
    let result = crate::task::system().join_process(tid, crate::task::TICK_NS);
    report_exit(out, tid, result)
}

/// Sends a program a signal (`kill PID [SIGNO]`, SIGKILL by default);
/// `wait` then collects it.
fn kill(out: &mut Output<'_>, args: &[&str]) -> CmdResult {
    let tid = parse_tid(args.first().copied().unwrap_or(""))?;
    let signo = match args.get(1) {
        Some(n) => parse_tid(n)?,
        None => abi::sig::SIGKILL,
    };
    crate::task::system()
        .signal_process(tid, signo)
        .map_err(|e| {
            CmdError::Failed(alloc::format!(
                "kill {tid}: {} (only programs can be killed)",
                e.name()
            ))
        })?;
    Ok(writeln!(out, "killed tid={tid}")?)
}

/// Cost of one switch between two kernel threads that yield to each other.
fn bench_switch(out: &mut Output<'_>) -> CmdResult {
    const ROUNDS: u64 = 2000;
    fn pingpong(rounds: u64) -> i64 {
        for _ in 0..rounds {
            crate::task::yield_now();
        }
        0
    }
    fn timed(rounds: u64) -> i64 {
        let start = arch::cpu::rdtsc();
        pingpong(rounds);
        (arch::cpu::rdtsc() - start) as i64
    }
    let fail = |e| CmdError::Failed(alloc::format!("spawning: {e:?}"));
    let a = crate::task::spawn_kernel("bench-a", timed, ROUNDS).map_err(fail)?;
    let b = crate::task::spawn_kernel("bench-b", pingpong, ROUNDS).map_err(fail)?;
    let total = crate::task::join(a).map_err(fail)?;
    crate::task::join(b).map_err(fail)?;
    // Each round of the timed thread is two switches: away and back.
    Ok(writeln!(
        out,
        "task_switch_cycles={}",
        total as u64 / (2 * ROUNDS)
    )?)
}

/// How long a CPU may take to answer a ping: generous, since under TCG on
/// a loaded host a virtual CPU may wait long for a core.
const PING_TIMEOUT_US: u64 = 5_000_000;

/// Each CPU's figures, one line each, then how many are online and how
/// often the one scheduler lock was found taken by another CPU.
fn cpu(out: &mut Output<'_>, _args: &[&str]) -> CmdResult {
    let system = crate::task::system();
    let mut online = 0;
    let mut sections = 0;
    for c in arch::percpu::all() {
        let f = c.figures();
        online += usize::from(f.online);
        let s = system.cpu_stats(f.index).unwrap_or_default();
        sections += s.sections;
        writeln!(
            out,
            "cpu={} apic_id={} ticks={} switches={} idle_ticks={} ipis={} shootdowns_sent={} shootdowns_taken={} sched_sections={}{}",
            f.index,
            f.apic_id,
            f.ticks,
            f.switches,
            f.idle_ticks,
            f.ipis,
            f.shootdowns_sent,
            f.shootdowns_taken,
            s.sections,
            if f.online { "" } else { " offline" }
        )?;
    }
    Ok(writeln!(
        out,
        "cpus_online={online} timer_count={} sched_sections={sections} sched_lock_contended={}",
        arch::apic::tick_count(),
        system.sched_lock_contended()
    )?)
}

/// Pings every other CPU, one at a time and then all at once with a
/// broadcast, and waits for each answer (an IPI back).
fn ipi(out: &mut Output<'_>, _args: &[&str]) -> CmdResult {
    let me = arch::percpu::this_cpu().index();
    let mut answered = 0;
    for c in arch::percpu::all().filter(|c| c.index() != me) {
        let cycles = arch::smp::ping(c, PING_TIMEOUT_US).map_err(|e| {
            CmdError::Failed(alloc::format!("cpu {} did not answer: {e:?}", c.index()))
        })?;
        answered += 1;
        writeln!(
            out,
            "ping cpu={} apic_id={} cycles={cycles}",
            c.index(),
            c.apic_id()
        )?;
    }
    let all = arch::smp::ping_all_others(PING_TIMEOUT_US)
        .map_err(|e| CmdError::Failed(alloc::format!("broadcast ping: {e:?}")))?;
    Ok(writeln!(
        out,
        "ipi_answered={answered} ipi_broadcast_answered={all}"
    )?)
}

/// The round trip of a ping to the next CPU and its answer, median of 31.
fn bench_ipi(out: &mut Output<'_>) -> CmdResult {
    const SAMPLES: usize = 31;
    let me = arch::percpu::this_cpu().index();
    let Some(target) = arch::percpu::all().find(|c| c.index() != me) else {
        return Err(CmdError::Failed("bench ipi needs a second CPU".into()));
    };
    let mut trips = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let cycles = arch::smp::ping(target, PING_TIMEOUT_US)
            .map_err(|e| CmdError::Failed(alloc::format!("ping: {e:?}")))?;
        trips.push(cycles);
    }
    trips.sort_unstable();
    Ok(writeln!(
        out,
        "ipi_roundtrip_cycles={} samples={SAMPLES} target_cpu={}",
        trips[SAMPLES / 2],
        target.index()
    )?)
}

/// One TLB shootdown of one kernel page, from the call to its return,
/// median of 31. A kernel page may be cached by every CPU, so each other
/// online CPU gets the NMI and answers (an idle one wakes from `hlt`).
/// The page is one of the kernel image's, which stays mapped: the flush
/// costs it nothing but a walk later.
fn bench_tlb(out: &mut Output<'_>) -> CmdResult {
    use kernel::mm::paging::PageSize;
    use kernel::mm::tlb::{FlushPage, TlbFlush};
    const SAMPLES: usize = 31;
    let me = arch::percpu::this_cpu().index();
    if !arch::percpu::all().any(|c| c.index() != me && c.is_online()) {
        return Err(CmdError::Failed("bench tlb needs a second CPU".into()));
    }
    let page = FlushPage {
        va: (&raw const CONSOLE_READY_TSC) as u64 & !(kernel::mm::PAGE_SIZE - 1),
        size: PageSize::Size4K,
    };
    let root = memory::kernel_root();
    let mut samples = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let start = arch::cpu::rdtsc();
        arch::tlb::SHOOTDOWN.flush_pages(root, &[page]);
        samples.push(arch::cpu::rdtsc() - start);
    }
    samples.sort_unstable();
    Ok(writeln!(
        out,
        "tlb_shootdown_1page_cycles={} samples={SAMPLES} targets={}",
        samples[SAMPLES / 2],
        arch::tlb::last_targets().0.count_ones()
    )?)
}

/// Registers this crate's commands in `shell`.
pub fn register(shell: &mut Shell) {
    let commands = [
        Command {
            name: "mem",
            usage: "",
            help: "frame and heap figures",
            min_args: 0,
            max_args: 0,
            run: mem,
        },
        Command {
            name: "vmstat",
            usage: "",
            help: "page faults, anonymous pages, zero-page maps, out-of-memory kills",
            min_args: 0,
            max_args: 0,
            run: vmstat,
        },
        Command {
            name: "uptime",
            usage: "",
            help: "time since boot",
            min_args: 0,
            max_args: 0,
            run: uptime,
        },
        Command {
            name: "env",
            usage: "[NAME=VALUE... | -]",
            help: "the environment of programs started later (- empties it)",
            min_args: 0,
            max_args: 16,
            run: env,
        },
        Command {
            name: "halt",
            usage: "",
            help: "power off (failure status if anything failed)",
            min_args: 0,
            max_args: 0,
            run: halt,
        },
        Command {
            name: "breakpoint",
            usage: "",
            help: "execute int3; the exception handler returns",
            min_args: 0,
            max_args: 0,
            run: breakpoint,
        },
        Command {
            name: "bench",
            usage: "boot|timer|switch|ipi|tlb",
            help: "print benchmark figures (meaningful under -icount)",
            min_args: 1,
            max_args: 1,
            run: bench,
        },
        Command {
            name: "cpu",
            usage: "",
            help: "each CPU's APIC id, timer ticks, switches, idle ticks, IPIs taken, and TLB shootdown NMIs sent and requests taken",
            min_args: 0,
            max_args: 0,
            run: cpu,
        },
        Command {
            name: "ipi",
            usage: "",
            help: "ping every other CPU (one by one, then one broadcast) and wait for the answers",
            min_args: 0,
            max_args: 0,
            run: ipi,
        },
        Command {
            name: "ps",
            usage: "",
            help: "list tasks",
            min_args: 0,
            max_args: 0,
            run: ps,
        },
        Command {
            name: "programs",
            usage: "",
            help: "list the user programs: built in, or from the boot archive",
            min_args: 0,
            max_args: 0,
            run: programs,
        },
        Command {
            name: "run",
            usage: "NAME [ARGS...]",
            help: "run a user program and wait for it",
            min_args: 1,
            max_args: usize::MAX,
            run,
        },
        Command {
            name: "spawn",
            usage: "NAME [ARGS...]",
            help: "start a user program in the background",
            min_args: 1,
            max_args: usize::MAX,
            run: spawn,
        },
        Command {
            name: "wait",
            usage: "TID",
            help: "wait for a background program and collect its status",
            min_args: 1,
            max_args: 1,
            run: wait,
        },
        Command {
            name: "kill",
            usage: "TID [SIGNO]",
            help: "send a program a signal, SIGKILL (9) unless told (then wait collects it)",
            min_args: 1,
            max_args: 2,
            run: kill,
        },
    ];
    for c in commands {
        if let Err(e) = shell.register(c) {
            log::error!("command {}: {e:?}", c.name);
        }
    }
}
