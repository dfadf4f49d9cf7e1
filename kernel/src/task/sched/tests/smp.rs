//! The scheduler with several CPUs: per-CPU current and idle tasks,
//! affinity, kicks, and the same calls made on behalf of different CPUs;
//! then the random test with 2 and 4 simulated CPUs, whose switches are
//! carried out after the decision as the process model carries them out.

use super::*;

/// A scheduler with `n` CPUs: CPU 0 runs main, the others their idle
/// tasks (tids 2..n+1, made first).
fn with_cpus(n: usize, slice: u64) -> Scheduler {
    let mut s = Scheduler::new(slice);
    for i in 1..n {
        assert_eq!(s.add_cpu(()), Ok(i));
    }
    ok(&s);
    s
}

/// Acts for `cpu`, as the process model does after taking the lock.
fn on<X>(s: &mut Scheduler<X>, cpu: usize) -> &mut Scheduler<X> {
    assert!(s.set_cpu(cpu), "CPU {cpu} has not joined");
    s
}

fn mask(cpus: &[usize]) -> CpuMask {
    let mut m = CpuMask::NONE;
    for &c in cpus {
        m.insert(c);
    }
    m
}

#[test]
fn cpu_masks_hold_cpus_by_bit() {
    let m = mask(&[0, 3, 63]);
    assert_eq!(m.0, 1 | 8 | 1 << 63);
    assert!(m.contains(3) && !m.contains(2) && !m.contains(64) && !m.contains(usize::MAX));
    assert_eq!(m.iter().collect::<Vec<_>>(), [0, 3, 63]);
    assert_eq!(m.first(), Some(0));
    assert_eq!(CpuMask::NONE.first(), None);
    assert_eq!(CpuMask::one(64), CpuMask::NONE);
    assert_eq!(CpuMask::first_n(3), mask(&[0, 1, 2]));
    assert_eq!(CpuMask::first_n(64), CpuMask::ALL);
    assert_eq!(m.without(mask(&[3])).and(mask(&[0, 1])), mask(&[0]));
    assert_eq!(CpuMask::BYTES, 8);
}

#[test]
fn cpus_join_running_their_idle_tasks() {
    let mut s = Scheduler::new(3);
    assert_eq!(s.cpu_count(), 1);
    assert!(!s.set_cpu(1), "no CPU 1 yet");
    assert_eq!(s.cpu(), 0);
    assert_eq!(s.add_cpu(()), Ok(1));
    assert_eq!(s.add_cpu(()), Ok(2));
    ok(&s);
    assert_eq!(s.online(), mask(&[0, 1, 2]));
    let idle1 = s.idle_task(1).unwrap();
    assert_eq!(s.current_on(1), Some(idle1));
    assert_eq!(s.current_on(0), Some(BOOT));
    let t = s.task(idle1).unwrap();
    assert_eq!(
        (
            t.name.as_str(),
            t.group,
            t.state,
            s.cpu_of(idle1),
            t.affinity
        ),
        ("idle/1", IDLE, State::Running, Some(1), mask(&[1]))
    );
    assert_eq!(s.task(IDLE).unwrap().affinity, mask(&[0]));
    // Idle tasks of every CPU refuse what tid 0 refuses.
    assert_eq!(s.kill(idle1, 9), Err(SchedError::IdleTask));
    assert_eq!(s.request_kill(idle1, 9), Err(SchedError::IdleTask));
    assert_eq!(s.reap(idle1), Err(SchedError::IdleTask));
    assert_eq!(s.detach(idle1), Err(SchedError::IdleTask));
    assert_eq!(
        s.set_affinity(idle1, CpuMask::ALL),
        Err(SchedError::IdleTask)
    );
    on(&mut s, 1);
    assert_eq!(s.current(), idle1);
    assert_eq!(s.exit_current(0), Err(SchedError::IdleTask));
    let q = s.new_queue().unwrap();
    assert_eq!(s.block_current(q, None), Err(SchedError::IdleTask));
    assert_eq!(s.wait_for(BOOT), Err(SchedError::IdleTask));
    assert_eq!(s.sleep_current(100), None);
    ok(&s);
    // Up to MAX_CPUS, then no more; the failure changes nothing.
    let mut s = Scheduler::with_max_tasks(3, 2 * MAX_CPUS as u32);
    for i in 1..MAX_CPUS {
        assert_eq!(s.add_cpu(()), Ok(i));
    }
    assert_eq!(s.add_cpu(()), Err((SchedError::TooManyCpus, ())));
    assert_eq!(s.online(), CpuMask::ALL);
    ok(&s);
    // Each CPU's idle task is a record like any other: the bound counts it.
    let mut s = Scheduler::with_max_tasks(3, 3);
    assert_eq!(s.add_cpu(()), Ok(1));
    assert_eq!(s.add_cpu(()), Err((SchedError::TooManyTasks, ())));
    assert_eq!(s.cpu_count(), 2);
    ok(&s);
}

#[test]
fn adding_a_cpu_without_memory_changes_nothing() {
    let mut s = Scheduler::new(3);
    let mut added = 0;
    let err = loop {
        match alloc::failing(|| s.add_cpu(())) {
            Ok(_) => added += 1,
            Err((e, ())) => break e,
        }
        assert!(added < 64, "add_cpu never needed memory");
    };
    assert_eq!(err, SchedError::NoMemory);
    assert_eq!(s.cpu_count(), 1 + added);
    ok(&s);
    assert_eq!(s.add_cpu(()), Ok(1 + added));
    ok(&s);
}

#[test]
fn each_cpu_runs_its_own_task_and_never_anothers() {
    let mut s = with_cpus(2, 3);
    let a = s.spawn("a", None, N, false, ()).unwrap();
    let b = s.spawn("b", None, N, false, ()).unwrap();
    // CPU 1 is idle: it takes a; CPU 0 yields main for b, not a.
    let idle1 = s.idle_task(1).unwrap();
    assert_eq!(on(&mut s, 1).schedule(), sw(idle1, a));
    assert_eq!(s.cpu_of(a), Some(1));
    assert_eq!(on(&mut s, 0).yield_now(), sw(BOOT, b));
    ok(&s);
    // Round robin spans the CPUs: a yields to main, at the head of the
    // queue, which moves to CPU 1; b yields to a on CPU 0.
    assert_eq!(on(&mut s, 1).yield_now(), sw(a, BOOT));
    assert_eq!(on(&mut s, 0).yield_now(), sw(b, a));
    assert_eq!(s.cpu_of(BOOT), Some(1));
    assert_eq!(s.run_tids(N), [b]);
    // a blocks on CPU 0, which then takes b; CPU 1 sleeps main and goes
    // idle.
    let q = s.new_queue().unwrap();
    assert_eq!(on(&mut s, 0).block_current(q, None), Ok(sw(a, b)));
    assert_eq!(on(&mut s, 1).sleep_current(50), sw(BOOT, idle1));
    assert_eq!(s.take_kicks(), CpuMask::NONE);
    ok(&s);
    // A wake on CPU 0 readies a for idle CPU 1: a kick to send.
    assert_eq!(on(&mut s, 0).wake_one(q), Some(a));
    assert_eq!(s.take_kicks(), mask(&[1]));
    assert_eq!(s.kicked(), mask(&[1]));
    assert_eq!(on(&mut s, 1).reschedule(), sw(idle1, a));
    assert_eq!(s.kicked(), CpuMask::NONE);
    ok(&s);
    let stats = |s: &Scheduler, c| s.cpu_stats(c).unwrap();
    assert_eq!(stats(&s, 0).switches, 3);
    assert_eq!(stats(&s, 1).switches, 4);
}

#[test]
fn ticks_are_counted_per_cpu_with_the_idle_ones() {
    let mut s = with_cpus(3, 2);
    let a = s.spawn("a", None, N, false, ()).unwrap();
    on(&mut s, 1).schedule();
    assert_eq!(s.current(), a);
    for now in 1..=4 {
        for cpu in 0..3 {
            on(&mut s, cpu).tick(now);
        }
    }
    for (cpu, idle) in [(0, 0), (1, 0), (2, 4)] {
        let st = s.cpu_stats(cpu).unwrap();
        assert_eq!((st.ticks, st.idle_ticks), (4, idle), "CPU {cpu}");
    }
    // The slice is each CPU's own: main and a each used theirs up alone,
    // with nothing else ready, so neither is preempted.
    assert_eq!(s.task(a).unwrap().cpu_ticks, 4);
    assert_eq!(s.task(BOOT).unwrap().cpu_ticks, 4);
    // Now b comes, from CPU 0: idle CPU 2 is asked, and takes it at its
    // tick; then CPU 0's tick finds nobody to give way to.
    let b = on(&mut s, 0).spawn("b", None, N, false, ()).unwrap();
    assert_eq!(s.take_kicks(), mask(&[2]));
    let idle2 = s.idle_task(2).unwrap();
    assert!(on(&mut s, 2).tick(5));
    assert_eq!(s.schedule(), sw(idle2, b));
    assert!(!on(&mut s, 0).tick(5));
    assert!(s.cpu_stats(7).is_none());
    ok(&s);
}

#[test]
fn ready_tasks_go_to_idle_cpus_one_each() {
    let mut s = with_cpus(4, 3);
    // From CPU 0 (busy): three spawns go to CPUs 1, 2 and 3.
    let t: Vec<Tid> = (0..3)
        .map(|_| s.spawn("t", None, N, false, ()).unwrap())
        .collect();
    assert_eq!(s.take_kicks(), mask(&[1, 2, 3]));
    // A fourth finds every idle CPU asked already, and main no lower.
    s.spawn("u", None, N, false, ()).unwrap();
    assert_eq!(s.take_kicks(), CpuMask::NONE);
    assert_eq!(s.take_kicks(), CpuMask::NONE, "taken once");
    for (i, &tid) in t.iter().enumerate() {
        let cpu = i + 1;
        let idle = s.idle_task(cpu).unwrap();
        assert_eq!(on(&mut s, cpu).reschedule(), sw(idle, tid));
    }
    assert_eq!(s.kicked(), CpuMask::NONE);
    ok(&s);
    // A kicked CPU that finds the task taken stays idle, and is free to
    // be asked again.
    let mut s = with_cpus(3, 3);
    let a = s.spawn("a", None, N, false, ()).unwrap();
    assert_eq!(s.take_kicks(), mask(&[1]));
    let idle2 = s.idle_task(2).unwrap();
    assert!(on(&mut s, 2).tick(1), "CPU 2 looks at its tick");
    assert_eq!(s.schedule(), sw(idle2, a));
    assert_eq!(on(&mut s, 1).reschedule(), None);
    assert_eq!(s.kicked(), CpuMask::NONE);
    on(&mut s, 0).spawn("b", None, N, false, ()).unwrap();
    assert_eq!(s.take_kicks(), mask(&[1]));
    ok(&s);
}

#[test]
fn an_idle_acting_cpu_takes_what_it_wakes_itself() {
    let mut s = with_cpus(2, 3);
    // Main sleeps on CPU 0, which goes idle; CPU 1 is idle too.
    assert_eq!(s.sleep_current(10), sw(BOOT, IDLE));
    // CPU 0's tick wakes it: CPU 0 takes it, CPU 1 is not bothered.
    assert!(s.tick(10));
    assert_eq!(s.take_kicks(), CpuMask::NONE);
    assert_eq!(s.kicked(), mask(&[0]));
    assert_eq!(s.schedule(), sw(IDLE, BOOT));
    assert_eq!(s.kicked(), CpuMask::NONE);
    // Two sleepers woken by CPU 1's tick: it takes one, CPU 0 the other.
    let a = s.spawn("a", None, N, false, ()).unwrap();
    on(&mut s, 1).reschedule();
    assert_eq!(s.current(), a);
    assert_eq!(s.sleep_current(20), sw(a, s.idle_task(1).unwrap()));
    assert_eq!(on(&mut s, 0).sleep_current(20), sw(BOOT, IDLE));
    assert!(on(&mut s, 1).tick(20));
    assert_eq!(s.take_kicks(), mask(&[0]));
    assert_eq!(s.kicked(), mask(&[0, 1]));
    ok(&s);
    // One sleeper, both CPUs idle: the one whose tick wakes it takes it,
    // though CPU 0 comes first.
    on(&mut s, 0).reschedule();
    on(&mut s, 1).reschedule();
    assert_eq!((s.current_on(0), s.current_on(1)), (Some(BOOT), Some(a)));
    assert_eq!(s.sleep_current(30), sw(a, s.idle_task(1).unwrap()));
    assert_eq!(on(&mut s, 0).sleep_current(100), sw(BOOT, IDLE));
    assert!(on(&mut s, 1).tick(30));
    assert_eq!(s.take_kicks(), CpuMask::NONE);
    assert_eq!(s.kicked(), mask(&[1]));
    ok(&s);
}

#[test]
fn a_more_important_task_kicks_the_cpu_running_the_least() {
    let mut s = with_cpus(3, 3);
    let low = s.spawn("low", None, Priority::LOW, false, ()).unwrap();
    let mid = s.spawn("mid", None, N, false, ()).unwrap();
    s.take_kicks();
    on(&mut s, 1).reschedule();
    on(&mut s, 2).reschedule();
    // CPU 1 took mid (the better), CPU 2 low; CPU 0 runs main (NORMAL).
    assert_eq!((s.current_on(1), s.current_on(2)), (Some(mid), Some(low)));
    let hi = on(&mut s, 1)
        .spawn("hi", None, Priority::HIGH, false, ())
        .unwrap();
    assert_eq!(s.take_kicks(), mask(&[2]), "the CPU running LOW");
    // An equal one preempts nobody.
    on(&mut s, 2).reschedule();
    assert_eq!(s.current(), hi);
    s.spawn("n", None, N, false, ()).unwrap();
    assert_eq!(s.take_kicks(), CpuMask::NONE);
    // A HIGH one from CPU 1 (running mid): CPU 1 counts on itself, as
    // its caller sees should_preempt().
    on(&mut s, 1)
        .spawn("hi2", None, Priority::HIGH, false, ())
        .unwrap();
    assert_eq!(s.take_kicks(), CpuMask::NONE);
    assert_eq!(s.kicked(), mask(&[1]));
    assert!(s.should_preempt());
    ok(&s);
}

#[test]
fn affinity_decides_who_may_pick_a_task() {
    let mut s = with_cpus(3, 3);
    let a = s.spawn("a", None, N, false, ()).unwrap();
    assert_eq!(s.take_kicks(), mask(&[1]));
    // Only CPU 2 may run it: CPU 1 finds nothing, CPU 2 is kicked.
    assert_eq!(s.set_affinity(a, mask(&[2])), Ok(()));
    assert_eq!(s.take_kicks(), mask(&[2]));
    assert_eq!(on(&mut s, 1).reschedule(), None);
    assert!(!on(&mut s, 0).should_preempt());
    assert_eq!(
        on(&mut s, 0).yield_now(),
        None,
        "main may not give way to a"
    );
    let idle2 = s.idle_task(2).unwrap();
    assert_eq!(on(&mut s, 2).reschedule(), sw(idle2, a));
    // A task behind one it may not run is the one a CPU picks.
    let b = on(&mut s, 0).spawn("b", None, N, false, ()).unwrap();
    let c = s.spawn("c", None, N, false, ()).unwrap();
    s.set_affinity(b, mask(&[2])).unwrap();
    s.take_kicks();
    assert_eq!(on(&mut s, 1).reschedule(), sw(s.idle_task(1).unwrap(), c));
    assert_eq!(s.run_tids(N), [b]);
    // Moving a running task off its CPU: it is kicked, and its CPU
    // takes what it may run instead.
    on(&mut s, 0).set_affinity(a, mask(&[0, 1])).unwrap();
    assert_eq!(s.take_kicks(), mask(&[2]));
    on(&mut s, 2);
    assert!(s.should_preempt());
    assert_eq!(s.reschedule(), sw(a, b));
    // a is now Ready, for CPUs 0 and 1, which run main and c: no better.
    assert_eq!(s.task(a).unwrap().state, State::Ready);
    // The acting CPU's own task: should_preempt() tells its caller.
    on(&mut s, 1).set_affinity(c, mask(&[0, 2])).unwrap();
    assert_eq!(s.take_kicks(), CpuMask::NONE);
    assert!(s.should_preempt());
    assert_eq!(s.schedule(), sw(c, a));
    ok(&s);
    // Errors: no CPU of the mask has joined; bits past them are kept.
    assert_eq!(s.set_affinity(a, CpuMask::NONE), Err(SchedError::NoCpu));
    assert_eq!(s.set_affinity(a, mask(&[3, 63])), Err(SchedError::NoCpu));
    assert_eq!(
        s.set_affinity(999, CpuMask::ALL),
        Err(SchedError::NoSuchTask)
    );
    assert_eq!(s.set_affinity(a, mask(&[1, 5])), Ok(()));
    assert_eq!(s.affinity(a), Some(mask(&[1, 5])));
    assert_eq!(s.affinity(999), None);
    ok(&s);
}

#[test]
fn new_tasks_inherit_their_creators_affinity() {
    let mut s = with_cpus(2, 3);
    s.set_affinity(BOOT, mask(&[0])).unwrap();
    let a = s.spawn("a", None, N, false, ()).unwrap();
    assert_eq!(s.affinity(a), Some(mask(&[0])));
    assert_eq!(s.take_kicks(), CpuMask::NONE, "CPU 1 may not run it");
    // An idle task's creations (on no real path) may run anywhere.
    let b = on(&mut s, 1).spawn("b", None, N, false, ()).unwrap();
    assert_eq!(s.affinity(b), Some(CpuMask::ALL));
    ok(&s);
}

#[test]
fn kills_and_signals_reach_a_task_running_elsewhere() {
    let mut s = with_cpus(3, 3);
    let a = s.spawn("a", Some(BOOT), N, true, ()).unwrap();
    let b = s.spawn("b", Some(BOOT), N, true, ()).unwrap();
    s.take_kicks();
    on(&mut s, 1).reschedule();
    on(&mut s, 2).reschedule();
    assert_eq!((s.current_on(1), s.current_on(2)), (Some(a), Some(b)));
    // From CPU 0: each running task's CPU is kicked.
    on(&mut s, 0);
    s.request_kill(a, 9).unwrap();
    assert_eq!(s.take_kicks(), mask(&[1]));
    assert!(!s.set_signal_pending(b, true));
    assert_eq!(s.take_kicks(), mask(&[2]));
    s.set_signal_pending(b, false);
    assert_eq!(s.take_kicks(), CpuMask::NONE, "a clear needs nobody");
    // A plain kill leaves the task current on its CPU, Exited, until it
    // switches away: no reaping before.
    s.kill(b, 7).unwrap();
    assert_eq!(s.take_kicks(), mask(&[2]));
    assert_eq!(s.cpu_of(b), Some(2));
    ok(&s);
    assert_eq!(s.reap(b), Err(SchedError::NotExited));
    assert!(on(&mut s, 2).should_preempt());
    assert_eq!(s.reschedule(), sw(b, s.idle_task(2).unwrap()));
    assert_eq!(on(&mut s, 0).reap(b), Ok((7, ())));
    // The same for a detached zombie.
    s.detach(a).unwrap();
    on(&mut s, 1).exit_current(9).unwrap();
    on(&mut s, 2);
    s.kill(BOOT, 3).unwrap();
    assert_eq!(s.take_kicks(), mask(&[0]));
    ok(&s);
    assert_eq!(s.reap_detached().map(|(t, st, _)| (t, st)), Some((a, 9)));
    assert_eq!(s.reap(BOOT), Err(SchedError::NotExited));
    // Kicking oneself is left to the caller.
    let c = on(&mut s, 0).spawn("c", None, N, false, ()).unwrap();
    s.take_kicks();
    assert_eq!(s.schedule(), sw(BOOT, c));
    s.request_kill(c, 1).unwrap();
    assert_eq!(s.take_kicks(), CpuMask::NONE);
    ok(&s);
}

#[test]
fn a_kick_nobody_took_is_not_sent_to_the_cpu_it_names() {
    let mut s = with_cpus(2, 3);
    s.spawn("a", None, N, false, ()).unwrap();
    // Not taken; CPU 1 now acts and looks itself: nothing to send.
    on(&mut s, 1);
    assert_eq!(s.take_kicks(), CpuMask::NONE);
    ok(&s);
}

#[test]
fn check_detects_broken_cpus() {
    // Three CPUs: 0 runs main, 1 runs a, 2 is idle; b is ready.
    let fresh = || {
        let mut s = with_cpus(3, 3);
        let a = s.spawn("a", None, N, false, ()).unwrap();
        s.spawn("b", None, N, false, ()).unwrap();
        s.take_kicks();
        on(&mut s, 1).reschedule();
        on(&mut s, 0);
        assert_eq!(s.current_on(1), Some(a));
        ok(&s);
        s
    };
    type Corrupt = fn(&mut Scheduler);
    let corruptions: [(&str, Corrupt); 13] = [
        ("narrow count", |s| s.run.narrow += 1),
        ("two CPUs, one task", |s| s.cpus[2].current = 4),
        ("a CPU on another's idle task", |s| {
            s.cpus[2].current = IDLE;
        }),
        ("running on no CPU", |s| s.set_state(5, State::Running)),
        ("a CPU on a ready task", |s| s.cpus[2].current = 5),
        ("a CPU on a blocked task", |s| {
            s.set_state(4, State::Blocked(Blocked::Sleep));
        }),
        ("idle mask", |s| s.idle_cpus = CpuMask::NONE),
        ("kick of no CPU", |s| s.kicked = mask(&[5])),
        ("kick to send without a kick", |s| s.outbox = mask(&[1])),
        ("affinity with no CPU", |s| {
            s.tasks.get_mut(5).unwrap().info.affinity = mask(&[9])
        }),
        ("idle task loose", |s| {
            s.tasks.get_mut(2).unwrap().info.affinity = CpuMask::ALL
        }),
        ("acting for no CPU", |s| s.acting = 3),
        ("idle ticks", |s| s.cpus[1].stats.idle_ticks = 1),
    ];
    for (what, corrupt) in corruptions {
        let mut s = fresh();
        corrupt(&mut s);
        assert!(s.check().is_err(), "check missed: {what}");
    }
}

// ---- Random operations on several CPUs ----
//
// Each step acts for one CPU that is not in the middle of a switch, or
// carries one CPU's switch out. A switch is carried out as the process
// model does it: decided under the lock, done after, and only once the
// incoming task's stack is left by the CPU that ran it before (its on-CPU
// mark). A CPU that reaps a task waits the same way before it frees the
// stack. The simulation keeps, per CPU, whose stack it is on, so it sees
// what a machine would: two CPUs on one stack, a stack freed under a CPU,
// a wait that never ends.

/// What a simulated CPU is doing between its steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Busy {
    /// Free to act.
    No,
    /// Carrying out a decided switch: waits until no CPU is on the
    /// incoming task's stack (its payload), then moves onto it.
    Switching(u64),
    /// Freeing a reaped task's stack: waits until no CPU is on it.
    Freeing(u64),
}

#[derive(Debug, Clone, Copy)]
struct SimCpu {
    /// The payload (the stack) this CPU is on.
    on: u64,
    busy: Busy,
    ticks: u64,
    switches: u64,
}

/// A snapshot before a step.
struct Snap {
    current: Vec<Tid>,
    states: BTreeMap<Tid, State>,
}

impl Snap {
    fn of(s: &Scheduler<u64>) -> Snap {
        Snap {
            current: (0..s.cpu_count())
                .map(|c| s.current_on(c).unwrap())
                .collect(),
            states: s.tasks().map(|t| (t.tid, t.state)).collect(),
        }
    }
}

struct Multi {
    s: Scheduler<u64>,
    rng: Rng,
    now: u64,
    queues: Vec<QueueId>,
    /// Each record's payload: a serial number, so that one going to the
    /// wrong record, or a record freed twice, shows.
    payloads: BTreeMap<Tid, u64>,
    spawns: u64,
    cpus: Vec<SimCpu>,
    allocs: u64,
    quiet_calls: u64,
    /// What the run got to, for the coverage test.
    seen: BTreeSet<&'static str>,
    /// The CPUs each task has run on.
    ran_on: BTreeMap<u64, CpuMask>,
}

fn ap_idle_ext(cpu: usize) -> u64 {
    BOOT_EXT + cpu as u64
}

impl Multi {
    fn new(n: usize, seed: u64) -> Multi {
        let max = RANDOM_MAX_TASKS + n as u32;
        let mut s = Scheduler::with_ext(3, max, IDLE_EXT, BOOT_EXT);
        let mut payloads = BTreeMap::from([(IDLE, IDLE_EXT), (BOOT, BOOT_EXT)]);
        let mut cpus = vec![SimCpu {
            on: BOOT_EXT,
            busy: Busy::No,
            ticks: 0,
            switches: 0,
        }];
        for c in 1..n {
            assert_eq!(s.add_cpu(ap_idle_ext(c)), Ok(c));
            payloads.insert(s.idle_task(c).unwrap(), ap_idle_ext(c));
            cpus.push(SimCpu {
                on: ap_idle_ext(c),
                ..cpus[0]
            });
        }
        Multi {
            s,
            rng: Rng(seed),
            now: 0,
            queues: Vec::new(),
            payloads,
            spawns: 0,
            cpus,
            allocs: 0,
            quiet_calls: 0,
            seen: BTreeSet::new(),
            ran_on: BTreeMap::new(),
        }
    }

    fn quiet<R>(&mut self, f: impl FnOnce(&mut Scheduler<u64>) -> R) -> R {
        let (r, n) = alloc::count(|| f(&mut self.s));
        self.quiet_calls += 1;
        self.allocs += n;
        r
    }

    /// Whether some CPU is on the stack of payload `p`.
    fn holder(&self, p: u64) -> Option<usize> {
        self.cpus.iter().position(|c| c.on == p)
    }

    fn some_tid(&mut self) -> Tid {
        let tids: Vec<Tid> = self.s.tasks().map(|t| t.tid).collect();
        match self.rng.below(10) {
            0 => self.rng.below(u64::from(self.s.max_tasks) + 2) as Tid,
            // A task running on some CPU: kills and signals that must
            // reach another CPU.
            1..=3 => {
                let c = self.rng.index(self.cpus.len());
                self.s.current_on(c).unwrap()
            }
            _ => tids[self.rng.index(tids.len())],
        }
    }

    fn some_mask(&mut self) -> CpuMask {
        let n = self.cpus.len();
        match self.rng.below(6) {
            0 => CpuMask::ALL,
            1 => CpuMask::one(self.rng.index(n)),
            2 => CpuMask::one(n + self.rng.index(64 - n)),
            3 => CpuMask::NONE,
            _ => CpuMask(self.rng.next()),
        }
    }

    fn deadline(&mut self) -> u64 {
        (self.now + self.rng.below(200)).saturating_sub(10)
    }

    /// One step: a CPU acts, or a CPU carries out what it is busy with.
    fn step(&mut self) {
        let free: Vec<usize> = (0..self.cpus.len())
            .filter(|&c| self.cpus[c].busy == Busy::No)
            .collect();
        if (free.is_empty() || self.rng.chance(30)) && self.finish_one() {
            return;
        }
        assert!(
            !free.is_empty(),
            "every CPU waits for a mark: {:?}",
            self.cpus
        );
        let c = free[self.rng.index(free.len())];
        self.act(c);
    }

    /// Carries out one busy CPU's work, if one can go on; false if none.
    fn finish_one(&mut self) -> bool {
        let ready: Vec<usize> = (0..self.cpus.len())
            .filter(|&c| match self.cpus[c].busy {
                Busy::No => false,
                Busy::Switching(p) | Busy::Freeing(p) => self.holder(p).is_none(),
            })
            .collect();
        let waiting = self.cpus.iter().filter(|c| c.busy != Busy::No).count();
        if waiting > ready.len() {
            self.seen.insert("waited for a mark");
        }
        let Some(&c) = ready.get(self.rng.index(ready.len().max(1))) else {
            return false;
        };
        if let Busy::Switching(p) = self.cpus[c].busy {
            // On the new stack now: the old one's mark is clear.
            self.cpus[c].on = p;
        }
        self.cpus[c].busy = Busy::No;
        self.check_machine();
        true
    }

    fn act(&mut self, c: usize) {
        assert!(self.quiet(|s| s.set_cpu(c)));
        let before = Snap::of(&self.s);
        let (switch, reaped) = self.op(c, &before);
        let kicks = self.quiet(|s| s.take_kicks());
        if let Err(e) = self.s.check() {
            panic!("invariant broken: {e}");
        }
        assert_eq!(self.allocs, 0, "a call that must not allocate did");
        assert!(!kicks.contains(c), "CPU {c} kicked itself");
        assert!(kicks.without(self.s.online()).is_empty());
        if !kicks.is_empty() {
            self.seen.insert("kick");
            if kicks.iter().any(|k| !self.s.idle_cpus.contains(k)) {
                self.seen.insert("kick of a busy CPU");
            }
        }
        let now_current = self.s.current_on(c).unwrap();
        match switch {
            Some(sw) => {
                assert_eq!((sw.from, sw.to), (before.current[c], now_current));
                assert_ne!(sw.from, sw.to);
                let to = self.s.task(sw.to).unwrap();
                assert!(
                    sw.to == self.s.idle_task(c).unwrap() || to.affinity.contains(c),
                    "CPU {c} picked {}, which may not run there",
                    sw.to
                );
                if sw.to != self.s.idle_task(c).unwrap() && to.affinity != CpuMask::ALL {
                    self.seen.insert("restricted task picked");
                }
                assert!(!self.s.should_preempt(), "a better task left ready");
                let p = *self.s.ext(sw.to).unwrap();
                let ran = self.ran_on.entry(p).or_default();
                ran.insert(c);
                if ran.iter().count() > 1 {
                    self.seen.insert("moved between CPUs");
                }
                if self.holder(p).is_some() {
                    self.seen.insert("picked a task still on a CPU");
                }
                self.cpus[c].busy = Busy::Switching(p);
                self.cpus[c].switches += 1;
            }
            None => assert_eq!(now_current, before.current[c], "switched without saying so"),
        }
        if let Some(p) = reaped {
            assert!(!self.payloads.values().any(|&q| q == p), "freed twice");
            if let Some(d) = self.holder(p) {
                // Only a CPU leaving it may still be on it.
                assert!(
                    matches!(self.cpus[d].busy, Busy::Switching(q) if q != p),
                    "reaped {p} under CPU {d}: {:?}",
                    self.cpus[d]
                );
                assert_eq!(self.cpus[c].busy, Busy::No);
                self.cpus[c].busy = Busy::Freeing(p);
                self.seen.insert("reap waited for a mark");
            }
        }
        self.check_kicks();
        self.check_machine();
        let stats = self.s.cpu_stats(c).unwrap();
        assert_eq!(
            (stats.ticks, stats.switches),
            (self.cpus[c].ticks, self.cpus[c].switches)
        );
        self.check_payloads();
    }

    /// Every task that could run now on a CPU that is idle or runs
    /// something less important has a CPU it may run on asked to look;
    /// and every CPU runs a task it may run, or has been asked to look, or
    /// is the acting CPU and knows it should switch.
    fn check_kicks(&mut self) {
        let s = &self.s;
        let (online, kicked) = (s.online(), s.kicked());
        for t in s
            .tasks()
            .filter(|t| t.state == State::Ready && t.group != IDLE)
        {
            let may = t.affinity.and(online);
            let wants = may.iter().any(|d| {
                s.idle_cpus.contains(d) || s.running_priority(d).is_some_and(|p| p < t.priority)
            });
            assert!(
                !wants || !may.and(kicked).is_empty(),
                "{} could run now on one of {may:?}, none asked (kicked {kicked:?})",
                t.tid
            );
        }
        for d in 0..s.cpu_count() {
            let cur = s.task(s.current_on(d).unwrap()).unwrap();
            let fine = cur.affinity.contains(d)
                || kicked.contains(d)
                || (d == s.cpu() && s.should_preempt());
            assert!(fine, "CPU {d} runs {}, which may not run there", cur.tid);
        }
        if kicked.contains(s.cpu()) {
            self.seen.insert("counted on itself");
        }
    }

    /// What a machine would notice: a CPU not on its current task's stack
    /// (nor switching to it), two CPUs on one stack, a CPU on a freed
    /// stack it is not leaving, a wait on a stack whose CPU is not leaving
    /// it, or waits that wait on each other.
    fn check_machine(&self) {
        let live: BTreeSet<u64> = self.payloads.values().copied().collect();
        for (c, cpu) in self.cpus.iter().enumerate() {
            let cur = *self.s.ext(self.s.current_on(c).unwrap()).unwrap();
            match cpu.busy {
                Busy::Switching(p) => assert_eq!(p, cur, "CPU {c} switches to another task"),
                _ => assert_eq!(cpu.on, cur, "CPU {c} is not on its task's stack"),
            }
            if !live.contains(&cpu.on) {
                assert!(
                    matches!(cpu.busy, Busy::Switching(_)),
                    "CPU {c} runs on a freed stack"
                );
            }
            assert!(
                self.cpus[..c].iter().all(|o| o.on != cpu.on),
                "two CPUs on one stack"
            );
            // Follow the waits: each must reach a CPU that can go on.
            let mut at = c;
            for _ in 0..=self.cpus.len() {
                let (Busy::Switching(p) | Busy::Freeing(p)) = self.cpus[at].busy else {
                    break;
                };
                let Some(h) = self.holder(p) else { break };
                assert!(
                    matches!(self.cpus[h].busy, Busy::Switching(q) if q != p),
                    "CPU {at} waits for CPU {h}, which is not leaving {p}"
                );
                assert_ne!(h, c, "a cycle of waits through CPU {c}");
                at = h;
            }
        }
    }

    fn check_payloads(&self) {
        let kept: BTreeMap<Tid, u64> = self
            .s
            .tasks()
            .map(|t| (t.tid, *self.s.ext(t.tid).unwrap()))
            .collect();
        assert_eq!(kept, self.payloads);
    }

    /// One random call on behalf of CPU `c`, made as the process model
    /// makes it (a tick or a wake that says to preempt is followed by a
    /// schedule). Returns the switch decided, and a payload reaped.
    fn op(&mut self, c: usize, b: &Snap) -> (Option<Switch>, Option<u64>) {
        let me = b.current[c];
        match self.rng.below(20) {
            0 | 1 => {
                let group = match self.rng.below(3) {
                    0 => None,
                    1 => self.s.task(me).map(|t| t.group),
                    _ => Some(self.some_tid()),
                };
                let prio = Priority(self.rng.below(4) as u8);
                let ext = self.spawns;
                self.spawns += 1;
                let starve = self.rng.chance(20);
                let r = if starve {
                    alloc::failing(|| self.s.spawn("r", group, prio, true, ext))
                } else {
                    self.s.spawn("r", group, prio, true, ext)
                };
                if let Ok(tid) = r {
                    self.payloads.insert(tid, ext);
                }
                (None, None)
            }
            2..=4 => {
                self.now += self.rng.below(40);
                let now = self.now;
                self.cpus[c].ticks += 1;
                let sw = self.quiet(|s| if s.tick(now) { s.schedule() } else { None });
                (sw, None)
            }
            5 => (self.quiet(|s| s.schedule()), None),
            6 => (self.quiet(|s| s.yield_now()), None),
            7 => (self.quiet(|s| s.reschedule()), None),
            8 => {
                let until = self.deadline();
                (self.quiet(|s| s.sleep_current(until)), None)
            }
            9 => {
                let Some(&q) = self.queues.get(self.rng.index(self.queues.len().max(1))) else {
                    return (None, None);
                };
                let deadline = self.rng.chance(50).then(|| self.deadline());
                (
                    self.quiet(|s| s.block_current(q, deadline).ok().flatten()),
                    None,
                )
            }
            10 => {
                let Some(&q) = self.queues.get(self.rng.index(self.queues.len().max(1))) else {
                    return (None, None);
                };
                let all = self.rng.chance(50);
                let sw = self.quiet(|s| {
                    if all {
                        s.wake_all(q);
                        s.should_preempt().then(|| s.schedule()).flatten()
                    } else {
                        s.wake_one(q);
                        None
                    }
                });
                (sw, None)
            }
            11 => {
                let tid = self.some_tid();
                let status = self.rng.below(100) as i64;
                let elsewhere = self
                    .s
                    .cpu_of(tid)
                    .filter(|&d| d != c && !self.s.is_idle(tid));
                let live = self
                    .s
                    .task(tid)
                    .is_some_and(|t| !matches!(t.state, State::Exited(_)));
                let kind = self.rng.below(3);
                let sw = match kind {
                    0 => self.quiet(|s| {
                        let _ = s.kill(tid, status);
                        (tid == me).then(|| s.schedule()).flatten()
                    }),
                    1 => {
                        let _ = self.quiet(|s| s.request_kill(tid, status));
                        None
                    }
                    _ => {
                        let pending = self.rng.chance(70);
                        self.quiet(|s| s.set_signal_pending(tid, pending));
                        None
                    }
                };
                // A kill, a kill request or a signal mark (not its
                // clearing) must reach CPU d now.
                let told = kind < 2 || self.s.signal_pending(tid);
                if let Some(d) = elsewhere
                    && live
                    && told
                {
                    assert!(self.s.kicked().contains(d), "CPU {d} not told about {tid}");
                    self.seen.insert("kill or signal on another CPU");
                }
                (sw, None)
            }
            12 => {
                let status = self.rng.below(256) as i64;
                (self.quiet(|s| s.exit_current(status)).ok(), None)
            }
            13 => {
                let target = self.some_tid();
                match self.quiet(|s| s.wait_for(target)) {
                    Ok(WaitResult::Exited(_, ext)) => {
                        assert_eq!(self.payloads.remove(&target), Some(ext));
                        (None, Some(ext))
                    }
                    Ok(WaitResult::Blocked(sw)) => (sw, None),
                    Err(_) => (None, None),
                }
            }
            14 => {
                let tid = self.some_tid();
                match self.quiet(|s| s.reap(tid)) {
                    Ok((_, ext)) => {
                        assert_eq!(self.payloads.remove(&tid), Some(ext));
                        (None, Some(ext))
                    }
                    Err(_) => (None, None),
                }
            }
            15 => {
                if self.rng.chance(50) {
                    let tid = self.some_tid();
                    let _ = self.quiet(|s| s.detach(tid));
                    return (None, None);
                }
                match self.quiet(|s| s.reap_detached()) {
                    Some((tid, _, ext)) => {
                        assert_eq!(self.payloads.remove(&tid), Some(ext));
                        (None, Some(ext))
                    }
                    None => (None, None),
                }
            }
            16 | 17 => {
                let tid = self.some_tid();
                let mask = self.some_mask();
                let r = self.quiet(|s| s.set_affinity(tid, mask));
                let online = self.s.online();
                match r {
                    Ok(()) => {
                        assert!(!mask.and(online).is_empty());
                        assert_eq!(self.s.affinity(tid), Some(mask));
                    }
                    Err(SchedError::NoCpu) => assert!(mask.and(online).is_empty()),
                    Err(SchedError::IdleTask) => assert!(self.s.is_idle(tid)),
                    Err(e) => {
                        assert_eq!(e, SchedError::NoSuchTask);
                        assert!(!b.states.contains_key(&tid));
                    }
                }
                // As sched_setaffinity does for the caller itself.
                let sw = self.quiet(|s| s.should_preempt().then(|| s.schedule()).flatten());
                (sw, None)
            }
            18 => {
                if self.queues.len() < 4 {
                    if let Ok(q) = self.s.new_queue() {
                        self.queues.push(q);
                    }
                } else {
                    let q = self.queues.swap_remove(self.rng.index(self.queues.len()));
                    self.quiet(|s| s.free_queue(q));
                }
                (None, None)
            }
            _ => {
                let Some(&q) = self.queues.get(self.rng.index(self.queues.len().max(1))) else {
                    return (None, None);
                };
                let tag = WaitTag {
                    key: [self.rng.below(2), 0],
                    bits: self.rng.below(3) as u32 + 1,
                };
                if self.rng.chance(50) {
                    let r = self.quiet(|s| s.block_current_tagged(q, None, tag));
                    (r.ok().flatten(), None)
                } else {
                    self.quiet(|s| s.wake_tagged(q, tag.key, tag.bits, 2));
                    (None, None)
                }
            }
        }
    }

    /// Lets every CPU finish what it is doing, then ticks each in turn
    /// (with the time standing still, so nothing new wakes) and answers
    /// every kick, until nothing changes: then no CPU is idle while a task
    /// it may run is ready.
    fn settle(&mut self) {
        for _ in 0..8 * self.cpus.len() {
            while self.finish_one() {}
            let now = self.now;
            for c in 0..self.cpus.len() {
                self.act_with(c, |s| {
                    let kicked = s.kicked().contains(s.cpu());
                    if s.tick(now) {
                        s.schedule()
                    } else if kicked {
                        s.reschedule()
                    } else {
                        None
                    }
                });
                while self.finish_one() {}
            }
        }
        for c in 0..self.cpus.len() {
            if !self.s.idle_cpus.contains(c) {
                continue;
            }
            let waiting: Vec<Tid> = self
                .s
                .tasks()
                .filter(|t| t.state == State::Ready && t.group != IDLE && t.affinity.contains(c))
                .map(|t| t.tid)
                .collect();
            assert!(waiting.is_empty(), "CPU {c} idle while {waiting:?} wait");
        }
    }

    /// A fixed call for CPU `c`, checked as random ones are.
    fn act_with(&mut self, c: usize, f: impl FnOnce(&mut Scheduler<u64>) -> Option<Switch>) {
        assert!(self.s.set_cpu(c));
        self.cpus[c].ticks += 1;
        let before = self.s.current_on(c).unwrap();
        let sw = self.quiet(f);
        self.s.take_kicks();
        assert_eq!(self.allocs, 0);
        if let Some(sw) = sw {
            assert_eq!(sw.from, before);
            let p = *self.s.ext(sw.to).unwrap();
            self.cpus[c].busy = Busy::Switching(p);
            self.cpus[c].switches += 1;
        }
        if let Err(e) = self.s.check() {
            panic!("invariant broken: {e}");
        }
        self.check_machine();
    }
}

fn multi_run(n: usize, seed: u64, steps: usize) -> Multi {
    let mut w = Multi::new(n, seed);
    for i in 0..steps {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.step()));
        if let Err(e) = r {
            let why = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{n} CPUs, seed {seed:#x}, step {i}: {why}");
        }
    }
    w.settle();
    w
}

#[test]
fn random_operations_on_two_cpus_keep_invariants() {
    for seed in [1, 0x9e37_79b9_7f4a_7c15, 0xdead_beef, 42] {
        multi_run(2, seed, 6000);
    }
}

#[test]
fn random_operations_on_four_cpus_keep_invariants() {
    for seed in [7, 0x5eed_0a11_0c00, 0xfeed_f00d, 99] {
        multi_run(4, seed, 6000);
    }
}

/// The random runs get where the CPUs meet: kicks of idle and busy CPUs,
/// a CPU counting on itself, kills and signals for tasks on other CPUs,
/// tasks moving between CPUs and running under an affinity, a CPU picking
/// a task another is still leaving and waiting for its mark, a reap that
/// waits the same way; and the calls made none of it allocate.
#[test]
fn random_operations_on_several_cpus_cover_the_meeting_points() {
    let mut seen = BTreeSet::new();
    let mut calls = 0;
    for (n, seed) in [(2, 0x1234_5678), (4, 0xabcd_ef01)] {
        let w = multi_run(n, seed, 8000);
        seen.extend(w.seen);
        calls += w.quiet_calls;
    }
    for what in [
        "kick",
        "kick of a busy CPU",
        "counted on itself",
        "kill or signal on another CPU",
        "moved between CPUs",
        "restricted task picked",
        "picked a task still on a CPU",
        "waited for a mark",
        "reap waited for a mark",
    ] {
        assert!(seen.contains(what), "never saw: {what}");
    }
    assert!(calls > 10_000, "only {calls} calls counted");
}
