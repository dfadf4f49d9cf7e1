//! Linux threads on the host: clone, set_tid_address, arch_prctl and
//! futexes, through the same World as the other process-model tests.
//! A clone child runs the thread body registered at the address its
//! parent made the call from (`User::call_from`), as a real child resumes
//! at its parent's return address.

use super::*;
use crate::testutil::Rng;
use abi::{TASK_SIZE_MAX, USER_END, arch_prctl, clone, futex};
use std::collections::VecDeque;

const EINVAL: i64 = -(Errno::EINVAL as i64);
const EAGAIN: i64 = -(Errno::EAGAIN as i64);
const EPERM: i64 = -(Errno::EPERM as i64);
const ENOSYS: i64 = -(Errno::ENOSYS as i64);
const EINTR: i64 = -(Errno::EINTR as i64);
const ECHILD: i64 = -(Errno::ECHILD as i64);
const ETIMEDOUT: i64 = -(Errno::ETIMEDOUT as i64);

/// Futex words and thread records, in the data area.
const WORDS: u64 = DATA + 0x2000;
/// A user address nothing maps.
const UNMAPPED: u64 = 0x1000_0000;
/// Where clone children are told their stack is (host threads have their
/// own; the number only has to arrive).
const CHILD_SP: u64 = DATA + DATA_LEN - 0x1000;
const GLIBC: u64 = clone::GLIBC_PTHREAD as u64;
const MUSL: u64 = clone::MUSL_PTHREAD as u64;

fn word(i: u64) -> u64 {
    WORDS + 4 * i
}

impl User {
    fn futex(&self, uaddr: u64, op: i32, val: u32, timeout: u64, uaddr2: u64, val3: u32) -> i64 {
        let op = u64::from(op as u32);
        let args = [uaddr, op, val.into(), timeout, uaddr2, val3.into()];
        self.call(nr::FUTEX, &args)
    }

    fn get(&self, va: u64) -> u32 {
        // The test's buffer is not the kernel's allocation.
        let bytes = crate::testutil::alloc::normal(|| self.peek(va, 4));
        u32::from_le_bytes(bytes.try_into().unwrap())
    }

    fn set(&self, va: u64, v: u32) {
        self.poke(va, &v.to_le_bytes());
    }

    /// clone made from `entry`, where the child then runs.
    fn clone_at(&self, entry: u64, flags: u64, sp: u64, ptid: u64, ctid: u64, tls: u64) -> i64 {
        self.call_from(nr::CLONE, &[flags, sp, ptid, ctid, tls], entry)
    }

    /// pthread_join's loop: waits (shared, as the exit's wake is) until
    /// the word is 0.
    fn join(&self, ctid: u64) {
        loop {
            let v = self.get(ctid);
            if v == 0 {
                return;
            }
            let r = self.futex(ctid, futex::WAIT, v, 0, 0, 0);
            assert!(r == 0 || r == EAGAIN, "join's wait: {r}");
        }
    }

    fn fs_base(&self) -> u64 {
        let at = DATA + DATA_LEN - 0x200;
        assert_eq!(
            self.call(nr::ARCH_PRCTL, &[arch_prctl::GET_FS as u64, at]),
            0
        );
        u64::from_le_bytes(self.peek(at, 8).try_into().unwrap())
    }

    /// A timespec in the data area, for a futex timeout.
    fn timespec(&self, slot: u64, ns: u64) -> u64 {
        let at = DATA + DATA_LEN - 0x300 - 16 * slot;
        self.poke(at, &abi::Timespec::from_ns(ns).to_bytes());
        at
    }

    /// Tasks of this program other than the caller, with their states.
    pub(super) fn others(&self) -> Vec<(Tid, State)> {
        let me = self.sys.current();
        let pid = self.sys.current_pid();
        self.sys.with_sched(|s| {
            s.tasks()
                .filter(|t| t.group == pid && t.tid != me)
                .map(|t| (t.tid, t.state))
                .collect()
        })
    }

    /// Yields until every other thread of the program is blocked or gone.
    pub(super) fn settle(&self) {
        for _ in 0..10_000 {
            if self
                .others()
                .iter()
                .all(|(_, s)| matches!(s, State::Blocked(_) | State::Exited(_)))
            {
                return;
            }
            self.call(nr::SCHED_YIELD, &[]);
        }
        panic!("threads never settled: {:?}", self.others());
    }

    /// Threads of the program blocked on a wait queue (futex waiters).
    fn waiting(&self) -> usize {
        self.others()
            .iter()
            .filter(|(_, s)| matches!(s, State::Blocked(Blocked::Queue(_))))
            .count()
    }
}

use crate::task::sched::{Blocked, State};

#[test]
fn a_clone_child_starts_from_its_parents_registers_and_its_exit_wakes_the_joiner() {
    let w = World::new();
    let frames = w.free_frames();
    const TLS: u64 = 0x7000_1000;
    let tid_word = word(0);
    let result = word(1);
    let child = w.thread(move |u| {
        let r = u.start.expect("a clone child");
        let args = [GLIBC, CHILD_SP, tid_word, tid_word, TLS, 0];
        let want = UserRegs {
            rax: 0,
            rsp: CHILD_SP,
            rip: r.rip,
            rcx: r.rip,
            ..caller_regs(nr::CLONE, args)
        };
        assert_eq!(r, want, "every register but rax and rsp is the parent's");
        assert_eq!(u.fs_base(), TLS, "CLONE_SETTLS");
        // PARENT_SETTID was stored before the child could run.
        let me = u.call(nr::GETTID, &[]);
        assert_eq!(i64::from(u.get(tid_word)), me);
        u.set(result, 77);
        5
    });
    let status = w.run_to_end(move |u| {
        u.set(tid_word, 0xffff_ffff);
        let tid = u.clone_at(child, GLIBC, CHILD_SP, tid_word, tid_word, TLS);
        assert!(tid > 1, "clone: {tid}");
        assert_eq!(i64::from(u.get(tid_word)), tid, "PARENT_SETTID");
        u.join(tid_word);
        assert_eq!(u.get(result), 77, "the child's result is there after join");
        assert_eq!(u.fs_base(), 0, "the parent's FS base is its own");
        // Nobody waits for a clone thread: it is gone, or reaped by the
        // next exit or clone, never by wait_thread.
        assert_eq!(u.call(nr::WAIT_THREAD, &[tid as u64, 0]), ECHILD);
        0
    });
    assert_eq!(status, 0);
    assert_eq!(w.free_frames(), frames);
    w.assert_quiet();
}

#[test]
fn clone_takes_the_pthread_flag_sets_and_refuses_the_rest_with_einval() {
    let w = World::new();
    // The child announces itself through set_tid_address, so that it can
    // be joined whatever flags it was made with.
    let child = w.thread(|u| {
        let r = u.start.expect("a clone child");
        let me = u.call(nr::SET_TID_ADDRESS, &[word(9)]);
        assert_eq!(me, u.call(nr::GETTID, &[]));
        // Where it found its stack and FS base, for the parent to check.
        u.poke(word(10), &r.rsp.to_le_bytes());
        let fs = u.fs_base();
        u.poke(word(12), &fs.to_le_bytes());
        0
    });
    let status = w.run_to_end(move |u| {
        let tasks = || u.sys.with_sched(|s| s.tasks().count());
        let before = tasks();
        let bad = [
            0,
            clone::VM,
            clone::VM | clone::SIGHAND,
            clone::THREAD,
            clone::THREAD | clone::VM,
            clone::THREAD | clone::SIGHAND,
            clone::GLIBC_PTHREAD & !clone::FILES,
            clone::GLIBC_PTHREAD & !clone::VM,
            clone::GLIBC_PTHREAD | clone::VFORK,
            clone::GLIBC_PTHREAD | clone::PARENT,
            clone::GLIBC_PTHREAD | clone::NEWNS,
            clone::GLIBC_PTHREAD | clone::CHILD_SETTID,
            clone::GLIBC_PTHREAD | clone::PIDFD,
            clone::GLIBC_PTHREAD | clone::PTRACE,
            clone::GLIBC_PTHREAD | clone::UNTRACED,
            clone::GLIBC_PTHREAD | clone::IO,
            clone::GLIBC_PTHREAD | clone::NEWUSER,
        ];
        for flags in bad {
            let r = u.clone_at(child, flags.into(), CHILD_SP, word(8), word(8), 0);
            assert_eq!(r, EINVAL, "flags {flags:#x}");
        }
        // A TLS base Linux's arch_prctl would refuse: EPERM, no thread.
        for tls in [TASK_SIZE_MAX, USER_END, 0xffff_8000_0000_0000, u64::MAX] {
            let r = u.clone_at(child, GLIBC, CHILD_SP, word(8), word(8), tls);
            assert_eq!(r, EPERM, "tls {tls:#x}");
        }
        assert_eq!(tasks(), before, "a refused clone left a task");
        // Accepted: musl's set, an exit signal and high bits (ignored),
        // the last page below TASK_SIZE_MAX, the bare minimum.
        let good = [
            (MUSL, CHILD_SP, TASK_SIZE_MAX - 1),
            (GLIBC | 17 | 1 << 40, CHILD_SP, 0),
            (
                u64::from(clone::VM | clone::SIGHAND | clone::THREAD | clone::FILES),
                0,
                0,
            ),
        ];
        u.call(nr::ARCH_PRCTL, &[arch_prctl::SET_FS as u64, 0x5000]);
        for (flags, sp, tls) in good {
            u.set(word(9), 1);
            let tid = u.clone_at(child, flags, sp, word(8), word(8), tls);
            assert!(tid > 1, "flags {flags:#x}: {tid}");
            u.join(word(9));
            let rsp = u64::from_le_bytes(u.peek(word(10), 8).try_into().unwrap());
            let fs = u64::from_le_bytes(u.peek(word(12), 8).try_into().unwrap());
            // newsp 0 keeps the parent's stack pointer, as on Linux; no
            // SETTLS inherits the parent's FS base.
            let parent_sp = caller_regs(0, [0; 6]).rsp;
            assert_eq!(rsp, if sp == 0 { parent_sp } else { sp });
            let settls = flags as u32 & clone::SETTLS != 0;
            assert_eq!(fs, if settls { tls } else { 0x5000 });
        }
        0
    });
    assert_eq!(status, 0);
    w.assert_quiet();
}

#[test]
fn clone_threads_are_reaped_by_others_and_count_only_while_alive() {
    let w = World::new();
    let frames = w.free_frames();
    let child = w.thread(|_| 0);
    let status = w.run_to_end(move |u| {
        // Far more threads than a program may have at once, one at a time.
        for i in 0..3 * MAX_THREADS_PER_PROCESS {
            u.set(word(0), 1);
            let tid = u.clone_at(child, GLIBC, CHILD_SP, word(0), word(0), 0);
            assert!(tid > 1, "clone {i}: {tid}");
            u.join(word(0));
            assert!(u.sys.detached_zombies() <= 1, "zombies pile up");
        }
        0
    });
    assert_eq!(status, 0);
    assert_eq!(w.free_frames(), frames);
    w.assert_quiet();
}

#[test]
fn arch_prctl_keeps_an_fs_base_per_thread_and_refuses_what_linux_does() {
    let w = World::new();
    let child = w.thread(|u| {
        assert_eq!(u.fs_base(), 0x1000, "inherited");
        assert_eq!(
            u.call(nr::ARCH_PRCTL, &[arch_prctl::SET_FS as u64, 0x2000]),
            0
        );
        u.call(nr::SCHED_YIELD, &[]);
        assert_eq!(u.fs_base(), 0x2000);
        0
    });
    let status = w.run_to_end(move |u| {
        let set = |addr: u64| u.call(nr::ARCH_PRCTL, &[arch_prctl::SET_FS as u64, addr]);
        for bad in [
            TASK_SIZE_MAX,
            USER_END,
            0xffff_8000_0000_0000,
            0x1234_5678_9abc_d000,
        ] {
            assert_eq!(set(bad), EPERM, "{bad:#x}");
        }
        assert_eq!(set(TASK_SIZE_MAX - 1), 0);
        assert_eq!(u.fs_base(), TASK_SIZE_MAX - 1);
        assert_eq!(set(0x1000), 0);
        // The code is an int: high bits are dropped.
        let get = (1 << 32) | arch_prctl::GET_FS as u64;
        assert_eq!(u.call(nr::ARCH_PRCTL, &[get, UNMAPPED]), EFAULT);
        assert_eq!(u.call(nr::ARCH_PRCTL, &[get, TEXT]), EFAULT, "read-only");
        assert_eq!(u.call(nr::ARCH_PRCTL, &[get, 0]), EFAULT);
        for code in [0, arch_prctl::SET_GS, arch_prctl::GET_GS, 0x1005, -1] {
            let code = u64::from(code as u32);
            assert_eq!(u.call(nr::ARCH_PRCTL, &[code, DATA]), EINVAL, "{code:#x}");
        }
        let flags = GLIBC & !u64::from(clone::SETTLS);
        u.set(word(0), 1);
        assert!(u.clone_at(child, flags, CHILD_SP, word(0), word(0), 0) > 1);
        u.join(word(0));
        assert_eq!(u.fs_base(), 0x1000, "the child's change is its own");
        0
    });
    assert_eq!(status, 0);
    w.assert_quiet();
}

#[test]
fn futex_argument_errors_follow_linux() {
    let w = World::new();
    let status = w.run_to_end(|u| {
        let a = word(0);
        u.set(a, 7);
        let p = futex::PRIVATE_FLAG;
        // Alignment and bitsets first, then the address.
        assert_eq!(u.futex(a + 1, futex::WAIT | p, 7, 0, 0, 0), EINVAL);
        assert_eq!(u.futex(a + 2, futex::WAKE, 1, 0, 0, 0), EINVAL);
        assert_eq!(u.futex(a, futex::WAIT_BITSET | p, 7, 0, 0, 0), EINVAL);
        assert_eq!(u.futex(a, futex::WAKE_BITSET, 1, 0, 0, 0), EINVAL);
        assert_eq!(
            u.futex(UNMAPPED + 1, futex::WAKE_BITSET, 1, 0, 0, 0),
            EINVAL
        );
        for bad in [0, UNMAPPED, 0xffff_8000_0000_0000, USER_END, u64::MAX - 3] {
            assert_eq!(
                u.futex(bad, futex::WAIT | p, 0, 0, 0, 0),
                EFAULT,
                "{bad:#x}"
            );
            assert_eq!(u.futex(bad, futex::WAIT, 0, 0, 0, 0), EFAULT, "{bad:#x}");
            assert_eq!(u.futex(bad, futex::WAKE, 1, 0, 0, 0), EFAULT, "{bad:#x}");
        }
        // A private wake touches no memory: unmapped user memory is fine,
        // the kernel half is not.
        assert_eq!(u.futex(UNMAPPED, futex::WAKE | p, 1, 0, 0, 0), 0);
        assert_eq!(u.futex(0, futex::WAKE | p, 1, 0, 0, 0), 0);
        assert_eq!(u.futex(USER_END, futex::WAKE | p, 1, 0, 0, 0), EFAULT);
        // Read-only memory holds a futex word as well as any.
        assert_eq!(u.futex(TEXT, futex::WAKE, 1, 0, 0, 0), 0);
        // The value, then the timeout.
        assert_eq!(u.futex(a, futex::WAIT | p, 8, 0, 0, 0), EAGAIN);
        let zero = u.timespec(0, 0);
        assert_eq!(u.futex(a, futex::WAIT | p, 7, zero, 0, 0), ETIMEDOUT);
        assert_eq!(u.futex(a, futex::WAIT | p, 8, zero, 0, 0), EAGAIN);
        // The timeout is read before anything else, even the alignment.
        assert_eq!(u.futex(a + 1, futex::WAIT, 7, UNMAPPED, 0, 0), EFAULT);
        let bad_ns = DATA + DATA_LEN - 0x400;
        u.poke(
            bad_ns,
            &abi::Timespec {
                sec: 0,
                nsec: 1_000_000_000,
            }
            .to_bytes(),
        );
        assert_eq!(u.futex(a + 1, futex::WAIT, 7, bad_ns, 0, 0), EINVAL);
        u.poke(bad_ns, &abi::Timespec { sec: -1, nsec: 0 }.to_bytes());
        assert_eq!(
            u.futex(a, futex::WAIT_BITSET, 7, bad_ns, 0, u32::MAX),
            EINVAL
        );
        // A wake takes no timeout: the argument is not read.
        assert_eq!(u.futex(a, futex::WAKE, 1, UNMAPPED, 0, 0), 0);
        // CLOCK_REALTIME only with WAIT_BITSET; unknown and unimplemented
        // operations are ENOSYS.
        let rt = futex::CLOCK_REALTIME;
        assert_eq!(u.futex(a, futex::WAIT | rt, 7, 0, 0, 0), ENOSYS);
        assert_eq!(u.futex(a, futex::WAIT | rt, 7, UNMAPPED, 0, 0), EFAULT);
        assert_eq!(u.futex(a, futex::WAKE | rt, 1, 0, 0, 0), ENOSYS);
        let past = u.timespec(1, 1);
        let any = futex::BITSET_MATCH_ANY;
        assert_eq!(
            u.futex(a, futex::WAIT_BITSET | rt, 7, past, 0, any),
            ETIMEDOUT
        );
        for op in [
            futex::FD,
            futex::WAKE_OP,
            futex::LOCK_PI,
            futex::UNLOCK_PI,
            14,
            1 << 20,
            -1,
        ] {
            assert_eq!(u.futex(a, op, 0, 0, 0, 0), ENOSYS, "op {op}");
        }
        // Requeue counts are ints: negative ones are EINVAL; the compare
        // is EAGAIN when the word moved on.
        assert_eq!(u.futex(a, futex::REQUEUE, u32::MAX, 0, word(1), 0), EINVAL);
        assert_eq!(u.futex(a, futex::REQUEUE, 1, 1 << 31, word(1), 0), EINVAL);
        assert_eq!(u.futex(a, futex::CMP_REQUEUE, 1, 1, word(1), 8), EAGAIN);
        assert_eq!(u.futex(a, futex::CMP_REQUEUE, 1, 1, word(1), 7), 0);
        assert_eq!(u.futex(a, futex::CMP_REQUEUE, 1, 1, word(1) + 1, 7), EINVAL);
        assert_eq!(u.futex(a, futex::CMP_REQUEUE, 1, 1, UNMAPPED, 7), EFAULT);
        // None of it allocates.
        let (r, n) = crate::testutil::alloc::count(|| u.futex(a, futex::WAKE, 9, 0, 0, 0));
        assert_eq!((r, n), (0, 0));
        let (r, n) = crate::testutil::alloc::count(|| u.futex(a, futex::WAIT, 7, zero, 0, 0));
        assert_eq!((r, n), (ETIMEDOUT, 0));
        0
    });
    assert_eq!(status, 0);
    w.assert_quiet();
}

/// What the waiter threads of the tests below do: one futex call each,
/// its result logged under the waiter's number.
#[derive(Clone, Copy, Debug)]
struct Job {
    id: u64,
    uaddr: u64,
    op: i32,
    val: u32,
    timeout: u64,
    bits: u32,
}

#[derive(Default)]
struct Waiters {
    jobs: Mutex<VecDeque<Job>>,
    log: Mutex<Vec<(u64, i64)>>,
}

impl Waiters {
    fn entry(w: &World, me: Arc<Waiters>) -> u64 {
        w.thread(move |u| {
            let job = me.jobs.lock().unwrap().pop_front().expect("a job");
            let op = u64::from(job.op as u32);
            let args = [
                job.uaddr,
                op,
                job.val.into(),
                job.timeout,
                0,
                job.bits.into(),
            ];
            let r = u.raw_call(nr::FUTEX, &args, TEXT + 2);
            me.log.lock().unwrap().push((job.id, r));
            u.return_to_user();
            0
        })
    }

    fn results(&self) -> Vec<(u64, i64)> {
        core::mem::take(&mut self.log.lock().unwrap())
    }
}

impl User {
    /// Starts a waiter doing `job`, and lets it get as far as it can.
    fn waiter(&self, entry: u64, waiters: &Waiters, job: Job) {
        waiters.jobs.lock().unwrap().push_back(job);
        let flags = GLIBC & !u64::from(clone::CHILD_CLEARTID | clone::PARENT_SETTID);
        assert!(self.clone_at(entry, flags, CHILD_SP, 0, 0, 0) > 1);
        self.settle();
    }
}

fn wait_job(id: u64, uaddr: u64, op: i32, val: u32, bits: u32) -> Job {
    Job {
        id,
        uaddr,
        op,
        val,
        timeout: 0,
        bits,
    }
}

#[test]
fn wakes_go_to_their_own_key_and_bits_longest_waiting_first() {
    let w = World::new();
    let waiters = Arc::new(Waiters::default());
    let entry = Waiters::entry(&w, waiters.clone());
    let status = w.run_to_end(move |u| {
        let (a, b) = (word(0), word(1));
        let p = futex::PRIVATE_FLAG;
        let any = futex::BITSET_MATCH_ANY;
        // 0..3 wait privately on a (2 with bits 2 only), 4 shared on a.
        for id in 0..4 {
            let bits = if id == 2 { 2 } else { any };
            u.waiter(
                entry,
                &waiters,
                wait_job(id, a, futex::WAIT_BITSET | p, 0, bits),
            );
        }
        u.waiter(entry, &waiters, wait_job(4, a, futex::WAIT, 0, any));
        assert_eq!(u.waiting(), 5);
        // Shared and private never meet; the other word has nobody.
        assert_eq!(u.futex(b, futex::WAKE | p, 9, 0, 0, 0), 0);
        // n 0 wakes one, as Linux does: the first to wait.
        assert_eq!(u.futex(a, futex::WAKE | p, 0, 0, 0, 0), 1);
        u.settle();
        assert_eq!(waiters.results(), [(0, 0)]);
        // Bits 1 pass over 2, whose bits are 2.
        assert_eq!(u.futex(a, futex::WAKE_BITSET | p, 2, 0, 0, 1), 2);
        u.settle();
        assert_eq!(waiters.results(), [(1, 0), (3, 0)]);
        // Requeue 2 to b, then wake it there; the shared one stays.
        assert_eq!(u.futex(a, futex::CMP_REQUEUE | p, 0, 5, b, 0), 1);
        assert_eq!(u.futex(a, futex::WAKE | p, 9, 0, 0, 0), 0, "moved off a");
        assert_eq!(
            u.futex(b, futex::WAKE_BITSET | p, 9, 0, 0, 1),
            0,
            "bits kept"
        );
        assert_eq!(u.futex(b, futex::WAKE | p, 9, 0, 0, 0), 1);
        assert_eq!(u.futex(a, futex::WAKE, 9, 0, 0, 0), 1);
        u.settle();
        assert_eq!(waiters.results(), [(2, 0), (4, 0)]);
        assert_eq!(u.waiting(), 0);
        0
    });
    assert_eq!(status, 0);
    w.assert_quiet();
}

/// The waiter's check of the word and its sleep are one step: a waker
/// that runs right after the waiter's call began (here: as soon as the
/// waiter gives the CPU back) finds it queued. A kernel that let anything
/// run between the two would lose this wake, and the waiter would sleep
/// on a word that has long changed.
#[test]
fn a_wake_right_after_the_check_is_not_lost() {
    let w = World::new();
    let waiters = Arc::new(Waiters::default());
    let entry = Waiters::entry(&w, waiters.clone());
    let status = w.run_to_end(move |u| {
        let a = word(0);
        for (id, op) in [(0, futex::WAIT), (1, futex::WAIT | futex::PRIVATE_FLAG)] {
            u.set(a, 0);
            waiters
                .jobs
                .lock()
                .unwrap()
                .push_back(wait_job(id, a, op, 0, 0));
            let flags = GLIBC & !u64::from(clone::CHILD_CLEARTID | clone::PARENT_SETTID);
            assert!(u.clone_at(entry, flags, CHILD_SP, 0, 0, 0) > 1);
            // One yield: the waiter runs until it gives the CPU back.
            u.call(nr::SCHED_YIELD, &[]);
            u.set(a, 1);
            let shared = op & futex::PRIVATE_FLAG;
            assert_eq!(
                u.futex(a, futex::WAKE | shared, 1, 0, 0, 0),
                1,
                "waiter {id}"
            );
            u.settle();
            assert_eq!(waiters.results(), [(id, 0)]);
        }
        0
    });
    assert_eq!(status, 0);
    w.assert_quiet();
}

#[test]
fn a_timed_wait_times_out_once_and_a_kill_interrupts_a_wait() {
    let w = World::new();
    let waiters = Arc::new(Waiters::default());
    let entry = Waiters::entry(&w, waiters.clone());
    let status = w.run_to_end({
        let waiters = waiters.clone();
        move |u| {
            let a = word(0);
            let now = || u.sys.m.clock.load(Ordering::SeqCst);
            let start = now();
            let three = u.timespec(0, 3 * TICK_NS);
            let job = Job {
                timeout: three,
                ..wait_job(0, a, futex::WAIT, 0, 0)
            };
            u.waiter(entry, &waiters, job);
            // Absolute, on the monotonic clock: two ticks from now.
            let abs = u.timespec(1, start + 2 * TICK_NS);
            let job = Job {
                timeout: abs,
                ..wait_job(1, a, futex::WAIT_BITSET, 0, 1)
            };
            u.waiter(entry, &waiters, job);
            assert_eq!(u.waiting(), 2);
            u.sleep(TICK_NS);
            assert_eq!(waiters.results(), []);
            u.sleep(5 * TICK_NS);
            u.settle();
            let done = waiters.results();
            assert_eq!(
                done,
                [(1, ETIMEDOUT), (0, ETIMEDOUT)],
                "each once, in time order"
            );
            assert!(now() >= start + 3 * TICK_NS);
            // Gone from the queue: a wake finds nobody.
            assert_eq!(u.futex(a, futex::WAKE, 9, 0, 0, 0), 0);
            0
        }
    });
    assert_eq!(status, 0);
    // A program killed while its threads wait on a futex: EINTR, and
    // everything is collected.
    let log = waiters.clone();
    let pid = w.run(move |u| {
        for id in 0..3 {
            u.waiter(entry, &waiters, wait_job(id, word(0), futex::WAIT, 0, 0));
        }
        let r = u.raw_call(nr::FUTEX, &[word(0), 0, 0, 0, 0, 0], TEXT + 2);
        waiters.log.lock().unwrap().push((9, r));
        u.return_to_user();
        unreachable!("the kill ends it")
    });
    w.sys.sleep_ns(5 * TICK_NS);
    w.sys.kill_process(pid, 137).unwrap();
    assert_eq!(w.sys.join_process(pid, TICK_NS), Ok(137));
    let mut got = log.results();
    got.sort_unstable();
    assert_eq!(got, [(0, EINTR), (1, EINTR), (2, EINTR), (9, EINTR)]);
    w.assert_quiet();
}

/// The random test's view of one waiter.
#[derive(Clone, Copy, Debug)]
struct Waiting {
    id: u64,
    /// (word index, shared).
    key: (u64, bool),
    bits: u32,
    deadline: Option<u64>,
}

/// Seeded random waits, wakes, requeues, word changes and passing time,
/// against a model of who waits where: every wake wakes exactly whom
/// Linux would (no lost wake-up, no extra one), and every timed wait
/// ends once, with ETIMEDOUT, no earlier than its deadline.
fn random_futex_run(seed: u64, ops: usize) {
    let w = World::new();
    let waiters = Arc::new(Waiters::default());
    let entry = Waiters::entry(&w, waiters.clone());
    let status = w.run_to_end(move |u| {
        let mut rng = Rng(seed);
        let mut model: Vec<Waiting> = Vec::new();
        let mut values = [0u32; 3];
        let mut next_id = 0;
        let now = || u.sys.m.clock.load(Ordering::SeqCst);
        let mut stats = [0usize; 4];
        // Waits that ended woken, timed out, refused (EAGAIN).
        let mut ends = [0usize; 3];
        for op in 0..ops {
            let w_i = rng.below(3);
            let shared = rng.chance(30);
            let flag = if shared { 0 } else { futex::PRIVATE_FLAG };
            let expect: Vec<(u64, i64)>;
            match rng.below(10) {
                0..=3 if model.len() < 40 => {
                    let id = next_id;
                    next_id += 1;
                    let matching = rng.chance(85);
                    let val = if matching {
                        values[w_i as usize]
                    } else {
                        values[w_i as usize] ^ 1
                    };
                    let bits = [1, 2, 3, futex::BITSET_MATCH_ANY][rng.index(4)];
                    let ns = rng.below(5) * TICK_NS / 2;
                    let slot = id % 8;
                    let (cmd, bits, timeout, deadline) = match rng.below(4) {
                        // Relative, and for any bits, as FUTEX_WAIT is.
                        0 => {
                            let any = futex::BITSET_MATCH_ANY;
                            (futex::WAIT, any, u.timespec(slot, ns), Some(now() + ns))
                        }
                        // Absolute on the monotonic clock.
                        1 => {
                            let at = now() + ns;
                            (futex::WAIT_BITSET, bits, u.timespec(slot, at), Some(at))
                        }
                        _ => (futex::WAIT_BITSET, bits, 0, None),
                    };
                    let job = Job {
                        id,
                        uaddr: word(w_i),
                        op: cmd | flag,
                        val,
                        timeout,
                        bits,
                    };
                    u.waiter(entry, &waiters, job);
                    expect = if !matching {
                        vec![(id, EAGAIN)]
                    } else if deadline.is_some_and(|d| d <= now()) {
                        vec![(id, ETIMEDOUT)]
                    } else {
                        model.push(Waiting {
                            id,
                            key: (w_i, shared),
                            bits,
                            deadline,
                        });
                        vec![]
                    };
                    stats[0] += 1;
                }
                4..=5 => {
                    let n = rng.below(4) as u32;
                    let bits = [1, 2, 3, futex::BITSET_MATCH_ANY][rng.index(4)];
                    let r = u.futex(word(w_i), futex::WAKE_BITSET | flag, n, 0, 0, bits);
                    let mut woken = vec![];
                    model.retain(|m| {
                        let hit = m.key == (w_i, shared) && m.bits & bits != 0;
                        if hit && woken.len() < n.max(1) as usize {
                            woken.push((m.id, 0));
                            return false;
                        }
                        true
                    });
                    assert_eq!(r, woken.len() as i64, "op {op}: wake count");
                    u.settle();
                    expect = woken;
                    stats[1] += 1;
                }
                6 => {
                    let to = rng.below(3);
                    let (wake, requeue) = (rng.below(3), rng.below(3));
                    let r = u.futex(
                        word(w_i),
                        futex::REQUEUE | flag,
                        wake as u32,
                        requeue,
                        word(to),
                        0,
                    );
                    let (mut woken, mut moved) = (vec![], vec![]);
                    model.retain(|m| {
                        if m.key != (w_i, shared) {
                            return true;
                        }
                        if (woken.len() as u64) < wake {
                            woken.push((m.id, 0));
                            return false;
                        }
                        if (moved.len() as u64) < requeue {
                            moved.push(Waiting {
                                key: (to, shared),
                                ..*m
                            });
                            // Onto its own word it keeps its place.
                            return to == w_i;
                        }
                        true
                    });
                    let n_moved = moved.len();
                    // Moved ones queue behind those already waiting there.
                    if to != w_i {
                        model.extend(moved);
                    }
                    let moved = n_moved;
                    assert_eq!(
                        r,
                        woken.len() as i64 + moved as i64,
                        "op {op}: requeue count"
                    );
                    u.settle();
                    expect = woken;
                    stats[2] += 1;
                }
                7 => {
                    values[w_i as usize] = rng.next() as u32;
                    u.set(word(w_i), values[w_i as usize]);
                    expect = vec![];
                }
                _ => {
                    u.sleep(rng.below(4) * TICK_NS / 2);
                    u.settle();
                    let t = now();
                    let ids: Vec<u64> = model
                        .iter()
                        .filter(|m| m.deadline.is_some_and(|d| d <= t))
                        .map(|m| m.id)
                        .collect();
                    model.retain(|m| !ids.contains(&m.id));
                    expect = ids.into_iter().map(|id| (id, ETIMEDOUT)).collect();
                    stats[3] += 1;
                }
            }
            let mut got = waiters.results();
            for (_, r) in &got {
                ends[[0, ETIMEDOUT, EAGAIN]
                    .iter()
                    .position(|e| e == r)
                    .unwrap_or(0)] += 1;
            }
            let mut want = expect;
            got.sort_unstable();
            want.sort_unstable();
            assert_eq!(
                got,
                want,
                "seed {seed:#x} op {op} now {} model {model:?}",
                now()
            );
            assert_eq!(u.waiting(), model.len(), "seed {seed:#x} op {op}: waiters");
            for m in &model {
                assert!(m.deadline.is_none_or(|d| d > now()), "overdue {m:?}");
            }
        }
        // Everyone left is woken by wakes for any bits.
        for w_i in 0..3 {
            for flag in [0, futex::PRIVATE_FLAG] {
                u.futex(word(w_i), futex::WAKE | flag, i32::MAX as u32, 0, 0, 0);
            }
        }
        u.settle();
        let got = waiters.results();
        assert_eq!(got.len(), model.len());
        assert!(got.iter().all(|(_, r)| *r == 0));
        assert!(stats.iter().all(|&n| n > ops / 20), "{stats:?}");
        assert!(ends.iter().all(|&n| n > ops / 40), "{ends:?}");
        0
    });
    assert_eq!(status, 0);
    w.assert_quiet();
}

#[test]
fn random_futex_operations_lose_no_wakeup_and_time_out_once() {
    for seed in [1, 0x9e37_79b9_7f4a_7c15, 0xfeed] {
        random_futex_run(seed, 400);
    }
}

#[test]
fn clone_and_futex_never_panic_without_memory() {
    let w = World::new();
    let frames = w.free_frames();
    let child = w.thread(|_| 0);
    let status = w.run_to_end(move |u| {
        crate::testutil::alloc::failing(|| {
            for _ in 0..5 {
                u.set(word(0), 1);
                let r = u.clone_at(child, GLIBC, CHILD_SP, word(0), word(0), 0);
                assert!(
                    r > 1 || r == -(Errno::ENOMEM as i64) || r == EAGAIN,
                    "clone: {r}"
                );
                if r > 1 {
                    u.join(word(0));
                }
                assert_eq!(u.futex(word(0), futex::WAKE, 1, 0, 0, 0), 0);
            }
        });
        0
    });
    assert_eq!(status, 0);
    assert_eq!(w.free_frames(), frames);
    w.assert_quiet();
}
