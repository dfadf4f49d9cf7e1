//! Futexes: Linux's `futex` for `WAIT`, `WAKE`, their `_BITSET` forms
//! (glibc waits with them) and `REQUEUE`/`CMP_REQUEUE` (musl's condition
//! variables move waiters with them). docs/abi.md says what each does.
//!
//! # Keys
//!
//! A private futex (`FUTEX_PRIVATE_FLAG`) is named by (process, virtual
//! address); a shared one by the physical address of its word, so that
//! two processes mapping the same frame meet on it. As on Linux the two
//! kinds never match each other, even on the same word.
//!
//! # Waiting without allocating
//!
//! The waiters are scheduler records on [`BUCKETS`] wait queues made at
//! boot; a key hashes to a bucket, and each waiter's [`WaitTag`] says
//! which key and bits it waits for, so a wake picks only its own from the
//! bucket, longest waiting first. No wait or wake allocates.
//!
//! # No lost wake-up
//!
//! A waiter reads the futex word and enqueues itself in one section under
//! the scheduler lock (and `procs`, for the page tables); every wake takes
//! the scheduler lock. A waker changes the word before it wakes, so either
//! its wake comes after the enqueue and finds the waiter, or the waiter's
//! read comes after the change and it does not sleep (EAGAIN).

use abi::{Errno, futex};

use super::{Machine, Process, System};
use crate::sync::IrqOff;
use crate::task::sched::{QueueId, Scheduler, WaitTag, WakeReason};
use crate::task::uaccess::{self, Faulting, Use, UserMem};

/// Hash buckets: each a wait queue. Collisions only cost a wake a longer
/// walk.
pub const BUCKETS: usize = 64;

/// The `space` of a shared key: no pid is this large.
const SHARED: u64 = u64::MAX;

type SysResult = Result<u64, Errno>;

/// What a futex is named by: (pid, virtual address) or (SHARED, physical).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    space: u64,
    addr: u64,
}

impl Key {
    fn words(self) -> [u64; 2] {
        [self.space, self.addr]
    }
}

pub struct Futexes {
    buckets: [QueueId; BUCKETS],
}

impl Futexes {
    /// Makes the buckets' queues; None if the scheduler's table cannot
    /// grow (the queues made are freed again).
    pub fn new<X>(s: &mut Scheduler<X>) -> Option<Futexes> {
        let first = s.new_queue().ok()?;
        let mut buckets = [first; BUCKETS];
        for i in 1..BUCKETS {
            match s.new_queue() {
                Ok(q) => buckets[i] = q,
                Err(_) => {
                    for q in &buckets[..i] {
                        s.free_queue(*q);
                    }
                    return None;
                }
            }
        }
        Some(Futexes { buckets })
    }

    fn bucket(&self, key: Key) -> QueueId {
        // Fibonacci hashing of both words; the low two address bits are
        // always zero.
        let h = (key.space ^ (key.addr >> 2)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.buckets[(h >> 58) as usize % BUCKETS]
    }
}

impl<M: Machine> System<M> {
    /// `futex(uaddr, op, val, timeout, uaddr2, val3)`, argument for
    /// argument as Linux reads them (`timeout` is also `val2`, a count,
    /// for the requeues).
    pub(super) fn sys_futex(
        &self,
        uaddr: u64,
        op: i32,
        val: u32,
        timeout: u64,
        uaddr2: u64,
        val3: u32,
    ) -> SysResult {
        let cmd = op & futex::CMD_MASK;
        let private = op & futex::PRIVATE_FLAG != 0;
        // Linux reads and checks the timeout before anything else, for
        // the operations that take one.
        let deadline = match cmd {
            futex::WAIT | futex::WAIT_BITSET if timeout != 0 => {
                let ns = self.read_timeout(timeout)?;
                Some(match cmd {
                    futex::WAIT => self.m.now_ns().saturating_add(ns),
                    // Absolute, on CLOCK_MONOTONIC or (FUTEX_CLOCK_REALTIME)
                    // CLOCK_REALTIME: both count from boot here.
                    _ => ns,
                })
            }
            _ => None,
        };
        if op & futex::CLOCK_REALTIME != 0 && cmd != futex::WAIT_BITSET {
            return Err(Errno::ENOSYS);
        }
        let count = |v: u32| v as i32;
        match cmd {
            futex::WAIT => self.futex_wait(uaddr, private, val, deadline, futex::BITSET_MATCH_ANY),
            futex::WAIT_BITSET => self.futex_wait(uaddr, private, val, deadline, val3),
            futex::WAKE => self.futex_wake(uaddr, private, count(val), futex::BITSET_MATCH_ANY),
            futex::WAKE_BITSET => self.futex_wake(uaddr, private, count(val), val3),
            futex::REQUEUE | futex::CMP_REQUEUE => {
                let cmp = (cmd == futex::CMP_REQUEUE).then_some(val3);
                let requeue = count(timeout as u32);
                self.futex_requeue(uaddr, uaddr2, private, count(val), requeue, cmp)
            }
            // FUTEX_FD is gone from Linux too; the PI and WAKE_OP
            // operations are not implemented (docs/abi.md).
            _ => Err(Errno::ENOSYS),
        }
    }

    fn read_timeout(&self, va: u64) -> Result<u64, Errno> {
        let mut bytes = [0u8; abi::Timespec::SIZE];
        self.with_user(|u| uaccess::copy_from_user(u, va, &mut bytes))?;
        abi::Timespec::from_bytes(bytes)
            .to_ns()
            .ok_or(Errno::EINVAL)
    }

    /// The key of the futex word at `uaddr` of process `p`, as Linux's
    /// `get_futex_key` finds it: EINVAL if it is not 4-byte aligned,
    /// EFAULT if it is not a user address or, for a shared one, not
    /// mapped. A private key needs no mapping (a wake touches nothing).
    fn futex_key(&self, p: &mut Process<M>, uaddr: u64, private: bool) -> Result<Key, Errno> {
        if !uaddr.is_multiple_of(4) {
            return Err(Errno::EINVAL);
        }
        uaccess::check_user_range(uaddr, 4)?;
        if private {
            return Ok(Key {
                space: u64::from(p.pid),
                addr: uaddr,
            });
        }
        let mut user = Faulting {
            space: &mut p.space,
            alloc: self.alloc(),
        };
        uaccess::check_mapped(&user, uaddr, 4, false)?;
        // Faulted in for a write where it may be written, as Linux's
        // get_futex_key tries first: a frame of its own, not the zero
        // page that every untouched word would share.
        let writable = uaccess::check_mapped(&user, uaddr, 4, true).is_ok();
        let use_ = if writable { Use::Write } else { Use::Read };
        // An aligned word never straddles a page: one translation names it.
        let (pa, _) = user.locate(uaddr, use_)?;
        Ok(Key {
            space: SHARED,
            addr: pa,
        })
    }

    /// FUTEX_WAIT(_BITSET): sleeps on `uaddr` while it holds `val`, until
    /// a wake whose bits meet `bits`, the deadline, or a kill.
    fn futex_wait(
        &self,
        uaddr: u64,
        private: bool,
        val: u32,
        deadline: Option<u64>,
        bits: u32,
    ) -> SysResult {
        if bits == 0 {
            return Err(Errno::EINVAL);
        }
        let pid = self.current_pid();
        let alloc = self.alloc();
        // Off until the switch is done: from the block on, the scheduler
        // counts another task as current, and a tick in between would
        // switch away from that one on this stack.
        let _off = IrqOff::new();
        let blocked = {
            let mut procs = self.procs.lock();
            let p = procs
                .iter_mut()
                .find(|p| p.pid == pid)
                .ok_or(Errno::ESRCH)?;
            let key = self.futex_key(p, uaddr, private)?;
            // The word is faulted in before the scheduler's lock: the
            // read under it then finds the page present.
            let mut user = Faulting {
                space: &mut p.space,
                alloc,
            };
            uaccess::read_user_u32(&mut user, uaddr)?;
            // The read and the enqueue under the lock every wake takes.
            let mut s = self.sched();
            let word = uaccess::read_user_u32(&mut user, uaddr)?;
            if word != val {
                return Err(Errno::EAGAIN);
            }
            if deadline.is_some_and(|d| d <= self.m.now_ns()) {
                return Err(Errno::ETIMEDOUT);
            }
            let tag = WaitTag {
                key: key.words(),
                bits,
            };
            let sw = s.block_current_tagged(self.futexes.bucket(key), deadline, tag);
            sw.map(|sw| s.plan(sw))
        };
        // Every lock is released: now the switch.
        match blocked {
            Ok(sw) => self.switch_if(sw),
            Err(_) => return Err(Errno::EINTR),
        }
        let wake = self.with_sched(|s| s.task(s.current()).map(|t| t.wake));
        match wake {
            Some(WakeReason::Woken) => Ok(0),
            Some(WakeReason::TimedOut) => Err(Errno::ETIMEDOUT),
            // Linux restarts an untimed wait after SA_RESTART handlers; a
            // timed one returns EINTR to a handler's program.
            Some(WakeReason::Interrupted) if deadline.is_none() => Err(Errno::ERESTARTSYS),
            Some(WakeReason::Interrupted) => Err(Errno::ERESTART_RESTARTBLOCK),
            _ => Err(Errno::EINTR),
        }
    }

    /// FUTEX_WAKE(_BITSET): wakes up to `n` waiters on `uaddr` whose bits
    /// meet `bits` (at least one, as Linux does for `n` <= 0).
    pub(super) fn futex_wake(&self, uaddr: u64, private: bool, n: i32, bits: u32) -> SysResult {
        if bits == 0 {
            return Err(Errno::EINVAL);
        }
        let max = usize::try_from(n).unwrap_or(0).max(1);
        let pid = self.current_pid();
        let _off = IrqOff::new();
        let sw = {
            let mut procs = self.procs.lock();
            let p = procs
                .iter_mut()
                .find(|p| p.pid == pid)
                .ok_or(Errno::ESRCH)?;
            let key = self.futex_key(p, uaddr, private)?;
            let mut s = self.sched();
            let woken = s.wake_tagged(self.futexes.bucket(key), key.words(), bits, max);
            let sw = if woken > 0 && s.should_preempt() {
                s.schedule()
            } else {
                None
            };
            (woken, s.plan(sw))
        };
        self.switch_if(sw.1);
        Ok(sw.0 as u64)
    }

    /// FUTEX_REQUEUE and (with `cmp`) FUTEX_CMP_REQUEUE: wakes up to
    /// `wake` waiters on `uaddr`, then moves up to `requeue` more to
    /// `uaddr2`; `cmp` must then match the word at `uaddr` (else EAGAIN).
    fn futex_requeue(
        &self,
        uaddr: u64,
        uaddr2: u64,
        private: bool,
        wake: i32,
        requeue: i32,
        cmp: Option<u32>,
    ) -> SysResult {
        let (Ok(wake), Ok(requeue)) = (usize::try_from(wake), usize::try_from(requeue)) else {
            return Err(Errno::EINVAL);
        };
        let pid = self.current_pid();
        let alloc = self.alloc();
        let _off = IrqOff::new();
        let sw = {
            let mut procs = self.procs.lock();
            let p = procs
                .iter_mut()
                .find(|p| p.pid == pid)
                .ok_or(Errno::ESRCH)?;
            let from = self.futex_key(p, uaddr, private)?;
            let to = self.futex_key(p, uaddr2, private)?;
            let mut user = Faulting {
                space: &mut p.space,
                alloc,
            };
            if cmp.is_some() {
                uaccess::read_user_u32(&mut user, uaddr)?;
            }
            let mut s = self.sched();
            if let Some(expected) = cmp {
                let word = uaccess::read_user_u32(&mut user, uaddr)?;
                if word != expected {
                    return Err(Errno::EAGAIN);
                }
            }
            let (q, r) = (self.futexes.bucket(from), self.futexes.bucket(to));
            let n = s
                .requeue_tagged(q, from.words(), r, to.words(), wake, requeue)
                .map_err(|_| Errno::EINVAL)?;
            let sw = if n > 0 && s.should_preempt() {
                s.schedule()
            } else {
                None
            };
            (n, s.plan(sw))
        };
        self.switch_if(sw.1);
        Ok(sw.0 as u64)
    }
}
