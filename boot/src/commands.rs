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

fn io(e: core::fmt::Error) -> CmdError {
    let _ = e;
    CmdError::Failed("console write failed".into())
}

fn mem(out: &mut Output<'_>, _args: &[&str]) -> CmdResult {
    let frames = memory::frames().stats();
    let heap = heap::stats();
    writeln!(
        out,
        "{frames} heap_bytes={} heap_used={} heap_growths={} boot_map_frames={}",
        heap.bytes,
        heap.used,
        heap.growths,
        memory::boot_map_frames()
    )
    .map_err(io)
}

fn uptime(out: &mut Output<'_>, _args: &[&str]) -> CmdResult {
    let ns = arch::timer::uptime_ns();
    writeln!(
        out,
        "uptime_ms={} ticks={} hz={}",
        ns / 1_000_000,
        arch::timer::ticks(),
        arch::timer::HZ
    )
    .map_err(io)
}

fn halt(out: &mut Output<'_>, _args: &[&str]) -> CmdResult {
    writeln!(out, "halting").map_err(io)?;
    HALT_REQUESTED.store(true, Ordering::Relaxed);
    Ok(())
}

fn breakpoint(out: &mut Output<'_>, _args: &[&str]) -> CmdResult {
    arch::cpu::breakpoint();
    let n = arch::trap::BREAKPOINTS.load(Ordering::Relaxed);
    writeln!(out, "breakpoint returned breakpoints={n}").map_err(io)
}

fn bench(out: &mut Output<'_>, args: &[&str]) -> CmdResult {
    match args {
        ["boot"] => bench_boot(out),
        ["timer"] => bench_timer(out),
        _ => Err(CmdError::Usage),
    }
}

/// TSC from the PVH entry to the console: instructions under `-icount`.
fn bench_boot(out: &mut Output<'_>) -> CmdResult {
    let entry = crate::booted().map(|b| b.entry_tsc).unwrap_or(0);
    let ready = CONSOLE_READY_TSC.load(Ordering::Relaxed);
    writeln!(
        out,
        "boot_to_prompt_instructions={}",
        ready.saturating_sub(entry)
    )
    .map_err(io)
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
    writeln!(
        out,
        "timer_irq_roundtrip_cycles={} samples={SAMPLES}",
        median.saturating_sub(ordinary)
    )
    .map_err(io)
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
            name: "uptime",
            usage: "",
            help: "time since boot",
            min_args: 0,
            max_args: 0,
            run: uptime,
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
            usage: "boot|timer",
            help: "print benchmark figures (meaningful under -icount)",
            min_args: 1,
            max_args: 1,
            run: bench,
        },
    ];
    for c in commands {
        if let Err(e) = shell.register(c) {
            log::error!("command {}: {e:?}", c.name);
        }
    }
}
