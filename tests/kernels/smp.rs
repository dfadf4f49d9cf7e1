//! Several CPUs (run.sh boots this kernel with four): every CPU reports in
//! with its APIC id, takes its own timer ticks, answers pings and runs
//! calls through IPIs, with its own per-CPU area; the PIC is masked; every
//! CPU runs tasks, and a thread pinned to each runs there.
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
            // An AP does nothing but halt: its ticks find it idle.
            assert!(
                f.idle_ticks > idle_before[f.index],
                "cpu {} took ticks but none idle",
                f.index
            );
            assert_eq!(f.switches, 0, "no task runs on an AP yet");
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
    for cpu in 0..n {
        assert_eq!(
            PINNED_SEEN[cpu].load(Ordering::Relaxed),
            cpu,
            "the thread pinned to {cpu}"
        );
    }
}
