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
mod tests;
