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
//!
//! # Lock order
//!
//! A lock made with [`IrqMutex::ranked`] has its row in the table of
//! docs/locking.md ([`rank`]). In debug builds (test kernels and host tests
//! included) each CPU keeps a bit per rank it holds, and taking a lock
//! whose number is not above every held one panics, naming both: an order
//! that could deadlock across CPUs is caught the first time it runs on one,
//! not the day two CPUs meet in it. Ranks marked task-only also panic when
//! taken inside an interrupt handler ([`InterruptContext`]), and a context
//! switch with a ranked lock held panics ([`assert_no_locks_held`]).
//! Release builds (the benchmarks) compile all of it out.

use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

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
    /// Bit N: a lock of rank N is held.
    #[cfg(debug_assertions)]
    held: AtomicU32,
    /// Interrupt handlers running (nested ones counted).
    #[cfg(debug_assertions)]
    interrupts: AtomicU32,
}

impl CpuIrq {
    const fn new() -> CpuIrq {
        CpuIrq {
            depth: AtomicU32::new(0),
            enable_at_zero: AtomicBool::new(false),
            #[cfg(debug_assertions)]
            held: AtomicU32::new(0),
            #[cfg(debug_assertions)]
            interrupts: AtomicU32::new(0),
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
    /// The interrupt handlers this task is inside: the tick switches
    /// from within its handler, and the task it resumes is inside
    /// whatever handler (or none) it left from.
    #[cfg(debug_assertions)]
    interrupts: u32,
}

impl IrqState {
    /// No section open, in no interrupt handler: a task's first state.
    const NONE: IrqState = IrqState {
        depth: 0,
        enable_at_zero: false,
        #[cfg(debug_assertions)]
        interrupts: 0,
    };
}

/// Called just before a switch, with interrupts off.
#[inline]
pub fn save_irq_state() -> IrqState {
    with_cpu(HOOKS.get(), |c| IrqState {
        depth: c.depth.load(Ordering::Relaxed),
        enable_at_zero: c.enable_at_zero.load(Ordering::Relaxed),
        #[cfg(debug_assertions)]
        interrupts: c.interrupts.load(Ordering::Relaxed),
    })
}

/// Called just after a switch returns to the task that saved `state`.
#[inline]
pub fn restore_irq_state(state: IrqState) {
    with_cpu(HOOKS.get(), |c| {
        c.depth.store(state.depth, Ordering::Relaxed);
        c.enable_at_zero
            .store(state.enable_at_zero, Ordering::Relaxed);
        #[cfg(debug_assertions)]
        c.interrupts.store(state.interrupts, Ordering::Relaxed);
    });
}

/// The first thing a new task does. It was switched to from inside the
/// switching task's interrupts-off section, which is not its own: it
/// starts with none open (xv6's `forkret` releases the lock it inherits
/// for the same reason). Without this, its first lock would find the
/// depth above zero and never turn interrupts back on. Nor is it inside
/// the interrupt handler the switch may have come from.
pub fn start_of_task() {
    restore_irq_state(IrqState::NONE);
}

// ---- Lock order ----

/// A lock's row in the table of docs/locking.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockRank {
    /// The row, 1 to 31; 0 for a lock outside the order.
    number: u8,
    name: &'static str,
    /// Never taken inside an interrupt handler.
    task_only: bool,
}

impl LockRank {
    const UNRANKED: LockRank = LockRank::new(0, "unranked", false);

    const fn new(number: u8, name: &'static str, task_only: bool) -> LockRank {
        assert!(number < 32, "a rank is a bit of a u32");
        LockRank {
            number,
            name,
            task_only,
        }
    }

    pub const fn number(self) -> u8 {
        self.number
    }

    pub const fn name(self) -> &'static str {
        self.name
    }

    pub const fn task_only(self) -> bool {
        self.task_only
    }
}

/// The ranks, one per row of docs/locking.md's table (same numbers), for
/// every lock of the booted kernel, whichever crate it is in. A lock may
/// only be taken while the locks its CPU holds all have smaller numbers;
/// two locks of one rank never nest.
pub mod rank {
    use super::LockRank;

    pub const PROCS: LockRank = LockRank::new(1, "procs", true);
    pub const PIPES: LockRank = LockRank::new(2, "pipes", true);
    pub const SCHED: LockRank = LockRank::new(3, "scheduler", false);
    pub const STACK_SLOTS: LockRank = LockRank::new(4, "stack slots", false);
    pub const HEAP: LockRank = LockRank::new(5, "heap", false);
    pub const KERNEL_PAGE_TABLES: LockRank = LockRank::new(6, "kernel page tables", false);
    pub const FRAMES: LockRank = LockRank::new(7, "frames", false);
    pub const SERIAL: LockRank = LockRank::new(8, "serial", false);
    pub const PIC: LockRank = LockRank::new(9, "pic", false);
    pub const HANDLERS: LockRank = LockRank::new(10, "interrupt handlers", false);

    /// Every rank, by number.
    pub const ALL: [LockRank; 10] = [
        PROCS,
        PIPES,
        SCHED,
        STACK_SLOTS,
        HEAP,
        KERNEL_PAGE_TABLES,
        FRAMES,
        SERIAL,
        PIC,
        HANDLERS,
    ];

    #[cfg(debug_assertions)]
    pub(super) fn name_of(number: u32) -> &'static str {
        ALL.iter()
            .find(|r| u32::from(r.number) == number)
            .map_or("?", |r| r.name)
    }
}

/// Checks and records that this CPU takes a lock of `rank`; returns the
/// bit to clear when it is released. A load, a compare and a store on the
/// path that passes: every lock of a system call comes through here. The
/// panic names the line that took the lock (`track_caller`).
#[cfg(debug_assertions)]
#[inline]
#[track_caller]
fn take_rank(rank: LockRank) -> u32 {
    let bit = 1u32 << rank.number;
    let refused = with_cpu(HOOKS.get(), |c| {
        let held = c.held.load(Ordering::Relaxed);
        // A held rank at or above this one makes `held` at least `bit`.
        if held >= bit || (rank.task_only && c.interrupts.load(Ordering::Relaxed) != 0) {
            return Some(held);
        }
        c.held.store(held | bit, Ordering::Relaxed);
        None
    });
    if let Some(held) = refused {
        order_violation(rank, held)
    }
    bit
}

#[cfg(debug_assertions)]
#[inline]
fn release_rank(bit: u32) {
    with_cpu(HOOKS.get(), |c| {
        c.held
            .store(c.held.load(Ordering::Relaxed) & !bit, Ordering::Relaxed)
    });
}

#[cfg(debug_assertions)]
#[cold]
#[inline(never)]
#[track_caller]
fn order_violation(rank: LockRank, held: u32) -> ! {
    let (name, number) = (rank.name, rank.number);
    if held >> number == 0 {
        panic!("lock order: took {name} ({number}) in interrupt context");
    }
    // The innermost of the held locks it conflicts with.
    let top = 31 - held.leading_zeros();
    panic!(
        "lock order: took {name} ({number}) while holding {} ({top})",
        rank::name_of(top)
    );
}

/// Panics if this CPU holds a ranked lock: a context switch with one held
/// would leave it locked under a task that is not running (and leave its
/// bit on this CPU for the next task). `what` names the caller's path.
#[inline]
pub fn assert_no_locks_held(what: &str) {
    #[cfg(debug_assertions)]
    {
        let held = with_cpu(HOOKS.get(), |c| c.held.load(Ordering::Relaxed));
        if held != 0 {
            let top = 31 - held.leading_zeros();
            panic!(
                "lock order: {what} with {} ({top}) held",
                rank::name_of(top)
            );
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = what;
}

/// This CPU runs an interrupt handler while it lives: trap dispatch makes
/// one around every hardware interrupt's and IPI's handler (not around
/// system calls or user-mode exceptions, which act for the task). Kept in
/// the per-CPU state that a switch carries ([`IrqState`]), because the
/// tick switches tasks from inside its handler: the task switched to is
/// inside the handler it left from, or in none, and the count must follow
/// it, as the interrupts-off depth does. Counts nothing in release builds.
pub struct InterruptContext(PhantomData<*const ()>);

impl InterruptContext {
    #[inline]
    pub fn enter() -> InterruptContext {
        #[cfg(debug_assertions)]
        with_cpu(HOOKS.get(), |c| {
            c.interrupts
                .store(c.interrupts.load(Ordering::Relaxed) + 1, Ordering::Relaxed)
        });
        InterruptContext(PhantomData)
    }
}

impl Drop for InterruptContext {
    #[inline]
    fn drop(&mut self) {
        #[cfg(debug_assertions)]
        with_cpu(HOOKS.get(), |c| {
            let n = c.interrupts.load(Ordering::Relaxed);
            c.interrupts.store(n.saturating_sub(1), Ordering::Relaxed)
        });
    }
}

/// Whether this CPU runs an interrupt handler (debug builds only).
#[cfg(debug_assertions)]
pub fn in_interrupt() -> bool {
    with_cpu(HOOKS.get(), |c| c.interrupts.load(Ordering::Relaxed) != 0)
}

/// A spin lock held with interrupts off.
pub struct IrqMutex<T> {
    inner: Mutex<T>,
    #[cfg(debug_assertions)]
    rank: LockRank,
}

impl<T> IrqMutex<T> {
    /// A lock outside the order, not checked: for structures of host
    /// tests and the like. Every lock of the booted kernel is [`ranked`].
    ///
    /// [`ranked`]: IrqMutex::ranked
    pub const fn new(value: T) -> Self {
        IrqMutex::ranked(LockRank::UNRANKED, value)
    }

    /// A lock with its place in the order of docs/locking.md.
    pub const fn ranked(rank: LockRank, value: T) -> Self {
        #[cfg(not(debug_assertions))]
        let _ = rank;
        IrqMutex {
            inner: Mutex::new(value),
            #[cfg(debug_assertions)]
            rank,
        }
    }

    #[inline]
    #[cfg_attr(debug_assertions, track_caller)]
    pub fn lock(&self) -> IrqMutexGuard<'_, T> {
        self.lock_with(|m| m.lock())
    }

    /// [`IrqMutex::lock`], counting in `contended` each time the lock was
    /// held by another CPU when asked for: the measure of whether one lock
    /// limits several CPUs (the scheduler's). The count is touched only on
    /// contention, so an uncontended lock costs one failed-or-not try.
    #[inline]
    #[cfg_attr(debug_assertions, track_caller)]
    pub fn lock_counting(&self, contended: &AtomicU64) -> IrqMutexGuard<'_, T> {
        self.lock_with(|m| match m.try_lock() {
            Some(g) => g,
            None => {
                contended.fetch_add(1, Ordering::Relaxed);
                m.lock()
            }
        })
    }

    #[inline(always)]
    #[cfg_attr(debug_assertions, track_caller)]
    fn lock_with<'a>(
        &'a self,
        acquire: impl FnOnce(&'a Mutex<T>) -> MutexGuard<'a, T>,
    ) -> IrqMutexGuard<'a, T> {
        let off = IrqOff::new();
        // Before spinning: an order that would deadlock panics instead.
        #[cfg(debug_assertions)]
        let rank_bit = if self.rank.number == 0 {
            0
        } else {
            take_rank(self.rank)
        };
        IrqMutexGuard {
            guard: Some(acquire(&self.inner)),
            #[cfg(debug_assertions)]
            rank_bit,
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
    /// The lock's rank bit, 0 for an unranked lock.
    #[cfg(debug_assertions)]
    rank_bit: u32,
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
        #[cfg(debug_assertions)]
        if self.rank_bit != 0 {
            release_rank(self.rank_bit);
        }
    }
}

#[cfg(test)]
mod tests;
