//! Several CPUs (run.sh boots this kernel with four): every CPU reports in
//! with its APIC id, takes its own timer ticks, answers pings and runs
//! calls through IPIs, with its own per-CPU area; the PIC is masked; every
//! CPU runs tasks, and a thread pinned to each runs there; TLB shootdowns
//! reach the CPUs that may cache a page, and only those, and are caught
//! when left out.
//! `cpus=N` on the command line is QEMU's -smp, which the MADT must match.
#![no_std]
#![no_main]

extern crate alloc;

use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use arch::percpu::{self, PerCpu};
use boot::Booted;
use kernel::sync::MAX_CPUS;

boot::entry!(main);

fn main(booted: &'static Booted) -> ! {
    ktest::run(
        booted,
        ktest::tests![
            every_cpu_reports_in_with_its_apic_id,
            every_cpu_takes_its_own_timer_ticks,
            every_cpu_programs_the_same_timer,
            a_ping_reaches_each_cpu_and_comes_back,
            a_broadcast_ping_reaches_every_other_cpu,
            calls_run_on_the_cpu_asked_with_its_own_gs,
            pings_that_cannot_be_answered_are_refused,
            the_pic_is_masked_and_the_bsp_index_is_zero,
            ring3_leaves_gs_as_the_kernel_had_it,
            a_kick_reaches_the_cpu_asked,
            threads_pinned_to_each_cpu_run_there_at_once,
            a_kernel_page_shot_down_is_never_read_stale,
            a_user_page_is_shot_down_on_the_cpu_running_its_space_only,
            a_freed_stack_slot_is_reused_only_after_a_shootdown,
        ],
    )
}

/// Generous: under TCG on a loaded host a virtual CPU may wait long for a
/// core, and a test must fail only when an answer never comes.
const TIMEOUT_US: u64 = 5_000_000;
/// TSC cycles for liveness waits: seconds on any host.
const TSC_BUDGET: u64 = 20_000_000_000;

fn expected_cpus(booted: &'static Booted) -> usize {
    booted
        .info
        .cmdline_value("cpus")
        .and_then(|n| n.parse().ok())
        .expect("run.sh passes cpus=N")
}

fn others() -> impl Iterator<Item = &'static PerCpu> {
    let me = percpu::this_cpu().index();
    percpu::all().filter(move |c| c.index() != me)
}

fn every_cpu_reports_in_with_its_apic_id(booted: &'static Booted) {
    let n = expected_cpus(booted);
    let info = boot::smp::info().expect("SMP bring-up ran");
    assert_eq!(info.list.len(), n, "the MADT lists QEMU's -smp {n}");
    assert_eq!(percpu::all().count(), n);
    let mut seen = [false; MAX_CPUS];
    for (i, cpu) in percpu::all().enumerate() {
        assert_eq!(cpu.index(), i, "indices are dense, in start order");
        assert!(cpu.is_online(), "cpu {i} never came online");
        assert_eq!(cpu.apic_id(), info.list.apic_ids()[i]);
        assert_eq!(
            cpu.reported_apic_id(),
            cpu.apic_id(),
            "cpu {i} read another APIC id from its own APIC than the MADT's"
        );
        let id = cpu.apic_id() as usize;
        assert!(id < MAX_CPUS && !seen[id], "APIC id {id} twice");
        seen[id] = true;
    }
}

fn every_cpu_takes_its_own_timer_ticks(_: &'static Booted) {
    let before: [u64; MAX_CPUS] =
        core::array::from_fn(|i| percpu::cpu(i).map_or(0, |c| c.figures().ticks));
    let idle_before: [u64; MAX_CPUS] =
        core::array::from_fn(|i| percpu::cpu(i).map_or(0, |c| c.figures().idle_ticks));
    let moved = ktest::spin_until(TSC_BUDGET, || {
        percpu::all().all(|c| c.figures().ticks >= before[c.index()] + 3)
    });
    for c in percpu::all() {
        let f = c.figures();
        assert!(
            moved,
            "cpu {} ticks {} -> {} in {TSC_BUDGET} TSC cycles",
            f.index, before[f.index], f.ticks
        );
        if f.index != 0 {
            // Nothing runs here but the bootstrap CPU's test: an AP halts
            // in its idle task, and its ticks find it idle.
            assert!(
                f.idle_ticks > idle_before[f.index],
                "cpu {} took ticks but none idle",
                f.index
            );
        }
    }
}

static TIMER_INITIAL: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
static TIMER_LVT: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];

fn record_timer() {
    let (lvt, divide, initial) = arch::apic::timer_registers();
    let i = percpu::index();
    TIMER_LVT[i].store(lvt | divide << 24, Ordering::Relaxed);
    TIMER_INITIAL[i].store(initial, Ordering::Relaxed);
}

/// One calibration, the same count everywhere: ticks are as long on every
/// CPU (the APIC timers share one bus clock).
fn every_cpu_programs_the_same_timer(_: &'static Booted) {
    let count = arch::apic::tick_count();
    assert!(count > 1, "the timer was never calibrated");
    record_timer();
    for c in others() {
        arch::smp::call_on(c, record_timer, TIMEOUT_US).expect("call answered");
    }
    let lvt0 = TIMER_LVT[0].load(Ordering::Relaxed);
    // Periodic, unmasked, on the timer vector.
    assert_eq!(lvt0 & 0x3_00ff, 1 << 17 | arch::apic::TIMER_VECTOR as u32);
    for c in percpu::all() {
        let i = c.index();
        assert_eq!(TIMER_INITIAL[i].load(Ordering::Relaxed), count, "cpu {i}");
        assert_eq!(TIMER_LVT[i].load(Ordering::Relaxed), lvt0, "cpu {i}");
    }
}

fn a_ping_reaches_each_cpu_and_comes_back(booted: &'static Booted) {
    assert_eq!(others().count(), expected_cpus(booted) - 1);
    for c in others() {
        let mine = percpu::this_cpu().figures().ipis;
        let theirs = c.figures().ipis;
        let cycles = arch::smp::ping(c, TIMEOUT_US)
            .unwrap_or_else(|e| panic!("cpu {} did not answer: {e:?}", c.index()));
        assert!(cycles > 0);
        assert!(
            c.figures().ipis > theirs,
            "cpu {} counted no IPI",
            c.index()
        );
        assert!(
            percpu::this_cpu().figures().ipis > mine,
            "the answer was no IPI"
        );
    }
}

/// Every CPU has joined the scheduler, and the scheduler's kick (a
/// reschedule IPI) reaches the CPU asked, which finds nothing to run and
/// goes back to its idle loop.
fn a_kick_reaches_the_cpu_asked(booted: &'static Booted) {
    let system = boot::task::system();
    assert_eq!(
        system.cpu_count(),
        expected_cpus(booted),
        "every CPU joined"
    );
    for c in others() {
        let theirs = c.figures().ipis;
        boot::task::kick(c.index());
        let reached = ktest::spin_until(TSC_BUDGET, || c.figures().ipis > theirs);
        assert!(reached, "cpu {} never took the kick", c.index());
    }
}

fn a_broadcast_ping_reaches_every_other_cpu(booted: &'static Booted) {
    let n = expected_cpus(booted);
    for _ in 0..3 {
        let answered = arch::smp::ping_all_others(TIMEOUT_US).expect("every CPU answered");
        assert_eq!(answered, n - 1);
    }
}

static RAN_ON: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(usize::MAX) }; MAX_CPUS];
static APIC_SEEN: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(u64::MAX) }; MAX_CPUS];

/// Runs on the target: its index from GS, and the APIC id its own APIC
/// reports, filed under the index.
fn record_identity() {
    let i = percpu::index();
    RAN_ON[i].store(percpu::this_cpu().index(), Ordering::Relaxed);
    APIC_SEEN[i].store(arch::apic::id() as u64, Ordering::Relaxed);
    // The kernel's interrupts-off bookkeeping is this CPU's own.
    assert!(kernel::sync::irq_depth() <= 1);
}

fn calls_run_on_the_cpu_asked_with_its_own_gs(_: &'static Booted) {
    for c in others() {
        arch::smp::call_on(c, record_identity, TIMEOUT_US).expect("call answered");
        let i = c.index();
        assert_eq!(RAN_ON[i].load(Ordering::Relaxed), i, "GS names cpu {i}");
        assert_eq!(APIC_SEEN[i].load(Ordering::Relaxed), c.apic_id() as u64);
    }
}

fn pings_that_cannot_be_answered_are_refused(_: &'static Booted) {
    let me = percpu::this_cpu();
    assert_eq!(
        arch::smp::ping(me, TIMEOUT_US),
        Err(arch::smp::PingError::BadTarget)
    );
    if let Some(other) = others().next() {
        let r = kernel::sync::without_interrupts(|| arch::smp::ping(other, TIMEOUT_US));
        assert_eq!(r, Err(arch::smp::PingError::InterruptsOff));
        // Still answers afterwards.
        arch::smp::ping(other, TIMEOUT_US).expect("answer");
    }
}

fn the_pic_is_masked_and_the_bsp_index_is_zero(_: &'static Booted) {
    assert_eq!(arch::timer::pic_masks(), (0xff, 0xff));
    assert_eq!(percpu::index(), 0);
    assert_eq!(percpu::this_cpu().apic_id(), arch::apic::id());
}

/// A program's system calls and interrupts all swap GS in and out: after
/// it, GS is this CPU's area again and the user's base (0) is parked.
fn ring3_leaves_gs_as_the_kernel_had_it(_: &'static Booted) {
    use x86_64::registers::model_specific::{GsBase, KernelGsBase};
    let image = boot::programs::find("hello").expect("hello is built in");
    let system = boot::task::system();
    let tid = system.spawn_program("hello", image, "smp").expect("spawn");
    let status = system.join_process(tid, boot::task::TICK_NS).expect("join");
    assert_eq!(status, abi::exited_status(42));
    let here = percpu::this_cpu() as *const PerCpu as u64;
    assert_eq!(GsBase::read().as_u64(), here);
    assert_eq!(KernelGsBase::read().as_u64(), 0);
}

static PINNED_GO: AtomicUsize = AtomicUsize::new(0);
static PINNED_HERE: AtomicUsize = AtomicUsize::new(0);
static PINNED_SEEN: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(usize::MAX) }; MAX_CPUS];

/// Waits for the start (its affinity is set by then), records the CPU it
/// runs on, then spins until every pinned thread has: all of them run at
/// the same time, one per CPU, which one CPU alone could never do (a
/// spinning kernel thread is preempted, but its CPU is the only one its
/// mask allows).
fn pinned(target: u64) -> i64 {
    while PINNED_GO.load(Ordering::Acquire) == 0 {
        boot::task::yield_now();
    }
    // A kernel thread runs with interrupts on: read the index with them
    // off, so no move comes between the read and its use.
    let here = kernel::sync::without_interrupts(percpu::index);
    PINNED_SEEN[target as usize].store(here, Ordering::Relaxed);
    PINNED_HERE.fetch_add(1, Ordering::AcqRel);
    let n = PINNED_GO.load(Ordering::Acquire);
    let all = ktest::spin_until(TSC_BUDGET, || PINNED_HERE.load(Ordering::Acquire) >= n);
    if all { 0 } else { 1 }
}

/// A kernel thread pinned to each CPU (the scheduler's affinity, as
/// `sched_setaffinity` sets it) runs there, and all of them at once.
fn threads_pinned_to_each_cpu_run_there_at_once(booted: &'static Booted) {
    let n = expected_cpus(booted);
    let system = boot::task::system();
    let tids: alloc::vec::Vec<_> = (0..n)
        .map(|cpu| {
            let tid = boot::task::spawn_kernel("pinned", pinned, cpu as u64).expect("spawn");
            system
                .with_sched(|s| s.set_affinity(tid, kernel::task::sched::CpuMask::one(cpu)))
                .expect("affinity");
            tid
        })
        .collect();
    PINNED_GO.store(n, Ordering::Release);
    for tid in tids {
        assert_eq!(boot::task::join(tid), Ok(0), "a pinned thread waited alone");
    }
    for (cpu, seen) in PINNED_SEEN.iter().enumerate().take(n) {
        assert_eq!(
            seen.load(Ordering::Relaxed),
            cpu,
            "the thread pinned to {cpu}"
        );
    }
}

// ---- TLB shootdown ----
//
// A reader pinned to CPU 1 reads one page in a loop while a shooter
// pinned to CPU 0 points the page at another frame and shoots the old
// translation down; once the reader has seen the shooter's `DONE` for an
// iteration, every read of the page must give the new frame's word. Lock
// step, no timing: each iteration the reader reads the page first (so its
// TLB holds the old translation: QEMU's keeps it until INVLPG or a CR3
// write), says so, and only then does the shooter remap. The same run with
// the NMIs left out (`set_skip_remote_for_test`) must see the old frame,
// which is what shows the check can fail.

/// Nothing else maps it: past the last task-stack slot, in the top-level
/// entry the heap and the stacks share (as the mm test kernel's).
const SCRATCH: u64 =
    arch::layout::KSTACK_BASE + arch::layout::KSTACK_SLOTS * arch::layout::KSTACK_SLOT + 0x10_0000;
/// A user address for the user-space case.
const USER_VA: u64 = 0x40_0000;
const SHOOTER_CPU: usize = 0;
const READER_CPU: usize = 1;

/// The word the frame mapped for iteration `i` holds.
fn word(i: u64) -> u64 {
    0x5eed_0000_0000 | i
}

/// The run both threads follow: what is read, how often, and where the
/// results go. Set by the test before it spawns them.
static SC_VA: AtomicU64 = AtomicU64::new(0);
/// The user root the reader loads (0: it stays on the kernel's).
static SC_ROOT: AtomicU64 = AtomicU64::new(0);
static SC_ITERATIONS: AtomicU64 = AtomicU64::new(0);
static SC_SKIP: AtomicU64 = AtomicU64::new(0);
/// The two frames the page moves between; the first is mapped at the start.
static SC_FRAMES: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];
/// Handshake: the iteration whose old frame is in place, that the reader
/// has read, whose shootdown returned, that the reader has finished.
static READY: AtomicU64 = AtomicU64::new(0);
static PRIMED: AtomicU64 = AtomicU64::new(0);
static DONE: AtomicU64 = AtomicU64::new(0);
static FINISHED: AtomicU64 = AtomicU64::new(0);
/// Results: reads after `DONE` that gave the old word; reads before it
/// that gave neither; shootdowns whose targets were not the expected;
/// the shootdown requests each CPU took during the iterations.
static STALE: AtomicU64 = AtomicU64::new(0);
static WRONG: AtomicU64 = AtomicU64::new(0);
static BAD_TARGETS: AtomicU64 = AtomicU64::new(0);
static TAKEN: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static SENT: AtomicU64 = AtomicU64::new(0);

fn read_page(va: u64) -> u64 {
    // SAFETY: the test maps `va` (in the kernel half, or in the user half
    // of the root the reader loaded) to one of its frames for the whole
    // run; the frames are only read here.
    unsafe { (va as *const u64).read_volatile() }
}

fn wait_for(what: &str, cond: impl FnMut() -> bool) {
    assert!(
        ktest::spin_until(TSC_BUDGET, cond),
        "waited in vain for {what}"
    );
}

/// Moves the calling kernel thread to `cpu` (its affinity says only
/// there, so it stays).
fn settle_on(cpu: usize) {
    while kernel::sync::without_interrupts(percpu::index) != cpu {
        boot::task::yield_now();
    }
}

fn spawn_pinned(name: &str, entry: fn(u64) -> i64, cpu: usize) -> kernel::task::sched::Tid {
    let tid = boot::task::spawn_kernel(name, entry, 0).expect("spawn");
    boot::task::system()
        .with_sched(|s| s.set_affinity(tid, kernel::task::sched::CpuMask::one(cpu)))
        .expect("affinity");
    tid
}

fn reader(_: u64) -> i64 {
    settle_on(READER_CPU);
    let va = SC_VA.load(Ordering::Relaxed);
    let root = SC_ROOT.load(Ordering::Relaxed);
    let iterations = SC_ITERATIONS.load(Ordering::Relaxed);
    // Interrupts off throughout: no tick or switch touches the TLB (or
    // reloads CR3) between the reads; a shootdown's NMI still comes.
    kernel::sync::without_interrupts(|| {
        if root != 0 {
            // SAFETY: a user space whose kernel half is the kernel's (all
            // code, data and stacks); with interrupts off no switch
            // happens before the kernel's root is loaded back below.
            unsafe { arch::paging::load_root(kernel::mm::Pfn(root)) };
        }
        for i in 1..=iterations {
            wait_for("the shooter's frame", || READY.load(Ordering::Acquire) >= i);
            // The old translation, into this CPU's TLB.
            if read_page(va) != word(i - 1) {
                WRONG.fetch_add(1, Ordering::Relaxed);
            }
            PRIMED.store(i, Ordering::Release);
            loop {
                let done = DONE.load(Ordering::Acquire) >= i;
                let seen = read_page(va);
                if done {
                    if seen != word(i) {
                        STALE.fetch_add(1, Ordering::Relaxed);
                    }
                    break;
                }
                if seen != word(i - 1) && seen != word(i) {
                    WRONG.fetch_add(1, Ordering::Relaxed);
                }
                core::hint::spin_loop();
            }
            // Each iteration starts from a TLB that holds the page only
            // through its own first read (with the NMIs left out, the old
            // translation would stay for good).
            arch::paging::flush_page(va);
            FINISHED.store(i, Ordering::Release);
        }
        if root != 0 {
            // SAFETY: the kernel's root maps everything that runs.
            unsafe { arch::paging::load_root(boot::memory::kernel_root()) };
        }
    });
    0
}

/// Points the scenario's page at `pfn` and shoots the old translation
/// down; returns the frame it was at.
fn remap(va: u64, root: u64, pfn: kernel::mm::Pfn) -> kernel::mm::Pfn {
    use kernel::mm::pte::{LeafFlags, Pte};
    if root == 0 {
        return boot::memory::remap_kernel_page(va, pfn, LeafFlags::WRITABLE | LeafFlags::GLOBAL)
            .expect("remap");
    }
    let mut pt =
        kernel::mm::paging::PageTable::<arch::pte::X86Pte, arch::phys::DirectMap>::from_root(
            &arch::phys::DIRECT_MAP,
            kernel::mm::Pfn(root),
        );
    let leaf = Pte::Leaf {
        pfn,
        flags: LeafFlags::USER | LeafFlags::WRITABLE,
    };
    let (old, flush) = pt
        .set_entry(va, 0, leaf, &boot::memory::FrameTables)
        .expect("remap");
    flush.flush(&arch::tlb::SHOOTDOWN);
    match old {
        Pte::Leaf { pfn, .. } => pfn,
        other => panic!("{va:#x} held {other:?}"),
    }
}

fn shooter(_: u64) -> i64 {
    use arch::phys::DirectMap;
    use kernel::mm::phys::PhysMem;
    settle_on(SHOOTER_CPU);
    let va = SC_VA.load(Ordering::Relaxed);
    let root = SC_ROOT.load(Ordering::Relaxed);
    let iterations = SC_ITERATIONS.load(Ordering::Relaxed);
    let skip = SC_SKIP.load(Ordering::Relaxed) != 0;
    // Who may cache the page: every other CPU for a kernel page, only the
    // reader's for the user page of the root it runs.
    let expected = if root == 0 {
        percpu::all()
            .filter(|c| c.index() != SHOOTER_CPU)
            .map(|c| 1u64 << c.index())
            .sum()
    } else {
        1u64 << READER_CPU
    };
    let mut cur = kernel::mm::Pfn(SC_FRAMES[0].load(Ordering::Relaxed));
    let mut next = kernel::mm::Pfn(SC_FRAMES[1].load(Ordering::Relaxed));
    let taken_before: [u64; MAX_CPUS] =
        core::array::from_fn(|i| percpu::cpu(i).map_or(0, |c| c.figures().shootdowns_taken));
    let sent_before = percpu::this_cpu().figures().shootdowns_sent;
    arch::tlb::set_skip_remote_for_test(skip);
    for i in 1..=iterations {
        DirectMap.write_u64(next.addr(), word(i));
        READY.store(i, Ordering::Release);
        wait_for("the reader's first read", || {
            PRIMED.load(Ordering::Acquire) >= i
        });
        let old = remap(va, root, next);
        assert_eq!(old, cur, "iteration {i}");
        if arch::tlb::last_targets().0 != expected {
            BAD_TARGETS.fetch_add(1, Ordering::Relaxed);
        }
        DONE.store(i, Ordering::Release);
        wait_for("the reader's last read", || {
            FINISHED.load(Ordering::Acquire) >= i
        });
        core::mem::swap(&mut cur, &mut next);
    }
    // Before any task ends (a stack unmapped while it is set would leave
    // stale translations behind), and what the run itself left on the
    // other CPUs goes too.
    arch::tlb::set_skip_remote_for_test(false);
    for c in percpu::all() {
        let i = c.index();
        TAKEN[i].store(
            c.figures().shootdowns_taken - taken_before[i],
            Ordering::Relaxed,
        );
    }
    SENT.store(
        percpu::this_cpu().figures().shootdowns_sent - sent_before,
        Ordering::Relaxed,
    );
    kernel::mm::tlb::TlbFlush::flush_all(&arch::tlb::SHOOTDOWN);
    // Where the page points now, for the test to give the frames back.
    SC_FRAMES[0].store(cur.0, Ordering::Relaxed);
    SC_FRAMES[1].store(next.0, Ordering::Relaxed);
    0
}

/// What one run saw.
struct Outcome {
    stale: u64,
    wrong: u64,
    bad_targets: u64,
    taken: [u64; MAX_CPUS],
    sent: u64,
}

/// Runs the reader and the shooter over `va` (mapped to `frames[0]`,
/// holding `word(0)`), in the user space rooted at `root` if not 0.
fn run_scenario(
    va: u64,
    root: u64,
    frames: [kernel::mm::Pfn; 2],
    iterations: u64,
    skip: bool,
) -> Outcome {
    use arch::phys::DirectMap;
    use kernel::mm::phys::PhysMem;
    DirectMap.write_u64(frames[0].addr(), word(0));
    SC_VA.store(va, Ordering::Relaxed);
    SC_ROOT.store(root, Ordering::Relaxed);
    SC_ITERATIONS.store(iterations, Ordering::Relaxed);
    SC_SKIP.store(u64::from(skip), Ordering::Relaxed);
    for (slot, f) in SC_FRAMES.iter().zip(frames) {
        slot.store(f.0, Ordering::Relaxed);
    }
    for a in [
        &READY,
        &PRIMED,
        &DONE,
        &FINISHED,
        &STALE,
        &WRONG,
        &BAD_TARGETS,
        &SENT,
    ] {
        a.store(0, Ordering::Relaxed);
    }
    let r = spawn_pinned("tlb-reader", reader, READER_CPU);
    let s = spawn_pinned("tlb-shooter", shooter, SHOOTER_CPU);
    assert_eq!(boot::task::join(s), Ok(0));
    assert_eq!(boot::task::join(r), Ok(0));
    // Mapped as at the start, for the caller to undo.
    if SC_FRAMES[0].load(Ordering::Relaxed) != frames[0].0 {
        remap(va, root, frames[0]);
    }
    Outcome {
        stale: STALE.load(Ordering::Relaxed),
        wrong: WRONG.load(Ordering::Relaxed),
        bad_targets: BAD_TARGETS.load(Ordering::Relaxed),
        taken: core::array::from_fn(|i| TAKEN[i].load(Ordering::Relaxed)),
        sent: SENT.load(Ordering::Relaxed),
    }
}

impl core::fmt::Display for Outcome {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let n = percpu::all().count();
        write!(
            f,
            "stale_reads={} wrong_reads={} bad_targets={} nmis_sent={} requests_taken_by_cpu={:?}",
            self.stale,
            self.wrong,
            self.bad_targets,
            self.sent,
            &self.taken[..n]
        )
    }
}

fn two_frames() -> [kernel::mm::Pfn; 2] {
    let frames = boot::memory::frames();
    [
        frames.alloc_frame().expect("frame"),
        frames.alloc_frame().expect("frame"),
    ]
}

fn free_frames(pfns: [kernel::mm::Pfn; 2]) {
    for pfn in pfns {
        boot::memory::frames().free(pfn, 0).expect("free");
    }
}

const ITERATIONS: u64 = 200;
/// With the NMIs left out every iteration reads the old frame; a few show it.
const SKIP_ITERATIONS: u64 = 20;

/// A kernel page (global, in every root) remapped under a reader on CPU
/// 1: after each shootdown the reader sees the new frame, every other
/// CPU was asked and answered once per shootdown; without the NMIs the
/// reader sees the old frame.
fn a_kernel_page_shot_down_is_never_read_stale(_: &'static Booted) {
    use kernel::mm::pte::LeafFlags;
    let frames = two_frames();
    boot::memory::map_kernel_page(SCRATCH, frames[0], LeafFlags::WRITABLE | LeafFlags::GLOBAL)
        .expect("map");
    let o = run_scenario(SCRATCH, 0, frames, ITERATIONS, false);
    arch::println!("    with shootdowns: {o}");
    assert_eq!(
        o.stale, 0,
        "the reader saw the old frame after a shootdown returned"
    );
    assert_eq!(o.wrong, 0);
    assert_eq!(o.bad_targets, 0, "a kernel page goes to every other CPU");
    // Every CPU but the shooter's (the test itself may run on any).
    for c in percpu::all().filter(|c| c.index() != SHOOTER_CPU) {
        assert_eq!(
            o.taken[c.index()],
            ITERATIONS,
            "cpu {} answered each",
            c.index()
        );
    }
    assert_eq!(o.sent, ITERATIONS * others().count() as u64);
    let o = run_scenario(SCRATCH, 0, frames, SKIP_ITERATIONS, true);
    arch::println!("    with the NMIs left out: {o}");
    assert!(
        o.stale >= 1,
        "the old frame never showed: the check could not fail"
    );
    assert_eq!(o.taken, [0; MAX_CPUS]);
    let pfn = boot::memory::unmap_kernel_page(SCRATCH).expect("unmap");
    assert_eq!(pfn, frames[0]);
    free_frames(frames);
}

/// A user page of an address space CPU 1 runs: its shootdowns go to CPU 1
/// alone (the others run the kernel's root), and the reader never sees the
/// old frame after one returned; without the NMI it does.
fn a_user_page_is_shot_down_on_the_cpu_running_its_space_only(_: &'static Booted) {
    use kernel::mm::pte::LeafFlags;
    let frames_alloc = boot::memory::frames();
    let tables = &boot::memory::FrameTables;
    // A zero page of the test's own: the space maps none of it.
    let shared: &'static kernel::mm::vm::Shared = alloc::boxed::Box::leak(alloc::boxed::Box::new(
        kernel::mm::vm::Shared::new(frames_alloc, &arch::phys::DIRECT_MAP).expect("zero page"),
    ));
    let mut space =
        kernel::task::aspace::UserSpace::<arch::pte::X86Pte, arch::phys::DirectMap>::new(
            &arch::phys::DIRECT_MAP,
            boot::memory::kernel_root(),
            tables,
            &arch::tlb::SHOOTDOWN,
            shared,
        )
        .expect("space");
    space
        .map_zeroed(
            USER_VA,
            kernel::mm::PAGE_SIZE,
            LeafFlags::WRITABLE,
            frames_alloc,
            tables,
        )
        .expect("map");
    let root = space.root().0;
    let frames = two_frames();
    // The space's own frame is put back before it is destroyed.
    let own = remap(USER_VA, root, frames[0]);
    let o = run_scenario(USER_VA, root, frames, ITERATIONS, false);
    arch::println!("    with shootdowns: {o}");
    assert_eq!(
        o.stale, 0,
        "the reader saw the old frame after a shootdown returned"
    );
    assert_eq!(o.wrong, 0);
    assert_eq!(o.bad_targets, 0, "only CPU {READER_CPU} runs the space");
    for c in percpu::all().filter(|c| c.index() != SHOOTER_CPU) {
        let want = if c.index() == READER_CPU {
            ITERATIONS
        } else {
            0
        };
        assert_eq!(o.taken[c.index()], want, "cpu {}", c.index());
    }
    assert_eq!(o.sent, ITERATIONS);
    let o = run_scenario(USER_VA, root, frames, SKIP_ITERATIONS, true);
    arch::println!("    with the NMI left out: {o}");
    assert!(
        o.stale >= 1,
        "the old frame never showed: the check could not fail"
    );
    assert_eq!(remap(USER_VA, root, own), frames[0]);
    assert_ne!(
        arch::tlb::loaded_root(READER_CPU).0,
        root,
        "the reader left the space"
    );
    space.destroy(frames_alloc, tables);
    free_frames(frames);
}

/// Its own stack's address, for the test below.
fn stack_address(_: u64) -> i64 {
    let here = 0u8;
    core::hint::black_box(&here) as *const u8 as i64
}

/// A freed task stack's pages are unmapped at once but its slot (its
/// addresses) comes back only after a shootdown of them: one for many
/// stacks (`boot/src/task.rs`, `Slots`). Threads are made and reaped one
/// after the other; whenever one gets the slot of an earlier one, a
/// shootdown must have been sent since that one was freed.
fn a_freed_stack_slot_is_reused_only_after_a_shootdown(_: &'static Booted) {
    use arch::layout::{KSTACK_BASE, KSTACK_SLOT, KSTACK_SLOTS};
    const SLOTS_SEEN: usize = 256;
    let sent = || {
        percpu::all()
            .map(|c| c.figures().shootdowns_sent)
            .sum::<u64>()
    };
    // For each slot seen: the shootdowns sent before its stack was freed.
    let mut freed_after: [Option<u64>; SLOTS_SEEN] = [None; SLOTS_SEEN];
    let (mut reused, first) = (0, sent());
    for _ in 0..96 {
        let before_spawn = sent();
        let tid = boot::task::spawn_kernel("stack", stack_address, 0).expect("spawn");
        let before_free = sent();
        let addr = boot::task::join(tid).expect("join") as u64;
        let slot = ((addr - KSTACK_BASE) / KSTACK_SLOT) as usize;
        assert!(slot < KSTACK_SLOTS as usize, "{addr:#x} is no task stack");
        let Some(seen) = freed_after.get_mut(slot) else {
            continue;
        };
        if let Some(at) = *seen {
            assert!(
                before_spawn > at,
                "slot {slot} reused with no shootdown since its stack was freed"
            );
            reused += 1;
        }
        *seen = Some(before_free);
    }
    arch::println!(
        "    slots_reused={reused} shootdown_nmis={}",
        sent() - first
    );
    assert!(reused > 0, "no slot came back: the check proved nothing");
}
