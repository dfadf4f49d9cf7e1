//! Interrupt-safe locking for state that both tasks and interrupt-time
//! code touch.
//!
//! A task preempted while it holds a spin lock leaves every other taker on
//! its CPU spinning forever (the holder cannot run until they yield, and
//! they never do). So locks shared with the timer path, or with code that
//! runs with interrupts off, are held with interrupts off: [`IrqMutex`]
//! does that itself.
//!
//! # Nesting
//!
//! Interrupts are turned off by counting, like xv6's `push_off`/`pop_off`:
//! each CPU keeps a depth and whether interrupts were on when the depth
//! left zero, and only the section that brings the depth back to zero may
//! turn them on again. Saving and restoring the flag per guard instead
//! would let guards dropped out of order (A taken, B taken, A dropped)
//! turn interrupts on while B is still held.
//!
//! A context switch happens inside such a section; the executor carries
//! the per-CPU state across it with [`save_irq_state`] and
//! [`restore_irq_state`], because the task switched to has its own depth.
//!
//! The kernel crate cannot touch the interrupt flag, so boot installs the
//! functions that do ([`install_irq_hooks`]); until then (and on the host)
//! the flag is simulated.

use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use spin::{Mutex, MutexGuard, Once};

/// The platform's interrupt-flag and CPU-identity functions.
#[derive(Clone, Copy)]
pub struct IrqHooks {
    /// Disables interrupts; returns whether they were enabled.
    pub disable: fn() -> bool,
    pub enable: fn(),
    /// This CPU's index, below [`MAX_CPUS`]. Only called with interrupts
    /// off, so the answer cannot change under the caller.
    pub cpu_index: fn() -> usize,
}

/// CPUs whose interrupt depth is tracked.
pub const MAX_CPUS: usize = 64;

static HOOKS: Once<IrqHooks> = Once::new();

/// Installs the platform's functions (once, at boot).
pub fn install_irq_hooks(hooks: IrqHooks) {
    HOOKS.call_once(|| hooks);
}

/// One CPU's nesting state. Touched only by its own CPU with interrupts
/// off, so relaxed atomics suffice; they are atomics only to be `Sync`.
struct CpuIrq {
    depth: AtomicU32,
    /// Interrupts were on when `depth` left zero.
    enable_at_zero: AtomicBool,
}

impl CpuIrq {
    const fn new() -> CpuIrq {
        CpuIrq {
            depth: AtomicU32::new(0),
            enable_at_zero: AtomicBool::new(false),
        }
    }
}

#[cfg(not(test))]
static CPUS: [CpuIrq; MAX_CPUS] = [const { CpuIrq::new() }; MAX_CPUS];

// Every lock is taken and released through these few functions, several
// times per system call, so they are inlined into their callers and read
// the hooks once per call (`./run.sh bench`).

#[cfg(not(test))]
#[inline]
fn with_cpu<R>(hooks: Option<&IrqHooks>, f: impl FnOnce(&CpuIrq) -> R) -> R {
    let index = hooks.map_or(0, |h| (h.cpu_index)());
    f(&CPUS[index.min(MAX_CPUS - 1)])
}

// Host tests run on many threads at once: each is a CPU of its own.
#[cfg(test)]
std::thread_local! {
    static CPU: CpuIrq = const { CpuIrq::new() };
}

#[cfg(test)]
fn with_cpu<R>(_: Option<&IrqHooks>, f: impl FnOnce(&CpuIrq) -> R) -> R {
    CPU.with(f)
}

/// Turns interrupts off on this CPU until the matching [`pop_off`].
#[inline]
pub fn push_off() {
    let hooks = HOOKS.get();
    let was_enabled = hooks.is_some_and(|h| (h.disable)());
    with_cpu(hooks, |c| {
        // Plain load and store: only this CPU touches it, interrupts off.
        let depth = c.depth.load(Ordering::Relaxed);
        if depth == 0 {
            c.enable_at_zero.store(was_enabled, Ordering::Relaxed);
        }
        c.depth.store(depth + 1, Ordering::Relaxed);
    });
}

/// Ends one [`push_off`]; the last one turns interrupts back on if they
/// were on before the first.
#[inline]
pub fn pop_off() {
    let hooks = HOOKS.get();
    let enable_now = with_cpu(hooks, |c| match c.depth.load(Ordering::Relaxed) {
        // An unmatched pop is a kernel bug; ignoring it keeps interrupts
        // off, the safe side, rather than turning them on under a lock.
        0 => false,
        1 => {
            c.depth.store(0, Ordering::Relaxed);
            c.enable_at_zero.load(Ordering::Relaxed)
        }
        d => {
            c.depth.store(d - 1, Ordering::Relaxed);
            false
        }
    });
    if enable_now && let Some(h) = hooks {
        (h.enable)();
    }
}

/// Nesting depth of interrupts-off sections on this CPU.
pub fn irq_depth() -> u32 {
    with_cpu(HOOKS.get(), |c| c.depth.load(Ordering::Relaxed))
}

/// Interrupts stay off while this lives. Not `Send`: it must be dropped
/// on the CPU that made it.
pub struct IrqOff(PhantomData<*const ()>);

impl IrqOff {
    #[inline]
    pub fn new() -> IrqOff {
        push_off();
        IrqOff(PhantomData)
    }
}

impl Default for IrqOff {
    fn default() -> Self {
        IrqOff::new()
    }
}

impl Drop for IrqOff {
    #[inline]
    fn drop(&mut self) {
        pop_off();
    }
}

/// Runs `f` with interrupts off.
pub fn without_interrupts<R>(f: impl FnOnce() -> R) -> R {
    let _off = IrqOff::new();
    f()
}

/// One CPU's nesting state, carried across a context switch by the task
/// that leaves (its sections resume when it is switched back to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IrqState {
    depth: u32,
    enable_at_zero: bool,
}

/// Called just before a switch, with interrupts off.
#[inline]
pub fn save_irq_state() -> IrqState {
    with_cpu(HOOKS.get(), |c| IrqState {
        depth: c.depth.load(Ordering::Relaxed),
        enable_at_zero: c.enable_at_zero.load(Ordering::Relaxed),
    })
}

/// Called just after a switch returns to the task that saved `state`.
#[inline]
pub fn restore_irq_state(state: IrqState) {
    with_cpu(HOOKS.get(), |c| {
        c.depth.store(state.depth, Ordering::Relaxed);
        c.enable_at_zero
            .store(state.enable_at_zero, Ordering::Relaxed);
    });
}

/// The first thing a new task does. It was switched to from inside the
/// switching task's interrupts-off section, which is not its own: it
/// starts with none open (xv6's `forkret` releases the lock it inherits
/// for the same reason). Without this, its first lock would find the
/// depth above zero and never turn interrupts back on.
pub fn start_of_task() {
    restore_irq_state(IrqState {
        depth: 0,
        enable_at_zero: false,
    });
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

    #[inline]
    pub fn lock(&self) -> IrqMutexGuard<'_, T> {
        let off = IrqOff::new();
        IrqMutexGuard {
            guard: Some(self.inner.lock()),
            _off: off,
        }
    }

    /// Whether some CPU holds the lock (for assertions and tests).
    pub fn is_locked(&self) -> bool {
        self.inner.is_locked()
    }
}

/// Unlocks, then ends its interrupts-off section, in that order: an
/// interrupt between the two would otherwise preempt a holder.
pub struct IrqMutexGuard<'a, T> {
    guard: Option<MutexGuard<'a, T>>,
    // Declared after `guard`, but dropped explicitly after it anyway.
    _off: IrqOff,
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
    #[inline]
    fn drop(&mut self) {
        // The lock first; `_off` is dropped after this body returns.
        drop(self.guard.take());
    }
}

#[cfg(test)]
mod tests;
