//! The process model with several CPUs on the host: CPUs joining, the
//! per-CPU current task, kicks, and Linux's `sched_setaffinity` and
//! `sched_getaffinity`. Every task runs on CPU 0 here (the host machine
//! has one baton); a second CPU joins the scheduler and never runs, so
//! what the kernel asks of it (kicks, the tasks it may run) shows.

use super::*;
use crate::task::sched::CpuMask;

/// Where the tests keep masks, painted around to see what is stored.
const MASK: u64 = DATA + 0x3000;
const KERNEL: u64 = 0xffff_8000_0000_0000;

impl World {
    /// Has CPU `cpu` join, as the code running there would, on a context
    /// of its own that is running (the mark set) but has no thread: the
    /// host never switches to it.
    fn join_cpu(&self, cpu: usize) -> Result<usize, SchedError> {
        let ctx = self.sys.m.context();
        ctx.gate.on_cpu.claim();
        as_cpu(cpu, || self.sys.join_cpu(ctx))
    }

    fn kicks(&self) -> Vec<usize> {
        core::mem::take(&mut *self.sys.m.kicks.lock().unwrap())
    }
}

impl User {
    fn setaffinity(&self, pid: i64, len: u64, mask: u64) -> i64 {
        self.call(nr::SCHED_SETAFFINITY, &[pid as u64, len, mask])
    }

    fn getaffinity(&self, pid: i64, len: u64, mask: u64) -> i64 {
        self.call(nr::SCHED_GETAFFINITY, &[pid as u64, len, mask])
    }

    /// Sets `pid`'s affinity to `mask`, as the 8 bytes at MASK.
    fn set_mask(&self, pid: i64, mask: u64) -> i64 {
        self.poke(MASK, &mask.to_le_bytes());
        self.setaffinity(pid, 8, MASK)
    }

    /// `pid`'s affinity, as getaffinity stores it.
    fn affinity(&self, pid: i64) -> u64 {
        assert_eq!(self.getaffinity(pid, 8, MASK), 8);
        u64::from_le_bytes(self.peek(MASK, 8).try_into().unwrap())
    }
}

#[test]
fn affinity_calls_follow_linux_on_one_cpu() {
    let w = World::new();
    let entry = w.thread(|_| 0);
    let status = w.run_to_end(move |u| {
        let me = u.call(nr::GETTID, &[]);
        // getaffinity: the size of the kernel's mask, 8 bytes, whatever
        // room there is; only those 8 are stored.
        u.poke(MASK, &[0xaa; 24]);
        assert_eq!(u.getaffinity(0, 24, MASK), 8);
        let got = u.peek(MASK, 24);
        assert_eq!(got[..8], [1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(got[8..], [0xaa; 16], "past the kernel's mask");
        assert_eq!(u.affinity(me), 1);
        // Room for a bit per CPU, in whole longs; len * 8 reckoned in 32
        // bits, as Linux does, and only the low 32 bits of len read.
        for len in [0, 1, 4, 7, 9, 12, 1 << 29, 1 << 30] {
            assert_eq!(u.getaffinity(0, len, MASK), EINVAL, "len {len}");
        }
        assert_eq!(u.getaffinity(0, (1 << 29) + 8, MASK), 8);
        assert_eq!(u.getaffinity(0, 1 << 32 | 8, MASK), 8);
        // Linux's order: the length, the thread, the pointer.
        assert_eq!(u.getaffinity(999, 4, KERNEL), EINVAL);
        assert_eq!(u.getaffinity(999, 8, KERNEL), ESRCH);
        assert_eq!(u.getaffinity(0, 8, KERNEL), EFAULT);
        assert_eq!(u.getaffinity(0, 8, TEXT), EFAULT, "read-only");
        assert_eq!(u.getaffinity(-1, 8, MASK), ESRCH);
        // Kernel threads are not a program's to name.
        assert_eq!(u.getaffinity(1, 8, MASK), ESRCH);
        assert_eq!(u.setaffinity(1, 8, MASK), ESRCH);
        // setaffinity: the mask first (EFAULT), then the thread (ESRCH),
        // then a mask with no running CPU (EINVAL).
        assert_eq!(u.setaffinity(999, 8, KERNEL), EFAULT);
        assert_eq!(u.setaffinity(0, 8, 0), EFAULT);
        assert_eq!(u.set_mask(999, 1), ESRCH);
        assert_eq!(u.set_mask(0, 0), EINVAL);
        assert_eq!(u.set_mask(0, 2), EINVAL, "no CPU 1");
        assert_eq!(u.set_mask(999, 0), ESRCH, "the thread before the mask");
        // len 0 reads nothing, even at a null pointer: an empty mask.
        assert_eq!(u.setaffinity(0, 0, 0), EINVAL);
        assert_eq!(u.setaffinity(999, 0, 0), ESRCH);
        // A short mask is the low CPUs', a long one is cut to 8 bytes.
        u.poke(MASK, &[1, 0xff, 0xff, 0xff]);
        assert_eq!(u.setaffinity(0, 1, MASK), 0);
        let mut long = [0u8; 16];
        long[0] = 3;
        long[8..].fill(0xff);
        u.poke(MASK, &long);
        assert_eq!(u.setaffinity(me, 16, MASK), 0);
        assert_eq!(u.setaffinity(me, 1 << 32 | 1, MASK), 0, "len is 32 bits");
        // Bits of CPUs that do not run are kept, and not reported.
        assert_eq!(u.set_mask(0, u64::MAX), 0);
        assert_eq!(u.affinity(0), 1);
        let kept = u.sys.with_sched(|s| s.affinity(me as Tid));
        assert_eq!(kept, Some(CpuMask::ALL));
        assert_eq!(u.set_mask(0, 0x8000_0000_0000_0001), 0);
        assert_eq!(u.affinity(0), 1);
        // Another thread of the program, by tid; one that exited is gone.
        let t = u.spawn_thread(entry, 0);
        assert_eq!(u.affinity(t), 1);
        assert_eq!(u.set_mask(t, 1), 0);
        u.join_thread(t);
        assert_eq!(u.getaffinity(t, 8, MASK), ESRCH);
        0
    });
    assert_eq!(status, 0);
    w.assert_quiet();
    assert!(w.kicks().is_empty(), "one CPU: nobody to kick");
}

#[test]
fn a_cpu_joins_in_index_order_with_its_idle_task() {
    let w = World::new();
    assert_eq!(w.sys.cpu_count(), 1);
    // Not the next index: refused, nothing changes.
    assert_eq!(w.join_cpu(2), Err(SchedError::NoSuchCpu));
    assert_eq!(w.sys.cpu_count(), 1);
    assert_eq!(w.join_cpu(1), Ok(1));
    assert_eq!(w.sys.cpu_count(), 2);
    let idle1 = w.sys.with_sched(|s| s.idle_task(1)).unwrap();
    // The running task is each CPU's own.
    assert_eq!(w.sys.current(), 1);
    assert_eq!(as_cpu(1, || w.sys.current()), idle1);
    assert_eq!(as_cpu(1, || w.sys.with_sched(|s| s.current())), idle1);
    // A tick or a kick on a CPU that has not joined changes nothing.
    as_cpu(5, || {
        w.sys.tick();
        w.sys.reschedule();
    });
    assert_eq!(w.sys.cpu_stats(5), None);
    // CPU 1 has nothing to run: a kick finds it so.
    as_cpu(1, || {
        w.sys.tick();
        w.sys.reschedule();
    });
    let stats = w.sys.cpu_stats(1).unwrap();
    assert_eq!((stats.ticks, stats.idle_ticks, stats.switches), (1, 1, 0));
    assert_eq!(as_cpu(1, || w.sys.current()), idle1);
}

#[test]
fn ready_threads_kick_the_idle_cpu_and_affinity_keeps_them_off_cpu_0() {
    let w = World::new();
    assert_eq!(w.join_cpu(1), Ok(1));
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let entry = w.thread(move |_| {
        r.fetch_add(1, Ordering::SeqCst);
        7
    });
    let kicks_before = w.kicks();
    assert!(kicks_before.is_empty(), "{kicks_before:?}");
    let r = ran.clone();
    let status = w.run_to_end(move |u| {
        // Both CPUs run: the mask says so, and a program may pick either.
        assert_eq!(u.affinity(0), 3);
        // A new thread is ready while CPU 1 is idle: CPU 1 is kicked.
        let t = u.spawn_thread(entry, 0);
        assert!(u.sys.m.kicks.lock().unwrap().contains(&1));
        // Kept to CPU 1, which never runs here, it does not run on CPU 0
        // however long main sleeps.
        assert_eq!(u.set_mask(t, 2), 0);
        assert_eq!(u.affinity(t), 2);
        for _ in 0..5 {
            u.sleep(TICK_NS);
        }
        assert_eq!(r.load(Ordering::SeqCst), 0, "ran on CPU 0");
        // Let back onto CPU 0, it runs and ends.
        assert_eq!(u.set_mask(t, 1), 0);
        assert_eq!(u.join_thread(t), 7);
        assert_eq!(r.load(Ordering::SeqCst), 1);
        // A thread inherits its creator's affinity, as on Linux.
        assert_eq!(u.set_mask(0, 1), 0);
        let t = u.spawn_thread(entry, 0);
        assert_eq!(u.affinity(t), 1);
        assert_eq!(u.join_thread(t), 7);
        assert_eq!(u.set_mask(0, 3), 0);
        0
    });
    assert_eq!(status, 0);
    assert_eq!(ran.load(Ordering::SeqCst), 2);
    w.check_panics();
}

#[test]
fn a_thread_moved_off_its_cpu_leaves_it_before_the_call_returns() {
    let w = World::new();
    assert_eq!(w.join_cpu(1), Ok(1));
    let freer = w.thread(|u| {
        // Main is ready for CPU 1 alone, and CPU 0 runs this instead;
        // it lets main back.
        let main = u.arg as i64;
        assert_eq!(u.affinity(main), 2);
        let moved = u.sys.with_sched(|s| s.task(main as Tid).map(|t| t.state));
        assert_eq!(moved, Some(State::Ready));
        assert_eq!(u.set_mask(main, 1), 0);
        0
    });
    let status = w.run_to_end(move |u| {
        let me = u.call(nr::GETTID, &[]);
        let t = u.spawn_thread(freer, me as u64);
        // Off CPU 0: it switches away at once (the freer runs), and it is
        // back only once the freer let it. CPU 1 was asked to look (by
        // the spawn, and it never looks here).
        assert_eq!(u.set_mask(0, 2), 0);
        assert!(u.sys.with_sched(|s| s.kicked().contains(1)), "CPU 1 asked");
        assert_eq!(u.sys.m.kicks.lock().unwrap().as_slice(), [1]);
        assert_eq!(u.affinity(0), 1);
        assert_eq!(u.join_thread(t), 0);
        0
    });
    assert_eq!(status, 0);
    w.check_panics();
}
