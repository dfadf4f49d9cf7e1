//! An interrupt-safe lock for state that both tasks and interrupt-time
//! code touch.
//!
//! On one CPU, a task preempted while it holds a spin lock leaves every
//! other taker spinning forever (the holder cannot run until they yield,
//! and they never do). So locks shared with the timer path, or with code
//! that runs with interrupts off, must be held with interrupts off.
//! [`IrqMutex`] does that itself: the kernel crate cannot touch the
//! interrupt flag, so boot installs the two functions that do
//! ([`install_irq_hooks`]); until then (and on the host) they do nothing.

use core::ops::{Deref, DerefMut};

use spin::{Mutex, MutexGuard, Once};

/// Saves the interrupt state and disables interrupts; restores it.
#[derive(Clone, Copy)]
pub struct IrqHooks {
    pub save_and_disable: fn() -> bool,
    pub restore: fn(bool),
}

static HOOKS: Once<IrqHooks> = Once::new();

/// Installs the platform's interrupt-flag functions (once, at boot).
pub fn install_irq_hooks(hooks: IrqHooks) {
    HOOKS.call_once(|| hooks);
}

fn save_and_disable() -> bool {
    HOOKS.get().map(|h| (h.save_and_disable)()).unwrap_or(false)
}

fn restore(was_enabled: bool) {
    if let Some(h) = HOOKS.get() {
        (h.restore)(was_enabled);
    }
}

/// A spin lock held with interrupts off.
pub struct IrqMutex<T> {
    inner: Mutex<T>,
}

impl<T> IrqMutex<T> {
    pub const fn new(value: T) -> Self {
        IrqMutex {
            inner: Mutex::new(value),
        }
    }

    pub fn lock(&self) -> IrqMutexGuard<'_, T> {
        let was_enabled = save_and_disable();
        IrqMutexGuard {
            guard: Some(self.inner.lock()),
            was_enabled,
        }
    }
}

/// Unlocks, then restores interrupts, in that order: an interrupt between
/// the two would otherwise preempt a holder.
pub struct IrqMutexGuard<'a, T> {
    guard: Option<MutexGuard<'a, T>>,
    was_enabled: bool,
}

impl<T> Deref for IrqMutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        match &self.guard {
            Some(g) => g,
            None => unreachable!("guard used after drop"),
        }
    }
}

impl<T> DerefMut for IrqMutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        match &mut self.guard {
            Some(g) => g,
            None => unreachable!("guard used after drop"),
        }
    }
}

impl<T> Drop for IrqMutexGuard<'_, T> {
    fn drop(&mut self) {
        drop(self.guard.take());
        restore(self.was_enabled);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    // The hooks are global to the test binary, whose tests run on many
    // threads, so the simulated interrupt flag is per thread.
    std::thread_local! {
        static ENABLED: Cell<bool> = const { Cell::new(true) };
        static ENABLED_WHILE_LOCKED: Cell<u32> = const { Cell::new(0) };
    }
    static LOCK: IrqMutex<u32> = IrqMutex::new(0);

    fn save_and_disable() -> bool {
        ENABLED.with(|e| e.replace(false))
    }

    fn restore(was: bool) {
        if was && LOCK.inner.is_locked() {
            ENABLED_WHILE_LOCKED.with(|c| c.set(c.get() + 1));
        }
        ENABLED.with(|e| e.set(was));
    }

    #[test]
    fn held_with_interrupts_off_and_released_before_they_return() {
        install_irq_hooks(IrqHooks {
            save_and_disable,
            restore,
        });
        {
            let mut g = LOCK.lock();
            assert!(!ENABLED.with(Cell::get), "interrupts on while held");
            *g += 1;
            // A nested section keeps interrupts off until the outer one ends.
            let was = super::save_and_disable();
            assert!(!was);
            super::restore(was);
            assert!(!ENABLED.with(Cell::get));
        }
        assert!(ENABLED.with(Cell::get), "interrupts not restored");
        assert_eq!(
            ENABLED_WHILE_LOCKED.with(Cell::get),
            0,
            "re-enabled before unlocking"
        );
        assert_eq!(*LOCK.lock(), 1);
    }
}
