//! The task executor: where the portable scheduler's decisions become
//! context switches.
//!
//! `kernel::task::sched::Scheduler` decides which task runs; this module
//! owns what it cannot: each task's kernel stack and saved stack pointer,
//! its address space root, the switch itself, preemption from the timer,
//! and the start of kernel threads and user threads.
//!
//! Locking. Every lock here is taken with interrupts off, so the timer can
//! never preempt a task that holds one (one CPU: a preempted holder would
//! deadlock the next taker). Order: `groups` (in `process.rs`), then
//! `PIPES`, then `SCHED`, then `CTXS`. No lock is held across a switch.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::String;

use arch::layout::{KSTACK_BASE, KSTACK_SLOT, KSTACK_SLOTS};
use kernel::mm::pte::LeafFlags;
use kernel::mm::{PAGE_SIZE, Pfn};
use kernel::task::sched::{Priority, QueueId, SchedError, Scheduler, Switch, Tid};
use spin::Mutex;

use crate::memory;

/// Kernel stack size; the rest of each KSTACK_SLOT stays unmapped below it
/// as a guard, so an overflow is a reported double fault, not corruption.
const KSTACK_BYTES: u64 = 16 * 1024;
/// Ticks a task runs before an equal-priority task gets the CPU.
pub const TIME_SLICE_TICKS: u64 = 2;

/// How a new task begins.
#[derive(Clone, Copy)]
pub enum Start {
    /// The boot thread and the idle task need no start.
    None,
    Kernel {
        entry: fn(u64) -> i64,
        arg: u64,
    },
    User {
        rip: u64,
        rsp: u64,
        arg0: u64,
        arg1: u64,
    },
}

/// A task's kernel stack: a slot in the stack region, its top
/// KSTACK_BYTES mapped to frames of its own.
struct KernelStack {
    slot: u64,
}

/// Slots given back, and the next never-used one.
static FREE_SLOTS: kernel::sync::IrqMutex<(alloc::vec::Vec<u64>, u64)> =
    kernel::sync::IrqMutex::new((alloc::vec::Vec::new(), 0));

impl KernelStack {
    fn top(&self) -> u64 {
        KSTACK_BASE + (self.slot + 1) * KSTACK_SLOT
    }

    fn pages(&self) -> impl Iterator<Item = u64> {
        let top = self.top();
        (top - KSTACK_BYTES..top).step_by(PAGE_SIZE as usize)
    }

    fn new() -> Result<KernelStack, SchedError> {
        let slot = {
            let mut free = FREE_SLOTS.lock();
            match free.0.pop() {
                Some(slot) => slot,
                None if free.1 < KSTACK_SLOTS => {
                    free.1 += 1;
                    free.1 - 1
                }
                None => return Err(SchedError::TooManyTasks),
            }
        };
        let stack = KernelStack { slot };
        let flags = LeafFlags::WRITABLE | LeafFlags::GLOBAL;
        for va in stack.pages() {
            let mapped = memory::frames()
                .alloc_frame()
                .map_err(|_| ())
                .and_then(|pfn| {
                    memory::map_kernel_page(va, pfn, flags).map_err(|_| {
                        let _ = memory::frames().free(pfn, 0);
                    })
                });
            if mapped.is_err() {
                stack.release();
                return Err(SchedError::TooManyTasks);
            }
        }
        Ok(stack)
    }

    /// Unmaps and frees whatever of the stack is mapped, and the slot.
    fn release(&self) {
        for va in self.pages() {
            if let Ok(pfn) = memory::unmap_kernel_page(va)
                && let Err(e) = memory::frames().free(pfn, 0)
            {
                log::error!("freeing a kernel stack frame: {e}");
            }
        }
        FREE_SLOTS.lock().0.push(self.slot);
    }
}

struct Ctx {
    saved_rsp: u64,
    /// None for the boot thread, whose stack is in the kernel image.
    stack: Option<KernelStack>,
    /// Page-table root of the task's address space; None = the kernel's.
    root: Option<Pfn>,
    start: Start,
}

impl Ctx {
    fn stack_top(&self) -> Option<u64> {
        self.stack.as_ref().map(KernelStack::top)
    }
}

static SCHED: Mutex<Option<Scheduler>> = Mutex::new(None);
// Boxed so a saved-RSP slot keeps its address while the map changes.
static CTXS: Mutex<BTreeMap<Tid, Box<Ctx>>> = Mutex::new(BTreeMap::new());
static KERNEL_ROOT: spin::Once<Pfn> = spin::Once::new();

/// Runs `f` on the scheduler with interrupts off.
pub fn with_sched<R>(f: impl FnOnce(&mut Scheduler) -> R) -> R {
    arch::cpu::without_interrupts(|| {
        let mut guard = SCHED.lock();
        match guard.as_mut() {
            Some(s) => f(s),
            None => panic!("scheduler used before task::init"),
        }
    })
}

/// Makes the running boot code task 1 ("main"), creates the idle task and
/// starts preemption.
pub fn init() {
    KERNEL_ROOT.call_once(arch::paging::current_root);
    *SCHED.lock() = Some(Scheduler::new(TIME_SLICE_TICKS));
    let boot = Ctx {
        saved_rsp: 0,
        stack: None,
        root: None,
        start: Start::None,
    };
    CTXS.lock().insert(1, Box::new(boot));
    match new_ctx(idle_entry, Start::None, None) {
        Ok(ctx) => {
            CTXS.lock().insert(0, ctx);
        }
        Err(_) => panic!("no memory for the idle task's stack"),
    }
    arch::timer::set_tick_hook(on_tick);
}

extern "C" fn idle_entry(_: u64) -> ! {
    loop {
        arch::cpu::wait_for_interrupt();
    }
}

fn new_ctx(
    entry: extern "C" fn(u64) -> !,
    start: Start,
    root: Option<Pfn>,
) -> Result<Box<Ctx>, SchedError> {
    let stack = KernelStack::new()?;
    // SAFETY: the stack's pages were just mapped writable to frames
    // allocated for this task alone; `top` is page-aligned.
    let saved_rsp = unsafe { arch::context::init_stack(stack.top(), entry, 0) };
    Ok(Box::new(Ctx {
        saved_rsp,
        stack: Some(stack),
        root,
        start,
    }))
}

/// Creates a task: a scheduler record and a context. `group` None starts a
/// new task group.
pub fn spawn(
    name: &str,
    group: Option<u32>,
    priority: Priority,
    start: Start,
    root: Option<Pfn>,
) -> Result<Tid, SchedError> {
    let user = matches!(start, Start::User { .. });
    let entry: extern "C" fn(u64) -> ! = if user { user_entry } else { kernel_entry };
    let ctx = new_ctx(entry, start, root)?;
    arch::cpu::without_interrupts(|| {
        let tid = with_sched(|s| s.spawn(name, group, priority, user, ()));
        match tid {
            Ok(tid) => {
                if let Some(stale) = CTXS.lock().insert(tid, ctx) {
                    // A reaped tid whose context outlived it: a bug, but
                    // its stack is not running, so free it rather than leak.
                    log::error!("task {tid} reused with a stale context");
                    free_stack(&stale);
                }
                Ok(tid)
            }
            Err(e) => {
                free_stack(&ctx);
                Err(e)
            }
        }
    })
}

/// Starts a kernel thread running `entry(arg)`; its return value is its
/// exit status.
pub fn spawn_kernel(name: &str, entry: fn(u64) -> i64, arg: u64) -> Result<Tid, SchedError> {
    spawn(
        name,
        None,
        Priority::NORMAL,
        Start::Kernel { entry, arg },
        None,
    )
}

fn current_start() -> Start {
    let tid = with_sched(|s| s.current());
    arch::cpu::without_interrupts(|| {
        CTXS.lock()
            .get(&tid)
            .map(|c| c.start)
            .unwrap_or(Start::None)
    })
}

extern "C" fn kernel_entry(_: u64) -> ! {
    arch::cpu::enable_interrupts();
    let status = match current_start() {
        Start::Kernel { entry, arg } => entry(arg),
        _ => -1,
    };
    exit_current(status)
}

extern "C" fn user_entry(_: u64) -> ! {
    match current_start() {
        Start::User {
            rip,
            rsp,
            arg0,
            arg1,
        } => {
            // SAFETY: the switch that got here loaded this task's address
            // space, in which the loader mapped rip and rsp for user mode,
            // and set the kernel stack to this task's.
            unsafe { arch::context::enter_user(rip, rsp, arg0, arg1) }
        }
        _ => exit_current(-1),
    }
}

/// Performs a switch the scheduler decided. Interrupts must be off and no
/// lock of this module held.
pub fn switch(sw: Switch) {
    let (save, to_rsp, top, root) = {
        let mut ctxs = CTXS.lock();
        let Some(from) = ctxs.get_mut(&sw.from) else {
            panic!("switch from task {} without a context", sw.from)
        };
        let save: *mut u64 = &raw mut from.saved_rsp;
        let Some(to) = ctxs.get(&sw.to) else {
            panic!("switch to task {} without a context", sw.to)
        };
        (save, to.saved_rsp, to.stack_top(), to.root)
    };
    if let Some(top) = top {
        arch::syscall::set_kernel_stack(top);
    }
    let root = root.or(KERNEL_ROOT.get().copied());
    if let Some(root) = root
        && root != arch::paging::current_root()
    {
        // SAFETY: every address space shares the kernel half, which holds
        // all kernel code, data and stacks; the user half is the incoming
        // task's own.
        unsafe { arch::paging::load_root(root) };
    }
    // SAFETY: interrupts are off (caller); `save` points into a boxed Ctx
    // that is freed only when its task is reaped, which never happens to a
    // task that is running or can run again; `to_rsp` was saved by a switch
    // or built by init_stack on a stack that belongs to `sw.to`.
    unsafe { arch::context::switch(save, to_rsp) };
}

fn switch_if(sw: Option<Switch>) {
    if let Some(sw) = sw {
        switch(sw);
    }
}

fn on_tick(_frame: &mut arch::trap::TrapFrame) {
    let now = arch::timer::uptime_ns();
    let sw = with_sched(|s| if s.tick(now) { s.schedule() } else { None });
    switch_if(sw);
}

/// Gives the CPU to another ready task, if any.
pub fn yield_now() {
    arch::cpu::without_interrupts(|| switch_if(with_sched(|s| s.yield_now())));
}

/// Blocks the current task for at least `ns` nanoseconds.
pub fn sleep_ns(ns: u64) {
    arch::cpu::without_interrupts(|| {
        let until = arch::timer::uptime_ns().saturating_add(ns);
        switch_if(with_sched(|s| s.sleep_current(until)));
    });
}

/// Blocks on `q` until woken or until `deadline_ns`. The caller checks its
/// condition with interrupts off before calling, so no wake-up is lost.
pub fn block_on(q: QueueId, deadline_ns: Option<u64>) -> Result<(), SchedError> {
    arch::cpu::without_interrupts(|| {
        let sw = with_sched(|s| s.block_current(q, deadline_ns))?;
        switch_if(sw);
        Ok(())
    })
}

/// Wakes every task blocked on `q`, and switches if one of them should
/// run before the current task.
pub fn wake_all(q: QueueId) {
    arch::cpu::without_interrupts(|| {
        let sw = with_sched(|s| {
            s.wake_all(q);
            if s.should_preempt() {
                s.schedule()
            } else {
                None
            }
        });
        switch_if(sw);
    });
}

/// Ends the current task with `status`.
pub fn exit_current(status: i64) -> ! {
    arch::cpu::disable_interrupts();
    let sw = with_sched(|s| {
        if s.kill_pending(s.current()).is_some() {
            KILLS_IN_FLIGHT.fetch_sub(1, core::sync::atomic::Ordering::Relaxed);
        }
        s.exit_current(status)
    });
    match sw {
        Ok(sw) => switch(sw),
        Err(e) => panic!("exit of the current task failed: {e:?}"),
    }
    unreachable!("an exited task was resumed")
}

/// Waits for task `tid` to exit and removes it; returns its status.
/// Polls once per tick: joins are rare (the console, tests), and it
/// keeps the scheduler's group rules for `wait` intact.
pub fn join(tid: Tid) -> Result<i64, SchedError> {
    loop {
        let state = with_sched(|s| s.task(tid).map(|t| t.state));
        match state {
            None => return Err(SchedError::NoSuchTask),
            Some(kernel::task::sched::State::Exited(_)) => return reap(tid),
            Some(_) => sleep_ns(1_000_000_000 / arch::timer::HZ),
        }
    }
}

/// Removes an exited task's record and frees its kernel stack.
pub fn reap(tid: Tid) -> Result<i64, SchedError> {
    arch::cpu::without_interrupts(|| {
        let (status, ()) = with_sched(|s| s.reap(tid))?;
        if let Some(ctx) = CTXS.lock().remove(&tid) {
            free_stack(&ctx);
        }
        Ok(status)
    })
}

fn free_stack(ctx: &Ctx) {
    if let Some(stack) = &ctx.stack {
        stack.release();
    }
}

/// The current task's id.
pub fn current() -> Tid {
    with_sched(|s| s.current())
}

/// One line per task for `ps`.
pub fn describe_tasks(mut line: impl FnMut(String)) {
    let lines: alloc::vec::Vec<String> = with_sched(|s| {
        s.tasks()
            .map(|t| {
                alloc::format!(
                    "tid={} group={} state={:?} prio={} cpu_ticks={} kind={} name={}",
                    t.tid,
                    t.group,
                    t.state,
                    t.priority.0,
                    t.cpu_ticks,
                    if t.user { "user" } else { "kernel" },
                    t.name
                )
            })
            .collect()
    });
    for l in lines {
        line(l);
    }
}

/// Frees the context of a task whose record the scheduler already removed
/// (a `wait` by another thread of its group collected it).
pub fn drop_ctx(tid: Tid) {
    let ctx = arch::cpu::without_interrupts(|| CTXS.lock().remove(&tid));
    if let Some(ctx) = ctx {
        free_stack(&ctx);
    }
}

/// Kill requests whose task has not exited yet. Every return to ring 3
/// asks whether the current task must die; this keeps that question to one
/// load while nobody is being killed (syscall_null_cycles: 135 rather than
/// 321 with a scheduler lookup on every return).
static KILLS_IN_FLIGHT: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// Asks `tid` to exit with `status` at its next boundary.
pub fn request_kill(s: &mut Scheduler, tid: Tid, status: i64) {
    // Counted only when this call set it: a zombie is left without one.
    let before = s.kill_pending(tid);
    if s.request_kill(tid, status).is_ok() && before.is_none() && s.kill_pending(tid).is_some() {
        KILLS_IN_FLIGHT.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    }
}

/// Kill requests not yet carried out (tests check it returns to 0).
pub fn kills_in_flight() -> usize {
    KILLS_IN_FLIGHT.load(core::sync::atomic::Ordering::Relaxed)
}

/// The exit status a pending kill asks the current task for.
pub fn kill_pending() -> Option<i64> {
    if KILLS_IN_FLIGHT.load(core::sync::atomic::Ordering::Relaxed) == 0 {
        return None;
    }
    with_sched(|s| s.kill_pending(s.current()))
}

/// The current task's address-space root, if it is a user task.
pub fn current_root() -> Option<Pfn> {
    let tid = current();
    arch::cpu::without_interrupts(|| CTXS.lock().get(&tid).and_then(|c| c.root))
}
