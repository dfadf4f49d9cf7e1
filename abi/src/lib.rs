//! Faultline's system-call ABI, shared by the kernel and user programs.
//!
//! Calling convention (the same registers as Linux on x86_64): the call
//! number in `rax`, arguments in `rdi, rsi, rdx, r10, r8, r9`, the result in
//! `rax`. `syscall` itself clobbers `rcx` and `r11`. A result in
//! `-4095..=-1` is a negated [`Errno`]; anything else is success.
//! docs/abi.md describes every call.
#![no_std]

/// System-call numbers.
pub mod nr {
    /// `exit(status: i64) -> !`: ends the calling thread. From the main
    /// thread (tid == group id) it ends the whole group: the other threads
    /// are killed and the group's status is `status`.
    pub const EXIT: u64 = 0;
    /// `write(fd, buf: *const u8, len) -> bytes written`. fd 1 and 2 are the console.
    pub const WRITE: u64 = 1;
    /// `read(fd, buf: *mut u8, len) -> bytes read` (0 = end of file). Blocks until data arrives.
    pub const READ: u64 = 2;
    /// `yield() -> 0`: gives up the CPU to another ready task.
    pub const YIELD: u64 = 3;
    /// `sleep(ns) -> 0`: blocks for at least `ns` nanoseconds.
    pub const SLEEP: u64 = 4;
    /// `spawn_thread(entry, stack_top, arg) -> tid`: a new thread in the caller's group.
    pub const SPAWN_THREAD: u64 = 5;
    /// `wait(tid, status: *mut i64) -> tid`: waits for a thread of the caller's group to exit.
    pub const WAIT: u64 = 6;
    /// `time() -> ns` since boot.
    pub const TIME: u64 = 7;
    /// `pipe(fds: *mut [u32; 2]) -> 0`: fds[0] reads, fds[1] writes.
    pub const PIPE: u64 = 8;
    /// `close(fd) -> 0`.
    pub const CLOSE: u64 = 9;
    /// `gettid() -> tid`.
    pub const GETTID: u64 = 10;
    /// One past the highest number.
    pub const COUNT: u64 = 11;
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
}

impl Errno {
    /// All error numbers, for tables and tests.
    pub const ALL: [Errno; 15] = [
        Errno::EPERM,
        Errno::ENOENT,
        Errno::ESRCH,
        Errno::EINTR,
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
    ];

    /// The symbolic name, e.g. "EFAULT".
    pub const fn name(self) -> &'static str {
        match self {
            Errno::EPERM => "EPERM",
            Errno::ENOENT => "ENOENT",
            Errno::ESRCH => "ESRCH",
            Errno::EINTR => "EINTR",
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

/// The console's file descriptors, open in every task group.
pub const STDOUT: u32 = 1;
pub const STDERR: u32 = 2;

/// Where user programs live: everything below this is user space.
pub const USER_END: u64 = 0x0000_8000_0000_0000;
/// The main thread's stack: `USER_STACK_SIZE` bytes ending at this address.
pub const USER_STACK_TOP: u64 = 0x0000_7fff_ffff_0000;
pub const USER_STACK_SIZE: u64 = 64 * 1024;
/// Where the argument string of a program is placed (one page), passed to
/// `_start` as `(ptr, len)` in `rdi`, `rsi`.
pub const USER_ARGS: u64 = 0x0000_7fff_fff0_0000;

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
    fn names_are_distinct() {
        for (i, a) in Errno::ALL.iter().enumerate() {
            for b in &Errno::ALL[i + 1..] {
                assert_ne!(a.name(), b.name());
                assert_ne!(*a as i64, *b as i64);
            }
        }
    }
}
