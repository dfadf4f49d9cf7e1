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
    restore_irq_state(IrqState {
        depth: 0,
        enable_at_zero: false,
    });
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
