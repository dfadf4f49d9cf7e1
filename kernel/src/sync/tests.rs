use super::*;
use std::cell::Cell;

// The hooks are global to the test binary, whose tests run on many
// threads, so the simulated interrupt flag is per thread, like the depth.
std::thread_local! {
    static ENABLED: Cell<bool> = const { Cell::new(true) };
    /// Times interrupts came back on while LOCK_A or LOCK_B was held.
    static ENABLED_WHILE_LOCKED: Cell<u32> = const { Cell::new(0) };
}
static LOCK_A: IrqMutex<u32> = IrqMutex::new(0);
static LOCK_B: IrqMutex<u32> = IrqMutex::new(0);
// The two locks are shared by every test thread; one test at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn sim_disable() -> bool {
    ENABLED.with(|e| e.replace(false))
}

fn sim_enable() {
    if LOCK_A.is_locked() || LOCK_B.is_locked() {
        ENABLED_WHILE_LOCKED.with(|c| c.set(c.get() + 1));
    }
    ENABLED.with(|e| e.set(true));
}

fn setup() -> std::sync::MutexGuard<'static, ()> {
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    install_irq_hooks(IrqHooks {
        disable: sim_disable,
        enable: sim_enable,
        cpu_index: || 0,
    });
    ENABLED.with(|e| e.set(true));
    ENABLED_WHILE_LOCKED.with(|c| c.set(0));
    serial
}

fn enabled() -> bool {
    ENABLED.with(Cell::get)
}

#[test]
fn held_with_interrupts_off_and_released_before_they_return() {
    let _s = setup();
    {
        let mut g = LOCK_A.lock();
        assert!(!enabled(), "interrupts on while held");
        *g += 1;
        // A nested section keeps interrupts off until the outer one ends.
        without_interrupts(|| assert!(!enabled()));
        assert!(!enabled());
    }
    assert!(enabled(), "interrupts not restored");
    assert_eq!(ENABLED_WHILE_LOCKED.with(Cell::get), 0);
    assert_eq!(irq_depth(), 0);
}

#[test]
fn guards_dropped_out_of_order_keep_interrupts_off_until_the_last() {
    let _s = setup();
    let a = LOCK_A.lock();
    let b = LOCK_B.lock();
    drop(a);
    // Per-guard save/restore would turn interrupts on here, with B held.
    assert!(!enabled(), "interrupts on while B is still held");
    assert_eq!(irq_depth(), 1);
    drop(b);
    assert!(enabled());
    assert_eq!(ENABLED_WHILE_LOCKED.with(Cell::get), 0);
}

#[test]
fn a_section_begun_with_interrupts_off_leaves_them_off() {
    let _s = setup();
    ENABLED.with(|e| e.set(false));
    drop(LOCK_A.lock());
    assert!(!enabled(), "a lock turned on interrupts it found off");
}

#[test]
fn an_unmatched_pop_never_turns_interrupts_on() {
    let _s = setup();
    ENABLED.with(|e| e.set(false));
    pop_off();
    assert!(!enabled());
    assert_eq!(irq_depth(), 0);
}

#[test]
fn state_carried_across_a_switch() {
    let _s = setup();
    // Task 1 switches away inside a section begun with interrupts on.
    let off = IrqOff::new();
    let saved = save_irq_state();
    // Task 2 runs its own section to the end: it began with interrupts
    // off (the switch runs with them off), so it leaves them off.
    restore_irq_state(IrqState::NONE);
    without_interrupts(|| {});
    assert!(!enabled());
    // Back in task 1: its section ends and interrupts come back.
    restore_irq_state(saved);
    drop(off);
    assert!(enabled());
}

#[test]
fn a_new_task_starts_outside_the_switching_tasks_section() {
    let _s = setup();
    // The switch into a new task happens inside the old task's section.
    let off = IrqOff::new();
    let saved = save_irq_state();
    start_of_task();
    // The new task turns interrupts on and takes a lock: they must be on
    // again after it.
    sim_enable();
    drop(LOCK_A.lock());
    assert!(enabled(), "the new task's first lock left interrupts off");
    restore_irq_state(saved);
    drop(off);
}

// ---- Lock order ----

// The check exists in debug builds only.
#[cfg(debug_assertions)]
mod order {
    use super::*;

    // Locks of their own with the real ranks: the messages are the kernel's.
    // Each test runs on a thread of its own, so the held ranks are its own.
    static HEAP: IrqMutex<()> = IrqMutex::ranked(rank::HEAP, ());
    static FRAMES: IrqMutex<()> = IrqMutex::ranked(rank::FRAMES, ());
    static FRAMES_TOO: IrqMutex<()> = IrqMutex::ranked(rank::FRAMES, ());
    static SERIAL_PORT: IrqMutex<()> = IrqMutex::ranked(rank::SERIAL, ());
    static PROCS: IrqMutex<()> = IrqMutex::ranked(rank::PROCS, ());
    static SCHED: IrqMutex<()> = IrqMutex::ranked(rank::SCHED, ());

    /// The message `f` panicked with, or None if it returned.
    fn panic_message(f: impl FnOnce()) -> Option<String> {
        let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).err()?;
        err.downcast_ref::<String>()
            .cloned()
            .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
    }

    fn held() -> u32 {
        CPU.with(|c| c.held.load(Ordering::Relaxed))
    }

    #[test]
    fn the_ranks_are_the_tables_rows() {
        for (row, r) in rank::ALL.iter().enumerate() {
            assert_eq!(usize::from(r.number()), row + 1, "{}", r.name());
        }
        let task_only: Vec<_> = rank::ALL
            .iter()
            .filter(|r| r.task_only())
            .map(|r| r.name())
            .collect();
        assert_eq!(task_only, ["procs", "pipes"]);
    }

    /// The rows of docs/locking.md's table are the ranks, and its last
    /// column ("an interrupt handler may take it") says "no" for exactly
    /// the task-only ones.
    #[test]
    fn the_table_in_the_docs_matches() {
        let doc = include_str!("../../../docs/locking.md");
        let rows: Vec<(u8, bool)> = doc
            .lines()
            .filter_map(|line| {
                // "| 1 | lock | where | guards | no |": empty cells at the ends.
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                let number = cells.get(1)?.parse().ok()?;
                let may = cells.get(cells.len().checked_sub(2)?)?;
                Some((number, may.starts_with("no")))
            })
            .collect();
        let ranks: Vec<(u8, bool)> = rank::ALL
            .iter()
            .map(|r| (r.number(), r.task_only()))
            .collect();
        assert_eq!(rows, ranks);
    }

    #[test]
    fn locks_taken_in_order_pass() {
        let _s = setup();
        {
            let _p = PROCS.lock();
            let _sched = SCHED.lock();
            let _h = HEAP.lock();
            let _f = FRAMES.lock();
            let _o = SERIAL_PORT.lock();
            // Unranked locks are not checked, wherever they are taken.
            drop(LOCK_A.lock());
        }
        assert_eq!(held(), 0);
        assert_eq!(irq_depth(), 0);
        assert!(enabled());
    }

    #[test]
    fn a_lock_below_a_held_one_panics_naming_both() {
        let _s = setup();
        let message = panic_message(|| {
            let _h = FRAMES.lock();
            drop(HEAP.lock());
        });
        assert_eq!(
            message.as_deref(),
            Some("lock order: took heap (5) while holding frames (7)")
        );
        // The refused lock was never taken, and unwinding released the rest.
        assert!(!HEAP.is_locked() && !FRAMES.is_locked());
        assert_eq!(held(), 0);
        assert_eq!(irq_depth(), 0);
        assert!(enabled());
    }

    #[test]
    #[should_panic(expected = "lock order: took procs (1) while holding heap (5)")]
    fn the_innermost_conflicting_lock_is_named() {
        let _s = setup();
        let _sched = SCHED.lock();
        let _h = HEAP.lock();
        // Wrong twice over; the lock taken last before it is the one named.
        let _p = PROCS.lock();
    }

    #[test]
    fn two_locks_of_one_rank_never_nest() {
        let _s = setup();
        let message = panic_message(|| {
            let _a = FRAMES.lock();
            drop(FRAMES_TOO.lock());
        });
        assert_eq!(
            message.as_deref(),
            Some("lock order: took frames (7) while holding frames (7)")
        );
    }

    #[test]
    fn release_order_does_not_matter() {
        let _s = setup();
        let p = PROCS.lock();
        let h = HEAP.lock();
        let f = FRAMES.lock();
        // Released out of order: only the released lock's bit goes.
        drop(p);
        drop(f);
        assert_eq!(held(), 1 << rank::HEAP.number());
        // What is held still forbids what lies above it...
        let message = panic_message(|| drop(SCHED.lock()));
        assert_eq!(
            message.as_deref(),
            Some("lock order: took scheduler (3) while holding heap (5)")
        );
        // ...and allows what lies below, again.
        drop(FRAMES.lock());
        drop(h);
        assert_eq!(held(), 0);
        // With nothing held, the first lock may be any.
        drop(PROCS.lock());
        assert_eq!(irq_depth(), 0);
        assert!(enabled());
    }

    #[test]
    fn task_only_locks_panic_in_an_interrupt_handler() {
        let _s = setup();
        let message = panic_message(|| {
            let _irq = InterruptContext::enter();
            assert!(in_interrupt());
            // The tick's own locks are allowed there.
            drop(SCHED.lock());
            drop(PROCS.lock());
        });
        assert_eq!(
            message.as_deref(),
            Some("lock order: took procs (1) in interrupt context")
        );
        assert!(!in_interrupt());
        // Outside any handler, it is a task's lock again.
        drop(PROCS.lock());
    }

    #[test]
    fn the_interrupt_count_follows_the_task_across_a_switch() {
        let _s = setup();
        // Task 1 is preempted from inside the tick's handler...
        let irq = InterruptContext::enter();
        let off = IrqOff::new();
        let saved = save_irq_state();
        // ...and task 2, new or switched out from a system call, is in none:
        // it takes its process's lock.
        start_of_task();
        assert!(!in_interrupt());
        drop(PROCS.lock());
        // Back in task 1, in its handler still, until it returns.
        restore_irq_state(saved);
        assert!(in_interrupt());
        drop(off);
        drop(irq);
        assert!(!in_interrupt());
    }

    #[test]
    fn a_switch_with_a_ranked_lock_held_panics() {
        let _s = setup();
        assert_no_locks_held("a context switch");
        let message = panic_message(|| {
            let _f = FRAMES.lock();
            assert_no_locks_held("a context switch");
        });
        assert_eq!(
            message.as_deref(),
            Some("lock order: a context switch with frames (7) held")
        );
        // Unranked locks are outside the check.
        let _a = LOCK_A.lock();
        assert_no_locks_held("a context switch");
    }
}
