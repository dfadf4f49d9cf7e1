//! The process model: tasks, processes, descriptors, pipes and the system
//! calls, all portable.
//!
//! One [`System`] holds it all. It decides; the [`Machine`] it is built on
//! does what needs hardware (a context switch, a kernel stack, the time,
//! the console). The booted kernel builds one `System` over the real CPU
//! in `boot/`; host tests build one over simulated memory and run system
//! calls on it (`tests.rs`).
//!
//! # Records
//!
//! Every task has one record, in the scheduler: its state, its process
//! (`group`, the pid) and the machine's context (kernel stack, saved
//! registers). [`System::current`] names the task running on the
//! caller's CPU, and the process of the running task is found in one
//! place, [`System::current_pid`]. A process (the tasks of one group) owns
//! an address space and a descriptor table.
//!
//! # A process's end
//!
//! A process ends when its main thread exits (or is killed, or faults):
//! every other thread is asked to exit (`request_kill`) in the same
//! locked section that checks for them, and a thread with a kill pending
//! may not create threads ([`System::spawn_thread`] refuses), so no
//! thread appears after that point. Its collection ([`System::join_process`])
//! reaps every thread and removes the process in one locked section once
//! no record of the group is left; only then are the descriptors released
//! and the address space destroyed, so no thread ever runs on a space that
//! is gone.
//!
//! # Threads
//!
//! `clone` threads (clone.rs) are detached in the scheduler: nobody waits
//! for them, and their records are reaped by whoever exits or clones
//! next, once they are off the CPU. At its exit a thread stores 0 at its
//! `clear_child_tid` word and wakes one futex waiter there (futex.rs):
//! that is how `pthread_join` learns of the end.
//!
//! # Memory
//!
//! No system call allocates from the heap infallibly: descriptor tables
//! are fixed arrays, pipe buffers are frames, tables grow with
//! `try_reserve`, and the scheduler's records are fallible too. Running
//! out of memory is `ENOMEM` or `EAGAIN`, never a kernel panic.
//!
//! # Several CPUs
//!
//! The scheduler acts for one CPU at a time: every locked section on it
//! goes through [`System::sched`], which names the caller's CPU
//! ([`Machine::cpu_index`]) right after taking the lock, and when the
//! section ends sends the reschedule interrupts it asked for
//! ([`Machine::kick`]). The running task is
//! kept per CPU (`current`, stored by the switch), so `gettid` and its
//! kin stay lock-free. A decided switch takes what the machine needs of
//! both tasks in the same section ([`SchedGuard::plan`]): once the lock
//! is released the task left may be reaped by another CPU, and only its
//! stack waits, for its on-CPU mark ([`OnCpu`], cleared by the machine's
//! switch once it is off the stack; every record's drop waits for it).
//! Other CPUs join with [`System::join_cpu`] and answer kicks with
//! [`System::reschedule`]. Until they do (the booted kernel's CPU 0 runs
//! every task today) all of this is the one-CPU kernel it was.
//!
//! # Locks
//!
//! All are [`IrqMutex`]es (interrupts off while held), taken in this
//! order: `procs`, then `pipes`, then `sched` (ranks 1 to 3 of
//! [`crate::sync::rank`], checked in debug builds). No lock is held across
//! a context switch. See docs/locking.md.

mod clone;
mod entry;
mod exec;
mod fd;
mod futex;
mod machine;
mod mm;
mod pipes;
mod signal;
mod syscall;
#[cfg(test)]
mod tests;

use alloc::vec::Vec;
use core::fmt::Write;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use abi::Errno;

use crate::mm::PAGE_SIZE;
use crate::mm::fault::{Fault, Outcome};
use crate::mm::region::{Region, VmFlags};
use crate::mm::vm::{Shared, VmSnapshot, VmStats};
use crate::sync::{
    IrqMutex, IrqMutexGuard, IrqOff, MAX_CPUS, assert_no_locks_held, rank, restore_irq_state,
    save_irq_state,
};
use crate::task::aspace::{Alloc, UserSpace};
use crate::task::elf;
use crate::task::sched::{CpuStats, Pid, Priority, SchedError, Scheduler, State, Switch, Tid};
use crate::task::uaccess::Faulting;

pub use fd::{FdTable, File, MAX_FDS};
pub use machine::{FpuFormat, FpuImage, Machine, OnCpu, Start, UserFrame, UserRegs};
use pipes::PipeTable;

/// Threads (running or not yet waited for) one process may have.
pub const MAX_THREADS_PER_PROCESS: usize = 64;
/// Ticks a task runs before an equal-priority task gets the CPU.
pub const TIME_SLICE_TICKS: u64 = 2;

/// A process: the tasks of one group share its memory and descriptors.
pub struct Process<M: Machine> {
    pid: Pid,
    /// Who started it (the console's thread for programs run from it).
    parent: Pid,
    space: UserSpace<'static, M::Pte, M::Mem>,
    fds: FdTable,
    /// Its signal handlers (signal.rs).
    signals: signal::Actions,
}

impl<M: Machine> Process<M> {
    pub fn pid(&self) -> Pid {
        self.pid
    }

    pub fn parent(&self) -> Pid {
        self.parent
    }

    pub fn space(&self) -> &UserSpace<'static, M::Pte, M::Mem> {
        &self.space
    }

    pub fn fds(&self) -> &FdTable {
        &self.fds
    }
}

/// Why a program could not be started.
#[derive(Debug)]
pub enum SpawnError {
    Elf(elf::ElfError),
    Load(Errno),
    Task(SchedError),
}

impl core::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SpawnError::Elf(e) => write!(f, "not a loadable program: {e}"),
            SpawnError::Load(e) => write!(f, "loading failed: {}", e.name()),
            SpawnError::Task(e) => write!(f, "no task: {e:?}"),
        }
    }
}

/// What a task's scheduler record carries: the machine's context, and the
/// per-thread words of Linux's thread model.
pub struct TaskExt<M: Machine> {
    ctx: M::Context,
    /// `CLONE_CHILD_CLEARTID` or `set_tid_address`: at exit, 0 is stored
    /// here and one futex waiter woken. 0: none.
    clear_child_tid: u64,
    /// Its signal mask, pending signals and alternate stack (signal.rs).
    sig: signal::SigState,
}

impl<M: Machine> TaskExt<M> {
    /// None without memory for the signal state.
    fn new(ctx: M::Context) -> Option<Self> {
        Some(TaskExt {
            ctx,
            clear_child_tid: 0,
            sig: signal::SigState::new()?,
        })
    }

    pub fn context(&self) -> &M::Context {
        &self.ctx
    }
}

impl<M: Machine> Drop for TaskExt<M> {
    /// The context goes with the record (its kernel stack freed), but not
    /// while a CPU may still be on that stack: the CPU that switched away
    /// from a reaped task may not have left it yet. The wait is that CPU's
    /// few last instructions of its switch (see [`OnCpu`]); a record that
    /// never ran, or whose task left long ago, does not wait.
    fn drop(&mut self) {
        M::on_cpu(&self.ctx).wait_off();
    }
}

/// The portable kernel: every task, process and pipe.
pub struct System<M: Machine> {
    m: M,
    /// The zero page and the memory manager's counters, which every
    /// address space shares.
    vm: &'static Shared,
    procs: IrqMutex<Vec<Process<M>>>,
    pipes: IrqMutex<PipeTable>,
    /// The scheduler; taken through [`System::sched`], which names the
    /// caller's CPU.
    scheduler: IrqMutex<Scheduler<TaskExt<M>>>,
    /// The futex hash buckets: wait queues made at boot, so that waits and
    /// wakes never allocate.
    futexes: futex::Futexes,
    /// The task running on each CPU, as the last switch there left it:
    /// `gettid` and every lookup of the current task read it without
    /// taking the scheduler's lock.
    current: [AtomicU32; MAX_CPUS],
    /// Each CPU's running task's process, stored with `current` by the
    /// same switch: `current_pid`, asked by every access to the current
    /// process, takes no lock (a task never changes process).
    current_group: [AtomicU32; MAX_CPUS],
    /// CPUs that have joined the scheduler (1 until another joins): with
    /// one, no task moves between CPUs and `current` needs no interrupts
    /// off.
    cpus_joined: AtomicUsize,
    /// Times a CPU found the scheduler's lock held by another: with the
    /// sections each CPU took (`CpuStats::sections`), whether one lock for
    /// all CPUs limits them (docs/locking.md).
    sched_contended: AtomicU64,
    /// The state of the generator behind `AT_RANDOM`.
    random: AtomicU64,
    /// Kill requests whose task has not exited yet. Every return to user
    /// mode asks whether the current task must die; this keeps that
    /// question to one load while nobody is being killed.
    kills_in_flight: AtomicUsize,
    /// Threads marked as having a signal to take (signal.rs): the same
    /// one-load question for signals.
    signal_work: AtomicUsize,
}

/// Writes formatted text to the machine's console without allocating.
struct Console<'a, M: Machine>(&'a M);

impl<M: Machine> Write for Console<'_, M> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.0.console_write(s.as_bytes());
        Ok(())
    }
}

/// The scheduler's lock, held for the CPU that took it ([`System::sched`]).
/// When the section ends it sends the kicks the section asked for, just
/// before the lock is released: a kicked CPU may wait a few instructions
/// for it, and in return the guard is the lock's own guard and a word,
/// which keeps the one-CPU paths short (`./run.sh bench`).
pub(crate) struct SchedGuard<'a, M: Machine> {
    guard: IrqMutexGuard<'a, Scheduler<TaskExt<M>>>,
    m: &'a M,
}

impl<M: Machine> Deref for SchedGuard<'_, M> {
    type Target = Scheduler<TaskExt<M>>;
    #[inline]
    fn deref(&self) -> &Self::Target {
        &self.guard
    }
}

impl<M: Machine> DerefMut for SchedGuard<'_, M> {
    #[inline]
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.guard
    }
}

impl<M: Machine> Drop for SchedGuard<'_, M> {
    /// The kicks; the lock goes with the guard's field right after.
    #[inline]
    fn drop(&mut self) {
        let kicks = self.guard.take_kicks();
        for cpu in kicks.iter() {
            self.m.kick(cpu);
        }
    }
}

impl<M: Machine> SchedGuard<'_, M> {
    /// What the machine needs to carry out `sw`, read now: once the lock
    /// is released another CPU may reap the task left (its record goes;
    /// only its stack waits for the mark).
    #[inline]
    fn plan(&self, sw: Option<Switch>) -> Option<Planned<M>> {
        let sw = sw?;
        match (self.ext(sw.from), self.record(sw.to)) {
            (Some(from), Some((info, to))) => Some(Planned {
                sw,
                group: info.group,
                from: M::switch_point(&from.ctx),
                to: M::switch_point(&to.ctx),
            }),
            _ => panic!("switch {sw:?} between tasks without contexts"),
        }
    }
}

/// A decided switch and what the machine needs of both tasks.
struct Planned<M: Machine> {
    sw: Switch,
    /// The process of the task switched to, for `current_pid`.
    group: Pid,
    from: M::SwitchPoint,
    to: M::SwitchPoint,
}

impl<M: Machine> System<M> {
    /// A system whose boot thread (tid 1) is the caller, running on
    /// `boot` (its context, whose on-CPU mark is set), with an idle task
    /// (tid 0) on `idle`, on CPU 0.
    pub fn new(m: M, idle: M::Context, boot: M::Context) -> Self {
        let (Ok(idle), Ok(boot)) = (TaskExt::new(idle).ok_or(()), TaskExt::new(boot).ok_or(()))
        else {
            panic!("no memory for the first two tasks at boot");
        };
        let mut sched =
            Scheduler::with_ext(TIME_SLICE_TICKS, crate::task::sched::MAX_TASKS, idle, boot);
        // A few hundred bytes at boot: no program is running to be told.
        let Some(futexes) = futex::Futexes::new(&mut sched) else {
            panic!("no memory for the futex wait queues at boot");
        };
        let current = [const { AtomicU32::new(0) }; MAX_CPUS];
        current[0].store(crate::task::sched::BOOT, Ordering::Relaxed);
        let current_group = [const { AtomicU32::new(0) }; MAX_CPUS];
        current_group[0].store(crate::task::sched::BOOT, Ordering::Relaxed);
        let Some(vm) = Shared::new(m.frames(), m.mem()) else {
            panic!("no frame for the zero page at boot");
        };
        System {
            vm: alloc::boxed::Box::leak(alloc::boxed::Box::new(vm)),
            m,
            procs: IrqMutex::ranked(rank::PROCS, Vec::new()),
            pipes: IrqMutex::ranked(rank::PIPES, PipeTable::new()),
            scheduler: IrqMutex::ranked(rank::SCHED, sched),
            futexes,
            kills_in_flight: AtomicUsize::new(0),
            signal_work: AtomicUsize::new(0),
            current,
            current_group,
            cpus_joined: AtomicUsize::new(1),
            sched_contended: AtomicU64::new(0),
            random: AtomicU64::new(0x5eed_fa17_11e5_0001),
        }
    }

    pub fn machine(&self) -> &M {
        &self.m
    }

    /// The memory manager's counters (a later `/proc/vmstat`).
    pub fn vm_stats(&self) -> VmSnapshot {
        self.vm.stats.snapshot()
    }

    /// Where address spaces take frames and tables from.
    fn alloc(&self) -> Alloc<'_> {
        Alloc {
            frames: self.m.frames(),
            tables: self.m.tables(),
        }
    }

    /// Takes the scheduler's lock for the caller's CPU: the scheduler acts
    /// for it until the guard goes, which then sends the kicks asked for.
    /// Panics on a CPU that has not joined (a boot-order bug).
    #[inline(always)]
    fn sched(&self) -> SchedGuard<'_, M> {
        match self.try_sched() {
            Some(s) => s,
            None => panic!(
                "CPU {} used the scheduler before joining it",
                self.m.cpu_index()
            ),
        }
    }

    /// [`System::sched`], or None on a CPU that has not joined.
    // Every section takes it: inlined, so the guard lives in registers.
    #[inline(always)]
    fn try_sched(&self) -> Option<SchedGuard<'_, M>> {
        let mut guard = self.scheduler.lock_counting(&self.sched_contended);
        // Interrupts are off now: the caller stays on this CPU.
        guard
            .set_cpu(self.m.cpu_index())
            .then_some(SchedGuard { guard, m: &self.m })
    }

    /// Runs `f` on the scheduler, with its lock held, acting for the
    /// caller's CPU.
    pub fn with_sched<R>(&self, f: impl FnOnce(&mut Scheduler<TaskExt<M>>) -> R) -> R {
        f(&mut self.sched())
    }

    // ---- CPUs ----

    /// Makes the calling CPU one the scheduler runs tasks on: `idle` is
    /// the context of the code calling (its on-CPU mark set), which
    /// becomes this CPU's idle task and goes on as its idle loop, taking
    /// ticks ([`System::tick`]) and kicks ([`System::reschedule`]). CPUs
    /// join in index order, each once, with interrupts off and before
    /// their first tick: NoSuchCpu when the machine's index of the caller
    /// is not the next, and nothing changes. Returns the index.
    pub fn join_cpu(&self, idle: M::Context) -> Result<usize, SchedError> {
        let ext = TaskExt::new(idle).ok_or(SchedError::NoMemory)?;
        let _off = IrqOff::new();
        let cpu = self.m.cpu_index();
        let mut s = self.scheduler.lock();
        if cpu != s.cpu_count() {
            // Its context is the caller's own, running: dropping it would
            // wait for the caller to leave its own stack. A CPU that cannot
            // join is a boot failure; its few bytes stay.
            core::mem::forget(ext);
            return Err(SchedError::NoSuchCpu);
        }
        match s.add_cpu(ext) {
            Ok(index) => {
                let idle = s.current_on(index).unwrap_or(0);
                self.current[index].store(idle, Ordering::Relaxed);
                self.current_group[index].store(crate::task::sched::IDLE, Ordering::Relaxed);
                // By this CPU, before it runs any task: see `current`.
                self.cpus_joined.fetch_add(1, Ordering::Relaxed);
                Ok(index)
            }
            Err((e, ext)) => {
                // As above.
                core::mem::forget(ext);
                Err(e)
            }
        }
    }

    /// The work of a kick ([`Machine::kick`]), on the CPU kicked: it
    /// looks at the run queue and switches if it should. (Kills and
    /// signals it was kicked for are taken on its way back to user mode.)
    pub fn reschedule(&self) {
        let _off = IrqOff::new();
        let planned = {
            let Some(mut s) = self.try_sched() else {
                return;
            };
            let sw = s.reschedule();
            s.plan(sw)
        };
        self.switch_if(planned);
    }

    /// CPUs that have joined.
    pub fn cpu_count(&self) -> usize {
        self.scheduler.lock().cpu_count()
    }

    /// CPU `cpu`'s figures: ticks, idle ticks, switches, sections.
    pub fn cpu_stats(&self, cpu: usize) -> Option<CpuStats> {
        self.scheduler.lock().cpu_stats(cpu)
    }

    /// Times the scheduler's lock was found held by another CPU.
    pub fn sched_lock_contended(&self) -> u64 {
        self.sched_contended.load(Ordering::Relaxed)
    }

    // ---- The running task ----

    /// The task running on the caller's CPU.
    pub fn current(&self) -> Tid {
        // CPU 0's slot, and then whether CPU 0 is the only one: had this
        // load run on another CPU, that CPU's joining (by that CPU, before
        // it ran any task) would come before the count's load below, which
        // would then say so. One CPU pays no interrupts-off section here
        // (`gettid`, and every lookup of the current process).
        let only = self.current[0].load(Ordering::Acquire);
        if self.cpus_joined.load(Ordering::Relaxed) == 1 {
            return only;
        }
        // Interrupts off between the index and the load: a task moved to
        // another CPU in between would read another task's slot.
        let _off = IrqOff::new();
        self.current[self.m.cpu_index().min(MAX_CPUS - 1)].load(Ordering::Relaxed)
    }

    /// The process of the running task: the one place that asks.
    pub fn current_pid(&self) -> Pid {
        // As `current`: CPU 0's slot while CPU 0 is the only one.
        let only = self.current_group[0].load(Ordering::Acquire);
        if self.cpus_joined.load(Ordering::Relaxed) == 1 {
            return only;
        }
        let _off = IrqOff::new();
        self.current_group[self.m.cpu_index().min(MAX_CPUS - 1)].load(Ordering::Relaxed)
    }

    /// Runs `f` on the running task's context (the executor reads how to
    /// start from it).
    pub fn with_current_context<R>(&self, f: impl FnOnce(Option<&M::Context>) -> R) -> R {
        let s = self.sched();
        f(s.ext(s.current()).map(TaskExt::context))
    }

    /// Runs `f` on the running task's process; `ESRCH` for a kernel thread.
    /// A fault on the user's behalf that found no memory (a copy `f`
    /// made) ends the process once the lock is released.
    fn with_current_process<R>(
        &self,
        f: impl FnOnce(&mut Process<M>) -> Result<R, Errno>,
    ) -> Result<R, Errno> {
        let pid = self.current_pid();
        let (result, oom) = {
            let mut procs = self.procs.lock();
            let p = procs
                .iter_mut()
                .find(|p| p.pid == pid)
                .ok_or(Errno::ESRCH)?;
            let result = f(p);
            (result, p.space.take_oom().then(|| p.space.rss()))
        };
        if let Some(rss) = oom {
            self.oom_kill(pid, rss);
        }
        result
    }

    /// Runs `f` on the running task's user memory, faulting pages in
    /// (`uaccess`).
    fn with_user<R>(
        &self,
        f: impl FnOnce(&mut Faulting<'_, 'static, M::Pte, M::Mem>) -> Result<R, Errno>,
    ) -> Result<R, Errno> {
        let alloc = self.alloc();
        self.with_current_process(|p| {
            f(&mut Faulting {
                space: &mut p.space,
                alloc,
            })
        })
    }

    /// Ends process `pid` for want of memory, with a one-line report, as
    /// Linux's OOM killer ends one (SIGKILL): at each thread's next way
    /// back to user mode.
    fn oom_kill(&self, pid: Pid, rss: u64) {
        VmStats::add(&self.vm.stats.oom_kill, 1);
        let _ = core::fmt::Write::write_fmt(
            &mut Console(&self.m),
            format_args!("oom: killed pid={pid} rss_pages={rss}\n"),
        );
        self.kill_others(pid, Tid::MAX, abi::signaled_status(abi::sig::SIGKILL));
    }

    // ---- Switching ----

    /// Carries out a switch the scheduler decided, planned in the section
    /// that decided it. No lock may be held, and interrupts have been off
    /// since the decision.
    fn switch(&self, p: Planned<M>) {
        assert_no_locks_held("a context switch");
        let _off = IrqOff::new();
        let cpu = self.m.cpu_index().min(MAX_CPUS - 1);
        self.current[cpu].store(p.sw.to, Ordering::Relaxed);
        self.current_group[cpu].store(p.group, Ordering::Relaxed);
        // The task switched to has interrupts-off sections of its own.
        let saved = save_irq_state();
        self.m.switch(p.from, p.to);
        // Back on this task, on whichever CPU resumed it.
        restore_irq_state(saved);
    }

    fn switch_if(&self, p: Option<Planned<M>>) {
        if let Some(p) = p {
            self.switch(p);
        }
    }

    /// A timer tick on the caller's CPU: the scheduler's clock, timeouts
    /// and preemption. A tick on a CPU that has not joined does nothing.
    pub fn tick(&self) {
        let _off = IrqOff::new();
        let now = self.m.now_ns();
        let planned = {
            let Some(mut s) = self.try_sched() else {
                return;
            };
            // Interrupts stay off from a scheduling decision to its switch:
            // a tick in between would switch away from the task decided on
            // while still on the stack of the one it replaces.
            let cpu = s.cpu();
            if s.current() != self.current[cpu].load(Ordering::Relaxed) {
                panic!(
                    "a tick between the switch to {} and its carrying out",
                    s.current()
                );
            }
            let sw = if s.tick(now) { s.schedule() } else { None };
            s.plan(sw)
        };
        self.switch_if(planned);
    }

    pub fn yield_now(&self) {
        let _off = IrqOff::new();
        let planned = {
            let mut s = self.sched();
            let sw = s.yield_now();
            s.plan(sw)
        };
        self.switch_if(planned);
    }

    /// Blocks the current task for at least `ns` nanoseconds.
    pub fn sleep_ns(&self, ns: u64) {
        let _off = IrqOff::new();
        let until = self.m.now_ns().saturating_add(ns);
        let planned = {
            let mut s = self.sched();
            let sw = s.sleep_current(until);
            s.plan(sw)
        };
        self.switch_if(planned);
    }

    /// Wakes everyone on `q`, and switches if one of them should run first
    /// (the others go to CPUs the scheduler kicks).
    pub fn wake_all(&self, q: crate::task::sched::QueueId) {
        let _off = IrqOff::new();
        let planned = {
            let mut s = self.sched();
            // Nobody woken, nothing to preempt for (the tick sees to the
            // rest): most wakes after a pipe transfer find no one waiting.
            let sw = if s.wake_all(q) > 0 && s.should_preempt() {
                s.schedule()
            } else {
                None
            };
            s.plan(sw)
        };
        self.switch_if(planned);
    }

    /// Blocks on `q` until woken or `deadline_ns`. The caller checked its
    /// condition with interrupts off, so no wake-up is lost.
    pub fn block_on(
        &self,
        q: crate::task::sched::QueueId,
        deadline_ns: Option<u64>,
    ) -> Result<(), SchedError> {
        let _off = IrqOff::new();
        let planned = {
            let mut s = self.sched();
            let sw = s.block_current(q, deadline_ns)?;
            s.plan(sw)
        };
        self.switch_if(planned);
        Ok(())
    }

    // ---- Creating and ending tasks ----

    /// Starts a kernel thread running `entry(arg)`.
    pub fn spawn_kernel(
        &self,
        name: &str,
        entry: fn(u64) -> i64,
        arg: u64,
    ) -> Result<Tid, SchedError> {
        let ctx = self
            .m
            .new_context(Start::Kernel { entry, arg }, None)
            .map_err(|_| SchedError::NoMemory)?;
        let ext = TaskExt::new(ctx).ok_or(SchedError::NoMemory)?;
        self.sched().spawn(name, None, Priority::NORMAL, false, ext)
    }

    /// Ends the current task with `status`. A killed task keeps the
    /// status its killer gave.
    pub fn exit_current(&self, status: i64) -> ! {
        self.clear_child_tid();
        // Detached threads that exited before are off their stacks now.
        self.reap_detached();
        let _off = IrqOff::new();
        let sw = {
            let mut s = self.sched();
            let me = s.current();
            if s.kill_pending(me).is_some() {
                self.kills_in_flight.fetch_sub(1, Ordering::Relaxed);
            }
            self.signals_at_exit(&mut s, me);
            let sw = s.exit_current(status);
            sw.map(|sw| s.plan(Some(sw)))
        };
        match sw {
            Ok(Some(p)) => self.switch(p),
            Ok(None) => unreachable!("plan of a switch is a plan"),
            Err(e) => panic!("exit of the current task failed: {e:?}"),
        }
        panic!("an exited task was resumed")
    }

    /// Asks `tid` to exit with `status` at its next boundary.
    fn request_kill(&self, s: &mut Scheduler<TaskExt<M>>, tid: Tid, status: i64) {
        // Counted only when this call set it: a zombie is left without one.
        let before = s.kill_pending(tid);
        if s.request_kill(tid, status).is_ok() && before.is_none() && s.kill_pending(tid).is_some()
        {
            self.kills_in_flight.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Kill requests not yet carried out (tests check it returns to 0).
    pub fn kills_in_flight(&self) -> usize {
        self.kills_in_flight.load(Ordering::Relaxed)
    }

    /// The exit status a pending kill asks the current task for.
    #[inline]
    pub fn kill_pending(&self) -> Option<i64> {
        if self.kills_in_flight.load(Ordering::Relaxed) == 0 {
            return None;
        }
        self.kill_pending_locked()
    }

    /// Out of line, so that the callers (every pipe transfer's step, the
    /// return to user mode) inline only the load and test above.
    #[inline(never)]
    fn kill_pending_locked(&self) -> Option<i64> {
        let s = self.sched();
        s.kill_pending(s.current())
    }

    /// Asks every live thread of `pid` but `except` to exit with `status`.
    /// Done under the scheduler lock, so that a thread created after it
    /// must have been created by a thread with a kill pending, which
    /// `spawn_thread` refuses.
    fn kill_others(&self, pid: Pid, except: Tid, status: i64) {
        let mut s = self.sched();
        self.kill_group(&mut s, pid, except, status);
    }

    /// [`System::kill_others`] with the scheduler's lock already held.
    fn kill_group(&self, s: &mut Scheduler<TaskExt<M>>, pid: Pid, except: Tid, status: i64) {
        // Found one at a time rather than collected: no allocation.
        loop {
            let next = s.tasks().find(|t| {
                t.group == pid
                    && t.tid != except
                    && t.kill_pending.is_none()
                    && !matches!(t.state, State::Exited(_))
            });
            let Some(t) = next.map(|t| t.tid) else {
                break;
            };
            self.request_kill(s, t, status);
        }
    }

    /// Waits for task `tid` to exit and reaps it; returns its status.
    /// Polls once per tick: joins are rare (the console, tests).
    pub fn join(&self, tid: Tid, tick_ns: u64) -> Result<i64, SchedError> {
        loop {
            let state = self.sched().task(tid).map(|t| t.state);
            match state {
                None => return Err(SchedError::NoSuchTask),
                Some(State::Exited(_)) => return self.reap(tid),
                Some(_) => self.sleep_ns(tick_ns),
            }
        }
    }

    /// Removes an exited task's record; its context (and kernel stack) is
    /// freed when dropped here, outside the lock.
    fn reap(&self, tid: Tid) -> Result<i64, SchedError> {
        let (status, ctx) = self.sched().reap(tid)?;
        drop(ctx);
        Ok(status)
    }

    // ---- Processes ----

    /// Loads `image` into a fresh address space and starts its main thread
    /// as `name ARGS...`, the words of `args` being its arguments (the
    /// console's `run NAME a b`) and no environment. Returns the pid, which
    /// is also the main thread's tid.
    pub fn spawn_program(&self, name: &str, image: &[u8], args: &str) -> Result<Pid, SpawnError> {
        // The console's arguments: at most a line, so a small fixed list.
        let mut argv = [""; 64];
        argv[0] = name;
        let mut argc = 1;
        for word in args.split_ascii_whitespace() {
            if argc == argv.len() {
                return Err(SpawnError::Load(Errno::E2BIG));
            }
            argv[argc] = word;
            argc += 1;
        }
        self.spawn_program_argv(name, image, &argv[..argc], &[])
    }

    /// Loads `image` into a fresh address space and starts its main thread
    /// with `argv` and `envp` on its stack, as Linux starts a program.
    pub fn spawn_program_argv(
        &self,
        name: &str,
        image: &[u8],
        argv: &[&str],
        envp: &[&str],
    ) -> Result<Pid, SpawnError> {
        let (frames, tables) = (self.m.frames(), self.m.tables());
        let (space, entry, rsp) = self.load_space(image, argv, envp, None)?;
        // rsp points at argc; every other register starts at 0.
        let start = Start::User {
            rip: entry,
            rsp,
            arg0: 0,
            arg1: 0,
        };
        let ctx = match self.m.new_context(start, Some(space.root())) {
            Ok(ctx) => ctx,
            Err(e) => {
                space.destroy(frames, tables);
                return Err(SpawnError::Load(e));
            }
        };
        self.insert_process(name, ctx, space).map_err(|(e, space)| {
            space.destroy(frames, tables);
            e
        })
    }

    /// A fresh address space with `image` loaded and its stack laid out
    /// for `argv` and `envp` (and `execfn`, execve's path): the space,
    /// the entry point and the stack pointer. What a new program needs,
    /// for a spawn and for `execve` alike; on failure nothing is left.
    #[allow(clippy::type_complexity)]
    fn load_space<S: AsRef<[u8]>>(
        &self,
        image: &[u8],
        argv: &[S],
        envp: &[S],
        execfn: Option<&[u8]>,
    ) -> Result<(UserSpace<'static, M::Pte, M::Mem>, u64, u64), SpawnError> {
        let program = elf::parse(image).map_err(SpawnError::Elf)?;
        let mem = self.m.mem();
        let mut space = UserSpace::new(
            mem,
            self.m.kernel_root(),
            self.m.tables(),
            self.m.tlb(),
            self.vm,
        )
        .map_err(SpawnError::Load)?;
        match self.prepare(&program, image, argv, envp, execfn, &mut space) {
            Ok((entry, rsp)) => Ok((space, entry, rsp)),
            Err(e) => {
                space.destroy(self.m.frames(), self.m.tables());
                Err(SpawnError::Load(e))
            }
        }
    }

    /// Creates the main thread and the process record in one section, so
    /// a pid is in the table exactly while its group has records. On
    /// failure the space comes back for the caller to destroy.
    // The space comes back once, on a failure path: boxing it for that
    // would cost every spawn an allocation.
    #[allow(clippy::type_complexity, clippy::result_large_err)]
    fn insert_process(
        &self,
        name: &str,
        ctx: M::Context,
        space: UserSpace<'static, M::Pte, M::Mem>,
    ) -> Result<Pid, (SpawnError, UserSpace<'static, M::Pte, M::Mem>)> {
        let parent = self.current_pid();
        let (ext, signals) = match (TaskExt::new(ctx), signal::default_actions()) {
            (Some(ext), Ok(signals)) => (ext, signals),
            _ => return Err((SpawnError::Load(Errno::ENOMEM), space)),
        };
        let mut procs = self.procs.lock();
        if procs.try_reserve(1).is_err() {
            return Err((SpawnError::Load(Errno::ENOMEM), space));
        }
        let pid = match self.sched().spawn(name, None, Priority::NORMAL, true, ext) {
            Ok(pid) => pid,
            Err(e) => return Err((SpawnError::Task(e), space)),
        };
        // A Linux program starts with 0, 1 and 2 open on its terminal; so
        // does one here, on the console (reading it is end of file).
        let mut fds = FdTable::new();
        fds.open_at(abi::STDIN, File::Console);
        fds.open_at(abi::STDOUT, File::Console);
        fds.open_at(abi::STDERR, File::Console);
        procs.push(Process {
            pid,
            parent,
            space,
            fds,
            signals,
        });
        Ok(pid)
    }

    /// Maps the program, makes its heap and stack regions, and lays out
    /// the stack as the SysV ABI says (`entry::build`). Returns the entry
    /// point and the stack pointer.
    fn prepare<S: AsRef<[u8]>>(
        &self,
        program: &elf::Program,
        image: &[u8],
        argv: &[S],
        envp: &[S],
        execfn: Option<&[u8]>,
        space: &mut UserSpace<'static, M::Pte, M::Mem>,
    ) -> Result<(u64, u64), Errno> {
        let alloc = self.alloc();
        let entry = elf::load(program, image, space, alloc)?;
        space.set_heap_start(program.end().next_multiple_of(PAGE_SIZE));
        let facts = entry::Image {
            entry,
            phdr: program.phdr,
            phnum: program.phnum.into(),
            clock_ticks: 1_000_000_000 / self.m.tick_ns().max(1),
        };
        let layout = entry::build(
            abi::USER_STACK_TOP,
            argv,
            envp,
            execfn,
            facts,
            self.random_bytes(),
        )?;
        // Linux's first stack region: the pages the arguments take and
        // 128 KiB; it grows down from there on faults.
        let arg_pages = (layout.bytes.len() as u64).next_multiple_of(PAGE_SIZE);
        let bottom = abi::USER_STACK_TOP - abi::USER_STACK_SIZE - arg_pages;
        let flags =
            VmFlags::READ | VmFlags::WRITE | VmFlags::MAY | VmFlags::GROWSDOWN | VmFlags::ACCOUNT;
        space.add_region(Region::anon(bottom, abi::USER_STACK_TOP, flags))?;
        let mut user = Faulting { space, alloc };
        crate::task::uaccess::fill_user(&mut user, layout.rsp, &layout.bytes)?;
        Ok((entry, layout.rsp))
    }

    /// 16 bytes from the kernel's generator, for `AT_RANDOM`. Seeded the
    /// same at every boot, so runs repeat exactly (a kernel for studying,
    /// not for hiding secrets: say so where it matters).
    fn random_bytes(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        for half in out.chunks_mut(8) {
            // splitmix64: one atomic step per word, no lock.
            let x = self
                .random
                .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
                .wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            half.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        }
        out
    }

    /// Ends the current task's whole process (`exit_group`, a fault, a
    /// kill): the other threads are asked to exit with `status`, the
    /// current one exits with it.
    pub fn exit_process(&self, status: i64) -> ! {
        let _off = IrqOff::new();
        let (me, pid) = {
            let s = self.sched();
            let me = s.current();
            (me, s.task(me).map_or(me, |t| t.group))
        };
        self.kill_others(pid, me, status);
        self.exit_current(status)
    }

    /// Linux's `exit`: only the calling thread ends. The process ends when
    /// its last thread has, and its status is then the main thread's.
    pub fn exit_thread(&self, status: i64) -> ! {
        self.exit_current(status)
    }

    /// `exit_group(code)` (and a program's return from `_start`): Linux's
    /// wait status says "exited with the code's low byte".
    pub fn exit_group(&self, code: i32) -> ! {
        self.exit_process(abi::exited_status(code.into()))
    }

    /// Whether every thread of process `pid` has exited (or it does not
    /// exist): the process has ended and can be collected.
    pub fn process_ended(&self, pid: Pid) -> bool {
        self.sched().live_in_group(pid) == 0
    }

    /// Whether `pid` names a live or uncollected process.
    pub fn is_process(&self, pid: Pid) -> bool {
        self.procs.lock().iter().any(|p| p.pid == pid)
    }

    /// Kills process `pid` from outside (tests) with `status`, which need
    /// not be a signal's: nothing can catch it.
    pub fn kill_process(&self, pid: Pid, status: i64) -> Result<(), Errno> {
        if !self.is_process(pid) {
            return Err(Errno::ESRCH);
        }
        self.kill_others(pid, Tid::MAX, status);
        Ok(())
    }

    /// Sends signal `signo` to process `pid` from the kernel (the
    /// console's `kill` and Ctrl-C), as `kill(2)` from pid 0 would.
    pub fn signal_process(&self, pid: Pid, signo: u32) -> Result<(), Errno> {
        if !(1..=abi::sig::NSIG).contains(&signo) {
            return Err(Errno::EINVAL);
        }
        let info = signal::Info {
            code: abi::sig::SI_USER,
            word: 0,
        };
        self.send_signal(signal::Target::Process(pid), signo, info)
    }

    /// Waits for process `pid` to end (its last thread to exit), then
    /// reaps every thread of it, closes its files and frees its address
    /// space. Returns the main thread's exit status, as Linux's `wait4`
    /// reports the thread-group leader's.
    pub fn join_process(&self, pid: Pid, tick_ns: u64) -> Result<i64, Errno> {
        if !self.is_process(pid) {
            return Err(Errno::ESRCH);
        }
        while !self.process_ended(pid) {
            self.sleep_ns(tick_ns);
        }
        // The leader is never reaped before the process (wait_thread
        // refuses it), so its record holds the status.
        let status = match self.sched().task(pid).map(|t| t.state) {
            Some(State::Exited(status)) => status,
            _ => return Err(Errno::ESRCH),
        };
        // No live thread is left, so none can appear: collecting needs no
        // kill. It loops only while a thread killed while current is still
        // leaving its CPU.
        let process = loop {
            match self.collect(pid) {
                Some(p) => break p,
                None => self.sleep_ns(tick_ns),
            }
        };
        self.release_process(process);
        Ok(status)
    }

    /// Reaps the exited threads of `pid`; once none is left, removes the
    /// process from the table in the same section and returns it.
    fn collect(&self, pid: Pid) -> Option<Process<M>> {
        let mut procs = self.procs.lock();
        let mut s = self.sched();
        let me = s.current();
        loop {
            let next = s
                .tasks()
                .find(|t| t.group == pid && t.tid != me && matches!(t.state, State::Exited(_)));
            let Some(t) = next.map(|t| t.tid) else {
                break;
            };
            if let Ok((_, ctx)) = s.reap(t) {
                drop(ctx);
            }
        }
        if s.tasks().any(|t| t.group == pid) {
            return None;
        }
        let index = procs.iter().position(|p| p.pid == pid)?;
        Some(procs.swap_remove(index))
    }

    fn release_process(&self, mut p: Process<M>) {
        for file in p.fds.drain() {
            self.release_file(file);
        }
        p.space.destroy(self.m.frames(), self.m.tables());
    }

    /// Processes in the table (for `ps` and leak checks).
    pub fn process_count(&self) -> usize {
        self.procs.lock().len()
    }

    // ---- Faults ----

    /// A fault in user mode, `what` the architecture's name for it: the
    /// memory manager's fault handler decides; what it cannot resolve
    /// becomes the signal Linux sends (signal.rs), which a handler may
    /// take or which ends the process after a one-line report. `code` is
    /// the `si_code` the machine read for a floating-point exception or a
    /// debug trap (#DB), 0 for the others.
    pub fn user_fault(
        &self,
        vector: u64,
        what: &str,
        error: u64,
        rip: u64,
        fault: Option<Fault>,
        code: i32,
    ) {
        let Some(fault) = fault else {
            return self.fault_signal(vector, what, error, rip, None, code);
        };
        let alloc = self.alloc();
        let outcome = self.with_current_process(|p| {
            let outcome = crate::mm::fault::handle(&mut p.space, alloc, fault);
            Ok((outcome, p.space.rss()))
        });
        match outcome {
            Ok((Outcome::Resolved, _)) => {}
            Ok((Outcome::OutOfMemory, rss)) => {
                self.oom_kill(self.current_pid(), rss);
                self.exit_process(abi::signaled_status(abi::sig::SIGKILL));
            }
            Ok((Outcome::Signal { code, present }, _)) => {
                // The error code as Linux's would read: a PROT_NONE page
                // is not present there.
                let error = (error & !1) | u64::from(present);
                self.fault_signal(vector, what, error, rip, Some(fault), code)
            }
            Err(_) => {
                let code = abi::sig::SEGV_MAPERR;
                self.fault_signal(vector, what, error, rip, Some(fault), code)
            }
        }
    }

    /// The page fault a user's access at `addr` would take, resolved as
    /// the machine's fault hook resolves it, without signals: what the
    /// host tests' simulated CPU does when its MMU faults.
    #[cfg(test)]
    pub(crate) fn resolve_fault(&self, fault: Fault) -> Outcome {
        let alloc = self.alloc();
        self.with_current_process(|p| Ok(crate::mm::fault::handle(&mut p.space, alloc, fault)))
            .unwrap_or(Outcome::Signal {
                code: abi::sig::SEGV_MAPERR,
                present: false,
            })
    }

    /// Whether the return to user mode has anything to do: one load each
    /// while nobody is killed or signalled.
    pub fn return_work(&self) -> bool {
        self.kills_in_flight.load(Ordering::Relaxed) != 0
            || self.signal_work.load(Ordering::Relaxed) != 0
    }

    /// Before any return to user mode with `frame`, from system call
    /// `syscall` if it is one: a task asked to die ends here, after its
    /// system call has unwound and released what it held; signals are
    /// taken (a handler's frame built, an interrupted call restarted).
    pub fn return_to_user(&self, frame: &mut dyn UserFrame, syscall: Option<u64>) {
        if !self.return_work() {
            return;
        }
        if let Some(status) = self.kill_pending() {
            self.exit_current(status)
        }
        if self.signal_work.load(Ordering::Relaxed) != 0 {
            self.deliver_signals(frame, syscall);
        }
    }

    /// Whether the current thread has a signal to take: a blocked call
    /// ends with a restart code when it has.
    fn signal_interrupts(&self) -> bool {
        self.signal_work.load(Ordering::Relaxed) != 0 && {
            let s = self.sched();
            s.signal_pending(s.current())
        }
    }

    /// One line per task for `ps`.
    pub fn describe_tasks(&self, mut line: impl FnMut(core::fmt::Arguments)) {
        let s = self.sched();
        let (mut all, mut idle) = (0, 0);
        for t in s.tasks() {
            all += 1;
            if t.group == crate::task::sched::IDLE {
                idle += 1;
            }
            line(format_args!(
                "tid={} group={} state={:?} prio={} cpu_ticks={} kind={} name={}",
                t.tid,
                t.group,
                t.state,
                t.priority.0,
                t.cpu_ticks,
                if t.user { "user" } else { "kernel" },
                t.name
            ));
        }
        // The summary scripts judge: one idle task per CPU, so "nothing
        // left but the console" is `non_idle == 1` whatever the CPU count.
        line(format_args!(
            "tasks={all} idle_tasks={idle} non_idle={}",
            all - idle
        ));
    }
}
