use super::*;
use crate::testutil::{Rng, alloc};
use std::rc::Rc;

mod smp;

const N: Priority = Priority::NORMAL;

impl<X> Scheduler<X> {
    fn run_tids(&self, prio: Priority) -> Vec<Tid> {
        let list = &self.run.lists[usize::from(prio.0)];
        self.check_list(list, Chain::Queue).unwrap()
    }

    /// Empty for a freed queue.
    fn queue_tids(&self, q: QueueId) -> Vec<Tid> {
        self.queues.get(q).map_or(Vec::new(), |list| {
            self.check_list(list, Chain::Queue).unwrap()
        })
    }
}

fn ok<X>(s: &Scheduler<X>) {
    if let Err(e) = s.check() {
        panic!("invariant broken: {e}");
    }
}

fn state<X>(s: &Scheduler<X>, tid: Tid) -> State {
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
    let a = s.spawn("a", None, N, false, ()).unwrap();
    let b = s.spawn("b", None, N, false, ()).unwrap();
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
    let a = s.spawn("a", None, N, false, ()).unwrap();
    // The slice is long used up, so an equal task preempts at once.
    assert!(s.tick(10));
    assert_eq!(s.schedule(), sw(BOOT, a));
    assert!(!s.tick(11));
    assert!(!s.tick(12));
    assert!(s.tick(13));
    // A lower task never preempts, slice or not.
    let mut s = Scheduler::new(1);
    s.spawn("low", None, Priority::LOW, false, ()).unwrap();
    for t in 1..5 {
        assert!(!s.tick(t));
    }
    assert_eq!(s.schedule(), None, "main is picked again over a lower task");
    ok(&s);
}

#[test]
fn higher_priority_preempts_on_wake() {
    let mut s = Scheduler::new(100);
    let q = s.new_queue().unwrap();
    let hi = s.spawn("hi", None, Priority::HIGH, false, ()).unwrap();
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
    let low = s.spawn("low", None, Priority::IDLE, false, ()).unwrap();
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
    let low = s.spawn("low", None, Priority::LOW, false, ()).unwrap();
    assert_eq!(s.yield_now(), None, "a lower task does not get the CPU");
    let a = s.spawn("a", None, N, false, ()).unwrap();
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
    let q = s.new_queue().unwrap();
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
    let q = s.new_queue().unwrap();
    let a = s.spawn("a", None, N, false, ()).unwrap();
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
    let t = s.spawn("t", Some(a), N, false, ()).unwrap();
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
    let a = s.spawn("a", None, N, false, ()).unwrap();
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
    let q = s.new_queue().unwrap();
    let a = s.spawn("a", None, N, false, ()).unwrap();
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
    let q = s.new_queue().unwrap();
    let a = s.spawn("a", None, N, false, ()).unwrap();
    let b = s.spawn("b", None, N, false, ()).unwrap();
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
    assert_eq!(s.run_tids(N), [b, BOOT]);
    ok(&s);
}

/// Blocks the current task on `q` with key `k` and bits `bits`.
fn block_tagged<X>(s: &mut Scheduler<X>, q: QueueId, k: u64, bits: u32) -> Option<Switch> {
    let tag = WaitTag { key: [k, 0], bits };
    s.block_current_tagged(q, None, tag).unwrap()
}

#[test]
fn tagged_wakes_pick_their_key_and_bits_in_arrival_order() {
    let mut s = Scheduler::new(100);
    let q = s.new_queue().unwrap();
    let tids: Vec<Tid> = (0..4)
        .map(|_| s.spawn("t", None, N, false, ()).unwrap())
        .collect();
    // main: key 1 bits 1; t0: key 2; t1: key 1 bits 2; t2: key 1 bits 3.
    block_tagged(&mut s, q, 1, 1);
    block_tagged(&mut s, q, 2, u32::MAX);
    block_tagged(&mut s, q, 1, 2);
    block_tagged(&mut s, q, 1, 3);
    assert_eq!(s.current(), tids[3]);
    assert_eq!(s.wake_tagged(q, [3, 0], u32::MAX, 9), 0, "no such key");
    assert_eq!(s.wake_tagged(q, [1, 0], 4, 9), 0, "no shared bit");
    assert_eq!(s.wake_tagged(q, [1, 0], 2, 1), 1, "t1 only: the max");
    assert_eq!(s.run_tids(N), [tids[1]]);
    assert_eq!(s.wake_tagged(q, [1, 0], u32::MAX, 9), 2, "main, then t2");
    assert_eq!(s.run_tids(N), [tids[1], BOOT, tids[2]]);
    assert_eq!(s.queue_tids(q), [tids[0]], "the other key kept its place");
    assert_eq!(s.task(BOOT).unwrap().wake, WakeReason::Woken);
    ok(&s);
}

#[test]
fn requeue_wakes_then_moves_keeping_bits_and_timers() {
    let mut s = Scheduler::new(100);
    let (q, r) = (s.new_queue().unwrap(), s.new_queue().unwrap());
    let tids: Vec<Tid> = (0..4)
        .map(|_| s.spawn("t", None, N, false, ()).unwrap())
        .collect();
    // r already holds t0 (key 9); main, t1, t2 wait on q with key 1,
    // main with a deadline.
    s.block_current_tagged(
        q,
        Some(500),
        WaitTag {
            key: [1, 0],
            bits: 5,
        },
    )
    .unwrap();
    block_tagged(&mut s, r, 9, 1);
    block_tagged(&mut s, q, 1, 1);
    block_tagged(&mut s, q, 1, 1);
    assert_eq!(s.current(), tids[3]);
    // Wake one (main), move one (t1) behind t0; t2 stays.
    assert_eq!(s.requeue_tagged(q, [1, 0], r, [9, 0], 1, 1), Ok(2));
    assert_eq!(s.run_tids(N), [BOOT]);
    assert!(s.timers.is_empty(), "main's timer went with its wake");
    assert_eq!(s.queue_tids(q), [tids[2]]);
    assert_eq!(s.queue_tids(r), [tids[0], tids[1]]);
    assert_eq!(state(&s, tids[1]), State::Blocked(Blocked::Queue(r)));
    // A wake for key 9 now finds both, in their order on r.
    assert_eq!(s.wake_tagged(r, [9, 0], 1, 1), 1);
    assert_eq!(s.run_tids(N), [BOOT, tids[0]]);
    // Requeue onto the same queue under a new key goes to the tail; under
    // the same key it changes nothing. Nothing to wake or move is 0, and a
    // freed queue is an error.
    block_tagged(&mut s, q, 1, 1); // t3, behind t2
    assert_eq!(s.requeue_tagged(q, [1, 0], q, [1, 0], 0, 9), Ok(2));
    assert_eq!(s.queue_tids(q), [tids[2], tids[3]]);
    assert_eq!(s.requeue_tagged(q, [1, 0], q, [7, 0], 0, 1), Ok(1));
    assert_eq!(s.queue_tids(q), [tids[3], tids[2]]);
    assert_eq!(s.wake_tagged(q, [1, 0], u32::MAX, 9), 1);
    assert_eq!(s.wake_tagged(q, [1, 0], u32::MAX, 9), 0);
    assert_eq!(s.requeue_tagged(q, [7, 0], r, [8, 0], 0, 0), Ok(0));
    s.free_queue(r);
    assert_eq!(
        s.requeue_tagged(q, [7, 0], r, [8, 0], 1, 1),
        Err(SchedError::NoSuchQueue)
    );
    assert_eq!(s.wake_tagged(q, [7, 0], u32::MAX, 9), 1);
    ok(&s);
}

#[test]
fn detached_tasks_are_never_waited_for_and_reaped_by_others() {
    let mut s = Scheduler::with_ext(100, MAX_TASKS, '0', '1');
    let a = s.spawn("a", Some(BOOT), N, true, 'a').unwrap();
    let b = s.spawn("b", Some(BOOT), N, true, 'b').unwrap();
    s.detach(a).unwrap();
    s.detach(b).unwrap();
    assert_eq!(s.wait_for(a), Err(SchedError::Detached));
    assert_eq!(s.reap_detached(), None, "nothing has exited");
    assert_eq!(s.yield_now(), sw(BOOT, a));
    assert_eq!(s.exit_current(3), Ok(Switch { from: a, to: b }));
    // b is current: a can go, b cannot while it runs on its stack.
    assert_eq!(s.exit_current(4), Ok(Switch { from: b, to: BOOT }));
    ok(&s);
    assert_eq!(s.reap_detached(), Some((a, 3, 'a')));
    assert_eq!(s.reap_detached(), Some((b, 4, 'b')));
    assert_eq!(s.reap_detached(), None);
    assert_eq!(s.live_in_group(BOOT), 1);
    // Killed while current: skipped until it has left the CPU.
    let c = s.spawn("c", Some(BOOT), N, true, 'c').unwrap();
    s.detach(c).unwrap();
    assert_eq!(s.yield_now(), sw(BOOT, c));
    s.kill(c, 9).unwrap();
    assert_eq!(s.reap_detached(), None);
    assert_eq!(s.schedule(), sw(c, BOOT));
    // A plain reap takes a detached zombie off the list too.
    assert_eq!(s.reap(c), Ok((9, 'c')));
    assert_eq!(s.reap_detached(), None);
    assert_eq!(s.detach(IDLE), Err(SchedError::IdleTask));
    assert_eq!(s.detach(c), Err(SchedError::NoSuchTask));
    ok(&s);
}

#[test]
fn freeing_a_queue_wakes_its_waiters() {
    let mut s = Scheduler::new(100);
    let q = s.new_queue().unwrap();
    let other = s.new_queue().unwrap();
    assert_ne!(q, other);
    s.spawn("a", None, N, false, ()).unwrap();
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
    let t = s.spawn("t", Some(BOOT), N, true, ()).unwrap();
    assert_eq!(s.yield_now(), sw(BOOT, t));
    assert_eq!(s.exit_current(42), Ok(Switch { from: t, to: BOOT }));
    assert_eq!(state(&s, t), State::Exited(42));
    assert_eq!(s.live_in_group(BOOT), 1);
    assert_eq!(s.wait_for(t), Ok(WaitResult::Exited(42, ())));
    assert!(s.task(t).is_none());
    assert_eq!(s.wait_for(t), Err(SchedError::NoSuchTask));
    assert_eq!(s.counts(), (2, 0));
    ok(&s);
}

#[test]
fn wait_for_blocks_until_the_exit() {
    let mut s = Scheduler::new(100);
    let t = s.spawn("t", Some(BOOT), N, true, ()).unwrap();
    assert_eq!(s.wait_for(t), Ok(WaitResult::Blocked(sw(BOOT, t))));
    assert_eq!(state(&s, BOOT), State::Blocked(Blocked::Wait(t)));
    for now in 1..50 {
        s.tick(now);
        assert_eq!(s.schedule(), None, "the waiter stays blocked");
    }
    assert_eq!(s.exit_current(7), Ok(Switch { from: t, to: BOOT }));
    assert_eq!(s.task(BOOT).unwrap().wake, WakeReason::Woken);
    assert_eq!(s.wait_for(t), Ok(WaitResult::Exited(7, ())));
    ok(&s);
}

#[test]
fn wait_for_errors() {
    let mut s = Scheduler::new(100);
    let stranger = s.spawn("x", None, N, false, ()).unwrap();
    let t = s.spawn("t", Some(BOOT), N, false, ()).unwrap();
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
    let a = s.spawn("a", Some(BOOT), N, false, ()).unwrap();
    let b = s.spawn("b", Some(BOOT), N, false, ()).unwrap();
    assert_eq!(s.wait_for(a), Ok(WaitResult::Blocked(sw(BOOT, a))));
    assert_eq!(s.wait_for(b), Ok(WaitResult::Blocked(sw(a, b))));
    assert_eq!(s.wait_for(BOOT), Err(SchedError::WouldDeadlock));
    assert_eq!(s.wait_for(a), Err(SchedError::WouldDeadlock));
    ok(&s);
}

#[test]
fn kill_of_a_blocked_task_leaves_its_queue_and_wakes_waiters() {
    let mut s = Scheduler::new(100);
    let q = s.new_queue().unwrap();
    let a = s.spawn("a", Some(BOOT), N, false, ()).unwrap();
    let b = s.spawn("b", Some(BOOT), N, false, ()).unwrap();
    // main waits for a; a blocks on q with a timeout; b runs.
    s.wait_for(a).unwrap();
    assert_eq!(s.block_current(q, Some(500)), Ok(sw(a, b)));
    s.kill(a, -9).unwrap();
    assert_eq!(state(&s, a), State::Exited(-9));
    assert_eq!(s.task(a).unwrap().wake, WakeReason::Killed);
    assert!(s.queue_tids(q).is_empty());
    assert!(s.timers.is_empty());
    assert_eq!(state(&s, BOOT), State::Ready, "the waiter woke");
    assert_eq!(s.task(BOOT).unwrap().wake, WakeReason::Woken);
    assert_eq!(s.wake_one(q), None);
    s.tick(600); // the old deadline: nothing happens
    assert_eq!(state(&s, a), State::Exited(-9));
    assert_eq!(s.live_in_group(BOOT), 2);
    assert_eq!(s.yield_now(), sw(b, BOOT));
    assert_eq!(s.wait_for(a), Ok(WaitResult::Exited(-9, ())));
    ok(&s);
}

#[test]
fn kill_of_ready_and_sleeping_tasks() {
    let mut s = Scheduler::new(100);
    let a = s.spawn("a", None, N, false, ()).unwrap();
    let b = s.spawn("b", None, N, false, ()).unwrap();
    s.kill(a, 1).unwrap();
    assert_eq!(s.counts(), (4, 1));
    assert_eq!(s.yield_now(), sw(BOOT, b), "a is skipped");
    assert_eq!(s.sleep_current(1000), sw(b, BOOT));
    s.kill(b, 2).unwrap();
    assert!(s.timers.is_empty());
    assert_eq!(s.reap(a), Ok((1, ())));
    assert_eq!(s.reap(b), Ok((2, ())));
    assert_eq!(s.counts(), (2, 0));
    ok(&s);
}

#[test]
fn killed_current_task_is_never_picked_again() {
    let mut s = Scheduler::new(100);
    let q = s.new_queue().unwrap();
    let a = s.spawn("a", Some(BOOT), N, false, ()).unwrap();
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
    assert!(s.queue_tids(q).is_empty());
    assert_eq!(s.reap(a), Ok((1, ())));
    assert_eq!(s.reap(BOOT), Ok((139, ())));
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
    let a = s.spawn("a", None, N, false, ()).unwrap();
    let b = s.spawn("b", None, N, false, ()).unwrap();
    let c = s.spawn("c", None, N, false, ()).unwrap();
    let d = s.spawn("d", None, N, false, ()).unwrap();
    assert_eq!([a, b, c, d], [2, 3, 4, 5]);
    assert_eq!(
        s.spawn("e", None, N, false, ()),
        Err(SchedError::TooManyTasks)
    );
    // A zombie keeps its tid.
    s.kill(b, 0).unwrap();
    assert_eq!(
        s.spawn("e", None, N, false, ()),
        Err(SchedError::TooManyTasks)
    );
    assert_eq!(s.reap(b), Ok((0, ())));
    // Freed now, and found by the cyclic search from the top.
    assert_eq!(s.spawn("e", None, N, false, ()), Ok(b));
    // A thread of group c outliving c keeps pid c taken.
    s.kill(d, 0).unwrap();
    s.reap(d).unwrap();
    let t = s.spawn("t", Some(c), N, false, ()).unwrap();
    assert_eq!(t, d);
    s.kill(c, 0).unwrap();
    s.reap(c).unwrap();
    assert_eq!(s.live_in_group(c), 1);
    assert_eq!(
        s.spawn("x", None, N, false, ()),
        Err(SchedError::TooManyTasks)
    );
    s.kill(t, 0).unwrap();
    s.reap(t).unwrap();
    assert_eq!(s.spawn("x", None, N, false, ()), Ok(c));
    ok(&s);
}

#[test]
fn too_many_tasks_at_the_default_bound() {
    let mut s = Scheduler::new(100);
    for i in 2..MAX_TASKS {
        assert_eq!(s.spawn("t", None, N, false, ()), Ok(i));
    }
    assert_eq!(
        s.spawn("t", None, N, false, ()),
        Err(SchedError::TooManyTasks)
    );
    assert_eq!(s.counts(), (MAX_TASKS as usize, MAX_TASKS as usize - 2));
    s.kill(77, 0).unwrap();
    s.reap(77).unwrap();
    assert_eq!(s.spawn("t", None, N, false, ()), Ok(77));
    ok(&s);
}

#[test]
fn idle_task_refuses_kill_exit_block() {
    let mut s = Scheduler::new(100);
    let q = s.new_queue().unwrap();
    assert_eq!(s.kill(IDLE, 0), Err(SchedError::IdleTask));
    assert_eq!(s.reap(IDLE), Err(SchedError::IdleTask));
    assert_eq!(
        s.spawn("x", Some(IDLE), N, false, ()),
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
            s.spawn("x", Some(tid), N, false, ()),
            Err(SchedError::NoSuchTask)
        );
        assert!(s.task(tid).is_none());
        assert_eq!(s.live_in_group(tid), 0);
    }
    assert_eq!(s.reap(BOOT), Err(SchedError::NotExited));
    // A group whose threads all exited takes no new ones.
    let g = s.spawn("g", None, N, false, ()).unwrap();
    s.kill(g, 0).unwrap();
    assert_eq!(
        s.spawn("x", Some(g), N, false, ()),
        Err(SchedError::NoSuchTask)
    );
    assert_eq!(s.kill(g, 5), Ok(()), "killing a zombie is harmless");
    assert_eq!(s.reap(g), Ok((0, ())), "and keeps the first status");
    ok(&s);
}

#[test]
fn groups_count_live_tasks() {
    let mut s = Scheduler::new(100);
    let p = s.spawn("p", None, N, true, ()).unwrap();
    let t1 = s.spawn("t1", Some(p), N, true, ()).unwrap();
    let t2 = s.spawn("t2", Some(p), N, true, ()).unwrap();
    assert_eq!(s.task(t2).unwrap().group, p);
    assert!(s.task(t2).unwrap().user);
    assert_eq!(s.live_in_group(p), 3);
    s.kill(t1, 0).unwrap();
    assert_eq!(s.live_in_group(p), 2);
    s.kill(p, 0).unwrap();
    s.reap(p).unwrap();
    assert_eq!(s.live_in_group(p), 1);
    assert_eq!(
        s.spawn("t3", Some(p), N, true, ())
            .map(|t| s.task(t).unwrap().group),
        Ok(p)
    );
    ok(&s);
}

/// Creation with the heap exhausted: spawn and new_queue say NoMemory,
/// change nothing, and the scheduler goes on as if they were never called.
#[test]
fn creation_without_memory_fails_cleanly() {
    let mut s = Scheduler::new(100);
    let q = s.new_queue().unwrap();
    // Whatever room the tables have spare is used without allocating;
    // then a spawn must grow them, and cannot.
    let mut spawned = Vec::new();
    let err = loop {
        match alloc::failing(|| s.spawn("t", Some(BOOT), N, false, ())) {
            Ok(tid) => spawned.push(tid),
            Err(e) => break e,
        }
        assert!(spawned.len() < 64, "spawn never needed memory");
    };
    assert_eq!(err, SchedError::NoMemory);
    ok(&s);
    assert_eq!(s.counts(), (2 + spawned.len(), spawned.len()));
    let err = alloc::failing(|| s.spawn("t", None, Priority::HIGH, true, ()));
    assert_eq!(err, Err(SchedError::NoMemory), "nor in a new group");
    ok(&s);
    assert_eq!(s.live_in_group(BOOT), 1 + spawned.len());
    // The same for wait queues.
    let mut queues = vec![q];
    let err = loop {
        match alloc::failing(|| s.new_queue()) {
            Ok(q) => queues.push(q),
            Err(e) => break e,
        }
        assert!(queues.len() < 64, "new_queue never needed memory");
    };
    assert_eq!(err, SchedError::NoMemory);
    ok(&s);
    // A freed slot is reused without memory, under a new id.
    let old = queues.pop().unwrap();
    s.free_queue(old);
    let reused = alloc::failing(|| s.new_queue()).unwrap();
    assert!(!queues.contains(&reused) && reused != old);
    assert_eq!(s.block_current(old, None), Err(SchedError::NoSuchQueue));
    // With memory back, the failed calls left no trace: the next tid is
    // the one after the last handed out, and everything works.
    let last = spawned.last().copied().unwrap_or(BOOT);
    let t = s.spawn("t", Some(BOOT), Priority::HIGH, false, ()).unwrap();
    assert_eq!(t, last + 1);
    assert_eq!(s.schedule(), sw(BOOT, t));
    let next = spawned.first().copied().unwrap_or(BOOT);
    assert_eq!(s.block_current(q, Some(10)), Ok(sw(t, next)));
    assert_eq!(s.wake_one(q), Some(t));
    assert_eq!(s.schedule(), sw(next, t));
    assert_eq!(s.exit_current(5).map(|x| x.from), Ok(t));
    assert_eq!(s.wait_for(t), Ok(WaitResult::Exited(5, ())));
    for q in queues.into_iter().chain([reused]) {
        s.free_queue(q);
    }
    ok(&s);
}

/// Each record carries its payload from spawn to reap, zombie included,
/// and hands it back once, through reap or wait_for.
#[test]
fn payloads_go_with_their_records() {
    let mut s: Scheduler<String> =
        Scheduler::with_ext(100, 10, "idle ctx".to_string(), "boot ctx".to_string());
    ok(&s);
    assert_eq!(s.ext(IDLE).map(String::as_str), Some("idle ctx"));
    assert_eq!(s.ext(BOOT).map(String::as_str), Some("boot ctx"));
    let a = s.spawn("a", Some(BOOT), N, false, "a ctx".into()).unwrap();
    let b = s.spawn("b", Some(BOOT), N, false, "b ctx".into()).unwrap();
    s.ext_mut(a).unwrap().push_str(", saved");
    assert_eq!(s.ext(b).map(String::as_str), Some("b ctx"));
    assert!(s.ext(99).is_none() && s.ext_mut(99).is_none());
    s.kill(a, 3).unwrap();
    assert_eq!(s.ext(a).map(String::as_str), Some("a ctx, saved"));
    assert_eq!(s.reap(a), Ok((3, "a ctx, saved".to_string())));
    assert!(s.ext(a).is_none());
    // A new record in a's old slot starts with its own payload.
    let c = s.spawn("c", Some(BOOT), N, false, "c ctx".into()).unwrap();
    assert_eq!(s.ext(c).map(String::as_str), Some("c ctx"));
    assert_eq!(s.wait_for(b), Ok(WaitResult::Blocked(sw(BOOT, b))));
    s.exit_current(7).unwrap();
    assert_eq!(
        s.wait_for(b),
        Ok(WaitResult::Exited(7, "b ctx".to_string()))
    );
    assert_eq!(s.reap(b), Err(SchedError::NoSuchTask));
    ok(&s);
}

/// A spawn that fails drops the payload it was given: nothing leaks.
#[test]
fn a_failed_spawn_drops_its_payload() {
    let token = Rc::new(());
    let mut s = Scheduler::with_ext(100, 10, Rc::clone(&token), Rc::clone(&token));
    let spawn = |s: &mut Scheduler<Rc<()>>| s.spawn("t", None, N, false, Rc::clone(&token));
    let r = alloc::failing(|| {
        let mut r = Ok(0);
        while r.is_ok() {
            r = spawn(&mut s);
        }
        r
    });
    assert_eq!(r, Err(SchedError::NoMemory));
    assert_eq!(Rc::strong_count(&token), 1 + s.counts().0);
    let mut r = Ok(0);
    while r.is_ok() {
        r = spawn(&mut s);
    }
    assert_eq!(r, Err(SchedError::TooManyTasks));
    assert_eq!(Rc::strong_count(&token), 1 + 10);
    drop(s);
    assert_eq!(Rc::strong_count(&token), 1);
}

#[test]
fn task_names_are_cut_at_a_char_boundary() {
    assert_eq!(core::mem::size_of::<TaskName>(), 16);
    for (name, kept) in [
        ("", ""),
        ("init", "init"),
        ("fifteen-bytes-x", "fifteen-bytes-x"),
        ("sixteen-bytes-xx", "sixteen-bytes-x"),
        // The euro sign takes bytes 14..17: all of it goes.
        ("fourteen-bytes€", "fourteen-bytes"),
        ("ééééééééé", "ééééééé"),
    ] {
        let n = TaskName::new(name);
        assert_eq!(n.as_str(), kept, "{name}");
        assert_eq!(format!("{n}"), kept);
        assert_eq!(format!("{n:?}"), format!("{kept:?}"));
    }
    let mut s = Scheduler::new(100);
    let t = s
        .spawn("a-rather-long-thread-name", None, N, true, ())
        .unwrap();
    assert_eq!(s.task(t).unwrap().name.as_str(), "a-rather-long-t");
    assert_eq!(TaskName::from("main"), s.task(BOOT).unwrap().name);
}

/// check() must notice broken state, or the random test proves nothing.
#[test]
fn check_detects_corruption() {
    // main (1) waits on q with a timeout, a (2) sleeps, b (3) runs, c (4)
    // and d (5) are ready; a record slot and a queue slot are free.
    let fresh = || {
        let mut s = Scheduler::new(10);
        let q = s.new_queue().unwrap();
        let spare = s.new_queue().unwrap();
        s.free_queue(spare);
        for name in ["a", "b", "c", "d", "e"] {
            s.spawn(name, Some(BOOT), N, false, ()).unwrap();
        }
        s.kill(6, 0).unwrap();
        s.reap(6).unwrap();
        s.block_current(q, Some(100)).unwrap();
        s.sleep_current(50).unwrap();
        ok(&s);
        assert_eq!((s.current(), s.run_tids(N)), (3, vec![4, 5]));
        (s, q)
    };
    type Corrupt = fn(&mut Scheduler, QueueId);
    let corruptions: [(&str, Corrupt); 26] = [
        ("detached zombie off the list", |s, _| {
            s.tasks.get_mut(4).unwrap().info.detached = true;
            s.run.remove(&mut s.tasks, 4, N, CpuMask::ALL);
            s.set_state(4, State::Exited(0));
        }),
        ("stale tag", |s, _| s.tasks.get_mut(4).unwrap().tag.bits = 1),
        ("two running", |s, _| s.set_state(4, State::Running)),
        ("ready off queue", |s, _| s.run = RunQueue::new()),
        ("queued twice", |s, _| {
            s.tasks.push_back(&mut s.run.lists[2], 5, Chain::Queue);
            s.run.len += 1;
        }),
        ("idle queued", |s, _| {
            s.run.push_back(&mut s.tasks, IDLE, N, CpuMask::ALL)
        }),
        ("lost waiter", |s, q| {
            *s.queues.get_mut(q).unwrap() = List::default()
        }),
        ("lost timer", |s, _| s.timers = List::default()),
        ("exited on queue", |s, _| s.set_state(4, State::Exited(0))),
        ("group count", |s, _| {
            s.tasks.group_mut(BOOT).unwrap().live = 9
        }),
        ("idle exited", |s, _| s.set_state(IDLE, State::Exited(0))),
        ("broken back link", |s, _| {
            s.tasks.get_mut(5).unwrap().queue.prev = None
        }),
        ("wrong tail", |s, _| s.run.lists[2].tail = Some(4)),
        ("bitmap", |s, _| s.run.busy = [0; 4]),
        ("ready count", |s, _| s.run.len += 1),
        ("timers out of order", |s, _| {
            s.tasks.get_mut(2).unwrap().deadline = Some(150)
        }),
        ("overdue timer", |s, _| s.now = 60),
        ("timer without deadline", |s, _| {
            s.tasks.get_mut(1).unwrap().deadline = None
        }),
        ("stale link", |s, _| {
            s.tasks.get_mut(3).unwrap().queue.next = Some(4)
        }),
        ("shared slot", |s, _| {
            s.tasks.tids[4].slot = s.tasks.tids[5].slot
        }),
        ("lost free slot", |s, _| s.tasks.free = None),
        ("free chain into a record", |s, _| {
            s.tasks.free = s.tasks.tids[4].slot
        }),
        ("record count", |s, _| s.tasks.len += 1),
        ("lost queue slot", |s, _| s.queues.free = None),
        ("waiter on a stale id", |s, q| {
            s.queues.slots[q.slot as usize].0 += 1
        }),
        ("group left behind", |s, _| {
            s.tasks.group_mut(6).unwrap().records = 1
        }),
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
    next_tid: Tid,
}

impl Before {
    fn of<X>(s: &Scheduler<X>) -> Before {
        let mut positions = BTreeMap::new();
        for p in 0..=u8::MAX {
            for (i, tid) in s.run_tids(Priority(p)).into_iter().enumerate() {
                positions.insert(tid, i);
            }
        }
        Before {
            current: s.current(),
            states: s.tasks().map(|t| (t.tid, t.state)).collect(),
            groups: s.groups().collect(),
            positions,
            next_tid: s.next_tid,
        }
    }
}

/// The random test's world: the scheduler and what it was handed.
struct World {
    /// Each record's payload is the serial number of its spawn, so that a
    /// payload going to the wrong record shows.
    s: Scheduler<u64>,
    rng: Rng,
    now: u64,
    queues: Vec<QueueId>,
    freed: Vec<QueueId>,
    /// The payload each record was given.
    payloads: BTreeMap<Tid, u64>,
    spawns: u64,
    /// Calls that must not allocate, and the allocations they made.
    quiet_calls: u64,
    allocs: u64,
    /// Creations run with every allocation failing, and how many of them
    /// said NoMemory.
    starved: u64,
    no_memory: u64,
}

/// Small enough that random spawns reach the bound now and then.
const RANDOM_MAX_TASKS: u32 = 20;

/// The payloads of idle and the boot thread in the random test.
const IDLE_EXT: u64 = 1 << 40;
const BOOT_EXT: u64 = IDLE_EXT + 1;

impl World {
    fn new(seed: u64) -> World {
        World {
            s: Scheduler::with_ext(3, RANDOM_MAX_TASKS, IDLE_EXT, BOOT_EXT),
            rng: Rng(seed),
            now: 0,
            queues: Vec::new(),
            freed: Vec::new(),
            payloads: BTreeMap::from([(IDLE, IDLE_EXT), (BOOT, BOOT_EXT)]),
            spawns: 0,
            quiet_calls: 0,
            allocs: 0,
            starved: 0,
            no_memory: 0,
        }
    }

    /// Runs a scheduler call that must not allocate, counting what it did
    /// allocate: only creation may.
    fn quiet<R>(&mut self, f: impl FnOnce(&mut Scheduler<u64>) -> R) -> R {
        let (r, n) = alloc::count(|| f(&mut self.s));
        self.quiet_calls += 1;
        self.allocs += n;
        r
    }

    /// Runs a creating call, now and then with every allocation failing;
    /// says whether it was.
    fn create<R>(&mut self, f: impl FnOnce(&mut Scheduler<u64>) -> R) -> (R, bool) {
        if self.rng.chance(30) {
            self.starved += 1;
            (alloc::failing(|| f(&mut self.s)), true)
        } else {
            (f(&mut self.s), false)
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
        match self.rng.below(19) {
            16 => self.tagged(b),
            17 => {
                self.tagged_wake();
                (None, false)
            }
            18 => {
                self.detach(b);
                (None, false)
            }
            0 | 1 => {
                self.spawn(b);
                (None, false)
            }
            2 | 3 => {
                self.now += self.rng.below(60);
                let now = self.now;
                self.quiet(|s| s.tick(now));
                self.check_tick(b);
                (None, false)
            }
            4 | 5 => (self.quiet(|s| s.schedule()), true),
            6 => (self.quiet(|s| s.yield_now()), true),
            7 => {
                let until = self.deadline();
                let killed = self.s.kill_pending(me).is_some();
                let r = self.quiet(|s| s.sleep_current(until));
                if me != IDLE && alive && !killed {
                    assert_eq!(r.is_some(), until > self.s.now);
                }
                (r, r.is_some())
            }
            8 => {
                if self.queues.len() < 6 {
                    self.new_queue();
                } else if self.rng.chance(20) {
                    let i = self.rng.below(self.queues.len() as u64) as usize;
                    let q = self.queues.swap_remove(i);
                    self.quiet(|s| s.free_queue(q));
                    self.freed.push(q);
                }
                (None, false)
            }
            9 => {
                let Some(q) = self.some_queue() else {
                    return (None, false);
                };
                let deadline = self.rng.chance(50).then(|| self.deadline());
                match self.quiet(|s| s.block_current(q, deadline)) {
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
            13 => {
                let status = self.rng.below(256) as i64;
                match self.quiet(|s| s.exit_current(status)) {
                    Ok(switch) => (Some(switch), true),
                    Err(e) => {
                        assert_eq!((e, me), (SchedError::IdleTask, IDLE));
                        (None, false)
                    }
                }
            }
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
        let user = self.rng.chance(50);
        let ext = self.spawns;
        self.spawns += 1;
        let (r, starved) = self.create(|s| s.spawn("r", group, prio, user, ext));
        if r.is_err() {
            assert_eq!(
                self.s.next_tid, b.next_tid,
                "a failed spawn moved the tid search"
            );
        }
        match r {
            Ok(tid) => {
                assert!(!b.states.contains_key(&tid), "tid {tid} reused");
                assert!(!b.groups.contains_key(&tid), "pid {tid} reused");
                let t = self.s.task(tid).unwrap();
                assert_eq!(t.group, group.unwrap_or(tid));
                assert_eq!(t.state, State::Ready);
                self.payloads.insert(tid, ext);
            }
            Err(SchedError::TooManyTasks) => {
                let free = (1..self.s.max_tasks)
                    .any(|t| !b.states.contains_key(&t) && !b.groups.contains_key(&t));
                assert!(!free, "TooManyTasks with a free tid");
            }
            Err(SchedError::IdleTask) => assert_eq!(group, Some(IDLE)),
            Err(SchedError::NoMemory) => {
                assert!(starved, "NoMemory with memory to spare");
                self.no_memory += 1;
                let states: BTreeMap<Tid, State> =
                    self.s.tasks().map(|t| (t.tid, t.state)).collect();
                assert_eq!(states, b.states, "a failed spawn changed the tasks");
            }
            Err(e) => {
                assert_eq!(e, SchedError::NoSuchTask);
                let live = group.and_then(|g| b.groups.get(&g)).map_or(0, |g| g.live);
                assert_eq!(live, 0);
            }
        }
    }

    /// A tagged block: one of two keys, random bits.
    fn tagged(&mut self, b: &Before) -> (Option<Switch>, bool) {
        let Some(q) = self.some_queue() else {
            return (None, false);
        };
        let tag = WaitTag {
            key: [self.rng.below(2), 0],
            bits: self.rng.below(4) as u32 + 1,
        };
        let deadline = self.rng.chance(50).then(|| self.deadline());
        match self.quiet(|s| s.block_current_tagged(q, deadline, tag)) {
            Ok(r) => {
                if r.is_some() {
                    assert_eq!(self.s.tasks.get(b.current).unwrap().tag, tag);
                }
                (r, r.is_some())
            }
            Err(SchedError::IdleTask) => (None, false),
            Err(e) => {
                assert_eq!(e, SchedError::NoSuchQueue);
                (None, false)
            }
        }
    }

    /// wake_tagged or requeue_tagged, checked against the queues before.
    fn tagged_wake(&mut self) {
        let (Some(q), Some(r)) = (self.some_queue(), self.some_queue()) else {
            return;
        };
        let key = [self.rng.below(2), 0];
        let bits = self.rng.below(4) as u32;
        let (wake, requeue) = (self.rng.below(3) as usize, self.rng.below(3) as usize);
        let waiting = |s: &Scheduler<u64>, q| -> Vec<(Tid, WaitTag)> {
            s.queue_tids(q)
                .into_iter()
                .map(|t| (t, s.tasks.get(t).unwrap().tag))
                .collect()
        };
        let before = waiting(&self.s, q);
        let before_r = waiting(&self.s, r);
        if self.rng.chance(50) {
            let n = self.quiet(|s| s.wake_tagged(q, key, bits, wake));
            let want: Vec<Tid> = before
                .iter()
                .filter(|(_, t)| t.key == key && t.bits & bits != 0)
                .map(|(tid, _)| *tid)
                .take(wake)
                .collect();
            assert_eq!(n, want.len());
            for tid in want {
                let t = self.s.task(tid).unwrap();
                assert_eq!((t.state, t.wake), (State::Ready, WakeReason::Woken));
            }
            return;
        }
        let new_key = [self.rng.below(2) + 2, 0];
        let Ok(n) = self.quiet(|s| s.requeue_tagged(q, key, r, new_key, wake, requeue)) else {
            assert!(self.freed.contains(&q) || self.freed.contains(&r));
            return;
        };
        let matching: Vec<Tid> = before
            .iter()
            .filter(|(_, t)| t.key == key)
            .map(|(tid, _)| *tid)
            .collect();
        let woken = matching.len().min(wake);
        let moved = (matching.len() - woken).min(requeue);
        assert_eq!(n, woken + moved);
        for &tid in &matching[..woken] {
            assert_eq!(self.s.task(tid).unwrap().state, State::Ready);
        }
        let moved_tids = &matching[woken..woken + moved];
        for &tid in moved_tids {
            assert_eq!(self.s.tasks.get(tid).unwrap().tag.key, new_key);
            assert_eq!(
                self.s.task(tid).unwrap().state,
                State::Blocked(Blocked::Queue(r))
            );
        }
        let gone = &matching[..woken + moved];
        let mut want_r: Vec<Tid> = before_r
            .iter()
            .map(|(t, _)| *t)
            .filter(|t| !gone.contains(t))
            .collect();
        want_r.extend_from_slice(moved_tids);
        assert_eq!(self.s.queue_tids(r), want_r, "moved ones go to the tail");
    }

    /// Detaches a task, or reaps a detached zombie.
    fn detach(&mut self, b: &Before) {
        if self.rng.chance(50) {
            let tid = self.some_tid();
            let r = self.quiet(|s| s.detach(tid));
            match r {
                Ok(()) => assert!(self.s.task(tid).unwrap().detached),
                Err(e) => assert!(
                    (e, tid) == (SchedError::IdleTask, IDLE)
                        || (e == SchedError::NoSuchTask && !b.states.contains_key(&tid))
                ),
            }
            return;
        }
        let zombies: Vec<Tid> = self
            .s
            .tasks()
            .filter(|t| t.detached && matches!(t.state, State::Exited(_)) && t.tid != b.current)
            .map(|t| t.tid)
            .collect();
        match self.quiet(|s| s.reap_detached()) {
            Some((tid, status, ext)) => {
                assert!(zombies.contains(&tid), "reaped {tid}, zombies {zombies:?}");
                assert_eq!(b.states[&tid], State::Exited(status));
                assert_eq!(self.payloads.remove(&tid), Some(ext), "payload of {tid}");
            }
            None => assert!(zombies.is_empty(), "left {zombies:?}"),
        }
    }

    fn new_queue(&mut self) {
        let (r, starved) = self.create(|s| s.new_queue());
        match r {
            Ok(q) => {
                assert!(
                    !self.queues.contains(&q) && !self.freed.contains(&q),
                    "{q:?} handed out twice"
                );
                assert!(self.s.queue_tids(q).is_empty());
                self.queues.push(q);
            }
            Err(e) => {
                assert_eq!(e, SchedError::NoMemory);
                assert!(starved, "NoMemory with memory to spare");
                self.no_memory += 1;
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
            if let Some(tid) = self.quiet(|s| s.wake_one(q)) {
                let t = self.s.task(tid).unwrap();
                assert_eq!((t.state, t.wake), (State::Ready, WakeReason::Woken));
            }
        } else {
            self.quiet(|s| s.wake_all(q));
            assert!(self.s.queue_tids(q).is_empty());
        }
    }

    fn kill(&mut self, b: &Before) -> (Option<Switch>, bool) {
        let tid = self.some_tid();
        let status = self.rng.below(1000) as i64;
        let request = self.rng.chance(30);
        if request {
            return self.request_kill(b, tid, status);
        }
        match self.quiet(|s| s.kill(tid, status)) {
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
                    let r = self.quiet(|s| s.schedule());
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

    /// A deferred kill: a blocked target wakes, any other stays as it is.
    fn request_kill(&mut self, b: &Before, tid: Tid, status: i64) -> (Option<Switch>, bool) {
        let pending = self.s.kill_pending(tid);
        match self.quiet(|s| s.request_kill(tid, status)) {
            Ok(()) => {
                let t = self.s.task(tid).unwrap();
                match b.states[&tid] {
                    State::Exited(_) => assert_eq!(t.kill_pending, pending),
                    State::Blocked(_) => {
                        assert_eq!((t.state, t.wake), (State::Ready, WakeReason::Killed));
                        assert_eq!(t.kill_pending, Some(pending.unwrap_or(status)));
                    }
                    before => {
                        assert_eq!(t.state, before);
                        assert_eq!(t.kill_pending, Some(pending.unwrap_or(status)));
                    }
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
        match self.quiet(|s| s.wait_for(target)) {
            Ok(WaitResult::Exited(status, ext)) => {
                assert_eq!(b.states[&target], State::Exited(status));
                assert!(self.s.task(target).is_none());
                assert_eq!(
                    self.payloads.remove(&target),
                    Some(ext),
                    "payload of {target}"
                );
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
                } else if b.states[&me] == State::Running && self.s.kill_pending(me).is_some() {
                    SchedError::Interrupted
                } else if !b.states.contains_key(&target) {
                    SchedError::NoSuchTask
                } else if self.s.task(target).map(|t| t.group) != my_group {
                    SchedError::NotInGroup
                } else if self.s.task(target).is_some_and(|t| t.detached) {
                    SchedError::Detached
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
        match self.quiet(|s| s.reap(tid)) {
            Ok((status, ext)) => {
                assert_eq!(b.states[&tid], State::Exited(status));
                assert_ne!(tid, b.current);
                assert!(self.s.task(tid).is_none());
                assert_eq!(self.payloads.remove(&tid), Some(ext), "payload of {tid}");
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

    /// Every record still carries the payload it was spawned with.
    fn check_payloads(&self) {
        let kept: BTreeMap<Tid, u64> = self
            .s
            .tasks()
            .map(|t| (t.tid, *self.s.ext(t.tid).unwrap()))
            .collect();
        assert_eq!(kept, self.payloads);
    }
}

/// Checks what holds across any step: the switch matches the change of
/// current task, a ready task only moves towards the head of its run
/// queue (so round robin cannot starve it), the task dispatched was at
/// the head, and after a dispatch nothing ready is more important.
fn check_step<X>(s: &Scheduler<X>, b: &Before, switch: Option<Switch>, dispatched: bool) {
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

fn random_run(seed: u64, steps: usize) -> World {
    let mut w = World::new(seed);
    for i in 0..steps {
        let b = Before::of(&w.s);
        let (switch, dispatched) = w.step(&b);
        if let Err(e) = w.s.check() {
            panic!("seed {seed:#x} step {i}: {e}");
        }
        assert_eq!(
            w.allocs, 0,
            "seed {seed:#x} step {i}: a call that must not allocate did"
        );
        check_step(&w.s, &b, switch, dispatched);
        w.check_payloads();
    }
    w
}

#[test]
fn random_operations_keep_invariants() {
    for seed in [1, 0x9e37_79b9_7f4a_7c15, 0xdead_beef, 42, 7777] {
        let w = random_run(seed, 6000);
        // The run must have reached the interesting states at all.
        assert!(w.s.tasks().count() > 2);
    }
}

/// Only creation allocates: thousands of ticks, switches, blocks, wakes,
/// kills, exits, waits and reaps between spawns make no allocation at all
/// (random_run fails at the first step that does).
#[test]
fn random_non_creating_calls_never_allocate() {
    let w = random_run(0x5eed_0a11_0c00, 20_000);
    assert_eq!(w.allocs, 0);
    assert!(
        w.quiet_calls > 15_000,
        "only {} calls counted",
        w.quiet_calls
    );
}

/// The random test does get somewhere: spawns hit the bound, tasks
/// block, exit, time out and get reaped, and creations run out of memory.
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
            if t.kill_pending.is_some() {
                seen.insert("kill pending");
            }
            if t.detached && matches!(t.state, State::Exited(_)) {
                seen.insert("detached zombie");
            }
            if w.s.tasks.get(t.tid).unwrap().tag.bits != 0 {
                seen.insert("tagged");
            }
        }
        if w.s.tasks().count() == RANDOM_MAX_TASKS as usize {
            seen.insert("full");
        }
        if w.no_memory > 0 {
            seen.insert("no memory");
        }
        if w.starved > w.no_memory {
            seen.insert("created without memory");
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
        "kill pending",
        "detached zombie",
        "tagged",
        "full",
        "no memory",
        "created without memory",
    ];
    for kind in all {
        assert!(seen.contains(kind), "never saw {kind}");
    }
}
