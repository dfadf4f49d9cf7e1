//! The scheduler: which task runs next, as a pure state machine.
//!
//! # Deciding, not switching
//!
//! This crate denies `unsafe` and has no stacks or saved registers, so it
//! cannot switch tasks. [`Scheduler`] only decides: it keeps every task's
//! state and the queues, and every call that may change the running task
//! returns a [`Switch`] naming the task to leave and the task to enter. The
//! booted kernel (`boot/src/task.rs`) keeps the scheduler behind a spin lock,
//! asks it what to do and then performs the context switch it was told to.
//! By the time a `Switch` is returned the scheduler already counts `to` as
//! running, so the caller must carry it out before making another call on
//! behalf of the task it left. Because the policy lives here, the host tests
//! can drive thousands of random operations through it and check every
//! invariant after each one ([`Scheduler::check`]).
//!
//! # Tasks
//!
//! A task is a thread; tasks are grouped into task groups (processes) whose
//! pid is the tid of the group's first thread. A task moves through
//!
//! ```text
//!   spawn -> Ready <-> Running -> Blocked -> Ready
//!                         |          |
//!                         +--> Exited <-- (kill, from any live state)
//!                                 |
//!                                reap (record removed)
//! ```
//!
//! Every CPU has an idle task: it always exists, is always ready (or
//! running, on its own CPU alone), never blocks or exits, and runs only
//! when its CPU has no other task to run. CPU 0's is tid 0; the others get
//! theirs from [`Scheduler::add_cpu`], in group 0 too. Tid 1 is the boot
//! thread, running on CPU 0 when the scheduler is created.
//!
//! An exited task keeps its record (a zombie) until it is reaped, so that a
//! waiter can still collect its status. Tids are not reused while a record
//! or a task group carries them, so a stale tid never names a new task.
//! A detached task (Linux's `CLONE_THREAD` threads) has no waiter: nobody
//! may wait for it, and once it has exited [`Scheduler::reap_detached`]
//! hands its record to whoever runs next to free it (its own kernel stack
//! cannot be freed while it is still on it).
//!
//! Each record carries a payload `X` of the caller's ([`Scheduler::ext`]):
//! the executor keeps a task's context there, so one record per task holds
//! all the kernel knows about it. Reaping hands the payload back to be
//! freed. Records move when the table grows and their slots are reused, so
//! no reference into one outlives a call; a payload part whose address must
//! stay put while the lock is released (the executor saves a stack pointer
//! into it during a switch) must be boxed by the caller.
//!
//! # Memory
//!
//! Nothing a task does may abort the kernel, and running out of heap would.
//! So only creation allocates, and fallibly: [`Scheduler::spawn`],
//! [`Scheduler::new_queue`] and [`Scheduler::add_cpu`] grow their tables
//! with `try_reserve` and say [`SchedError::NoMemory`] when they cannot,
//! leaving everything as it was. Every other call (tick, schedule, yield,
//! sleep, block, wake, exit, kill, wait, reap, freeing a queue, affinity,
//! kicks) only relinks what exists, and allocates nothing; the host tests
//! count allocations to hold it so. Names are a
//! fixed-size [`TaskName`] for the same reason.
//!
//! # Where a task is kept
//!
//! Records are in a table indexed through the tid; every queue is an
//! intrusive doubly linked list through the records (tids as links), so
//! blocking and waking move no memory.
//!
//! * Ready tasks (but idle) are in exactly one run queue, the one of their
//!   priority, linked through their queue link; a bitmap marks the
//!   non-empty run queues, so the best one is found in a few words. Idle is
//!   in none: it is the fallback when all are empty.
//! * `Blocked(Queue(q))` tasks are on wait queue `q`, FIFO, through the
//!   same queue link (a task is never both ready and blocked). Each carries
//!   a [`WaitTag`], so that one queue can hold waiters for different
//!   things and a wake picks only those it is for (the futex buckets).
//! * `Blocked(Sleep)` tasks, and queue waiters that gave a deadline, are
//!   on the timer list through their timer link, ordered by (deadline,
//!   tid), so a tick finds the expired ones at its head without looking at
//!   anyone else.
//! * `Blocked(Wait(t))` tasks are in no structure: the state itself says
//!   whom they wait for, and an exit scans the table for its waiters. Exits
//!   are rare and the table is small, so a scan is cheaper than keeping a
//!   list right.
//! * Exited tasks that were detached ([`Scheduler::detach`]) are on the
//!   zombie list, through the queue link, until they are reaped; other
//!   Running and Exited tasks are in none.
//!
//! A link not in use is empty. The table's free record slots, and the free
//! wait-queue slots, are chained through themselves; a wait queue's id
//! carries its slot's generation, so the id of a freed queue never names
//! the queue that reuses its slot.
//!
//! # Policy
//!
//! Strict priority: a higher-priority ready task always runs before a lower
//! one. Within a priority, round robin: a task preempted or yielding goes to
//! the tail of its run queue, and a task only ever moves towards the head,
//! so none starves among its equals. The timer tick only says whether the
//! current task should be preempted (its slice is used up and an equal or
//! higher task is ready, or a higher one is ready at all); the caller then
//! calls [`Scheduler::schedule`].
//!
//! # Time
//!
//! The scheduler has no clock: [`Scheduler::tick`] brings the time, and
//! deadlines are compared with the latest time seen. A deadline that has
//! already passed at the last tick does not block at all.
//!
//! # A task killed while current
//!
//! [`Scheduler::kill`] may hit the current task (a fault, or a thread
//! killing its own group). It is then `Exited` but still on the CPU until
//! the caller calls `schedule()`, which always switches away from it. Until
//! then, calls on behalf of the current task (sleep, block, wait, exit) do
//! not change its state; they just switch away, and `reap` refuses it
//! because its stack is still in use.
//!
//! # Several CPUs
//!
//! The scheduler keeps, per CPU ([`Scheduler::add_cpu`]), the task it
//! runs, its idle task, how much of the time slice its task has used and
//! its figures ([`CpuStats`]). Every call acts for one CPU, the one
//! [`Scheduler::set_cpu`] named last: the caller names its own CPU right
//! after taking the lock (the process model's lock wrapper does), so
//! `current()`, `tick()`, `schedule()` and the calls on behalf of the
//! current task all mean that CPU's. A scheduler that was never given
//! another CPU is exactly the one-CPU scheduler it always was.
//!
//! There is one run queue, under the one lock, for all CPUs (the issue
//! allows it where it does not limit the figures: the lock is held for a
//! few hundred instructions per decision, and on one CPU the switch and
//! the tick cost a few percent more than before, `./run.sh bench`; with
//! tasks on several CPUs it is the first thing to measure). A task is on
//! it only while Ready, so a Running task is never
//! picked by another CPU. Each task has an affinity ([`CpuMask`], all CPUs
//! unless set; a new task inherits its creator's, as Linux's fork does),
//! and a CPU picks the first task of the best priority that may run on it;
//! so priority and round robin hold among the tasks a CPU may run. The
//! walk past tasks that may not run there is the price of one queue: with
//! no affinity set it stops at the head.
//!
//! Nothing here sends interrupts, so when a task becomes ready the
//! scheduler picks a CPU that should look at the queue now and reports it
//! as a kick ([`Scheduler::take_kicks`]; the caller sends a reschedule
//! interrupt at the end of its locked section): an idle CPU the task may run on
//! (the acting CPU first: it reschedules by itself), else the CPU running
//! the least important task below it. A CPU asked stays counted as asked
//! ([`Scheduler::kicked`]) until it next picks a task, ticks or handles
//! the kick ([`Scheduler::reschedule`]), so that tasks made ready one
//! after the other go to different CPUs. A kill, a signal or an affinity
//! change for a task running on another CPU kicks that CPU too. Kicks are
//! for latency only: every CPU's tick asks the same question of the
//! queue, so a kick that went to a CPU which then picked another task
//! costs at most a tick.
//!
//! # A task between two CPUs
//!
//! A switch is decided here and carried out after the lock is released,
//! so a task that CPU A switched away from is Ready (or exited) at once
//! and CPU B may pick it, or reap it, while A is still on its kernel
//! stack. The scheduler allows that; what makes it safe is the machine's
//! on-CPU mark of each task (`crate::proc::OnCpu`): A clears it only once
//! it is off the task's stack, B waits for it to be clear before it
//! switches to the task, and a task's stack is freed only once it is
//! clear. Since the task A left may be reaped by another CPU as soon as
//! the lock is released, whatever A's switch needs of its record is read
//! in the section that decided the switch (the process model does).

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

/// A task (thread) id.
pub type Tid = u32;
/// A task group (process) id: the tid of the group's first thread.
pub type Pid = u32;

/// The idle task's tid.
pub const IDLE: Tid = 0;
/// The boot thread's tid (and its group's pid).
pub const BOOT: Tid = 1;
/// Default bound on task records, zombies and idle included; tids are
/// below it.
pub const MAX_TASKS: u32 = 4096;

/// CPUs the scheduler can run on: one bit each in a [`CpuMask`].
pub const MAX_CPUS: usize = crate::sync::MAX_CPUS;

const _: () = assert!(MAX_CPUS == u64::BITS as usize, "a CpuMask is one u64");

/// A set of CPUs by index: a task's affinity, the CPUs to kick.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CpuMask(pub u64);

impl CpuMask {
    pub const NONE: CpuMask = CpuMask(0);
    pub const ALL: CpuMask = CpuMask(u64::MAX);
    /// Bytes of the mask in memory: what Linux calls `cpumask_size()` for
    /// MAX_CPUS, and what `sched_getaffinity` reports.
    pub const BYTES: usize = core::mem::size_of::<u64>();

    /// CPU `cpu` alone; empty for an index past MAX_CPUS.
    pub fn one(cpu: usize) -> CpuMask {
        CpuMask(
            u32::try_from(cpu)
                .ok()
                .and_then(|c| 1u64.checked_shl(c))
                .unwrap_or(0),
        )
    }

    /// CPUs 0 to n - 1.
    pub fn first_n(n: usize) -> CpuMask {
        match u32::try_from(n) {
            Ok(n) if n < u64::BITS => CpuMask((1 << n) - 1),
            _ => CpuMask::ALL,
        }
    }

    pub fn contains(self, cpu: usize) -> bool {
        self.0 & CpuMask::one(cpu).0 != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The lowest CPU in the set.
    pub fn first(self) -> Option<usize> {
        (self.0 != 0).then(|| self.0.trailing_zeros() as usize)
    }

    pub fn and(self, other: CpuMask) -> CpuMask {
        CpuMask(self.0 & other.0)
    }

    pub fn or(self, other: CpuMask) -> CpuMask {
        CpuMask(self.0 | other.0)
    }

    pub fn without(self, other: CpuMask) -> CpuMask {
        CpuMask(self.0 & !other.0)
    }

    pub fn insert(&mut self, cpu: usize) {
        self.0 |= CpuMask::one(cpu).0;
    }

    pub fn remove(&mut self, cpu: usize) {
        self.0 &= !CpuMask::one(cpu).0;
    }

    /// The CPUs in the set, lowest first.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        let mut bits = self.0;
        core::iter::from_fn(move || {
            let cpu = CpuMask(bits).first()?;
            bits &= bits - 1;
            Some(cpu)
        })
    }
}

/// One CPU's figures, since it joined.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CpuStats {
    /// Timer ticks it took.
    pub ticks: u64,
    /// Of those, ticks that found it running its idle task.
    pub idle_ticks: u64,
    /// Switches it was told to make (to a task other than the one it ran).
    pub switches: u64,
    /// Sections it held the scheduler in (each lock taken for it).
    pub sections: u64,
}

/// What the scheduler keeps per CPU.
#[derive(Debug, Clone, Copy)]
struct Cpu {
    /// The task it runs (or was killed while running, until it switches).
    current: Tid,
    /// Its idle task.
    idle: Tid,
    /// Ticks the current task has run since this CPU picked it.
    slice_used: u64,
    stats: CpuStats,
}

/// What the caller must do: save `from`, resume `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Switch {
    pub from: Tid,
    pub to: Tid,
}

/// A scheduling priority; higher is more important.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Priority(pub u8);

impl Priority {
    /// The idle task's priority. Other tasks may use it too; they still run
    /// before idle, which only runs when nothing else is ready.
    pub const IDLE: Priority = Priority(0);
    pub const LOW: Priority = Priority(1);
    pub const NORMAL: Priority = Priority(2);
    pub const HIGH: Priority = Priority(3);
}

/// How many priorities there are: one run queue each.
const PRIORITIES: usize = u8::MAX as usize + 1;

/// A wait queue, made by [`Scheduler::new_queue`]: its slot, and the
/// slot's generation when it was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueId {
    slot: u32,
    generation: u32,
}

/// A task's name, truncated like Linux's 16-byte `comm` so that naming a
/// task allocates nothing.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskName {
    len: u8,
    bytes: [u8; TaskName::MAX],
}

impl TaskName {
    /// The longest name kept, in bytes; with the length byte the whole is
    /// 16 bytes, as `comm` is with its NUL.
    pub const MAX: usize = 15;

    /// `name`, cut to at most MAX bytes at a char boundary.
    pub fn new(name: &str) -> TaskName {
        let mut len = name.len().min(Self::MAX);
        while !name.is_char_boundary(len) {
            len -= 1;
        }
        let mut bytes = [0; Self::MAX];
        bytes[..len].copy_from_slice(&name.as_bytes()[..len]);
        TaskName {
            len: len as u8,
            bytes,
        }
    }

    pub fn as_str(&self) -> &str {
        // `new` copies whole chars of a str, so this is valid UTF-8; the
        // fallback is there because this crate may not assert it unsafely.
        core::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

impl core::ops::Deref for TaskName {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for TaskName {
    fn from(name: &str) -> TaskName {
        TaskName::new(name)
    }
}

impl fmt::Display for TaskName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for TaskName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// Why a task is blocked, and so where it is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocked {
    /// Until a deadline.
    Sleep,
    /// On a wait queue, perhaps also until a deadline.
    Queue(QueueId),
    /// Until that task exits.
    Wait(Tid),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Ready,
    Running,
    Blocked(Blocked),
    Exited(i64),
}

/// How a task last left the Blocked state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WakeReason {
    /// By wake_one/wake_all/free_queue, or by the exit it waited for.
    Woken,
    /// Its deadline passed.
    TimedOut,
    /// It was killed (set on the killed task itself).
    Killed,
    /// A signal it may take arrived ([`Scheduler::set_signal_pending`]).
    Interrupted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedError {
    /// No record with that tid (or no live group with that pid).
    NoSuchTask,
    /// The task has not exited (or, killed while current, is still on the CPU).
    NotExited,
    /// No free tid below the bound.
    TooManyTasks,
    /// A wait target in another task group.
    NotInGroup,
    /// Waiting for oneself, or for a task that (transitively) waits for us.
    WouldDeadlock,
    /// Kill, exit, block, wait or reap on the idle task, or spawn into its group.
    IdleTask,
    /// The wait queue does not exist (never made, or freed).
    NoSuchQueue,
    /// The current task has a kill pending, so it may not wait any more.
    Interrupted,
    /// A table could not grow: the heap is exhausted. Nothing changed.
    NoMemory,
    /// A wait for a detached task, which nobody may wait for.
    Detached,
    /// An affinity with no CPU the scheduler runs on.
    NoCpu,
    /// A CPU index the scheduler does not have (or, to join, not the next).
    NoSuchCpu,
    /// MAX_CPUS have joined already.
    TooManyCpus,
}

/// The outcome of [`Scheduler::wait_for`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitResult<X = ()> {
    /// The target had exited; here are its status and payload, and its
    /// record is gone.
    Exited(i64, X),
    /// The current task now waits; switch as told, then call `wait_for`
    /// again once woken.
    Blocked(Option<Switch>),
}

/// What `ps` shows about a task.
#[derive(Debug, Clone, Copy)]
pub struct TaskInfo {
    pub tid: Tid,
    pub group: Pid,
    pub name: TaskName,
    pub priority: Priority,
    pub state: State,
    /// Timer ticks charged while it was current.
    pub cpu_ticks: u64,
    /// A user thread (as opposed to a kernel thread).
    pub user: bool,
    /// How it last woke up; read after a block to tell a wake from a timeout.
    pub wake: WakeReason,
    /// A kill asked for by another task, with its exit status. The task
    /// exits by itself at its next boundary (the end of a system call, the
    /// return to user mode), so whatever its kernel stack holds is released
    /// on the way out; until then it never blocks again.
    pub kill_pending: Option<i64>,
    /// A signal it does not block is pending: like a pending kill, it
    /// does not block again until the return to user mode has taken it
    /// (Linux's TIF_SIGPENDING). Set and cleared by the process model.
    pub signal_pending: bool,
    /// Nobody waits for it: its record is reaped by others once it has
    /// exited ([`Scheduler::reap_detached`]).
    pub detached: bool,
    /// The CPUs it may run on.
    pub affinity: CpuMask,
}

/// What a task blocked on a wait queue waits for, when the queue's waiters
/// wait for different things: a key, and bits a wake must share with the
/// waiter's to wake it. Plain queues leave it at the default.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WaitTag {
    pub key: [u64; 2],
    pub bits: u32,
}

/// A task's neighbours on one intrusive list; both None when on none.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Link {
    prev: Option<Tid>,
    next: Option<Tid>,
}

/// Which of a record's links a list runs through.
#[derive(Debug, Clone, Copy)]
enum Chain {
    /// Run queues and wait queues: a task is on at most one of them.
    Queue,
    Timer,
}

/// The ends of an intrusive FIFO of tasks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct List {
    head: Option<Tid>,
    tail: Option<Tid>,
}

impl List {
    fn is_empty(&self) -> bool {
        self.head.is_none()
    }
}

/// A task's record: what `ps` sees, the scheduler's bookkeeping, and the
/// caller's payload.
struct Task<X> {
    info: TaskInfo,
    /// Set while on the timer list (sleeping, or waiting with a timeout).
    deadline: Option<u64>,
    /// On its run queue or wait queue.
    queue: Link,
    /// On the timer list.
    timer: Link,
    /// Set while on a wait queue.
    tag: WaitTag,
    ext: X,
}

impl<X> Task<X> {
    fn link(&self, chain: Chain) -> Link {
        match chain {
            Chain::Queue => self.queue,
            Chain::Timer => self.timer,
        }
    }

    fn link_mut(&mut self, chain: Chain) -> &mut Link {
        match chain {
            Chain::Queue => &mut self.queue,
            Chain::Timer => &mut self.timer,
        }
    }
}

/// Record counts of one task group.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Group {
    /// Records, zombies included; the pid stays taken while this is > 0.
    records: u32,
    /// Tasks not Exited.
    live: u32,
}

/// What the table knows about one tid.
#[derive(Debug, Default, Clone, Copy)]
struct TidEntry {
    /// The record's slot, if the tid has one.
    slot: Option<u32>,
    /// The group this tid is the pid of, if any. Kept here, not in the
    /// record, because a group outlives its first thread's record.
    group: Group,
}

enum Slot<X> {
    Used(Task<X>),
    /// The next free slot.
    Free(Option<u32>),
}

/// The task records. Tids reach the bound however few records there are
/// (they are handed out cyclically), so a per-tid entry is kept small and
/// the records themselves are dense, their slots reused.
struct Table<X> {
    tids: Vec<TidEntry>,
    slots: Vec<Slot<X>>,
    /// Head of the chain of free slots.
    free: Option<u32>,
    /// Records (used slots).
    len: usize,
}

impl<X> Table<X> {
    fn new() -> Self {
        Table {
            tids: Vec::new(),
            slots: Vec::new(),
            free: None,
            len: 0,
        }
    }

    fn get(&self, tid: Tid) -> Option<&Task<X>> {
        let slot = self.tids.get(tid as usize)?.slot?;
        match self.slots.get(slot as usize)? {
            Slot::Used(t) => Some(t),
            Slot::Free(_) => None,
        }
    }

    fn get_mut(&mut self, tid: Tid) -> Option<&mut Task<X>> {
        let slot = self.tids.get(tid as usize)?.slot?;
        match self.slots.get_mut(slot as usize)? {
            Slot::Used(t) => Some(t),
            Slot::Free(_) => None,
        }
    }

    /// Records in tid order.
    fn iter(&self) -> impl Iterator<Item = &Task<X>> {
        self.tids
            .iter()
            .filter_map(|e| match self.slots.get(e.slot? as usize)? {
                Slot::Used(t) => Some(t),
                Slot::Free(_) => None,
            })
    }

    /// One past the highest tid the table has an entry for.
    fn tid_end(&self) -> Tid {
        self.tids.len() as Tid
    }

    /// Whether `tid` names neither a record nor a group.
    fn tid_free(&self, tid: Tid) -> bool {
        self.tids
            .get(tid as usize)
            .is_none_or(|e| e.slot.is_none() && e.group.records == 0)
    }

    fn group(&self, pid: Pid) -> Group {
        self.tids
            .get(pid as usize)
            .map_or(Group::default(), |e| e.group)
    }

    fn group_mut(&mut self, pid: Pid) -> Option<&mut Group> {
        self.tids.get_mut(pid as usize).map(|e| &mut e.group)
    }

    /// Makes room for a record under `tid`, so that `insert` allocates
    /// nothing; on failure nothing is changed but spare capacity.
    fn reserve(&mut self, tid: Tid) -> Result<(), SchedError> {
        let more = (tid as usize + 1).saturating_sub(self.tids.len());
        self.tids
            .try_reserve(more)
            .map_err(|_| SchedError::NoMemory)?;
        if self.free.is_none() {
            self.slots
                .try_reserve(1)
                .map_err(|_| SchedError::NoMemory)?;
        }
        Ok(())
    }

    /// Adds `task` under `tid` (which must have no record), in a free slot
    /// if there is one. Allocates only if `reserve` was not called first.
    fn insert(&mut self, tid: Tid, task: Task<X>) {
        if self.tids.len() <= tid as usize {
            self.tids.resize(tid as usize + 1, TidEntry::default());
        }
        let slot = match self.free {
            Some(slot) => {
                let next = match self.slots.get(slot as usize) {
                    Some(Slot::Free(next)) => *next,
                    _ => None,
                };
                self.free = next;
                self.slots[slot as usize] = Slot::Used(task);
                slot
            }
            None => {
                self.slots.push(Slot::Used(task));
                (self.slots.len() - 1) as u32
            }
        };
        self.tids[tid as usize].slot = Some(slot);
        self.len += 1;
    }

    /// Takes `tid`'s record out, putting its slot on the free chain.
    fn remove(&mut self, tid: Tid) -> Option<Task<X>> {
        let entry = self.tids.get_mut(tid as usize)?;
        let slot = entry.slot?;
        let place = self.slots.get_mut(slot as usize)?;
        let Slot::Used(_) = place else { return None };
        entry.slot = None;
        let Slot::Used(task) = core::mem::replace(place, Slot::Free(self.free)) else {
            return None;
        };
        self.free = Some(slot);
        self.len -= 1;
        Some(task)
    }

    fn link(&self, tid: Tid, chain: Chain) -> Link {
        self.get(tid).map_or(Link::default(), |t| t.link(chain))
    }

    fn set_next(&mut self, list: &mut List, at: Option<Tid>, to: Option<Tid>, chain: Chain) {
        match at.and_then(|t| self.get_mut(t)) {
            Some(t) => t.link_mut(chain).next = to,
            None => list.head = to,
        }
    }

    fn set_prev(&mut self, list: &mut List, at: Option<Tid>, to: Option<Tid>, chain: Chain) {
        match at.and_then(|t| self.get_mut(t)) {
            Some(t) => t.link_mut(chain).prev = to,
            None => list.tail = to,
        }
    }

    /// Links `tid` into `list` just before `at`, or at the tail for None.
    fn insert_before(&mut self, list: &mut List, at: Option<Tid>, tid: Tid, chain: Chain) {
        let prev = match at {
            Some(a) => self.link(a, chain).prev,
            None => list.tail,
        };
        let Some(t) = self.get_mut(tid) else { return };
        *t.link_mut(chain) = Link { prev, next: at };
        self.set_next(list, prev, Some(tid), chain);
        self.set_prev(list, at, Some(tid), chain);
    }

    fn push_back(&mut self, list: &mut List, tid: Tid, chain: Chain) {
        self.insert_before(list, None, tid, chain);
    }

    /// Unlinks `tid` from `list`; false (and nothing changed) if it is not
    /// on it.
    // Inlined, like `best` and `dispatch`: each wake and block runs them,
    // and the calls cost more than their bodies (`./run.sh bench`).
    #[inline]
    fn unlink(&mut self, list: &mut List, tid: Tid, chain: Chain) -> bool {
        // One lookup reads the link and, the check passed, clears it.
        let mut record = self.get_mut(tid);
        let Link { prev, next } = record.as_mut().map_or(Link::default(), |t| t.link(chain));
        // An empty end is only right at the list's own end.
        if (prev.is_none() && list.head != Some(tid)) || (next.is_none() && list.tail != Some(tid))
        {
            return false;
        }
        if let Some(t) = record {
            *t.link_mut(chain) = Link::default();
        }
        self.set_next(list, prev, next, chain);
        self.set_prev(list, next, prev, chain);
        true
    }

    fn pop_front(&mut self, list: &mut List, chain: Chain) -> Option<Tid> {
        let tid = list.head?;
        self.unlink(list, tid, chain).then_some(tid)
    }
}

/// The ready tasks: one FIFO per priority, and a bitmap of the non-empty
/// ones. Self-contained, so that there can be one per CPU.
struct RunQueue {
    lists: [List; PRIORITIES],
    busy: [u64; PRIORITIES / 64],
    len: usize,
    /// Queued tasks whose affinity is not every CPU: while there are none,
    /// the head of the best queue is every CPU's pick, no record read.
    narrow: usize,
}

impl RunQueue {
    fn new() -> Self {
        RunQueue {
            lists: [List::default(); PRIORITIES],
            busy: [0; PRIORITIES / 64],
            len: 0,
            narrow: 0,
        }
    }

    fn mark(&mut self, prio: Priority) {
        let p = usize::from(prio.0);
        let bit = 1 << (p % 64);
        if self.lists[p].is_empty() {
            self.busy[p / 64] &= !bit;
        } else {
            self.busy[p / 64] |= bit;
        }
    }

    /// Appends `tid`, whose affinity is `affinity`.
    #[inline]
    fn push_back<X>(&mut self, tasks: &mut Table<X>, tid: Tid, prio: Priority, affinity: CpuMask) {
        tasks.push_back(&mut self.lists[usize::from(prio.0)], tid, Chain::Queue);
        self.len += 1;
        self.narrow += usize::from(affinity != CpuMask::ALL);
        self.mark(prio);
    }

    #[inline]
    fn remove<X>(&mut self, tasks: &mut Table<X>, tid: Tid, prio: Priority, affinity: CpuMask) {
        if tasks.unlink(&mut self.lists[usize::from(prio.0)], tid, Chain::Queue) {
            self.len -= 1;
            self.narrow -= usize::from(affinity != CpuMask::ALL);
            self.mark(prio);
        }
    }

    /// The task `cpu` should run next: of the best priority with a task
    /// that may run there, the first such in its queue. With no affinity
    /// set on a queued task this is the head of the best queue.
    // Inlined: every tick, wake and switch asks, and the common case is a
    // few instructions (`./run.sh bench`); the walk is out of line.
    #[inline]
    fn best_for<X>(&self, tasks: &Table<X>, cpu: usize) -> Option<(Priority, Tid)> {
        if self.len == 0 {
            // Most ticks find nobody waiting: no bitmap to scan.
            return None;
        }
        if self.narrow == 0 {
            let (word, bits) = self.busy.iter().enumerate().rev().find(|(_, w)| **w != 0)?;
            let p = word * 64 + 63 - bits.leading_zeros() as usize;
            return Some((Priority(p as u8), self.lists[p].head?));
        }
        self.walk_for(tasks, cpu)
    }

    /// `best_for` past the tasks that may not run on `cpu`.
    #[inline(never)]
    fn walk_for<X>(&self, tasks: &Table<X>, cpu: usize) -> Option<(Priority, Tid)> {
        for (word, &busy) in self.busy.iter().enumerate().rev() {
            let mut bits = busy;
            while bits != 0 {
                let bit = 63 - bits.leading_zeros() as usize;
                bits &= !(1 << bit);
                let p = word * 64 + bit;
                let mut at = self.lists[p].head;
                while let Some(t) = at.and_then(|tid| tasks.get(tid)) {
                    if t.info.affinity.contains(cpu) {
                        return Some((Priority(p as u8), t.info.tid));
                    }
                    at = t.queue.next;
                }
            }
        }
        None
    }

    fn pop_best_for<X>(&mut self, tasks: &mut Table<X>, cpu: usize) -> Option<Tid> {
        let (prio, tid) = self.best_for(tasks, cpu)?;
        let affinity = match self.narrow {
            0 => CpuMask::ALL,
            _ => tasks.get(tid).map_or(CpuMask::ALL, |t| t.info.affinity),
        };
        self.remove(tasks, tid, prio, affinity);
        Some(tid)
    }
}

enum QueueSlot {
    Live(List),
    /// The next free slot.
    Free(Option<u32>),
}

/// The wait queues, in reused slots; a slot's generation grows each time
/// it is freed, so that old ids go stale.
struct WaitQueues {
    slots: Vec<(u32, QueueSlot)>,
    free: Option<u32>,
}

impl WaitQueues {
    fn get(&self, q: QueueId) -> Option<&List> {
        match self.slots.get(q.slot as usize)? {
            (generation, QueueSlot::Live(list)) if *generation == q.generation => Some(list),
            _ => None,
        }
    }

    fn get_mut(&mut self, q: QueueId) -> Option<&mut List> {
        match self.slots.get_mut(q.slot as usize)? {
            (generation, QueueSlot::Live(list)) if *generation == q.generation => Some(list),
            _ => None,
        }
    }

    fn create(&mut self) -> Result<QueueId, SchedError> {
        if let Some(slot) = self.free
            && let Some((generation, place)) = self.slots.get_mut(slot as usize)
            && let QueueSlot::Free(next) = *place
        {
            self.free = next;
            *place = QueueSlot::Live(List::default());
            return Ok(QueueId {
                slot,
                generation: *generation,
            });
        }
        self.slots
            .try_reserve(1)
            .map_err(|_| SchedError::NoMemory)?;
        self.slots.push((0, QueueSlot::Live(List::default())));
        Ok(QueueId {
            slot: (self.slots.len() - 1) as u32,
            generation: 0,
        })
    }

    /// Frees an empty queue's slot.
    fn remove(&mut self, q: QueueId) {
        if self.get(q).is_none() {
            return;
        }
        if let Some((generation, place)) = self.slots.get_mut(q.slot as usize) {
            // Wrapping takes 2^32 frees of one slot: an id that old is
            // long forgotten.
            *generation = generation.wrapping_add(1);
            *place = QueueSlot::Free(self.free);
            self.free = Some(q.slot);
        }
    }
}

/// The scheduler, its records carrying a payload `X` each (see the
/// module doc).
pub struct Scheduler<X = ()> {
    tasks: Table<X>,
    run: RunQueue,
    queues: WaitQueues,
    /// Every task blocked with a deadline, by (deadline, tid).
    timers: List,
    /// Detached tasks that have exited, oldest first, not yet reaped.
    zombies: List,
    /// Per CPU, by index; at least CPU 0.
    cpus: Vec<Cpu>,
    /// The CPU the calls act for ([`Scheduler::set_cpu`]).
    acting: usize,
    /// CPUs running their idle task.
    idle_cpus: CpuMask,
    /// CPUs asked to look at the run queue that have not yet (see the
    /// module doc): kicked, or the acting CPU counting on itself.
    kicked: CpuMask,
    /// Kicks of other CPUs the caller has yet to send.
    outbox: CpuMask,
    time_slice: u64,
    /// The latest time a tick brought.
    now: u64,
    /// Where the cyclic tid search starts.
    next_tid: Tid,
    max_tasks: u32,
}

impl Scheduler<()> {
    /// Creates the idle task (tid 0) and the boot thread (tid 1, "main",
    /// NORMAL, its own group 1), which is current. `time_slice` is in ticks.
    pub fn new(time_slice: u64) -> Self {
        Self::with_max_tasks(time_slice, MAX_TASKS)
    }

    /// Like [`Scheduler::new`] with another bound on records (at least 2:
    /// idle and the boot thread); tids stay below it.
    pub fn with_max_tasks(time_slice: u64, max_tasks: u32) -> Self {
        Self::with_ext(time_slice, max_tasks, (), ())
    }
}

impl<X> Scheduler<X> {
    /// Like [`Scheduler::with_max_tasks`], with the payloads of the idle
    /// task and the boot thread.
    pub fn with_ext(time_slice: u64, max_tasks: u32, idle: X, boot: X) -> Self {
        let mut s = Scheduler {
            tasks: Table::new(),
            run: RunQueue::new(),
            queues: WaitQueues {
                slots: Vec::new(),
                free: None,
            },
            timers: List::default(),
            zombies: List::default(),
            cpus: Vec::new(),
            acting: 0,
            idle_cpus: CpuMask::NONE,
            kicked: CpuMask::NONE,
            outbox: CpuMask::NONE,
            time_slice,
            now: 0,
            next_tid: BOOT + 1,
            max_tasks: max_tasks.max(2),
        };
        s.insert(
            IDLE,
            "idle",
            IDLE,
            Priority::IDLE,
            false,
            CpuMask::one(0),
            idle,
        );
        s.insert(
            BOOT,
            "main",
            BOOT,
            Priority::NORMAL,
            false,
            CpuMask::ALL,
            boot,
        );
        s.cpus.push(Cpu {
            current: BOOT,
            idle: IDLE,
            slice_used: 0,
            stats: CpuStats::default(),
        });
        s.set_state(BOOT, State::Running);
        s
    }

    /// The acting CPU's current task.
    pub fn current(&self) -> Tid {
        self.cpus[self.acting].current
    }

    // ---- CPUs ----

    /// Adds the next CPU, whose idle task gets `idle` as its payload, and
    /// returns its index. The idle task is that CPU's current task from
    /// the start: the code that joins is that CPU's idle loop (as the boot
    /// thread is CPU 0's first task). Fails, changing nothing, with
    /// TooManyCpus, TooManyTasks or NoMemory; then `idle` comes back, for
    /// it is the context of running code, which its caller keeps.
    pub fn add_cpu(&mut self, idle: X) -> Result<usize, (SchedError, X)> {
        let cpu = self.cpus.len();
        if cpu >= MAX_CPUS {
            return Err((SchedError::TooManyCpus, idle));
        }
        let Some(tid) = self.free_tid() else {
            return Err((SchedError::TooManyTasks, idle));
        };
        if let Err(e) = self.tasks.reserve(tid) {
            return Err((e, idle));
        }
        if self.cpus.try_reserve(1).is_err() {
            return Err((SchedError::NoMemory, idle));
        }
        self.next_tid = tid + 1;
        let name = idle_name(cpu);
        let one = CpuMask::one(cpu);
        self.insert(tid, &name, IDLE, Priority::IDLE, false, one, idle);
        self.set_state(tid, State::Running);
        self.cpus.push(Cpu {
            current: tid,
            idle: tid,
            slice_used: 0,
            stats: CpuStats::default(),
        });
        // One CPU keeps no idle mask (dispatch skips it): make it now.
        let idle = self
            .cpus
            .iter()
            .enumerate()
            .filter(|(_, c)| c.current == c.idle);
        self.idle_cpus = idle.fold(CpuMask::NONE, |m, (c, _)| m.or(CpuMask::one(c)));
        Ok(cpu)
    }

    /// Makes `cpu` the CPU the following calls act for; false (and
    /// nothing changed) if it has not joined. Call it first in every
    /// locked section, with the caller's own CPU.
    pub fn set_cpu(&mut self, cpu: usize) -> bool {
        let known = cpu < self.cpus.len();
        if known {
            self.acting = cpu;
            self.cpus[cpu].stats.sections += 1;
            // A kick of oneself is no interrupt to send.
            self.outbox.remove(cpu);
        }
        known
    }

    /// The CPU the calls act for.
    pub fn cpu(&self) -> usize {
        self.acting
    }

    /// How many CPUs have joined: their indices are 0 to this - 1.
    /// Heap bytes the per-tid table holds. It grows with every new tid
    /// until tids go round (they are handed out cyclically up to the
    /// bound), which leak checks must tell apart from a leak.
    pub fn tid_table_bytes(&self) -> usize {
        self.tasks.tids.capacity() * core::mem::size_of::<TidEntry>()
    }

    pub fn cpu_count(&self) -> usize {
        self.cpus.len()
    }

    /// Every CPU that has joined.
    pub fn online(&self) -> CpuMask {
        CpuMask::first_n(self.cpus.len())
    }

    /// The task `cpu` runs.
    pub fn current_on(&self, cpu: usize) -> Option<Tid> {
        self.cpus.get(cpu).map(|c| c.current)
    }

    /// The CPU `tid` is the current task of: it runs there, or was killed
    /// there and is not switched away from yet. (Looked for, not kept: a
    /// switch need not write the records of both tasks for it.)
    pub fn cpu_of(&self, tid: Tid) -> Option<usize> {
        self.cpus.iter().position(|c| c.current == tid)
    }

    /// `cpu`'s idle task.
    pub fn idle_task(&self, cpu: usize) -> Option<Tid> {
        self.cpus.get(cpu).map(|c| c.idle)
    }

    pub fn cpu_stats(&self, cpu: usize) -> Option<CpuStats> {
        self.cpus.get(cpu).map(|c| c.stats)
    }

    /// The CPUs asked to look at the run queue that have not done so yet.
    pub fn kicked(&self) -> CpuMask {
        self.kicked
    }

    /// The other CPUs to send a reschedule interrupt to: those kicked since
    /// the last call. Take them before the lock is released (and before
    /// acting for another CPU), and send them after.
    pub fn take_kicks(&mut self) -> CpuMask {
        core::mem::take(&mut self.outbox)
    }

    /// What a CPU does when kicked: it has looked, and switches if a task
    /// it may run is more important than its current one.
    pub fn reschedule(&mut self) -> Option<Switch> {
        if self.should_preempt() {
            return self.schedule();
        }
        if self.looked() {
            self.pass_on();
        }
        None
    }

    /// The CPUs `tid` may run on (all of them, as it was set).
    pub fn affinity(&self, tid: Tid) -> Option<CpuMask> {
        self.tasks.get(tid).map(|t| t.info.affinity)
    }

    /// Lets `tid` run only on the CPUs of `mask` (bits of CPUs that have
    /// not joined are kept, and count once they do). NoCpu if none of
    /// them has joined; IdleTask for an idle task, which belongs to its
    /// CPU. A ready task stays in its place in the queue (and may now
    /// find an idle CPU: a kick); a task running on a CPU it may no
    /// longer use is kicked off it, or, on the acting CPU,
    /// `should_preempt()` says so.
    pub fn set_affinity(&mut self, tid: Tid, mask: CpuMask) -> Result<(), SchedError> {
        if self.is_idle(tid) {
            return Err(SchedError::IdleTask);
        }
        if mask.and(self.online()).is_empty() {
            return Err(SchedError::NoCpu);
        }
        let on = self.cpu_of(tid);
        let task = self.tasks.get_mut(tid).ok_or(SchedError::NoSuchTask)?;
        let before = core::mem::replace(&mut task.info.affinity, mask);
        if task.info.state == State::Ready {
            // Queued: counted by whether it may run everywhere.
            self.run.narrow = self.run.narrow + usize::from(mask != CpuMask::ALL)
                - usize::from(before != CpuMask::ALL);
        }
        match (task.info.state, on) {
            (State::Ready, _) => self.kick_for(tid),
            (_, Some(cpu)) if !mask.contains(cpu) => self.kick_running(tid),
            _ => {}
        }
        Ok(())
    }

    /// Whether the acting CPU runs its idle task: no record to read.
    #[inline]
    fn current_is_idle(&self) -> bool {
        let cpu = &self.cpus[self.acting];
        cpu.current == cpu.idle
    }

    /// Whether `tid` is an idle task (of any CPU): group 0 holds exactly
    /// those.
    fn is_idle(&self, tid: Tid) -> bool {
        tid == IDLE || self.group_of(tid) == Some(IDLE)
    }

    /// Asks for a CPU to look at the run queue now that `tid` is Ready
    /// (see the module doc): the acting CPU if it is idle and may run it,
    /// else another idle CPU that may, else the CPU running the least
    /// important task below it (the acting CPU on a tie, as it needs no
    /// interrupt). CPUs asked already are passed over, so tasks made
    /// ready together go to different CPUs.
    // The one-CPU test inlined, the rest out of line: a wake on one CPU
    // pays one comparison (`./run.sh bench`).
    #[inline]
    fn kick_for(&mut self, tid: Tid) {
        // The acting CPU alone: its callers ask should_preempt().
        if self.cpus.len() > 1 {
            self.kick_among(tid);
        }
    }

    /// `kick_for` with other CPUs to choose from.
    #[inline(never)]
    fn kick_among(&mut self, tid: Tid) {
        let Some(t) = self.tasks.get(tid) else { return };
        if t.info.group == IDLE {
            return;
        }
        let (prio, me) = (t.info.priority, self.acting);
        let free = t.info.affinity.and(self.online()).without(self.kicked);
        let idle = free.and(self.idle_cpus);
        let target = if idle.contains(me) {
            Some(me)
        } else if let Some(cpu) = idle.first() {
            Some(cpu)
        } else {
            // The least important below it; the acting CPU first, then
            // the lowest index, among equals.
            let mut best: Option<(Priority, usize)> = None;
            let others = free.without(CpuMask::one(me)).iter();
            for cpu in free.and(CpuMask::one(me)).iter().chain(others) {
                if let Some(p) = self.running_priority(cpu)
                    && p < prio
                    && best.is_none_or(|(b, _)| p < b)
                {
                    best = Some((p, cpu));
                }
            }
            best.map(|(_, cpu)| cpu)
        };
        if let Some(cpu) = target {
            self.kicked.insert(cpu);
            if cpu != me {
                self.outbox.insert(cpu);
            }
        }
    }

    /// Kicks the CPU `tid` is the current task of, unless that is the
    /// acting CPU (whose caller sees to it): a kill, a signal or an
    /// affinity change must reach it now, not at its next tick.
    fn kick_running(&mut self, tid: Tid) {
        let Some(cpu) = self.cpu_of(tid) else {
            return;
        };
        if cpu != self.acting {
            self.kicked.insert(cpu);
            self.outbox.insert(cpu);
        }
    }

    /// The priority of the task `cpu` runs, None for its idle task or a
    /// task killed there (which is leaving: its CPU was kicked).
    fn running_priority(&self, cpu: usize) -> Option<Priority> {
        let c = self.cpus.get(cpu)?;
        if c.current == c.idle {
            return None;
        }
        let t = self.tasks.get(c.current)?;
        (t.info.state == State::Running).then_some(t.info.priority)
    }

    pub fn task(&self, tid: Tid) -> Option<&TaskInfo> {
        self.tasks.get(tid).map(|t| &t.info)
    }

    /// What `task` and `ext` say of `tid`, in one lookup.
    pub fn record(&self, tid: Tid) -> Option<(&TaskInfo, &X)> {
        self.tasks.get(tid).map(|t| (&t.info, &t.ext))
    }

    /// The payload of `tid`'s record, zombies included.
    pub fn ext(&self, tid: Tid) -> Option<&X> {
        self.tasks.get(tid).map(|t| &t.ext)
    }

    /// Renames `tid` (`execve`: a task is named after its program).
    pub fn set_name(&mut self, tid: Tid, name: &str) {
        if let Some(t) = self.tasks.get_mut(tid) {
            t.info.name = TaskName::new(name);
        }
    }

    pub fn ext_mut(&mut self, tid: Tid) -> Option<&mut X> {
        self.tasks.get_mut(tid).map(|t| &mut t.ext)
    }

    /// One past the highest tid a record may have: every record's tid is
    /// below it, for loops that look tids up one by one (`task`, `ext_mut`)
    /// while they change records.
    pub fn tid_end(&self) -> Tid {
        self.tasks.tid_end()
    }

    /// All records in tid order, zombies included.
    pub fn tasks(&self) -> impl Iterator<Item = &TaskInfo> {
        self.tasks.iter().map(|t| &t.info)
    }

    /// Tasks of group `pid` that have not exited.
    pub fn live_in_group(&self, pid: Pid) -> usize {
        self.tasks.group(pid).live as usize
    }

    /// (records, ready tasks waiting in run queues). Idle is a record but
    /// is not counted as ready: it always is.
    pub fn counts(&self) -> (usize, usize) {
        (self.tasks.len, self.run.len)
    }

    // ---- Creating tasks ----

    /// A new Ready task at the tail of its priority's run queue, in group
    /// `group` (which must have a live task) or, with None, in a new group
    /// whose pid is the new tid, carrying `ext`. It may run where the
    /// acting CPU's current task may (Linux's fork copies the affinity;
    /// an idle task's creations may run anywhere). On an error nothing
    /// changes and `ext` is dropped, so a payload holding resources should
    /// free them on drop.
    pub fn spawn(
        &mut self,
        name: &str,
        group: Option<Pid>,
        priority: Priority,
        user: bool,
        ext: X,
    ) -> Result<Tid, SchedError> {
        if let Some(pid) = group {
            self.check_group_open(pid)?;
        }
        let tid = self.free_tid().ok_or(SchedError::TooManyTasks)?;
        self.tasks.reserve(tid)?;
        self.next_tid = tid + 1;
        let affinity = match self.tasks.get(self.current()) {
            Some(t) if t.info.group != IDLE => t.info.affinity,
            _ => CpuMask::ALL,
        };
        let pid = group.unwrap_or(tid);
        self.insert(tid, name, pid, priority, user, affinity, ext);
        self.enqueue(tid);
        Ok(tid)
    }

    /// Threads may only join a group that still has a live thread: a group
    /// of zombies is being torn down.
    fn check_group_open(&self, pid: Pid) -> Result<(), SchedError> {
        if pid == IDLE {
            return Err(SchedError::IdleTask);
        }
        if self.tasks.group(pid).live > 0 {
            Ok(())
        } else {
            Err(SchedError::NoSuchTask)
        }
    }

    /// The next tid, searching cyclically from the last one handed out, that
    /// names neither a record nor a group: reusing a group's pid while the
    /// group lives would put a stranger in charge of it. Changes nothing, so
    /// that a spawn failing later leaves the search where it was.
    fn free_tid(&self) -> Option<Tid> {
        if self.tasks.len >= self.max_tasks as usize {
            return None;
        }
        let mut tid = self.next_tid;
        for _ in 1..self.max_tasks {
            if tid >= self.max_tasks {
                tid = 1;
            }
            if self.tasks.tid_free(tid) {
                return Some(tid);
            }
            tid += 1;
        }
        None
    }

    /// Adds a record in state Ready (but on no queue yet).
    #[allow(clippy::too_many_arguments)]
    fn insert(
        &mut self,
        tid: Tid,
        name: &str,
        group: Pid,
        priority: Priority,
        user: bool,
        affinity: CpuMask,
        ext: X,
    ) {
        let info = TaskInfo {
            tid,
            group,
            name: TaskName::new(name),
            priority,
            state: State::Ready,
            cpu_ticks: 0,
            user,
            wake: WakeReason::Woken,
            kill_pending: None,
            signal_pending: false,
            detached: false,
            affinity,
        };
        let task = Task {
            info,
            deadline: None,
            queue: Link::default(),
            timer: Link::default(),
            tag: WaitTag::default(),
            ext,
        };
        self.tasks.insert(tid, task);
        if let Some(g) = self.tasks.group_mut(group) {
            g.records += 1;
            g.live += 1;
        }
    }

    // ---- Time and preemption ----

    /// A timer tick at `now_ns`: charges it to the current task, wakes the
    /// tasks whose deadline is <= now (TimedOut), and says whether the
    /// current task should be preempted. It does not switch.
    ///
    /// Every CPU ticks: the time is the latest any of them brought, the
    /// timers are everyone's, and the charge is the acting CPU's.
    pub fn tick(&mut self, now_ns: u64) -> bool {
        // A clock going backwards must not un-expire anything.
        self.now = self.now.max(now_ns);
        let cpu = &mut self.cpus[self.acting];
        let current = cpu.current;
        cpu.slice_used = cpu.slice_used.saturating_add(1);
        cpu.stats.ticks = cpu.stats.ticks.saturating_add(1);
        if current == cpu.idle {
            cpu.stats.idle_ticks = cpu.stats.idle_ticks.saturating_add(1);
        }
        // Charged, and kept for the judgement below: a running task is on
        // no timer list, so the expiries cannot change it.
        let acting = self.acting;
        let cur = self.tasks.get_mut(current).and_then(|t| {
            t.info.cpu_ticks = t.info.cpu_ticks.saturating_add(1);
            Self::runs_here(&t.info, acting)
        });
        // The answer below is this CPU looking at the queue: a kick
        // waiting for it is answered too.
        let asked = self.cpus.len() > 1 && self.looked();
        self.expire_timers();
        let (better, equal) = self.judge_of(cur);
        let preempt = better || (self.slice_over() && equal);
        if asked && !preempt {
            // Its caller schedules otherwise, and that passes it on.
            self.pass_on();
        }
        preempt
    }

    fn expire_timers(&mut self) {
        while let Some(tid) = self.timers.head {
            if self
                .tasks
                .get(tid)
                .and_then(|t| t.deadline)
                .is_some_and(|d| d > self.now)
            {
                break;
            }
            if self
                .tasks
                .pop_front(&mut self.timers, Chain::Timer)
                .is_none()
            {
                break;
            }
            if let Some(t) = self.tasks.get_mut(tid) {
                t.deadline = None;
            }
            self.make_ready(tid, WakeReason::TimedOut);
        }
    }

    /// Whether a ready task the acting CPU may run is more important than
    /// its current one: then the caller should call `schedule()` (e.g.
    /// after a wake). Any such task beats idle, and anything beats a
    /// current task that was killed or may no longer run on this CPU.
    #[inline]
    pub fn should_preempt(&self) -> bool {
        self.judge().0
    }

    /// Whether a ready task the acting CPU may run is more important than
    /// its current task (`should_preempt`), and whether one is at least as
    /// important (for the end of a slice): one look at each.
    #[inline(always)]
    fn judge(&self) -> (bool, bool) {
        let current = self.current();
        let here = self
            .tasks
            .get(current)
            .and_then(|t| Self::runs_here(&t.info, self.acting));
        self.judge_of(here)
    }

    /// The priority of a current task that goes on running on `cpu`; None
    /// if it was killed or may no longer run there.
    #[inline]
    fn runs_here(t: &TaskInfo, cpu: usize) -> Option<Priority> {
        (t.state == State::Running && t.affinity.contains(cpu)).then_some(t.priority)
    }

    /// `judge` with `runs_here` of the current task at hand.
    #[inline]
    fn judge_of(&self, here: Option<Priority>) -> (bool, bool) {
        let cpu = &self.cpus[self.acting];
        let Some(priority) = here else {
            return (true, true);
        };
        // Idle ranks below every task whatever their priority.
        let current = (cpu.current != cpu.idle).then_some(priority);
        match (self.best_here(), current) {
            (None, _) => (false, false),
            (Some(_), None) => (true, true),
            (Some(best), Some(cur)) => (best > cur, best >= cur),
        }
    }

    /// The priority of the best ready task the acting CPU may run.
    fn best_here(&self) -> Option<Priority> {
        self.run.best_for(&self.tasks, self.acting).map(|(p, _)| p)
    }

    fn slice_over(&self) -> bool {
        self.cpus[self.acting].slice_used >= self.time_slice
    }

    fn current_running(&self) -> bool {
        self.state(self.current()) == Some(State::Running)
    }

    // ---- Choosing the next task ----

    /// Puts the current task, if still running, at the tail of its run
    /// queue and runs the best task the acting CPU may run (its idle task
    /// if none). Some(Switch) when that is another task.
    pub fn schedule(&mut self) -> Option<Switch> {
        let current = self.current();
        let mut requeued = false;
        if let Some(t) = self.tasks.get_mut(current)
            && t.info.state == State::Running
        {
            // No kick yet: it may well be picked again at once (dispatch
            // kicks for it if not).
            t.info.state = State::Ready;
            requeued = t.info.group != IDLE;
            if requeued {
                let (prio, affinity) = (t.info.priority, t.info.affinity);
                self.run.push_back(&mut self.tasks, current, prio, affinity);
            }
        }
        let switch = self.dispatch_after(requeued);
        (switch.from != switch.to).then_some(switch)
    }

    /// The yield system call. Because `schedule()` already sends the
    /// current task behind its equals, this is the same decision; it is a
    /// separate entry point so the policy for yields can change alone.
    pub fn yield_now(&mut self) -> Option<Switch> {
        self.schedule()
    }

    /// Makes the best ready task the acting CPU may run its current one.
    /// The current task must already be requeued or off the CPU for good
    /// (blocked, exited): then a Switch with `from == to` means it was
    /// simply picked again.
    #[inline]
    fn dispatch(&mut self) -> Switch {
        self.dispatch_after(false)
    }

    /// `dispatch`, told whether the current task was just requeued
    /// (schedule()): if it is not picked again it needs a CPU.
    // Always inlined, as `dispatch` was before there were CPUs to think
    // of: every block, exit and schedule runs it (`./run.sh bench`).
    #[inline(always)]
    fn dispatch_after(&mut self, requeued: bool) -> Switch {
        let cpu = self.acting;
        let (from, idle) = (self.cpus[cpu].current, self.cpus[cpu].idle);
        let to = self.run.pop_best_for(&mut self.tasks, cpu).unwrap_or(idle);
        if let Some(t) = self.tasks.get_mut(to) {
            t.info.state = State::Running;
        }
        let requeued = requeued && to != from;
        let c = &mut self.cpus[cpu];
        if to != from {
            c.slice_used = 0;
            c.stats.switches = c.stats.switches.saturating_add(1);
        }
        c.current = to;
        if self.cpus.len() > 1 {
            self.dispatched(from, to == idle, requeued);
        }
        Switch { from, to }
    }

    /// What a dispatch means to the other CPUs: whether the acting one is
    /// idle now, a kick it answered, a requeued task that now needs a CPU.
    /// (With one CPU there are no kicks, and the idle mask is made when a
    /// second joins.)
    #[inline(never)]
    fn dispatched(&mut self, from: Tid, idle: bool, requeued: bool) {
        if idle {
            self.idle_cpus.insert(self.acting);
        } else {
            self.idle_cpus.remove(self.acting);
        }
        let asked = self.looked();
        if requeued {
            self.kick_for(from);
        }
        if asked {
            self.pass_on();
        }
    }

    /// The acting CPU has looked at the run queue: whatever kick asked it
    /// to is answered.
    /// Returns whether it had been asked: then `pass_on` must follow once
    /// its choice is made.
    #[inline]
    fn looked(&mut self) -> bool {
        let asked = self.kicked.contains(self.acting);
        self.kicked.remove(self.acting);
        self.outbox.remove(self.acting);
        asked
    }

    /// After an asked CPU has looked: it may have taken another task than
    /// the one it was asked for (a better one, or an earlier one), so each
    /// ready task that no longer has an asked CPU it may run on gets its
    /// kick again (`kick_for`, which finds none if no CPU is idle or runs
    /// anything less important). So a ready task never waits for a tick
    /// while a CPU that could run it now is idle or running something less
    /// important and nobody has been asked. A walk of the ready tasks, on
    /// a kicked CPU's look only; with no affinity set, one AND each.
    #[inline(never)]
    fn pass_on(&mut self) {
        if self.cpus.len() < 2 || self.run.len == 0 {
            return;
        }
        let online = self.online();
        let words = self.run.busy;
        for (word, &busy) in words.iter().enumerate().rev() {
            let mut bits = busy;
            while bits != 0 {
                let bit = 63 - bits.leading_zeros() as usize;
                bits &= !(1 << bit);
                let mut at = self.run.lists[word * 64 + bit].head;
                while let Some(t) = at.and_then(|tid| self.tasks.get(tid)) {
                    let (tid, next) = (t.info.tid, t.queue.next);
                    if t.info.affinity.and(online).and(self.kicked).is_empty() {
                        self.kick_for(tid);
                    }
                    at = next;
                }
            }
        }
    }

    /// Marks `tid` Ready, appends it to its run queue (an idle task has
    /// none) and asks a CPU to look (`kick_for`).
    fn enqueue(&mut self, tid: Tid) {
        self.enqueue_quiet(tid);
        self.kick_for(tid);
    }

    /// `enqueue` without the kick.
    fn enqueue_quiet(&mut self, tid: Tid) {
        let Some(t) = self.tasks.get_mut(tid) else {
            return;
        };
        t.info.state = State::Ready;
        if t.info.group != IDLE {
            let (prio, affinity) = (t.info.priority, t.info.affinity);
            self.run.push_back(&mut self.tasks, tid, prio, affinity);
        }
    }

    // ---- Blocking and waking ----

    /// Blocks the current task until a tick at or after `until_ns`, then
    /// it wakes with TimedOut. A deadline already past does not block.
    /// Idle never sleeps: None.
    pub fn sleep_current(&mut self, until_ns: u64) -> Option<Switch> {
        let me = self.current();
        if self.current_is_idle() {
            return None;
        }
        if !self.current_running() {
            return self.schedule();
        }
        if let Some(why) = self.interrupted(me) {
            self.set_wake(me, why);
            return None;
        }
        if until_ns <= self.now {
            self.set_wake(me, WakeReason::TimedOut);
            return None;
        }
        Some(self.block(Blocked::Sleep, Some(until_ns)))
    }

    /// A new, empty wait queue; NoMemory if its table cannot grow.
    pub fn new_queue(&mut self) -> Result<QueueId, SchedError> {
        self.queues.create()
    }

    /// Frees a wait queue, waking (Woken) everyone still on it, so no task
    /// is left blocked on a queue nobody can wake any more.
    pub fn free_queue(&mut self, q: QueueId) {
        self.wake_all(q);
        self.queues.remove(q);
    }

    /// Blocks the current task on `q`, and with a deadline until then at
    /// the latest (it then wakes with TimedOut). A deadline already past
    /// does not block: Ok(None) with wake = TimedOut.
    pub fn block_current(
        &mut self,
        q: QueueId,
        deadline_ns: Option<u64>,
    ) -> Result<Option<Switch>, SchedError> {
        self.block_current_tagged(q, deadline_ns, WaitTag::default())
    }

    /// [`Scheduler::block_current`], waiting for `tag` (see
    /// [`Scheduler::wake_tagged`]).
    pub fn block_current_tagged(
        &mut self,
        q: QueueId,
        deadline_ns: Option<u64>,
        tag: WaitTag,
    ) -> Result<Option<Switch>, SchedError> {
        let me = self.current();
        if self.current_is_idle() {
            return Err(SchedError::IdleTask);
        }
        if self.queues.get(q).is_none() {
            return Err(SchedError::NoSuchQueue);
        }
        if !self.current_running() {
            return Ok(self.schedule());
        }
        if let Some(why) = self.interrupted(me) {
            self.set_wake(me, why);
            return Ok(None);
        }
        if deadline_ns.is_some_and(|d| d <= self.now) {
            self.set_wake(me, WakeReason::TimedOut);
            return Ok(None);
        }
        if let Some(t) = self.tasks.get_mut(me) {
            t.tag = tag;
        }
        Ok(Some(self.block(Blocked::Queue(q), deadline_ns)))
    }

    /// Wakes the task that has waited longest on `q` (Woken): it becomes
    /// Ready. No switch; see should_preempt().
    pub fn wake_one(&mut self, q: QueueId) -> Option<Tid> {
        let tid = self.queues.get(q)?.head?;
        self.make_ready(tid, WakeReason::Woken);
        Some(tid)
    }

    /// Wakes everyone on `q`; returns how many.
    pub fn wake_all(&mut self, q: QueueId) -> usize {
        let mut n = 0;
        while self.wake_one(q).is_some() {
            n += 1;
        }
        n
    }

    /// Wakes (Woken), longest waiting first, at most `max` of the tasks on
    /// `q` whose tag has `key` and shares a bit with `bits`; returns how
    /// many. The others keep their places.
    pub fn wake_tagged(&mut self, q: QueueId, key: [u64; 2], bits: u32, max: usize) -> usize {
        let mut woken = 0;
        let mut at = self.queues.get(q).and_then(|l| l.head);
        while let Some(tid) = at {
            if woken >= max {
                break;
            }
            // Read before the wake unlinks it.
            at = self.tasks.link(tid, Chain::Queue).next;
            let tag = self.tasks.get(tid).map(|t| t.tag);
            if tag.is_some_and(|t| t.key == key && t.bits & bits != 0) {
                self.make_ready(tid, WakeReason::Woken);
                woken += 1;
            }
        }
        woken
    }

    /// Linux's futex requeue: of the tasks on `from` whose tag has `key`,
    /// longest waiting first, wakes (Woken) the first `wake`, then moves
    /// the next `requeue` to `to` with their key changed to `new_key`
    /// (their bits and deadlines stay). A moved task goes to the tail of
    /// `to`, behind every task already there, unless neither its queue nor
    /// its key changes (a requeue onto itself). Returns how many were woken
    /// or moved.
    pub fn requeue_tagged(
        &mut self,
        from: QueueId,
        key: [u64; 2],
        to: QueueId,
        new_key: [u64; 2],
        wake: usize,
        requeue: usize,
    ) -> Result<usize, SchedError> {
        if self.queues.get(from).is_none() || self.queues.get(to).is_none() {
            return Err(SchedError::NoSuchQueue);
        }
        let (mut woken, mut moved) = (0, 0);
        let mut at = self.queues.get(from).and_then(|l| l.head);
        while let Some(tid) = at {
            if woken >= wake && moved >= requeue {
                break;
            }
            at = self.tasks.link(tid, Chain::Queue).next;
            if self.tasks.get(tid).is_none_or(|t| t.tag.key != key) {
                continue;
            }
            if woken < wake {
                self.make_ready(tid, WakeReason::Woken);
                woken += 1;
                continue;
            }
            if from != to || key != new_key {
                // On the same queue the walk meets it again at the tail,
                // under its new key, and passes it by.
                if let Some(list) = self.queues.get_mut(from) {
                    self.tasks.unlink(list, tid, Chain::Queue);
                }
                if let Some(list) = self.queues.get_mut(to) {
                    self.tasks.push_back(list, tid, Chain::Queue);
                }
                self.set_state(tid, State::Blocked(Blocked::Queue(to)));
            }
            if let Some(t) = self.tasks.get_mut(tid) {
                t.tag.key = new_key;
            }
            moved += 1;
        }
        Ok(woken + moved)
    }

    /// Takes the running current task off the CPU into `why`, and runs the
    /// next one. Since the current task is in no run queue, the next is
    /// always another task.
    fn block(&mut self, why: Blocked, deadline: Option<u64>) -> Switch {
        let tid = self.current();
        self.set_state(tid, State::Blocked(why));
        if let Blocked::Queue(q) = why
            && let Some(list) = self.queues.get_mut(q)
        {
            self.tasks.push_back(list, tid, Chain::Queue);
        }
        if let Some(d) = deadline {
            self.add_timer(tid, d);
        }
        self.dispatch()
    }

    /// Puts `tid` on the timer list behind every (deadline, tid) below its
    /// own. Searched from the tail: later deadlines are the common case.
    fn add_timer(&mut self, tid: Tid, deadline: u64) {
        let Some(t) = self.tasks.get_mut(tid) else {
            return;
        };
        t.deadline = Some(deadline);
        let mut before = None;
        let mut at = self.timers.tail;
        while let Some(other) = at {
            let other_deadline = self.tasks.get(other).and_then(|t| t.deadline);
            if other_deadline.is_none_or(|d| (d, other) < (deadline, tid)) {
                break;
            }
            before = Some(other);
            at = self.tasks.link(other, Chain::Timer).prev;
        }
        self.tasks
            .insert_before(&mut self.timers, before, tid, Chain::Timer);
    }

    /// Takes `tid` out of every structure its state puts it in.
    fn unlink(&mut self, tid: Tid) {
        let Some(task) = self.tasks.get_mut(tid) else {
            return;
        };
        if task.deadline.take().is_some() {
            self.tasks.unlink(&mut self.timers, tid, Chain::Timer);
        }
        let Some(task) = self.tasks.get(tid) else {
            return;
        };
        match task.info.state {
            State::Ready if task.info.group != IDLE => {
                let (prio, affinity) = (task.info.priority, task.info.affinity);
                self.run.remove(&mut self.tasks, tid, prio, affinity);
            }
            State::Blocked(Blocked::Queue(q)) => {
                if let Some(list) = self.queues.get_mut(q) {
                    self.tasks.unlink(list, tid, Chain::Queue);
                }
                if let Some(t) = self.tasks.get_mut(tid) {
                    t.tag = WaitTag::default();
                }
            }
            _ => {}
        }
    }

    /// Moves a blocked task to the tail of its run queue. What `unlink`,
    /// `set_wake` and `enqueue` would do, with one lookup of the record
    /// for all of it: every wake comes here (`./run.sh bench`).
    fn make_ready(&mut self, tid: Tid, why: WakeReason) {
        let Some(t) = self.tasks.get_mut(tid) else {
            return;
        };
        let State::Blocked(blocked) = t.info.state else {
            return;
        };
        let timed = t.deadline.take().is_some();
        if let Blocked::Queue(_) = blocked {
            t.tag = WaitTag::default();
        }
        t.info.wake = why;
        t.info.state = State::Ready;
        let (prio, affinity, idle) = (t.info.priority, t.info.affinity, t.info.group == IDLE);
        if timed {
            self.tasks.unlink(&mut self.timers, tid, Chain::Timer);
        }
        if let Blocked::Queue(q) = blocked
            && let Some(list) = self.queues.get_mut(q)
        {
            self.tasks.unlink(list, tid, Chain::Queue);
        }
        if !idle {
            self.run.push_back(&mut self.tasks, tid, prio, affinity);
            self.kick_for(tid);
        }
    }

    // ---- Exit, kill, wait, reap ----

    /// The current task exits with `status`. Always a switch to another
    /// task, which the caller must carry out; the record stays until reaped.
    pub fn exit_current(&mut self, status: i64) -> Result<Switch, SchedError> {
        let me = self.current();
        if self.current_is_idle() {
            return Err(SchedError::IdleTask);
        }
        // Killed already: it keeps the status the killer gave.
        if self.current_running() {
            self.finish(me, status);
        }
        Ok(self.dispatch())
    }

    /// Kills `tid`: Exited(status), off every queue, its waiters woken,
    /// wake = Killed. Killing a zombie changes nothing. If `tid` is the
    /// current task the caller must call `schedule()` next; if it runs on
    /// another CPU, that CPU is kicked (it switches away when it looks).
    pub fn kill(&mut self, tid: Tid, status: i64) -> Result<(), SchedError> {
        if self.is_idle(tid) {
            return Err(SchedError::IdleTask);
        }
        match self.state(tid) {
            None => Err(SchedError::NoSuchTask),
            Some(State::Exited(_)) => Ok(()),
            Some(_) => {
                self.finish(tid, status);
                self.set_wake(tid, WakeReason::Killed);
                self.kick_running(tid);
                Ok(())
            }
        }
    }

    /// Asks `tid` to exit with `status` at its next boundary (see
    /// [`TaskInfo::kill_pending`]): a blocked task is woken (wake = Killed),
    /// a ready one stays ready, one running on another CPU has that CPU
    /// kicked (so its return to user mode comes now). The first request's
    /// status wins; a zombie is left alone.
    pub fn request_kill(&mut self, tid: Tid, status: i64) -> Result<(), SchedError> {
        if self.is_idle(tid) {
            return Err(SchedError::IdleTask);
        }
        let task = self.tasks.get_mut(tid).ok_or(SchedError::NoSuchTask)?;
        if matches!(task.info.state, State::Exited(_)) {
            return Ok(());
        }
        task.info.kill_pending.get_or_insert(status);
        self.make_ready(tid, WakeReason::Killed);
        self.kick_running(tid);
        Ok(())
    }

    /// The status a pending kill asks `tid` to exit with.
    pub fn kill_pending(&self, tid: Tid) -> Option<i64> {
        self.tasks.get(tid)?.info.kill_pending
    }

    /// Marks whether `tid` has a signal to take. Set, it wakes the task
    /// from any wait (wake = Interrupted), as a kill does, and keeps it
    /// from blocking until cleared; a ready or running task only notes it
    /// (one running on another CPU has that CPU kicked, as for a kill).
    /// Returns the previous value.
    pub fn set_signal_pending(&mut self, tid: Tid, pending: bool) -> bool {
        let Some(task) = self.tasks.get_mut(tid) else {
            return false;
        };
        if matches!(task.info.state, State::Exited(_)) {
            return false;
        }
        let before = core::mem::replace(&mut task.info.signal_pending, pending);
        if pending {
            self.make_ready(tid, WakeReason::Interrupted);
            self.kick_running(tid);
        }
        before
    }

    pub fn signal_pending(&self, tid: Tid) -> bool {
        self.tasks.get(tid).is_some_and(|t| t.info.signal_pending)
    }

    /// Why `tid` may not block now, if it may not: a kill or a signal.
    fn interrupted(&self, tid: Tid) -> Option<WakeReason> {
        let info = &self.tasks.get(tid)?.info;
        if info.kill_pending.is_some() {
            Some(WakeReason::Killed)
        } else if info.signal_pending {
            Some(WakeReason::Interrupted)
        } else {
            None
        }
    }

    /// Turns a live task into a zombie and wakes whoever waits for it, in
    /// tid order.
    fn finish(&mut self, tid: Tid, status: i64) {
        self.unlink(tid);
        self.set_state(tid, State::Exited(status));
        if self.tasks.get(tid).is_some_and(|t| t.info.detached) {
            self.tasks.push_back(&mut self.zombies, tid, Chain::Queue);
        }
        if let Some(g) = self.group_of(tid).and_then(|pid| self.tasks.group_mut(pid)) {
            g.live = g.live.saturating_sub(1);
        }
        for w in 0..self.tasks.tid_end() {
            if self.state(w) == Some(State::Blocked(Blocked::Wait(tid))) {
                self.make_ready(w, WakeReason::Woken);
            }
        }
    }

    /// The current task waits for `target`, a task of its own group. If the
    /// target has exited its status and payload are returned and its record
    /// reaped; otherwise the current task blocks until the exit, and then
    /// calls `wait_for` again to collect.
    pub fn wait_for(&mut self, target: Tid) -> Result<WaitResult<X>, SchedError> {
        let me = self.current();
        if self.current_is_idle() {
            return Err(SchedError::IdleTask);
        }
        if !self.current_running() {
            return Ok(WaitResult::Blocked(self.schedule()));
        }
        if target == me {
            return Err(SchedError::WouldDeadlock);
        }
        if self.interrupted(me).is_some() {
            return Err(SchedError::Interrupted);
        }
        let state = self.state(target).ok_or(SchedError::NoSuchTask)?;
        if self.group_of(target) != self.group_of(me) {
            return Err(SchedError::NotInGroup);
        }
        if self.tasks.get(target).is_some_and(|t| t.info.detached) {
            return Err(SchedError::Detached);
        }
        if let State::Exited(_) = state {
            let (status, ext) = self.reap(target)?;
            return Ok(WaitResult::Exited(status, ext));
        }
        if self.waits_for_me(target) {
            return Err(SchedError::WouldDeadlock);
        }
        Ok(WaitResult::Blocked(Some(
            self.block(Blocked::Wait(target), None),
        )))
    }

    /// Whether `target` waits, directly or through a chain of waiters, for
    /// the current task: waiting for it would then never end.
    fn waits_for_me(&self, target: Tid) -> bool {
        let (mut t, me) = (target, self.current());
        // Chains are acyclic (this check keeps them so), but bound the walk
        // anyway rather than trust it.
        for _ in 0..self.tasks.len {
            match self.state(t) {
                Some(State::Blocked(Blocked::Wait(next))) if next == me => return true,
                Some(State::Blocked(Blocked::Wait(next))) => t = next,
                _ => return false,
            }
        }
        false
    }

    /// Removes an exited task's record and returns its status and payload.
    /// A task killed while current (on any CPU) is refused (NotExited)
    /// until switched away from: the caller would free the stack it still
    /// runs on. (Once switched away from, its CPU may still be leaving
    /// that stack: the caller waits for the machine's on-CPU mark before
    /// freeing it.)
    pub fn reap(&mut self, tid: Tid) -> Result<(i64, X), SchedError> {
        if self.is_idle(tid) {
            return Err(SchedError::IdleTask);
        }
        let Some(state) = self.state(tid) else {
            return Err(SchedError::NoSuchTask);
        };
        let State::Exited(status) = state else {
            return Err(SchedError::NotExited);
        };
        if self.cpu_of(tid).is_some() {
            return Err(SchedError::NotExited);
        }
        if self.tasks.get(tid).is_some_and(|t| t.info.detached) {
            self.tasks.unlink(&mut self.zombies, tid, Chain::Queue);
        }
        let task = self.tasks.remove(tid).ok_or(SchedError::NoSuchTask)?;
        if let Some(g) = self.tasks.group_mut(task.info.group) {
            g.records = g.records.saturating_sub(1);
        }
        Ok((status, task.ext))
    }

    /// Marks `tid` detached: nobody may wait for it, and once it has
    /// exited [`Scheduler::reap_detached`] gives its record up.
    pub fn detach(&mut self, tid: Tid) -> Result<(), SchedError> {
        if self.is_idle(tid) {
            return Err(SchedError::IdleTask);
        }
        let task = self.tasks.get_mut(tid).ok_or(SchedError::NoSuchTask)?;
        if task.info.detached {
            return Ok(());
        }
        task.info.detached = true;
        if matches!(task.info.state, State::Exited(_)) {
            self.tasks.push_back(&mut self.zombies, tid, Chain::Queue);
        }
        Ok(())
    }

    /// Removes the record of the detached task that exited first, unless
    /// it is still current on a CPU (on its stack); returns its tid,
    /// status and payload, for the caller to free.
    pub fn reap_detached(&mut self) -> Option<(Tid, i64, X)> {
        let mut at = self.zombies.head;
        while let Some(tid) = at {
            if self.cpu_of(tid).is_none() {
                let (status, ext) = self.reap(tid).ok()?;
                return Some((tid, status, ext));
            }
            at = self.tasks.link(tid, Chain::Queue).next;
        }
        None
    }

    // ---- Small accessors ----

    fn state(&self, tid: Tid) -> Option<State> {
        self.tasks.get(tid).map(|t| t.info.state)
    }

    fn group_of(&self, tid: Tid) -> Option<Pid> {
        self.tasks.get(tid).map(|t| t.info.group)
    }

    fn set_state(&mut self, tid: Tid, state: State) {
        if let Some(t) = self.tasks.get_mut(tid) {
            t.info.state = state;
        }
    }

    fn set_wake(&mut self, tid: Tid, why: WakeReason) {
        if let Some(t) = self.tasks.get_mut(tid) {
            t.info.wake = why;
        }
    }

    // ---- Consistency check ----

    /// Verifies every invariant of the module doc; Err describes the first
    /// violation found. For tests and debugging: it walks everything, and
    /// allocates.
    pub fn check(&self) -> Result<(), String> {
        self.check_table()?;
        self.check_cpus()?;
        self.check_run_queues()?;
        self.check_wait_queues()?;
        self.check_timers()?;
        self.check_unused_links()?;
        self.check_waits()?;
        self.check_zombies()?;
        self.check_groups()
    }

    /// The tid entries and the record slots agree one to one, and the
    /// slots without a record are exactly the chain of free ones.
    fn check_table(&self) -> Result<(), String> {
        let t = &self.tasks;
        if t.len > self.max_tasks as usize {
            return Err(format!("{} records over the bound", t.len));
        }
        if t.tids.len() > self.max_tasks as usize {
            return Err(format!(
                "tid entries up to {}, not below {}",
                t.tids.len(),
                self.max_tasks
            ));
        }
        let mut owner: Vec<Option<Tid>> = alloc::vec![None; t.slots.len()];
        for (tid, e) in t.tids.iter().enumerate() {
            let Some(slot) = e.slot else { continue };
            match t.slots.get(slot as usize) {
                Some(Slot::Used(task)) if task.info.tid as usize == tid => {}
                Some(Slot::Used(task)) => {
                    return Err(format!("record of tid {tid} says tid {}", task.info.tid));
                }
                _ => {
                    return Err(format!(
                        "tid {tid} names slot {slot}, which holds no record"
                    ));
                }
            }
            if let Some(other) = owner[slot as usize].replace(tid as Tid) {
                return Err(format!("tids {other} and {tid} share slot {slot}"));
            }
        }
        let owned = owner.iter().filter(|o| o.is_some()).count();
        if owned != t.len {
            return Err(format!("{owned} records named by tids, {} counted", t.len));
        }
        let mut free = alloc::vec![false; t.slots.len()];
        let mut at = t.free;
        while let Some(slot) = at {
            let Some(Slot::Free(next)) = t.slots.get(slot as usize) else {
                return Err(format!("free chain reaches slot {slot}, which is not free"));
            };
            if core::mem::replace(&mut free[slot as usize], true) {
                return Err(format!("free chain runs through slot {slot} twice"));
            }
            at = *next;
        }
        let chained = free.iter().filter(|&&f| f).count();
        if chained + t.len != t.slots.len() {
            return Err(format!(
                "{} slots, {} records, {chained} free: some are lost",
                t.slots.len(),
                t.len
            ));
        }
        Ok(())
    }

    /// Each CPU has its own idle task, pinned to it, Running exactly while
    /// current, and group 0 holds those alone; each CPU's current task
    /// names that CPU, and is Running or was killed there; every Running
    /// task is some CPU's current one. So each task runs on at most one
    /// CPU and each CPU runs exactly one task. The CPU masks agree.
    fn check_cpus(&self) -> Result<(), String> {
        let n = self.cpus.len();
        if n == 0 || n > MAX_CPUS || self.acting >= n {
            return Err(format!("{n} CPUs, acting for {}", self.acting));
        }
        let online = self.online();
        if self.tasks.group(IDLE)
            != (Group {
                records: n as u32,
                live: n as u32,
            })
        {
            return Err(format!(
                "group 0 is {:?} with {n} CPUs",
                self.tasks.group(IDLE)
            ));
        }
        if self.tasks.get(IDLE).is_none() || self.cpus[0].idle != IDLE {
            return Err("CPU 0's idle task is not tid 0".to_string());
        }
        for (c, cpu) in self.cpus.iter().enumerate() {
            let idle = self
                .tasks
                .get(cpu.idle)
                .ok_or(format!("CPU {c}'s idle task {} is gone", cpu.idle))?;
            let want = if cpu.current == cpu.idle {
                State::Running
            } else {
                State::Ready
            };
            if idle.info.group != IDLE
                || idle.info.priority != Priority::IDLE
                || idle.info.affinity != CpuMask::one(c)
                || idle.info.state != want
            {
                return Err(format!("CPU {c}'s idle task is {:?}", idle.info));
            }
            if self.cpus[..c].iter().any(|o| o.idle == cpu.idle) {
                return Err(format!("idle task {} serves two CPUs", cpu.idle));
            }
            let cur = self
                .tasks
                .get(cpu.current)
                .ok_or(format!("CPU {c}'s current {} has no record", cpu.current))?;
            let killed = matches!(cur.info.state, State::Exited(_)) && cur.info.group != IDLE;
            if !(cur.info.state == State::Running || killed) {
                return Err(format!("CPU {c}'s current is {:?}", cur.info));
            }
            if self.cpus[..c].iter().any(|o| o.current == cpu.current) {
                return Err(format!("two CPUs run {}", cpu.current));
            }
            if cur.info.group == IDLE && cpu.current != cpu.idle {
                return Err(format!("CPU {c} runs another CPU's idle task"));
            }
            // One CPU keeps none.
            if self.idle_cpus.contains(c) != (n > 1 && cpu.current == cpu.idle) {
                return Err(format!("idle mask {:?} wrong for CPU {c}", self.idle_cpus));
            }
            if cpu.stats.idle_ticks > cpu.stats.ticks {
                return Err(format!("CPU {c}: {:?}", cpu.stats));
            }
        }
        for t in self.tasks.iter() {
            let tid = t.info.tid;
            if t.info.state == State::Running && self.cpu_of(tid).is_none() {
                return Err(format!("{tid} is Running on no CPU"));
            }
            if t.info.group == IDLE && !self.cpus.iter().any(|c| c.idle == tid) {
                return Err(format!("{tid} is in group 0 but no CPU's idle task"));
            }
            if t.info.affinity.and(online).is_empty() {
                return Err(format!("{tid} may run on no CPU: {:?}", t.info.affinity));
            }
        }
        let extra = self
            .idle_cpus
            .or(self.kicked)
            .or(self.outbox)
            .without(online);
        if !extra.is_empty()
            || !self.outbox.without(self.kicked).is_empty()
            || self.outbox.contains(self.acting)
        {
            return Err(format!(
                "masks: idle {:?} kicked {:?} outbox {:?}, acting {}",
                self.idle_cpus, self.kicked, self.outbox, self.acting
            ));
        }
        Ok(())
    }

    /// Walks `list` through `chain`, checking that every link back matches
    /// the link forward and that the tail is where the walk ends; returns
    /// the tids in order.
    fn check_list(&self, list: &List, chain: Chain) -> Result<Vec<Tid>, String> {
        let mut tids = Vec::new();
        let mut prev = None;
        let mut at = list.head;
        while let Some(tid) = at {
            if tids.len() >= self.tasks.len {
                return Err(format!("cycle through {tid}"));
            }
            let t = self
                .tasks
                .get(tid)
                .ok_or(format!("{tid} is on it without a record"))?;
            let link = t.link(chain);
            if link.prev != prev {
                return Err(format!("{tid} links back to {:?}, not {prev:?}", link.prev));
            }
            tids.push(tid);
            prev = Some(tid);
            at = link.next;
        }
        if list.tail != prev {
            return Err(format!("ends at {prev:?}, tail says {:?}", list.tail));
        }
        Ok(tids)
    }

    fn check_run_queues(&self) -> Result<(), String> {
        let mut queued = BTreeSet::new();
        for (p, list) in self.run.lists.iter().enumerate() {
            let tids = self
                .check_list(list, Chain::Queue)
                .map_err(|e| format!("run queue {p}: {e}"))?;
            let busy = self.run.busy[p / 64] & (1 << (p % 64)) != 0;
            if busy == tids.is_empty() {
                return Err(format!("run queue {p} holds {tids:?}, bitmap says {busy}"));
            }
            for tid in tids {
                if self.is_idle(tid) || !queued.insert(tid) {
                    return Err(format!("{tid} queued twice, or idle queued"));
                }
                let t = self.task(tid).ok_or(format!("queued {tid} gone"))?;
                if t.state != State::Ready || usize::from(t.priority.0) != p {
                    return Err(format!("{tid} on run queue {p} is {t:?}"));
                }
            }
        }
        let narrow = queued
            .iter()
            .filter(|&&t| self.task(t).is_some_and(|t| t.affinity != CpuMask::ALL))
            .count();
        if narrow != self.run.narrow {
            return Err(format!(
                "{narrow} queued tasks with an affinity, {} counted",
                self.run.narrow
            ));
        }
        if queued.len() != self.run.len {
            return Err(format!(
                "{} ready tasks queued, {} counted",
                queued.len(),
                self.run.len
            ));
        }
        for tid in self.tids_where(|s| s == State::Ready) {
            if !self.is_idle(tid) && !queued.contains(&tid) {
                return Err(format!("{tid} is Ready but on no run queue"));
            }
        }
        Ok(())
    }

    fn check_wait_queues(&self) -> Result<(), String> {
        let mut queued = BTreeSet::new();
        let mut free_slots = 0;
        for (slot, (generation, entry)) in self.queues.slots.iter().enumerate() {
            let QueueSlot::Live(list) = entry else {
                free_slots += 1;
                continue;
            };
            let id = QueueId {
                slot: slot as u32,
                generation: *generation,
            };
            let tids = self
                .check_list(list, Chain::Queue)
                .map_err(|e| format!("wait queue {slot}: {e}"))?;
            let want = State::Blocked(Blocked::Queue(id));
            for tid in tids {
                if !queued.insert(tid) {
                    return Err(format!("{tid} on wait queues twice"));
                }
                if self.state(tid) != Some(want) {
                    return Err(format!(
                        "{tid} on wait queue {slot} is {:?}",
                        self.state(tid)
                    ));
                }
            }
        }
        for tid in self.tids_where(|s| matches!(s, State::Blocked(Blocked::Queue(_)))) {
            if !queued.contains(&tid) {
                return Err(format!("{tid} is blocked on a queue but not on it"));
            }
        }
        let mut seen = BTreeSet::new();
        let mut at = self.queues.free;
        while let Some(slot) = at {
            let Some((_, QueueSlot::Free(next))) = self.queues.slots.get(slot as usize) else {
                return Err(format!(
                    "free queue chain reaches slot {slot}, which is not free"
                ));
            };
            if !seen.insert(slot) {
                return Err(format!("free queue chain runs through slot {slot} twice"));
            }
            at = *next;
        }
        if seen.len() != free_slots {
            return Err(format!(
                "{free_slots} free queue slots, {} chained",
                seen.len()
            ));
        }
        Ok(())
    }

    fn check_timers(&self) -> Result<(), String> {
        let tids = self
            .check_list(&self.timers, Chain::Timer)
            .map_err(|e| format!("timer list: {e}"))?;
        let mut last = None;
        for &tid in &tids {
            let d = self
                .tasks
                .get(tid)
                .and_then(|t| t.deadline)
                .ok_or(format!("{tid} on the timer list without a deadline"))?;
            if last.is_some_and(|l| l >= (d, tid)) {
                return Err(format!("timer ({d}, {tid}) after {last:?}"));
            }
            if d <= self.now {
                return Err(format!("timer of {tid} at {d} overdue at {}", self.now));
            }
            last = Some((d, tid));
        }
        for t in self.tasks.iter() {
            let tid = t.info.tid;
            let timed = match t.info.state {
                State::Blocked(Blocked::Sleep) => t.deadline.is_some(),
                State::Blocked(Blocked::Queue(_)) => true,
                _ => t.deadline.is_none(),
            };
            let listed = t.deadline.is_none() || tids.contains(&tid);
            if !timed || !listed {
                return Err(format!(
                    "{tid} is {:?} with deadline {:?}",
                    t.info.state, t.deadline
                ));
            }
        }
        Ok(())
    }

    /// A task on no list has empty links, so that no stale link can splice
    /// a list into another.
    fn check_unused_links(&self) -> Result<(), String> {
        for t in self.tasks.iter() {
            let queued = match t.info.state {
                State::Ready => t.info.group != IDLE,
                State::Blocked(Blocked::Queue(_)) => true,
                State::Exited(_) => t.info.detached,
                _ => false,
            };
            if !queued && t.queue != Link::default() {
                return Err(format!(
                    "{} is on no queue but linked {:?}",
                    t.info.tid, t.queue
                ));
            }
            let waiting = matches!(t.info.state, State::Blocked(Blocked::Queue(_)));
            if !waiting && t.tag != WaitTag::default() {
                return Err(format!("{} is on no wait queue but tagged", t.info.tid));
            }
            if t.deadline.is_none() && t.timer != Link::default() {
                return Err(format!(
                    "{} has no timer but linked {:?}",
                    t.info.tid, t.timer
                ));
            }
        }
        Ok(())
    }

    /// Wait targets exist, are alive, in the waiter's group, and no chain
    /// of waits comes back to where it started.
    fn check_waits(&self) -> Result<(), String> {
        for t in self.tasks.iter() {
            let tid = t.info.tid;
            let State::Blocked(Blocked::Wait(target)) = t.info.state else {
                continue;
            };
            let tt = self
                .tasks
                .get(target)
                .ok_or(format!("{tid} waits for missing {target}"))?;
            if matches!(tt.info.state, State::Exited(_)) || tt.info.group != t.info.group {
                return Err(format!("{tid} waits for {target}, which is {:?}", tt.info));
            }
            let mut at = target;
            for _ in 0..=self.tasks.len {
                match self.state(at) {
                    Some(State::Blocked(Blocked::Wait(next))) if next == tid => {
                        return Err(format!("wait cycle through {tid}"));
                    }
                    Some(State::Blocked(Blocked::Wait(next))) => at = next,
                    _ => break,
                }
            }
        }
        Ok(())
    }

    /// The zombie list holds exactly the detached tasks that have exited.
    fn check_zombies(&self) -> Result<(), String> {
        let tids = self
            .check_list(&self.zombies, Chain::Queue)
            .map_err(|e| format!("zombie list: {e}"))?;
        let want: Vec<Tid> = self
            .tasks
            .iter()
            .filter(|t| t.info.detached && matches!(t.info.state, State::Exited(_)))
            .map(|t| t.info.tid)
            .collect();
        let mut listed = tids.clone();
        listed.sort_unstable();
        if listed != want {
            return Err(format!(
                "zombie list {tids:?}, detached exited tasks {want:?}"
            ));
        }
        Ok(())
    }

    fn check_groups(&self) -> Result<(), String> {
        let mut counted: BTreeMap<Pid, Group> = BTreeMap::new();
        for t in self.tasks.iter() {
            let g = counted.entry(t.info.group).or_default();
            g.records += 1;
            if !matches!(t.info.state, State::Exited(_)) {
                g.live += 1;
            }
        }
        let kept: BTreeMap<Pid, Group> = self.groups().collect();
        if counted != kept {
            return Err(format!("group counts {kept:?}, records say {counted:?}"));
        }
        Ok(())
    }

    /// Every group kept, by pid: those with records, and any count left
    /// behind where there should be none.
    fn groups(&self) -> impl Iterator<Item = (Pid, Group)> + '_ {
        self.tasks
            .tids
            .iter()
            .enumerate()
            .filter(|(_, e)| e.group != Group::default())
            .map(|(pid, e)| (pid as Pid, e.group))
    }

    fn tids_where(&self, f: impl Fn(State) -> bool) -> Vec<Tid> {
        self.tasks
            .iter()
            .filter(|t| f(t.info.state))
            .map(|t| t.info.tid)
            .collect()
    }
}

/// "idle/N", CPU N's idle task's name (CPU 0's is plain "idle").
fn idle_name(cpu: usize) -> TaskName {
    let mut name = TaskName::new("idle/");
    let mut digits = [0u8; 20];
    let (mut n, mut at) = (cpu, digits.len());
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[at..] {
        let len = usize::from(name.len);
        if len < TaskName::MAX {
            name.bytes[len] = d;
            name.len += 1;
        }
    }
    name
}

#[cfg(test)]
mod tests;
