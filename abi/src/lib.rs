//! Faultline's system-call ABI, shared by the kernel and user programs.
//!
//! It is Linux's x86_64 ABI for every call Linux has: the same numbers,
//! flags, structures and errno values, so that one static program runs on
//! both kernels. Calls Linux lacks take numbers from 1000 up.
//!
//! Calling convention: the call number in `rax`, arguments in `rdi, rsi,
//! rdx, r10, r8, r9`, the result in `rax`. `syscall` itself clobbers `rcx`
//! and `r11`. A result in `-4095..=-1` is a negated [`Errno`]; anything
//! else is success. docs/abi.md describes every call.
#![no_std]

/// System-call numbers: Linux's where Linux has the call.
pub mod nr {
    /// `read(fd, buf, count) -> bytes read` (0 = end of file).
    pub const READ: u64 = 0;
    /// `write(fd, buf, count) -> bytes written`. fds 1 and 2 are the console.
    pub const WRITE: u64 = 1;
    /// `close(fd) -> 0`.
    pub const CLOSE: u64 = 3;
    /// `pipe(fds: *mut [i32; 2]) -> 0`: fds[0] reads, fds[1] writes.
    pub const PIPE: u64 = 22;
    /// `sched_yield() -> 0`.
    pub const SCHED_YIELD: u64 = 24;
    /// `nanosleep(req: *const timespec, rem: *mut timespec) -> 0`.
    pub const NANOSLEEP: u64 = 35;
    /// `getpid() -> pid`: the process (thread group) id.
    pub const GETPID: u64 = 39;
    /// `exit(status) -> !`: ends the calling thread; the last thread's end
    /// ends the process.
    pub const EXIT: u64 = 60;
    /// `clone(flags, newsp, parent_tid, child_tid, tls) -> tid` (0 in the
    /// child): threads only ([`crate::clone`]).
    pub const CLONE: u64 = 56;
    /// `getppid() -> pid` of the parent.
    pub const GETPPID: u64 = 110;
    /// `arch_prctl(code, addr)`: the FS base ([`crate::arch_prctl`]).
    pub const ARCH_PRCTL: u64 = 158;
    /// `gettid() -> tid`.
    pub const GETTID: u64 = 186;
    /// `futex(uaddr, op, val, timeout, uaddr2, val3)` ([`crate::futex`]).
    pub const FUTEX: u64 = 202;
    /// `set_tid_address(tidptr) -> tid`: the word cleared and woken at exit.
    pub const SET_TID_ADDRESS: u64 = 218;
    /// `clock_gettime(clock, tp: *mut timespec) -> 0`.
    pub const CLOCK_GETTIME: u64 = 228;
    /// `clock_nanosleep(clock, flags, req, rem) -> 0`.
    pub const CLOCK_NANOSLEEP: u64 = 230;
    /// `exit_group(status) -> !`: ends every thread of the process.
    pub const EXIT_GROUP: u64 = 231;

    /// The first number of the calls Linux lacks.
    pub const FAULTLINE_BASE: u64 = 1000;
    /// `spawn_thread(entry, stack_top, arg) -> tid`: a new thread in the
    /// caller's process (Faultline's, until `clone` threads arrive).
    pub const SPAWN_THREAD: u64 = 1000;
    /// `wait_thread(tid, status: *mut i64) -> tid`: waits for a thread of
    /// the caller's process to exit and reaps it (Faultline's, until
    /// `CLONE_CHILD_CLEARTID` and futexes arrive).
    pub const WAIT_THREAD: u64 = 1001;

    /// Every number the kernel implements, for tests and fuzzers.
    pub const ALL: [u64; 19] = [
        READ,
        WRITE,
        CLOSE,
        PIPE,
        SCHED_YIELD,
        NANOSLEEP,
        GETPID,
        CLONE,
        EXIT,
        GETPPID,
        ARCH_PRCTL,
        GETTID,
        FUTEX,
        SET_TID_ADDRESS,
        CLOCK_GETTIME,
        CLOCK_NANOSLEEP,
        EXIT_GROUP,
        SPAWN_THREAD,
        WAIT_THREAD,
    ];
}

/// Clocks for `clock_gettime` and `clock_nanosleep` (Linux's ids; the
/// argument is a C `int`).
pub mod clock {
    pub const REALTIME: i32 = 0;
    pub const MONOTONIC: i32 = 1;
    pub const PROCESS_CPUTIME_ID: i32 = 2;
    pub const THREAD_CPUTIME_ID: i32 = 3;
    pub const MONOTONIC_RAW: i32 = 4;
    pub const REALTIME_COARSE: i32 = 5;
    pub const MONOTONIC_COARSE: i32 = 6;
    pub const BOOTTIME: i32 = 7;
    pub const REALTIME_ALARM: i32 = 8;
    pub const BOOTTIME_ALARM: i32 = 9;
    pub const TAI: i32 = 11;
    /// `clock_nanosleep` flag: `req` is an absolute time.
    pub const TIMER_ABSTIME: i32 = 1;
}

/// `clone` flags (Linux's; the argument's low 32 bits count, as Linux
/// reads them). Faultline makes threads only: see docs/abi.md.
pub mod clone {
    /// The low byte: the signal sent to the parent at exit (ignored for
    /// threads, as Linux ignores it with `THREAD`).
    pub const CSIGNAL: u32 = 0xff;
    pub const VM: u32 = 0x100;
    pub const FS: u32 = 0x200;
    pub const FILES: u32 = 0x400;
    pub const SIGHAND: u32 = 0x800;
    pub const PIDFD: u32 = 0x1000;
    pub const PTRACE: u32 = 0x2000;
    pub const VFORK: u32 = 0x4000;
    pub const PARENT: u32 = 0x8000;
    pub const THREAD: u32 = 0x1_0000;
    pub const NEWNS: u32 = 0x2_0000;
    pub const SYSVSEM: u32 = 0x4_0000;
    pub const SETTLS: u32 = 0x8_0000;
    pub const PARENT_SETTID: u32 = 0x10_0000;
    pub const CHILD_CLEARTID: u32 = 0x20_0000;
    /// Ignored by Linux since 2.6; musl still passes it.
    pub const DETACHED: u32 = 0x40_0000;
    pub const UNTRACED: u32 = 0x80_0000;
    pub const CHILD_SETTID: u32 = 0x100_0000;
    pub const NEWCGROUP: u32 = 0x200_0000;
    pub const NEWUTS: u32 = 0x400_0000;
    pub const NEWIPC: u32 = 0x800_0000;
    pub const NEWUSER: u32 = 0x1000_0000;
    pub const NEWPID: u32 = 0x2000_0000;
    pub const NEWNET: u32 = 0x4000_0000;
    pub const IO: u32 = 0x8000_0000;

    /// What glibc's `pthread_create` passes.
    pub const GLIBC_PTHREAD: u32 =
        VM | FS | FILES | SYSVSEM | SIGHAND | THREAD | SETTLS | PARENT_SETTID | CHILD_CLEARTID;
    /// What musl's `pthread_create` passes.
    pub const MUSL_PTHREAD: u32 = GLIBC_PTHREAD | DETACHED;
}

/// `futex` operations and flags (Linux's; `op` is an `int`).
pub mod futex {
    pub const WAIT: i32 = 0;
    pub const WAKE: i32 = 1;
    pub const FD: i32 = 2;
    pub const REQUEUE: i32 = 3;
    pub const CMP_REQUEUE: i32 = 4;
    pub const WAKE_OP: i32 = 5;
    pub const LOCK_PI: i32 = 6;
    pub const UNLOCK_PI: i32 = 7;
    pub const TRYLOCK_PI: i32 = 8;
    pub const WAIT_BITSET: i32 = 9;
    pub const WAKE_BITSET: i32 = 10;
    pub const WAIT_REQUEUE_PI: i32 = 11;
    pub const CMP_REQUEUE_PI: i32 = 12;
    pub const LOCK_PI2: i32 = 13;
    /// The futex is private to the process: keyed by its address alone.
    pub const PRIVATE_FLAG: i32 = 128;
    /// `WAIT_BITSET`'s absolute timeout is on `CLOCK_REALTIME`.
    pub const CLOCK_REALTIME: i32 = 256;
    /// The bits of `op` that name the operation.
    pub const CMD_MASK: i32 = !(PRIVATE_FLAG | CLOCK_REALTIME);
    /// A bitset matching every waiter: what `WAIT` and `WAKE` use.
    pub const BITSET_MATCH_ANY: u32 = u32::MAX;
}

/// `arch_prctl` codes (Linux's x86_64 ones; the code is an `int`).
pub mod arch_prctl {
    pub const SET_GS: i32 = 0x1001;
    pub const SET_FS: i32 = 0x1002;
    pub const GET_FS: i32 = 0x1003;
    pub const GET_GS: i32 = 0x1004;
}

/// Linux's `TASK_SIZE_MAX` on x86_64: one page below [`USER_END`]. An FS
/// base at or above it is `EPERM` (`arch_prctl`, `clone` with `SETTLS`).
pub const TASK_SIZE_MAX: u64 = USER_END - 4096;

/// Linux's `struct timespec` on x86_64: two 64-bit words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timespec {
    pub sec: i64,
    pub nsec: i64,
}

impl Timespec {
    pub const SIZE: usize = 16;
    pub const NSEC_PER_SEC: i64 = 1_000_000_000;

    pub fn from_bytes(b: [u8; 16]) -> Timespec {
        let (sec, nsec) = b.split_at(8);
        Timespec {
            sec: i64::from_le_bytes(sec.try_into().unwrap_or([0; 8])),
            nsec: i64::from_le_bytes(nsec.try_into().unwrap_or([0; 8])),
        }
    }

    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0; 16];
        b[..8].copy_from_slice(&self.sec.to_le_bytes());
        b[8..].copy_from_slice(&self.nsec.to_le_bytes());
        b
    }

    /// Nanoseconds, if the value is one Linux accepts for a sleep
    /// (`0 <= nsec < 1e9`, `sec >= 0`); saturating at u64::MAX.
    pub fn to_ns(self) -> Option<u64> {
        if self.sec < 0 || !(0..Self::NSEC_PER_SEC).contains(&self.nsec) {
            return None;
        }
        Some(
            (self.sec as u64)
                .saturating_mul(1_000_000_000)
                .saturating_add(self.nsec as u64),
        )
    }

    pub fn from_ns(ns: u64) -> Timespec {
        Timespec {
            sec: (ns / 1_000_000_000) as i64,
            nsec: (ns % 1_000_000_000) as i64,
        }
    }
}

/// Error numbers; a failed call returns `-(errno as i64)`. The values are
/// Linux's, so the names mean what a Linux programmer expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i64)]
pub enum Errno {
    EPERM = 1,
    ENOENT = 2,
    ESRCH = 3,
    EINTR = 4,
    E2BIG = 7,
    EBADF = 9,
    ECHILD = 10,
    EAGAIN = 11,
    ENOMEM = 12,
    EFAULT = 14,
    EBUSY = 16,
    EEXIST = 17,
    EINVAL = 22,
    EMFILE = 24,
    EPIPE = 32,
    ENOSYS = 38,
    EOPNOTSUPP = 95,
    ETIMEDOUT = 110,
}

impl Errno {
    /// All error numbers, for tables and tests.
    pub const ALL: [Errno; 18] = [
        Errno::EPERM,
        Errno::ENOENT,
        Errno::ESRCH,
        Errno::EINTR,
        Errno::E2BIG,
        Errno::EBADF,
        Errno::ECHILD,
        Errno::EAGAIN,
        Errno::ENOMEM,
        Errno::EFAULT,
        Errno::EBUSY,
        Errno::EEXIST,
        Errno::EINVAL,
        Errno::EMFILE,
        Errno::EPIPE,
        Errno::ENOSYS,
        Errno::EOPNOTSUPP,
        Errno::ETIMEDOUT,
    ];

    /// The symbolic name, e.g. "EFAULT".
    pub const fn name(self) -> &'static str {
        match self {
            Errno::EPERM => "EPERM",
            Errno::ENOENT => "ENOENT",
            Errno::ESRCH => "ESRCH",
            Errno::EINTR => "EINTR",
            Errno::E2BIG => "E2BIG",
            Errno::EBADF => "EBADF",
            Errno::ECHILD => "ECHILD",
            Errno::EAGAIN => "EAGAIN",
            Errno::ENOMEM => "ENOMEM",
            Errno::EFAULT => "EFAULT",
            Errno::EBUSY => "EBUSY",
            Errno::EEXIST => "EEXIST",
            Errno::EINVAL => "EINVAL",
            Errno::EMFILE => "EMFILE",
            Errno::EPIPE => "EPIPE",
            Errno::ENOSYS => "ENOSYS",
            Errno::EOPNOTSUPP => "EOPNOTSUPP",
            Errno::ETIMEDOUT => "ETIMEDOUT",
        }
    }

    /// The errno for a raw number, if it is one of ours.
    pub fn from_raw(raw: i64) -> Option<Errno> {
        Errno::ALL.iter().copied().find(|e| *e as i64 == raw)
    }
}

/// Encodes a call's result in a register.
pub fn encode(result: Result<u64, Errno>) -> u64 {
    match result {
        Ok(v) => v,
        Err(e) => (-(e as i64)) as u64,
    }
}

/// Decodes a register into a call's result.
pub fn decode(raw: u64) -> Result<u64, Errno> {
    let signed = raw as i64;
    if (-4095..0).contains(&signed) {
        Err(Errno::from_raw(-signed).unwrap_or(Errno::EINVAL))
    } else {
        Ok(raw)
    }
}

/// The console's file descriptors, open in every process.
pub const STDOUT: u32 = 1;
pub const STDERR: u32 = 2;

/// Where user programs live: everything below this is user space.
pub const USER_END: u64 = 0x0000_8000_0000_0000;
/// The main thread's stack: `USER_STACK_SIZE` bytes ending at this address.
pub const USER_STACK_TOP: u64 = 0x0000_7fff_ffff_0000;
pub const USER_STACK_SIZE: u64 = 64 * 1024;

/// Exit status of a task killed for a fault: 128 + vector, as a shell would say it.
pub const fn killed_status(vector: u64) -> i64 {
    128 + vector as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_round_trip() {
        for e in Errno::ALL {
            assert_eq!(decode(encode(Err(e))), Err(e));
            assert_eq!(Errno::from_raw(e as i64), Some(e));
        }
        for v in [0, 1, 42, u64::MAX - 4096, 1 << 62] {
            assert_eq!(decode(encode(Ok(v))), Ok(v));
        }
    }

    #[test]
    fn timespecs_round_trip_and_bad_ones_are_refused() {
        let t = Timespec { sec: 3, nsec: 5 };
        assert_eq!(Timespec::from_bytes(t.to_bytes()), t);
        assert_eq!(t.to_ns(), Some(3_000_000_005));
        assert_eq!(Timespec::from_ns(3_000_000_005), t);
        for bad in [(-1, 0), (0, -1), (0, 1_000_000_000)] {
            assert_eq!(
                Timespec {
                    sec: bad.0,
                    nsec: bad.1
                }
                .to_ns(),
                None
            );
        }
        assert_eq!(
            Timespec {
                sec: i64::MAX,
                nsec: 0
            }
            .to_ns(),
            Some(u64::MAX)
        );
    }

    #[test]
    fn numbers_are_distinct_and_linux_lacks_only_ours() {
        for (i, a) in nr::ALL.iter().enumerate() {
            assert!(!nr::ALL[i + 1..].contains(a));
        }
        assert_eq!((nr::EXIT, nr::EXIT_GROUP, nr::GETTID), (60, 231, 186));
        assert_eq!(
            (nr::CLONE, nr::ARCH_PRCTL, nr::FUTEX, nr::SET_TID_ADDRESS),
            (56, 158, 202, 218)
        );
        // The sets the C libraries pass, as their sources spell them.
        assert_eq!(clone::GLIBC_PTHREAD, 0x003d_0f00);
        assert_eq!(clone::MUSL_PTHREAD, 0x007d_0f00);
    }

    #[test]
    fn names_are_distinct() {
        for (i, a) in Errno::ALL.iter().enumerate() {
            for b in &Errno::ALL[i + 1..] {
                assert_ne!(a.name(), b.name());
                assert_ne!(*a as i64, *b as i64);
            }
        }
    }
}
