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
//! Tid 0 is the idle task: it always exists, is always ready, never blocks
//! or exits, and runs only when no other task is ready. Tid 1 is the boot
//! thread, running when the scheduler is created.
//!
//! An exited task keeps its record (a zombie) until it is reaped, so that a
//! waiter can still collect its status. Tids are not reused while a record
//! or a task group carries them, so a stale tid never names a new task.
//!
//! # Where a task is kept
//!
//! * Ready tasks (but idle) are in exactly one run queue, the one of their
//!   priority. Idle is in none: it is the fallback when all are empty.
//! * `Blocked(Queue(q))` tasks are on wait queue `q`, FIFO.
//! * `Blocked(Sleep)` tasks, and queue waiters that gave a deadline, are
//!   in the timer set, ordered by deadline, so a tick finds the expired
//!   ones without looking at anyone else.
//! * `Blocked(Wait(t))` tasks are in no structure: the state itself says
//!   whom they wait for, and an exit looks for its waiters. Exits are rare
//!   and the table is small, so a scan is cheaper than keeping a list right.
//! * Running and Exited tasks are in none.
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

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

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

/// A wait queue, made by [`Scheduler::new_queue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueId(u32);

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
}

/// The outcome of [`Scheduler::wait_for`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitResult {
    /// The target had exited; here is its status, and its record is gone.
    Exited(i64),
    /// The current task now waits; switch as told, then call `wait_for`
    /// again once woken.
    Blocked(Option<Switch>),
}

/// What `ps` shows about a task.
#[derive(Debug, Clone)]
pub struct TaskInfo {
    pub tid: Tid,
    pub group: Pid,
    pub name: String,
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
}

/// A task's record: what `ps` sees plus the scheduler's bookkeeping.
struct Task {
    info: TaskInfo,
    /// Set while in the timer set (sleeping, or waiting with a timeout).
    deadline: Option<u64>,
    /// Ticks used of the current time slice.
    slice_used: u64,
}

/// Record counts of one task group.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Group {
    /// Records, zombies included; the pid stays taken while this is > 0.
    records: usize,
    /// Tasks not Exited.
    live: usize,
}

pub struct Scheduler {
    tasks: BTreeMap<Tid, Task>,
    groups: BTreeMap<Pid, Group>,
    /// One FIFO per priority; empty ones are removed, so the last entry is
    /// always the best ready priority.
    run: BTreeMap<Priority, VecDeque<Tid>>,
    /// Wait queues by id.
    queues: BTreeMap<u32, VecDeque<Tid>>,
    /// (deadline, tid) of every task blocked with a deadline.
    timers: BTreeSet<(u64, Tid)>,
    current: Tid,
    time_slice: u64,
    /// The latest time a tick brought.
    now: u64,
    /// Where the cyclic tid search starts.
    next_tid: Tid,
    next_queue: u32,
    max_tasks: u32,
}

impl Scheduler {
    /// Creates the idle task (tid 0) and the boot thread (tid 1, "main",
    /// NORMAL, its own group 1), which is current. `time_slice` is in ticks.
    pub fn new(time_slice: u64) -> Self {
        Self::with_max_tasks(time_slice, MAX_TASKS)
    }

    /// Like [`Scheduler::new`] with another bound on records (at least 2:
    /// idle and the boot thread); tids stay below it.
    pub fn with_max_tasks(time_slice: u64, max_tasks: u32) -> Self {
        let mut s = Scheduler {
            tasks: BTreeMap::new(),
            groups: BTreeMap::new(),
            run: BTreeMap::new(),
            queues: BTreeMap::new(),
            timers: BTreeSet::new(),
            current: BOOT,
            time_slice,
            now: 0,
            next_tid: BOOT + 1,
            next_queue: 0,
            max_tasks: max_tasks.max(2),
        };
        s.insert(IDLE, "idle", IDLE, Priority::IDLE, false);
        s.insert(BOOT, "main", BOOT, Priority::NORMAL, false);
        s.set_state(BOOT, State::Running);
        s
    }

    pub fn current(&self) -> Tid {
        self.current
    }

    pub fn task(&self, tid: Tid) -> Option<&TaskInfo> {
        self.tasks.get(&tid).map(|t| &t.info)
    }

    /// All records in tid order, zombies included.
    pub fn tasks(&self) -> impl Iterator<Item = &TaskInfo> {
        self.tasks.values().map(|t| &t.info)
    }

    /// Tasks of group `pid` that have not exited.
    pub fn live_in_group(&self, pid: Pid) -> usize {
        self.groups.get(&pid).map_or(0, |g| g.live)
    }

    /// (records, ready tasks waiting in run queues). Idle is a record but
    /// is not counted as ready: it always is.
    pub fn counts(&self) -> (usize, usize) {
        let ready = self.run.values().map(VecDeque::len).sum();
        (self.tasks.len(), ready)
    }

    // ---- Creating tasks ----

    /// A new Ready task at the tail of its priority's run queue, in group
    /// `group` (which must have a live task) or, with None, in a new group
    /// whose pid is the new tid.
    pub fn spawn(
        &mut self,
        name: &str,
        group: Option<Pid>,
        priority: Priority,
        user: bool,
    ) -> Result<Tid, SchedError> {
        if let Some(pid) = group {
            self.check_group_open(pid)?;
        }
        let tid = self.alloc_tid().ok_or(SchedError::TooManyTasks)?;
        self.insert(tid, name, group.unwrap_or(tid), priority, user);
        self.enqueue(tid);
        Ok(tid)
    }

    /// Threads may only join a group that still has a live thread: a group
    /// of zombies is being torn down.
    fn check_group_open(&self, pid: Pid) -> Result<(), SchedError> {
        if pid == IDLE {
            return Err(SchedError::IdleTask);
        }
        match self.groups.get(&pid) {
            Some(g) if g.live > 0 => Ok(()),
            _ => Err(SchedError::NoSuchTask),
        }
    }

    /// The next tid, searching cyclically from the last one handed out, that
    /// names neither a record nor a group: reusing a group's pid while the
    /// group lives would put a stranger in charge of it.
    fn alloc_tid(&mut self) -> Option<Tid> {
        if self.tasks.len() >= self.max_tasks as usize {
            return None;
        }
        for _ in 1..self.max_tasks {
            let tid = if self.next_tid >= self.max_tasks {
                1
            } else {
                self.next_tid
            };
            self.next_tid = tid + 1;
            if !self.tasks.contains_key(&tid) && !self.groups.contains_key(&tid) {
                return Some(tid);
            }
        }
        None
    }

    /// Adds a record in state Ready (but on no queue yet).
    fn insert(&mut self, tid: Tid, name: &str, group: Pid, priority: Priority, user: bool) {
        let info = TaskInfo {
            tid,
            group,
            name: name.to_string(),
            priority,
            state: State::Ready,
            cpu_ticks: 0,
            user,
            wake: WakeReason::Woken,
            kill_pending: None,
        };
        let task = Task {
            info,
            deadline: None,
            slice_used: 0,
        };
        self.tasks.insert(tid, task);
        let g = self.groups.entry(group).or_default();
        g.records += 1;
        g.live += 1;
    }

    // ---- Time and preemption ----

    /// A timer tick at `now_ns`: charges it to the current task, wakes the
    /// tasks whose deadline is <= now (TimedOut), and says whether the
    /// current task should be preempted. It does not switch.
    pub fn tick(&mut self, now_ns: u64) -> bool {
        // A clock going backwards must not un-expire anything.
        self.now = self.now.max(now_ns);
        if let Some(t) = self.tasks.get_mut(&self.current) {
            t.info.cpu_ticks = t.info.cpu_ticks.saturating_add(1);
            t.slice_used = t.slice_used.saturating_add(1);
        }
        self.expire_timers();
        self.should_preempt() || (self.slice_over() && self.equal_ready())
    }

    fn expire_timers(&mut self) {
        while self.timers.first().is_some_and(|&(d, _)| d <= self.now) {
            if let Some((_, tid)) = self.timers.pop_first() {
                self.make_ready(tid, WakeReason::TimedOut);
            }
        }
    }

    /// Whether a ready task is more important than the current one: then
    /// the caller should call `schedule()` (e.g. after a wake). Any ready
    /// task beats idle, and anything beats a current task that was killed.
    pub fn should_preempt(&self) -> bool {
        if !self.current_running() {
            return true;
        }
        match (self.best_ready(), self.current_priority()) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(best), Some(cur)) => best > cur,
        }
    }

    /// The current task's priority, or None for idle, which ranks below
    /// every other task whatever their priority.
    fn current_priority(&self) -> Option<Priority> {
        if self.current == IDLE {
            return None;
        }
        self.tasks.get(&self.current).map(|t| t.info.priority)
    }

    fn slice_over(&self) -> bool {
        self.tasks
            .get(&self.current)
            .is_some_and(|t| t.slice_used >= self.time_slice)
    }

    /// A ready task of at least the current priority.
    fn equal_ready(&self) -> bool {
        match (self.best_ready(), self.current_priority()) {
            (Some(best), Some(cur)) => best >= cur,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    fn best_ready(&self) -> Option<Priority> {
        self.run.last_key_value().map(|(p, _)| *p)
    }

    fn current_running(&self) -> bool {
        self.state(self.current) == Some(State::Running)
    }

    // ---- Choosing the next task ----

    /// Puts the current task, if still running, at the tail of its run
    /// queue and runs the head of the best non-empty one (idle if none).
    /// Some(Switch) when that is another task.
    pub fn schedule(&mut self) -> Option<Switch> {
        if self.current_running() {
            self.enqueue(self.current);
        }
        let switch = self.dispatch();
        (switch.from != switch.to).then_some(switch)
    }

    /// The yield system call. Because `schedule()` already sends the
    /// current task behind its equals, this is the same decision; it is a
    /// separate entry point so the policy for yields can change alone.
    pub fn yield_now(&mut self) -> Option<Switch> {
        self.schedule()
    }

    /// Makes the best ready task current. The current task must already
    /// be requeued or off the CPU for good (blocked, exited): then a
    /// Switch with `from == to` means it was simply picked again.
    fn dispatch(&mut self) -> Switch {
        let from = self.current;
        let to = self.pop_ready().unwrap_or(IDLE);
        if let Some(t) = self.tasks.get_mut(&to) {
            t.info.state = State::Running;
            if to != from {
                t.slice_used = 0;
            }
        }
        self.current = to;
        Switch { from, to }
    }

    fn pop_ready(&mut self) -> Option<Tid> {
        let mut queue = self.run.last_entry()?;
        let tid = queue.get_mut().pop_front();
        if queue.get().is_empty() {
            queue.remove();
        }
        tid
    }

    /// Marks `tid` Ready and appends it to its run queue (idle has none).
    fn enqueue(&mut self, tid: Tid) {
        self.set_state(tid, State::Ready);
        if tid == IDLE {
            return;
        }
        if let Some(t) = self.tasks.get(&tid) {
            self.run.entry(t.info.priority).or_default().push_back(tid);
        }
    }

    // ---- Blocking and waking ----

    /// Blocks the current task until a tick at or after `until_ns`, then
    /// it wakes with TimedOut. A deadline already past does not block.
    /// Idle never sleeps: None.
    pub fn sleep_current(&mut self, until_ns: u64) -> Option<Switch> {
        if self.current == IDLE {
            return None;
        }
        if !self.current_running() {
            return self.schedule();
        }
        if self.kill_pending(self.current).is_some() {
            self.set_wake(self.current, WakeReason::Killed);
            return None;
        }
        if until_ns <= self.now {
            self.set_wake(self.current, WakeReason::TimedOut);
            return None;
        }
        Some(self.block(Blocked::Sleep, Some(until_ns)))
    }

    /// A new, empty wait queue.
    pub fn new_queue(&mut self) -> QueueId {
        // Skip ids still in use once the counter wraps; 2^32 live queues
        // cannot fit in memory, so a free id exists.
        while self.queues.contains_key(&self.next_queue) {
            self.next_queue = self.next_queue.wrapping_add(1);
        }
        let id = self.next_queue;
        self.next_queue = self.next_queue.wrapping_add(1);
        self.queues.insert(id, VecDeque::new());
        QueueId(id)
    }

    /// Frees a wait queue, waking (Woken) everyone still on it, so no task
    /// is left blocked on a queue nobody can wake any more.
    pub fn free_queue(&mut self, q: QueueId) {
        self.wake_all(q);
        self.queues.remove(&q.0);
    }

    /// Blocks the current task on `q`, and with a deadline until then at
    /// the latest (it then wakes with TimedOut). A deadline already past
    /// does not block: Ok(None) with wake = TimedOut.
    pub fn block_current(
        &mut self,
        q: QueueId,
        deadline_ns: Option<u64>,
    ) -> Result<Option<Switch>, SchedError> {
        if self.current == IDLE {
            return Err(SchedError::IdleTask);
        }
        if !self.queues.contains_key(&q.0) {
            return Err(SchedError::NoSuchQueue);
        }
        if !self.current_running() {
            return Ok(self.schedule());
        }
        if self.kill_pending(self.current).is_some() {
            self.set_wake(self.current, WakeReason::Killed);
            return Ok(None);
        }
        if deadline_ns.is_some_and(|d| d <= self.now) {
            self.set_wake(self.current, WakeReason::TimedOut);
            return Ok(None);
        }
        Ok(Some(self.block(Blocked::Queue(q), deadline_ns)))
    }

    /// Wakes the task that has waited longest on `q` (Woken): it becomes
    /// Ready. No switch; see should_preempt().
    pub fn wake_one(&mut self, q: QueueId) -> Option<Tid> {
        let tid = *self.queues.get(&q.0)?.front()?;
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

    /// Takes the running current task off the CPU into `why`, and runs the
    /// next one. Since the current task is in no run queue, the next is
    /// always another task.
    fn block(&mut self, why: Blocked, deadline: Option<u64>) -> Switch {
        let tid = self.current;
        self.set_state(tid, State::Blocked(why));
        if let Blocked::Queue(q) = why
            && let Some(queue) = self.queues.get_mut(&q.0)
        {
            queue.push_back(tid);
        }
        if let Some(d) = deadline {
            if let Some(t) = self.tasks.get_mut(&tid) {
                t.deadline = Some(d);
            }
            self.timers.insert((d, tid));
        }
        self.dispatch()
    }

    /// Takes `tid` out of every structure its state puts it in.
    fn unlink(&mut self, tid: Tid) {
        let Some(task) = self.tasks.get_mut(&tid) else {
            return;
        };
        if let Some(d) = task.deadline.take() {
            self.timers.remove(&(d, tid));
        }
        match task.info.state {
            State::Ready => {
                let prio = task.info.priority;
                if let Some(queue) = self.run.get_mut(&prio) {
                    queue.retain(|&t| t != tid);
                    if queue.is_empty() {
                        self.run.remove(&prio);
                    }
                }
            }
            State::Blocked(Blocked::Queue(q)) => {
                if let Some(queue) = self.queues.get_mut(&q.0) {
                    queue.retain(|&t| t != tid);
                }
            }
            _ => {}
        }
    }

    /// Moves a blocked task to the tail of its run queue.
    fn make_ready(&mut self, tid: Tid, why: WakeReason) {
        if !matches!(self.state(tid), Some(State::Blocked(_))) {
            return;
        }
        self.unlink(tid);
        self.set_wake(tid, why);
        self.enqueue(tid);
    }

    // ---- Exit, kill, wait, reap ----

    /// The current task exits with `status`. Always a switch to another
    /// task, which the caller must carry out; the record stays until reaped.
    pub fn exit_current(&mut self, status: i64) -> Result<Switch, SchedError> {
        if self.current == IDLE {
            return Err(SchedError::IdleTask);
        }
        // Killed already: it keeps the status the killer gave.
        if self.current_running() {
            self.finish(self.current, status);
        }
        Ok(self.dispatch())
    }

    /// Kills `tid`: Exited(status), off every queue, its waiters woken,
    /// wake = Killed. Killing a zombie changes nothing. If `tid` is the
    /// current task the caller must call `schedule()` next.
    pub fn kill(&mut self, tid: Tid, status: i64) -> Result<(), SchedError> {
        if tid == IDLE {
            return Err(SchedError::IdleTask);
        }
        match self.state(tid) {
            None => Err(SchedError::NoSuchTask),
            Some(State::Exited(_)) => Ok(()),
            Some(_) => {
                self.finish(tid, status);
                self.set_wake(tid, WakeReason::Killed);
                Ok(())
            }
        }
    }

    /// Asks `tid` to exit with `status` at its next boundary (see
    /// [`TaskInfo::kill_pending`]): a blocked task is woken (wake = Killed),
    /// a ready one stays ready. The first request's status wins; a zombie
    /// is left alone.
    pub fn request_kill(&mut self, tid: Tid, status: i64) -> Result<(), SchedError> {
        if tid == IDLE {
            return Err(SchedError::IdleTask);
        }
        let task = self.tasks.get_mut(&tid).ok_or(SchedError::NoSuchTask)?;
        if matches!(task.info.state, State::Exited(_)) {
            return Ok(());
        }
        task.info.kill_pending.get_or_insert(status);
        self.make_ready(tid, WakeReason::Killed);
        Ok(())
    }

    /// The status a pending kill asks `tid` to exit with.
    pub fn kill_pending(&self, tid: Tid) -> Option<i64> {
        self.tasks.get(&tid)?.info.kill_pending
    }

    /// Turns a live task into a zombie and wakes whoever waits for it.
    fn finish(&mut self, tid: Tid, status: i64) {
        self.unlink(tid);
        self.set_state(tid, State::Exited(status));
        if let Some(g) = self.group_of(tid).and_then(|pid| self.groups.get_mut(&pid)) {
            g.live = g.live.saturating_sub(1);
        }
        let waiters: Vec<Tid> = self
            .tasks
            .values()
            .filter(|t| t.info.state == State::Blocked(Blocked::Wait(tid)))
            .map(|t| t.info.tid)
            .collect();
        for w in waiters {
            self.make_ready(w, WakeReason::Woken);
        }
    }

    /// The current task waits for `target`, a task of its own group. If the
    /// target has exited its status is returned and its record reaped;
    /// otherwise the current task blocks until the exit, and then calls
    /// `wait_for` again to collect.
    pub fn wait_for(&mut self, target: Tid) -> Result<WaitResult, SchedError> {
        let me = self.current;
        if me == IDLE {
            return Err(SchedError::IdleTask);
        }
        if !self.current_running() {
            return Ok(WaitResult::Blocked(self.schedule()));
        }
        if target == me {
            return Err(SchedError::WouldDeadlock);
        }
        if self.kill_pending(me).is_some() {
            return Err(SchedError::Interrupted);
        }
        let state = self.state(target).ok_or(SchedError::NoSuchTask)?;
        if self.group_of(target) != self.group_of(me) {
            return Err(SchedError::NotInGroup);
        }
        if let State::Exited(_) = state {
            return self.reap(target).map(WaitResult::Exited);
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
        let mut t = target;
        // Chains are acyclic (this check keeps them so), but bound the walk
        // anyway rather than trust it.
        for _ in 0..self.tasks.len() {
            match self.state(t) {
                Some(State::Blocked(Blocked::Wait(next))) if next == self.current => return true,
                Some(State::Blocked(Blocked::Wait(next))) => t = next,
                _ => return false,
            }
        }
        false
    }

    /// Removes an exited task's record and returns its status. A task
    /// killed while current is refused (NotExited) until switched away
    /// from: the caller would free the stack it still runs on.
    pub fn reap(&mut self, tid: Tid) -> Result<i64, SchedError> {
        if tid == IDLE {
            return Err(SchedError::IdleTask);
        }
        let Some(state) = self.state(tid) else {
            return Err(SchedError::NoSuchTask);
        };
        let State::Exited(status) = state else {
            return Err(SchedError::NotExited);
        };
        if tid == self.current {
            return Err(SchedError::NotExited);
        }
        if let Some(task) = self.tasks.remove(&tid) {
            self.forget_record(task.info.group);
        }
        Ok(status)
    }

    fn forget_record(&mut self, pid: Pid) {
        if let Some(g) = self.groups.get_mut(&pid) {
            g.records = g.records.saturating_sub(1);
            if g.records == 0 {
                self.groups.remove(&pid);
            }
        }
    }

    // ---- Small accessors ----

    fn state(&self, tid: Tid) -> Option<State> {
        self.tasks.get(&tid).map(|t| t.info.state)
    }

    fn group_of(&self, tid: Tid) -> Option<Pid> {
        self.tasks.get(&tid).map(|t| t.info.group)
    }

    fn set_state(&mut self, tid: Tid, state: State) {
        if let Some(t) = self.tasks.get_mut(&tid) {
            t.info.state = state;
        }
    }

    fn set_wake(&mut self, tid: Tid, why: WakeReason) {
        if let Some(t) = self.tasks.get_mut(&tid) {
            t.info.wake = why;
        }
    }

    // ---- Consistency check ----

    /// Verifies every invariant of the module doc; Err describes the first
    /// violation found. For tests and debugging: it walks everything.
    pub fn check(&self) -> Result<(), String> {
        self.check_records()?;
        self.check_idle()?;
        self.check_current()?;
        self.check_run_queues()?;
        self.check_wait_queues()?;
        self.check_timers()?;
        self.check_waits()?;
        self.check_groups()
    }

    fn check_records(&self) -> Result<(), String> {
        if self.tasks.len() > self.max_tasks as usize {
            return Err(format!("{} records over the bound", self.tasks.len()));
        }
        for (&tid, t) in &self.tasks {
            if t.info.tid != tid {
                return Err(format!("record {tid} says tid {}", t.info.tid));
            }
            if tid >= self.max_tasks {
                return Err(format!("tid {tid} not below {}", self.max_tasks));
            }
        }
        Ok(())
    }

    fn check_idle(&self) -> Result<(), String> {
        let idle = self.tasks.get(&IDLE).ok_or("idle task missing")?;
        if !matches!(idle.info.state, State::Ready | State::Running) {
            return Err(format!("idle is {:?}", idle.info.state));
        }
        if idle.info.group != IDLE || idle.info.priority != Priority::IDLE {
            return Err("idle's group or priority changed".to_string());
        }
        if self.groups.get(&IDLE)
            != Some(&Group {
                records: 1,
                live: 1,
            })
        {
            return Err("idle's group holds another task".to_string());
        }
        Ok(())
    }

    /// Exactly one Running task, the current one; or none, if the current
    /// task was killed and the caller has yet to schedule.
    fn check_current(&self) -> Result<(), String> {
        let cur = self.current;
        let state = self
            .state(cur)
            .ok_or(format!("current {cur} has no record"))?;
        let running: Vec<Tid> = self.tids_where(|s| s == State::Running);
        match state {
            State::Running if running == [cur] => Ok(()),
            State::Exited(_) if running.is_empty() => Ok(()),
            _ => Err(format!(
                "current {cur} is {state:?}, running tasks {running:?}"
            )),
        }
    }

    fn check_run_queues(&self) -> Result<(), String> {
        let mut queued = BTreeSet::new();
        for (prio, queue) in &self.run {
            if queue.is_empty() {
                return Err(format!("empty run queue kept for {prio:?}"));
            }
            for &tid in queue {
                if tid == IDLE || !queued.insert(tid) {
                    return Err(format!("{tid} queued twice, or idle queued"));
                }
                let t = self.tasks.get(&tid).ok_or(format!("queued {tid} gone"))?;
                if t.info.state != State::Ready || t.info.priority != *prio {
                    return Err(format!("{tid} on run queue {prio:?} is {:?}", t.info));
                }
            }
        }
        for tid in self.tids_where(|s| s == State::Ready) {
            if tid != IDLE && !queued.contains(&tid) {
                return Err(format!("{tid} is Ready but on no run queue"));
            }
        }
        Ok(())
    }

    fn check_wait_queues(&self) -> Result<(), String> {
        let mut queued = BTreeSet::new();
        for (&id, queue) in &self.queues {
            let want = State::Blocked(Blocked::Queue(QueueId(id)));
            for &tid in queue {
                if !queued.insert(tid) {
                    return Err(format!("{tid} on wait queues twice"));
                }
                if self.state(tid) != Some(want) {
                    return Err(format!("{tid} on wait queue {id} is {:?}", self.state(tid)));
                }
            }
        }
        for tid in self.tids_where(|s| matches!(s, State::Blocked(Blocked::Queue(_)))) {
            if !queued.contains(&tid) {
                return Err(format!("{tid} is blocked on a queue but not on it"));
            }
        }
        Ok(())
    }

    fn check_timers(&self) -> Result<(), String> {
        for &(d, tid) in &self.timers {
            let t = self.tasks.get(&tid).ok_or(format!("timer of {tid} gone"))?;
            if t.deadline != Some(d) {
                return Err(format!("timer ({d}, {tid}) but deadline {:?}", t.deadline));
            }
            if d <= self.now {
                return Err(format!("timer of {tid} at {d} overdue at {}", self.now));
            }
        }
        for (&tid, t) in &self.tasks {
            let timed = match t.info.state {
                State::Blocked(Blocked::Sleep) => t.deadline.is_some(),
                State::Blocked(Blocked::Queue(_)) => true,
                _ => t.deadline.is_none(),
            };
            let in_set = t.deadline.is_none_or(|d| self.timers.contains(&(d, tid)));
            if !timed || !in_set {
                return Err(format!(
                    "{tid} is {:?} with deadline {:?}",
                    t.info.state, t.deadline
                ));
            }
        }
        Ok(())
    }

    /// Wait targets exist, are alive, in the waiter's group, and no chain
    /// of waits comes back to where it started.
    fn check_waits(&self) -> Result<(), String> {
        for (&tid, t) in &self.tasks {
            let State::Blocked(Blocked::Wait(target)) = t.info.state else {
                continue;
            };
            let tt = self
                .tasks
                .get(&target)
                .ok_or(format!("{tid} waits for missing {target}"))?;
            if matches!(tt.info.state, State::Exited(_)) || tt.info.group != t.info.group {
                return Err(format!("{tid} waits for {target}, which is {:?}", tt.info));
            }
            let mut at = target;
            for _ in 0..=self.tasks.len() {
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

    fn check_groups(&self) -> Result<(), String> {
        let mut counted: BTreeMap<Pid, Group> = BTreeMap::new();
        for t in self.tasks.values() {
            let g = counted.entry(t.info.group).or_default();
            g.records += 1;
            if !matches!(t.info.state, State::Exited(_)) {
                g.live += 1;
            }
        }
        if counted != self.groups {
            return Err(format!(
                "group counts {:?}, records say {counted:?}",
                self.groups
            ));
        }
        Ok(())
    }

    fn tids_where(&self, f: impl Fn(State) -> bool) -> Vec<Tid> {
        self.tasks
            .values()
            .filter(|t| f(t.info.state))
            .map(|t| t.info.tid)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Rng;

    const N: Priority = Priority::NORMAL;

    fn ok(s: &Scheduler) {
        if let Err(e) = s.check() {
            panic!("invariant broken: {e}");
        }
    }

    fn state(s: &Scheduler, tid: Tid) -> State {
        s.task(tid).unwrap().state
    }

    fn sw(from: Tid, to: Tid) -> Option<Switch> {
        Some(Switch { from, to })
    }

    /// Ticks at 1 ns steps until the tick asks for preemption, then
    /// schedules; returns the new current task.
    fn run_slice(s: &mut Scheduler, now: &mut u64) -> Tid {
        for _ in 0..100 {
            *now += 1;
            if s.tick(*now) {
                s.schedule();
                ok(s);
                return s.current();
            }
        }
        panic!("never preempted");
    }

    #[test]
    fn boots_with_idle_and_main() {
        let s = Scheduler::new(5);
        ok(&s);
        assert_eq!(s.current(), BOOT);
        let main = s.task(BOOT).unwrap();
        assert_eq!(
            (main.name.as_str(), main.group, main.priority),
            ("main", BOOT, N)
        );
        assert_eq!(main.state, State::Running);
        let idle = s.task(IDLE).unwrap();
        assert_eq!((idle.priority, idle.state), (Priority::IDLE, State::Ready));
        assert_eq!(s.counts(), (2, 0));
        assert_eq!(s.live_in_group(BOOT), 1);
        let tids: Vec<Tid> = s.tasks().map(|t| t.tid).collect();
        assert_eq!(tids, [0, 1]);
    }

    #[test]
    fn round_robin_among_equal_tasks() {
        let mut s = Scheduler::new(2);
        let a = s.spawn("a", None, N, false).unwrap();
        let b = s.spawn("b", None, N, false).unwrap();
        let mut now = 0;
        let order: Vec<Tid> = (0..9).map(|_| run_slice(&mut s, &mut now)).collect();
        assert_eq!(order, [a, b, BOOT, a, b, BOOT, a, b, BOOT]);
        // Each had the CPU for 3 slices of 2 ticks, the first slice of main
        // included; the 9th switch came at tick 18.
        for tid in [BOOT, a, b] {
            assert_eq!(s.task(tid).unwrap().cpu_ticks, 6, "task {tid}");
        }
        assert_eq!(s.task(IDLE).unwrap().cpu_ticks, 0);
    }

    #[test]
    fn tick_preempts_only_after_the_slice() {
        let mut s = Scheduler::new(3);
        // Alone: the slice running out changes nothing.
        for t in 1..10 {
            assert!(!s.tick(t));
        }
        let a = s.spawn("a", None, N, false).unwrap();
        // The slice is long used up, so an equal task preempts at once.
        assert!(s.tick(10));
        assert_eq!(s.schedule(), sw(BOOT, a));
        assert!(!s.tick(11));
        assert!(!s.tick(12));
        assert!(s.tick(13));
        // A lower task never preempts, slice or not.
        let mut s = Scheduler::new(1);
        s.spawn("low", None, Priority::LOW, false).unwrap();
        for t in 1..5 {
            assert!(!s.tick(t));
        }
        assert_eq!(s.schedule(), None, "main is picked again over a lower task");
        ok(&s);
    }

    #[test]
    fn higher_priority_preempts_on_wake() {
        let mut s = Scheduler::new(100);
        let q = s.new_queue();
        let hi = s.spawn("hi", None, Priority::HIGH, false).unwrap();
        assert!(s.should_preempt());
        assert_eq!(s.schedule(), sw(BOOT, hi));
        assert!(!s.should_preempt(), "main is lower");
        assert_eq!(s.block_current(q, None), Ok(sw(hi, BOOT)));
        assert!(!s.should_preempt());
        // Waking it preempts main at once, before main's slice is over.
        assert_eq!(s.wake_one(q), Some(hi));
        assert_eq!(s.current(), BOOT, "waking does not switch");
        assert!(s.should_preempt());
        assert!(s.tick(1));
        assert_eq!(s.schedule(), sw(BOOT, hi));
        // While it runs, main never gets the CPU.
        for t in 2..20 {
            assert!(!s.tick(t));
            assert_eq!(s.schedule(), None);
        }
        ok(&s);
    }

    #[test]
    fn idle_runs_only_when_nothing_is_ready() {
        let mut s = Scheduler::new(1);
        let low = s.spawn("low", None, Priority::IDLE, false).unwrap();
        // A task at idle's priority still beats idle.
        assert_eq!(s.sleep_current(10), sw(BOOT, low));
        assert_eq!(s.sleep_current(10), sw(low, IDLE));
        assert_eq!(s.schedule(), None, "nothing else to run");
        assert!(!s.should_preempt());
        assert!(!s.tick(5));
        assert!(s.tick(10), "both woke; idle yields to anyone");
        assert_eq!(s.schedule(), sw(IDLE, BOOT));
        assert_eq!(state(&s, IDLE), State::Ready);
        assert_eq!(s.task(IDLE).unwrap().cpu_ticks, 2);
        ok(&s);
    }

    #[test]
    fn yield_gives_way_to_equals_only() {
        let mut s = Scheduler::new(10);
        let low = s.spawn("low", None, Priority::LOW, false).unwrap();
        assert_eq!(s.yield_now(), None, "a lower task does not get the CPU");
        let a = s.spawn("a", None, N, false).unwrap();
        assert_eq!(s.yield_now(), sw(BOOT, a));
        assert_eq!(s.yield_now(), sw(a, BOOT));
        s.exit_current(0).unwrap();
        s.exit_current(0).unwrap();
        assert_eq!(s.current(), low);
        ok(&s);
    }

    #[test]
    fn sleep_wakes_exactly_at_the_deadline() {
        let mut s = Scheduler::new(100);
        s.tick(1000);
        assert_eq!(s.sleep_current(1500), sw(BOOT, IDLE));
        assert_eq!(state(&s, BOOT), State::Blocked(Blocked::Sleep));
        for t in [1001, 1200, 1499] {
            assert!(!s.tick(t), "woke early at {t}");
            assert_eq!(state(&s, BOOT), State::Blocked(Blocked::Sleep));
        }
        assert!(s.tick(1500));
        assert_eq!(state(&s, BOOT), State::Ready);
        assert_eq!(s.task(BOOT).unwrap().wake, WakeReason::TimedOut);
        assert_eq!(s.schedule(), sw(IDLE, BOOT));
        // A clock going backwards does not make a deadline pending again.
        assert_eq!(s.sleep_current(1600), sw(BOOT, IDLE));
        s.tick(1700);
        s.tick(1000);
        assert_eq!(state(&s, BOOT), State::Ready);
        ok(&s);
    }

    #[test]
    fn past_deadlines_do_not_block() {
        let mut s = Scheduler::new(100);
        let q = s.new_queue();
        s.tick(50);
        assert_eq!(s.sleep_current(50), None);
        assert_eq!(s.sleep_current(10), None);
        assert_eq!(s.task(BOOT).unwrap().wake, WakeReason::TimedOut);
        assert_eq!(s.block_current(q, Some(50)), Ok(None));
        assert_eq!(s.task(BOOT).unwrap().wake, WakeReason::TimedOut);
        assert_eq!(state(&s, BOOT), State::Running);
        ok(&s);
    }

    #[test]
    fn request_kill_wakes_a_blocked_task_which_then_never_blocks() {
        let mut s = Scheduler::new(100);
        let q = s.new_queue();
        let a = s.spawn("a", None, N, false).unwrap();
        assert_eq!(s.schedule(), sw(BOOT, a));
        assert_eq!(s.block_current(q, None), Ok(sw(a, BOOT)));
        s.request_kill(a, 137).unwrap();
        s.request_kill(a, 1).unwrap();
        assert_eq!(state(&s, a), State::Ready, "woken to exit by itself");
        assert_eq!(s.task(a).unwrap().wake, WakeReason::Killed);
        assert_eq!(s.kill_pending(a), Some(137), "the first status wins");
        assert_eq!(s.wake_one(q), None, "it left the queue");
        // Main has no kill: it blocks, and a runs.
        assert_eq!(s.block_current(q, None), Ok(sw(BOOT, a)));
        ok(&s);
        // Once running, a killed task can neither block, sleep nor wait.
        assert_eq!(s.block_current(q, None), Ok(None));
        assert_eq!(s.sleep_current(1_000), None);
        assert_eq!(s.wait_for(BOOT), Err(SchedError::Interrupted));
        let t = s.spawn("t", Some(a), N, false).unwrap();
        assert_eq!(s.wait_for(t), Err(SchedError::Interrupted));
        assert_eq!(state(&s, a), State::Running);
        // It exits with the status it was asked for.
        assert_eq!(s.exit_current(137).map(|x| x.from), Ok(a));
        assert_eq!(state(&s, a), State::Exited(137));
        assert_eq!(s.request_kill(a, 9), Ok(()), "zombies are left alone");
        assert_eq!(s.kill_pending(a), Some(137));
        assert_eq!(s.request_kill(IDLE, 9), Err(SchedError::IdleTask));
        assert_eq!(s.request_kill(999, 9), Err(SchedError::NoSuchTask));
        ok(&s);
    }

    #[test]
    fn request_kill_leaves_ready_and_running_tasks_in_place() {
        let mut s = Scheduler::new(100);
        let a = s.spawn("a", None, N, false).unwrap();
        s.request_kill(a, 9).unwrap();
        assert_eq!(state(&s, a), State::Ready);
        s.request_kill(BOOT, 9).unwrap();
        assert_eq!(state(&s, BOOT), State::Running);
        assert_eq!(s.kill_pending(BOOT), Some(9));
        ok(&s);
    }

    #[test]
    fn block_times_out_or_is_woken() {
        let mut s = Scheduler::new(100);
        let q = s.new_queue();
        let a = s.spawn("a", None, N, false).unwrap();
        // Main blocks with a timeout nobody beats.
        assert_eq!(s.block_current(q, Some(100)), Ok(sw(BOOT, a)));
        assert_eq!(state(&s, BOOT), State::Blocked(Blocked::Queue(q)));
        s.tick(99);
        assert_eq!(state(&s, BOOT), State::Blocked(Blocked::Queue(q)));
        s.tick(100);
        assert_eq!(state(&s, BOOT), State::Ready);
        assert_eq!(s.task(BOOT).unwrap().wake, WakeReason::TimedOut);
        assert_eq!(s.wake_one(q), None, "it left the queue");
        // Now a wakes it first; the deadline passing later changes nothing.
        assert_eq!(s.schedule(), sw(a, BOOT));
        assert_eq!(s.block_current(q, Some(200)), Ok(sw(BOOT, a)));
        assert_eq!(s.wake_one(q), Some(BOOT));
        assert_eq!(s.task(BOOT).unwrap().wake, WakeReason::Woken);
        assert!(s.timers.is_empty(), "the timer went with the wake");
        s.tick(300);
        assert_eq!(s.task(BOOT).unwrap().wake, WakeReason::Woken);
        ok(&s);
    }

    #[test]
    fn wake_one_is_fifo_and_wake_all_counts() {
        let mut s = Scheduler::new(100);
        let q = s.new_queue();
        let a = s.spawn("a", None, N, false).unwrap();
        let b = s.spawn("b", None, N, false).unwrap();
        s.block_current(q, None).unwrap(); // main, then a, then b
        s.block_current(q, None).unwrap();
        s.block_current(q, None).unwrap();
        assert_eq!(s.current(), IDLE);
        assert_eq!(s.wake_one(q), Some(BOOT));
        assert_eq!(s.wake_one(q), Some(a));
        assert_eq!(s.schedule(), sw(IDLE, BOOT));
        assert_eq!(s.block_current(q, None), Ok(sw(BOOT, a)));
        assert_eq!(s.wake_all(q), 2, "b, then main");
        assert_eq!(s.wake_all(q), 0);
        assert_eq!(s.run.get(&N).unwrap(), &VecDeque::from([b, BOOT]));
        ok(&s);
    }

    #[test]
    fn freeing_a_queue_wakes_its_waiters() {
        let mut s = Scheduler::new(100);
        let q = s.new_queue();
        let other = s.new_queue();
        assert_ne!(q, other);
        s.spawn("a", None, N, false).unwrap();
        s.block_current(q, Some(1000)).unwrap();
        s.block_current(q, None).unwrap();
        s.free_queue(q);
        assert_eq!(s.counts(), (3, 2));
        assert!(s.tasks().all(|t| t.wake == WakeReason::Woken));
        assert_eq!(s.schedule(), sw(IDLE, BOOT));
        assert_eq!(s.block_current(q, None), Err(SchedError::NoSuchQueue));
        assert_eq!(s.wake_one(q), None);
        assert_eq!(s.wake_all(q), 0);
        s.free_queue(q); // twice: nothing
        ok(&s);
    }

    #[test]
    fn wait_for_an_exited_task_returns_status_and_reaps() {
        let mut s = Scheduler::new(100);
        let t = s.spawn("t", Some(BOOT), N, true).unwrap();
        assert_eq!(s.yield_now(), sw(BOOT, t));
        assert_eq!(s.exit_current(42), Ok(Switch { from: t, to: BOOT }));
        assert_eq!(state(&s, t), State::Exited(42));
        assert_eq!(s.live_in_group(BOOT), 1);
        assert_eq!(s.wait_for(t), Ok(WaitResult::Exited(42)));
        assert!(s.task(t).is_none());
        assert_eq!(s.wait_for(t), Err(SchedError::NoSuchTask));
        assert_eq!(s.counts(), (2, 0));
        ok(&s);
    }

    #[test]
    fn wait_for_blocks_until_the_exit() {
        let mut s = Scheduler::new(100);
        let t = s.spawn("t", Some(BOOT), N, true).unwrap();
        assert_eq!(s.wait_for(t), Ok(WaitResult::Blocked(sw(BOOT, t))));
        assert_eq!(state(&s, BOOT), State::Blocked(Blocked::Wait(t)));
        for now in 1..50 {
            s.tick(now);
            assert_eq!(s.schedule(), None, "the waiter stays blocked");
        }
        assert_eq!(s.exit_current(7), Ok(Switch { from: t, to: BOOT }));
        assert_eq!(s.task(BOOT).unwrap().wake, WakeReason::Woken);
        assert_eq!(s.wait_for(t), Ok(WaitResult::Exited(7)));
        ok(&s);
    }

    #[test]
    fn wait_for_errors() {
        let mut s = Scheduler::new(100);
        let stranger = s.spawn("x", None, N, false).unwrap();
        let t = s.spawn("t", Some(BOOT), N, false).unwrap();
        assert_eq!(s.wait_for(BOOT), Err(SchedError::WouldDeadlock));
        assert_eq!(s.wait_for(stranger), Err(SchedError::NotInGroup));
        assert_eq!(s.wait_for(IDLE), Err(SchedError::NotInGroup));
        assert_eq!(s.wait_for(999), Err(SchedError::NoSuchTask));
        assert_eq!(s.wait_for(u32::MAX), Err(SchedError::NoSuchTask));
        // Main waits for t, so t waiting for main would never end.
        assert_eq!(s.wait_for(t), Ok(WaitResult::Blocked(sw(BOOT, stranger))));
        s.exit_current(0).unwrap();
        assert_eq!(s.current(), t);
        assert_eq!(s.wait_for(BOOT), Err(SchedError::WouldDeadlock));
        s.kill(stranger, 9).unwrap(); // a zombie: no effect
        assert_eq!(state(&s, stranger), State::Exited(0));
        s.exit_current(0).unwrap();
        assert_eq!(s.current(), BOOT);
        s.exit_current(0).unwrap();
        assert_eq!(s.current(), IDLE);
        assert_eq!(s.wait_for(BOOT), Err(SchedError::IdleTask));
        ok(&s);
        // A longer chain: main waits for a, a for b; b may wait for neither.
        let mut s = Scheduler::new(100);
        let a = s.spawn("a", Some(BOOT), N, false).unwrap();
        let b = s.spawn("b", Some(BOOT), N, false).unwrap();
        assert_eq!(s.wait_for(a), Ok(WaitResult::Blocked(sw(BOOT, a))));
        assert_eq!(s.wait_for(b), Ok(WaitResult::Blocked(sw(a, b))));
        assert_eq!(s.wait_for(BOOT), Err(SchedError::WouldDeadlock));
        assert_eq!(s.wait_for(a), Err(SchedError::WouldDeadlock));
        ok(&s);
    }

    #[test]
    fn kill_of_a_blocked_task_leaves_its_queue_and_wakes_waiters() {
        let mut s = Scheduler::new(100);
        let q = s.new_queue();
        let a = s.spawn("a", Some(BOOT), N, false).unwrap();
        let b = s.spawn("b", Some(BOOT), N, false).unwrap();
        // main waits for a; a blocks on q with a timeout; b runs.
        s.wait_for(a).unwrap();
        assert_eq!(s.block_current(q, Some(500)), Ok(sw(a, b)));
        s.kill(a, -9).unwrap();
        assert_eq!(state(&s, a), State::Exited(-9));
        assert_eq!(s.task(a).unwrap().wake, WakeReason::Killed);
        assert!(s.queues[&q.0].is_empty());
        assert!(s.timers.is_empty());
        assert_eq!(state(&s, BOOT), State::Ready, "the waiter woke");
        assert_eq!(s.task(BOOT).unwrap().wake, WakeReason::Woken);
        assert_eq!(s.wake_one(q), None);
        s.tick(600); // the old deadline: nothing happens
        assert_eq!(state(&s, a), State::Exited(-9));
        assert_eq!(s.live_in_group(BOOT), 2);
        assert_eq!(s.yield_now(), sw(b, BOOT));
        assert_eq!(s.wait_for(a), Ok(WaitResult::Exited(-9)));
        ok(&s);
    }

    #[test]
    fn kill_of_ready_and_sleeping_tasks() {
        let mut s = Scheduler::new(100);
        let a = s.spawn("a", None, N, false).unwrap();
        let b = s.spawn("b", None, N, false).unwrap();
        s.kill(a, 1).unwrap();
        assert_eq!(s.counts(), (4, 1));
        assert_eq!(s.yield_now(), sw(BOOT, b), "a is skipped");
        assert_eq!(s.sleep_current(1000), sw(b, BOOT));
        s.kill(b, 2).unwrap();
        assert!(s.timers.is_empty());
        assert_eq!(s.reap(a), Ok(1));
        assert_eq!(s.reap(b), Ok(2));
        assert_eq!(s.counts(), (2, 0));
        ok(&s);
    }

    #[test]
    fn killed_current_task_is_never_picked_again() {
        let mut s = Scheduler::new(100);
        let q = s.new_queue();
        let a = s.spawn("a", Some(BOOT), N, false).unwrap();
        s.kill(BOOT, 139).unwrap();
        assert_eq!(s.current(), BOOT);
        ok(&s); // no task is running, which check() allows just now
        assert!(s.should_preempt());
        assert!(s.tick(1));
        // Calls on its behalf don't revive or block it; reaping waits.
        assert_eq!(s.reap(BOOT), Err(SchedError::NotExited));
        assert_eq!(s.exit_current(0), Ok(Switch { from: BOOT, to: a }));
        assert_eq!(state(&s, BOOT), State::Exited(139), "the kill status stays");
        // Same for a second task, through schedule.
        s.kill(a, 1).unwrap();
        assert_eq!(s.block_current(q, None), Ok(sw(a, IDLE)));
        assert!(s.queues[&q.0].is_empty());
        assert_eq!(s.reap(a), Ok(1));
        assert_eq!(s.reap(BOOT), Ok(139));
        assert_eq!(s.schedule(), None);
        assert_eq!(s.live_in_group(BOOT), 0);
        ok(&s);
        // And plain schedule() after killing the current task.
        let mut s = Scheduler::new(100);
        s.kill(BOOT, 3).unwrap();
        assert_eq!(s.schedule(), sw(BOOT, IDLE));
        assert_eq!(s.schedule(), None);
        ok(&s);
    }

    #[test]
    fn tids_are_not_reused_while_records_exist() {
        let mut s = Scheduler::with_max_tasks(100, 6);
        let a = s.spawn("a", None, N, false).unwrap();
        let b = s.spawn("b", None, N, false).unwrap();
        let c = s.spawn("c", None, N, false).unwrap();
        let d = s.spawn("d", None, N, false).unwrap();
        assert_eq!([a, b, c, d], [2, 3, 4, 5]);
        assert_eq!(s.spawn("e", None, N, false), Err(SchedError::TooManyTasks));
        // A zombie keeps its tid.
        s.kill(b, 0).unwrap();
        assert_eq!(s.spawn("e", None, N, false), Err(SchedError::TooManyTasks));
        assert_eq!(s.reap(b), Ok(0));
        // Freed now, and found by the cyclic search from the top.
        assert_eq!(s.spawn("e", None, N, false), Ok(b));
        // A thread of group c outliving c keeps pid c taken.
        s.kill(d, 0).unwrap();
        s.reap(d).unwrap();
        let t = s.spawn("t", Some(c), N, false).unwrap();
        assert_eq!(t, d);
        s.kill(c, 0).unwrap();
        s.reap(c).unwrap();
        assert_eq!(s.live_in_group(c), 1);
        assert_eq!(s.spawn("x", None, N, false), Err(SchedError::TooManyTasks));
        s.kill(t, 0).unwrap();
        s.reap(t).unwrap();
        assert_eq!(s.spawn("x", None, N, false), Ok(c));
        ok(&s);
    }

    #[test]
    fn too_many_tasks_at_the_default_bound() {
        let mut s = Scheduler::new(100);
        for i in 2..MAX_TASKS {
            assert_eq!(s.spawn("t", None, N, false), Ok(i));
        }
        assert_eq!(s.spawn("t", None, N, false), Err(SchedError::TooManyTasks));
        assert_eq!(s.counts(), (MAX_TASKS as usize, MAX_TASKS as usize - 2));
        s.kill(77, 0).unwrap();
        s.reap(77).unwrap();
        assert_eq!(s.spawn("t", None, N, false), Ok(77));
        ok(&s);
    }

    #[test]
    fn idle_task_refuses_kill_exit_block() {
        let mut s = Scheduler::new(100);
        let q = s.new_queue();
        assert_eq!(s.kill(IDLE, 0), Err(SchedError::IdleTask));
        assert_eq!(s.reap(IDLE), Err(SchedError::IdleTask));
        assert_eq!(
            s.spawn("x", Some(IDLE), N, false),
            Err(SchedError::IdleTask)
        );
        s.exit_current(0).unwrap();
        assert_eq!(s.current(), IDLE);
        assert_eq!(s.exit_current(0), Err(SchedError::IdleTask));
        assert_eq!(s.block_current(q, None), Err(SchedError::IdleTask));
        assert_eq!(s.block_current(q, Some(5)), Err(SchedError::IdleTask));
        assert_eq!(s.wait_for(BOOT), Err(SchedError::IdleTask));
        assert_eq!(s.sleep_current(1000), None);
        assert_eq!(state(&s, IDLE), State::Running);
        ok(&s);
    }

    #[test]
    fn bad_tids_and_groups_are_errors() {
        let mut s = Scheduler::new(100);
        for tid in [2, 99, MAX_TASKS, u32::MAX] {
            assert_eq!(s.kill(tid, 0), Err(SchedError::NoSuchTask));
            assert_eq!(s.reap(tid), Err(SchedError::NoSuchTask));
            assert_eq!(s.wait_for(tid), Err(SchedError::NoSuchTask));
            assert_eq!(
                s.spawn("x", Some(tid), N, false),
                Err(SchedError::NoSuchTask)
            );
            assert!(s.task(tid).is_none());
            assert_eq!(s.live_in_group(tid), 0);
        }
        assert_eq!(s.reap(BOOT), Err(SchedError::NotExited));
        // A group whose threads all exited takes no new ones.
        let g = s.spawn("g", None, N, false).unwrap();
        s.kill(g, 0).unwrap();
        assert_eq!(s.spawn("x", Some(g), N, false), Err(SchedError::NoSuchTask));
        assert_eq!(s.kill(g, 5), Ok(()), "killing a zombie is harmless");
        assert_eq!(s.reap(g), Ok(0), "and keeps the first status");
        ok(&s);
    }

    #[test]
    fn groups_count_live_tasks() {
        let mut s = Scheduler::new(100);
        let p = s.spawn("p", None, N, true).unwrap();
        let t1 = s.spawn("t1", Some(p), N, true).unwrap();
        let t2 = s.spawn("t2", Some(p), N, true).unwrap();
        assert_eq!(s.task(t2).unwrap().group, p);
        assert!(s.task(t2).unwrap().user);
        assert_eq!(s.live_in_group(p), 3);
        s.kill(t1, 0).unwrap();
        assert_eq!(s.live_in_group(p), 2);
        s.kill(p, 0).unwrap();
        s.reap(p).unwrap();
        assert_eq!(s.live_in_group(p), 1);
        assert_eq!(
            s.spawn("t3", Some(p), N, true)
                .map(|t| s.task(t).unwrap().group),
            Ok(p)
        );
        ok(&s);
    }

    /// check() must notice broken state, or the random test proves nothing.
    #[test]
    fn check_detects_corruption() {
        let fresh = || {
            let mut s = Scheduler::new(10);
            let q = s.new_queue();
            s.spawn("a", Some(BOOT), N, false).unwrap();
            s.spawn("b", None, N, false).unwrap();
            s.block_current(q, Some(100)).unwrap();
            ok(&s);
            (s, q)
        };
        type Corrupt = fn(&mut Scheduler, QueueId);
        let corruptions: [(&str, Corrupt); 9] = [
            ("two running", |s, _| s.set_state(3, State::Running)),
            ("ready off queue", |s, _| s.run.clear()),
            ("queued twice", |s, _| {
                s.run.get_mut(&N).unwrap().push_back(3)
            }),
            ("idle queued", |s, _| {
                s.run.get_mut(&N).unwrap().push_back(IDLE)
            }),
            ("lost waiter", |s, q| {
                s.queues.get_mut(&q.0).unwrap().clear()
            }),
            ("lost timer", |s, _| s.timers.clear()),
            ("exited on queue", |s, _| s.set_state(3, State::Exited(0))),
            ("group count", |s, _| {
                s.groups.get_mut(&BOOT).unwrap().live = 5
            }),
            ("idle exited", |s, _| s.set_state(IDLE, State::Exited(0))),
        ];
        for (what, corrupt) in corruptions {
            let (mut s, q) = fresh();
            corrupt(&mut s, q);
            assert!(s.check().is_err(), "check missed: {what}");
        }
    }

    // ---- Random operations ----

    /// What a step needs to know about the state before it.
    struct Before {
        current: Tid,
        states: BTreeMap<Tid, State>,
        groups: BTreeMap<Pid, Group>,
        /// Index of each ready task in its run queue.
        positions: BTreeMap<Tid, usize>,
    }

    impl Before {
        fn of(s: &Scheduler) -> Before {
            let mut positions = BTreeMap::new();
            for queue in s.run.values() {
                for (i, &tid) in queue.iter().enumerate() {
                    positions.insert(tid, i);
                }
            }
            Before {
                current: s.current(),
                states: s.tasks().map(|t| (t.tid, t.state)).collect(),
                groups: s.groups.clone(),
                positions,
            }
        }
    }

    /// The random test's world: the scheduler and what it was handed.
    struct World {
        s: Scheduler,
        rng: Rng,
        now: u64,
        queues: Vec<QueueId>,
        freed: Vec<QueueId>,
    }

    /// Small enough that random spawns reach the bound now and then.
    const RANDOM_MAX_TASKS: u32 = 20;

    impl World {
        fn new(seed: u64) -> World {
            World {
                s: Scheduler::with_max_tasks(3, RANDOM_MAX_TASKS),
                rng: Rng(seed),
                now: 0,
                queues: Vec::new(),
                freed: Vec::new(),
            }
        }

        /// A tid worth trying: usually a record, sometimes junk.
        fn some_tid(&mut self) -> Tid {
            let tids: Vec<Tid> = self.s.tasks().map(|t| t.tid).collect();
            match self.rng.below(10) {
                0 => self.rng.next() as u32,
                1 => self.rng.below(u64::from(self.s.max_tasks) + 2) as u32,
                _ => tids[self.rng.below(tids.len() as u64) as usize],
            }
        }

        fn some_queue(&mut self) -> Option<QueueId> {
            if !self.freed.is_empty() && self.rng.chance(5) {
                return Some(self.freed[self.rng.below(self.freed.len() as u64) as usize]);
            }
            if self.queues.is_empty() {
                return None;
            }
            Some(self.queues[self.rng.below(self.queues.len() as u64) as usize])
        }

        fn deadline(&mut self) -> u64 {
            // Sometimes in the past, to exercise the no-block path.
            (self.now + self.rng.below(400)).saturating_sub(20)
        }

        /// Runs one random operation, checking its own result. Returns the
        /// switch it made, and whether it dispatched (so the best task
        /// must now be running).
        fn step(&mut self, b: &Before) -> (Option<Switch>, bool) {
            let me = b.current;
            let alive = b.states[&me] == State::Running;
            match self.rng.below(16) {
                0 | 1 => {
                    self.spawn(b);
                    (None, false)
                }
                2 | 3 => {
                    self.now += self.rng.below(60);
                    self.s.tick(self.now);
                    self.check_tick(b);
                    (None, false)
                }
                4 | 5 => (self.s.schedule(), true),
                6 => (self.s.yield_now(), true),
                7 => {
                    let until = self.deadline();
                    let r = self.s.sleep_current(until);
                    if me != IDLE && alive {
                        assert_eq!(r.is_some(), until > self.s.now);
                    }
                    (r, r.is_some())
                }
                8 => {
                    if self.queues.len() < 6 {
                        self.queues.push(self.s.new_queue());
                    } else if self.rng.chance(20) {
                        let i = self.rng.below(self.queues.len() as u64) as usize;
                        let q = self.queues.swap_remove(i);
                        self.s.free_queue(q);
                        self.freed.push(q);
                    }
                    (None, false)
                }
                9 => {
                    let Some(q) = self.some_queue() else {
                        return (None, false);
                    };
                    let deadline = self.rng.chance(50).then(|| self.deadline());
                    match self.s.block_current(q, deadline) {
                        Ok(r) => (r, r.is_some()),
                        Err(SchedError::IdleTask) => {
                            assert_eq!(me, IDLE);
                            (None, false)
                        }
                        Err(e) => {
                            assert_eq!(e, SchedError::NoSuchQueue);
                            assert!(self.freed.contains(&q));
                            (None, false)
                        }
                    }
                }
                10 | 11 => {
                    self.wake();
                    (None, false)
                }
                12 => self.kill(b),
                13 => match self.s.exit_current(self.rng.below(256) as i64) {
                    Ok(switch) => (Some(switch), true),
                    Err(e) => {
                        assert_eq!((e, me), (SchedError::IdleTask, IDLE));
                        (None, false)
                    }
                },
                14 => self.wait(b),
                _ => {
                    self.reap(b);
                    (None, false)
                }
            }
        }

        fn spawn(&mut self, b: &Before) {
            let group = match self.rng.below(3) {
                0 => None,
                1 => self.s.task(b.current).map(|t| t.group),
                _ => Some(self.some_tid()),
            };
            let prio = Priority(self.rng.below(5) as u8);
            match self.s.spawn("r", group, prio, self.rng.chance(50)) {
                Ok(tid) => {
                    assert!(!b.states.contains_key(&tid), "tid {tid} reused");
                    assert!(!b.groups.contains_key(&tid), "pid {tid} reused");
                    let t = self.s.task(tid).unwrap();
                    assert_eq!(t.group, group.unwrap_or(tid));
                    assert_eq!(t.state, State::Ready);
                }
                Err(SchedError::TooManyTasks) => {
                    let free = (1..self.s.max_tasks)
                        .any(|t| !b.states.contains_key(&t) && !b.groups.contains_key(&t));
                    assert!(!free, "TooManyTasks with a free tid");
                }
                Err(SchedError::IdleTask) => assert_eq!(group, Some(IDLE)),
                Err(e) => {
                    assert_eq!(e, SchedError::NoSuchTask);
                    let live = group.and_then(|g| b.groups.get(&g)).map_or(0, |g| g.live);
                    assert_eq!(live, 0);
                }
            }
        }

        fn check_tick(&self, b: &Before) {
            for t in self.s.tasks() {
                if matches!(
                    b.states[&t.tid],
                    State::Blocked(Blocked::Sleep | Blocked::Queue(_))
                ) && t.state == State::Ready
                {
                    assert_eq!(t.wake, WakeReason::TimedOut, "task {}", t.tid);
                }
            }
        }

        fn wake(&mut self) {
            let Some(q) = self.some_queue() else { return };
            if self.rng.chance(50) {
                if let Some(tid) = self.s.wake_one(q) {
                    let t = self.s.task(tid).unwrap();
                    assert_eq!((t.state, t.wake), (State::Ready, WakeReason::Woken));
                }
            } else {
                self.s.wake_all(q);
                assert!(self.s.queues.get(&q.0).is_none_or(VecDeque::is_empty));
            }
        }

        fn kill(&mut self, b: &Before) -> (Option<Switch>, bool) {
            let tid = self.some_tid();
            let status = self.rng.below(1000) as i64;
            match self.s.kill(tid, status) {
                Ok(()) => {
                    let t = self.s.task(tid).unwrap();
                    if matches!(b.states[&tid], State::Exited(_)) {
                        assert_eq!(t.state, b.states[&tid]);
                    } else {
                        assert_eq!(
                            (t.state, t.wake),
                            (State::Exited(status), WakeReason::Killed)
                        );
                        for w in self.s.tasks() {
                            if b.states[&w.tid] == State::Blocked(Blocked::Wait(tid)) {
                                assert_eq!((w.state, w.wake), (State::Ready, WakeReason::Woken));
                            }
                        }
                    }
                    if tid == b.current {
                        // As the booted kernel must.
                        let r = self.s.schedule();
                        assert!(r.is_some(), "schedule kept a killed task");
                        return (r, true);
                    }
                }
                Err(SchedError::IdleTask) => assert_eq!(tid, IDLE),
                Err(e) => {
                    assert_eq!(e, SchedError::NoSuchTask);
                    assert!(!b.states.contains_key(&tid));
                }
            }
            (None, false)
        }

        fn wait(&mut self, b: &Before) -> (Option<Switch>, bool) {
            let target = self.some_tid();
            let me = b.current;
            let my_group = self.s.task(me).map(|t| t.group);
            match self.s.wait_for(target) {
                Ok(WaitResult::Exited(status)) => {
                    assert_eq!(b.states[&target], State::Exited(status));
                    assert!(self.s.task(target).is_none());
                    (None, false)
                }
                Ok(WaitResult::Blocked(r)) => {
                    assert!(r.is_some(), "waiting must switch away");
                    (r, true)
                }
                Err(e) => {
                    let expected = if me == IDLE {
                        SchedError::IdleTask
                    } else if target == me {
                        SchedError::WouldDeadlock
                    } else if !b.states.contains_key(&target) {
                        SchedError::NoSuchTask
                    } else if self.s.task(target).map(|t| t.group) != my_group {
                        SchedError::NotInGroup
                    } else {
                        SchedError::WouldDeadlock
                    };
                    assert_eq!(e, expected, "wait_for({target}) by {me}");
                    (None, false)
                }
            }
        }

        fn reap(&mut self, b: &Before) {
            let tid = self.some_tid();
            match self.s.reap(tid) {
                Ok(status) => {
                    assert_eq!(b.states[&tid], State::Exited(status));
                    assert_ne!(tid, b.current);
                    assert!(self.s.task(tid).is_none());
                }
                Err(SchedError::IdleTask) => assert_eq!(tid, IDLE),
                Err(SchedError::NoSuchTask) => assert!(!b.states.contains_key(&tid)),
                Err(e) => {
                    assert_eq!(e, SchedError::NotExited);
                    let exited = matches!(b.states[&tid], State::Exited(_));
                    assert!(!exited || tid == b.current);
                }
            }
        }
    }

    /// Checks what holds across any step: the switch matches the change of
    /// current task, a ready task only moves towards the head of its run
    /// queue (so round robin cannot starve it), the task dispatched was at
    /// the head, and after a dispatch nothing ready is more important.
    fn check_step(s: &Scheduler, b: &Before, switch: Option<Switch>, dispatched: bool) {
        match switch {
            Some(sw) => {
                assert_eq!(sw.from, b.current);
                assert_eq!(sw.to, s.current());
                assert_ne!(sw.from, sw.to);
                assert_eq!(state(s, sw.to), State::Running);
                if sw.to != IDLE && b.states.get(&sw.to) == Some(&State::Ready) {
                    assert_eq!(b.positions[&sw.to], 0, "{} jumped the queue", sw.to);
                }
            }
            None => assert_eq!(s.current(), b.current, "switched without saying so"),
        }
        let after = Before::of(s);
        for (tid, pos) in &after.positions {
            if let Some(old) = b.positions.get(tid) {
                assert!(pos <= old, "{tid} moved back from {old} to {pos}");
            }
        }
        if dispatched {
            assert!(!s.should_preempt(), "a better task is left waiting");
            if s.current() == IDLE {
                assert_eq!(s.counts().1, 0, "idle runs while tasks are ready");
            }
        }
    }

    fn random_run(seed: u64, steps: usize) -> Scheduler {
        let mut w = World::new(seed);
        for i in 0..steps {
            let b = Before::of(&w.s);
            let (switch, dispatched) = w.step(&b);
            if let Err(e) = w.s.check() {
                panic!("seed {seed:#x} step {i}: {e}");
            }
            check_step(&w.s, &b, switch, dispatched);
        }
        w.s
    }

    #[test]
    fn random_operations_keep_invariants() {
        for seed in [1, 0x9e37_79b9_7f4a_7c15, 0xdead_beef, 42, 7777] {
            let s = random_run(seed, 6000);
            // The run must have reached the interesting states at all.
            assert!(s.tasks().count() > 2);
        }
    }

    /// The random test does get somewhere: spawns hit the bound, tasks
    /// block, exit, time out and get reaped.
    #[test]
    fn random_operations_cover_the_states() {
        let mut w = World::new(0x1234_5678);
        let mut seen = BTreeSet::new();
        for _ in 0..6000 {
            let b = Before::of(&w.s);
            w.step(&b);
            for t in w.s.tasks() {
                let kind = match t.state {
                    State::Ready => "ready",
                    State::Running => "running",
                    State::Blocked(Blocked::Sleep) => "sleep",
                    State::Blocked(Blocked::Queue(_)) => "queue",
                    State::Blocked(Blocked::Wait(_)) => "wait",
                    State::Exited(_) => "exited",
                };
                seen.insert(kind);
                if t.wake == WakeReason::TimedOut {
                    seen.insert("timed out");
                }
            }
            if w.s.tasks().count() == RANDOM_MAX_TASKS as usize {
                seen.insert("full");
            }
        }
        let all = [
            "ready",
            "running",
            "sleep",
            "queue",
            "wait",
            "exited",
            "timed out",
            "full",
        ];
        for kind in all {
            assert!(seen.contains(kind), "never saw {kind}");
        }
    }
}
