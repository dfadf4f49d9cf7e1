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
    /// `write(fd, buf, count) -> bytes written`. fds 0, 1 and 2 are the
    /// console.
    pub const WRITE: u64 = 1;
    /// `close(fd) -> 0`.
    pub const CLOSE: u64 = 3;
    /// `fstat(fd, statbuf: *mut [u8; 144]) -> 0`: Linux's `struct stat`.
    pub const FSTAT: u64 = 5;
    /// `ioctl(fd, request, arg) -> 0`: `FIONREAD`, `TIOCGWINSZ`.
    pub const IOCTL: u64 = 16;
    /// `writev(fd, iov: *const [iovec; iovcnt], iovcnt) -> bytes written`.
    pub const WRITEV: u64 = 20;
    /// `pipe(fds: *mut [i32; 2]) -> 0`: fds[0] reads, fds[1] writes.
    pub const PIPE: u64 = 22;
    /// `sched_yield() -> 0`.
    pub const SCHED_YIELD: u64 = 24;
    /// `nanosleep(req: *const timespec, rem: *mut timespec) -> 0`.
    pub const NANOSLEEP: u64 = 35;
    /// `dup(fd) -> new fd`: the lowest free one, on the same open file.
    pub const DUP: u64 = 32;
    /// `dup2(fd, new) -> new`, closing what `new` named.
    pub const DUP2: u64 = 33;
    /// `getpid() -> pid`: the process (thread group) id.
    pub const GETPID: u64 = 39;
    /// `exit(status) -> !`: ends the calling thread; the last thread's end
    /// ends the process.
    pub const EXIT: u64 = 60;
    /// `wait4(pid, status, options, rusage) -> pid`: `ECHILD`, since a
    /// program has no child processes yet ([`crate::wait`]).
    pub const WAIT4: u64 = 61;
    /// `clone(flags, newsp, parent_tid, child_tid, tls) -> tid` (0 in the
    /// child): threads only ([`crate::clone`]).
    pub const CLONE: u64 = 56;
    /// `fcntl(fd, cmd, arg)`: the commands in [`crate::fcntl`].
    pub const FCNTL: u64 = 72;
    /// `getppid() -> pid` of the parent.
    pub const GETPPID: u64 = 110;
    /// `arch_prctl(code, addr)`: the FS base ([`crate::arch_prctl`]).
    pub const ARCH_PRCTL: u64 = 158;
    /// `gettid() -> tid`.
    pub const GETTID: u64 = 186;
    /// `futex(uaddr, op, val, timeout, uaddr2, val3)` ([`crate::futex`]).
    pub const FUTEX: u64 = 202;
    /// `sched_setaffinity(pid, len, mask: *const u8) -> 0`: the CPUs a
    /// thread may run on.
    pub const SCHED_SETAFFINITY: u64 = 203;
    /// `sched_getaffinity(pid, len, mask: *mut u8) -> bytes stored`.
    pub const SCHED_GETAFFINITY: u64 = 204;
    /// `set_tid_address(tidptr) -> tid`: the word cleared and woken at exit.
    pub const SET_TID_ADDRESS: u64 = 218;
    /// `clock_gettime(clock, tp: *mut timespec) -> 0`.
    pub const CLOCK_GETTIME: u64 = 228;
    /// `clock_nanosleep(clock, flags, req, rem) -> 0`.
    pub const CLOCK_NANOSLEEP: u64 = 230;
    /// `exit_group(status) -> !`: ends every thread of the process.
    pub const EXIT_GROUP: u64 = 231;
    /// `getcpu(cpu: *mut u32, node: *mut u32, cache) -> 0`: the CPU the
    /// caller runs on (node 0: one NUMA node); `cache` is unused, as on
    /// Linux since 2.6.24.
    pub const GETCPU: u64 = 309;
    /// `dup3(fd, new, flags) -> new`: `dup2` with `O_CLOEXEC`.
    pub const DUP3: u64 = 292;
    /// `pipe2(fds: *mut [i32; 2], flags) -> 0`: `O_NONBLOCK`, `O_CLOEXEC`.
    pub const PIPE2: u64 = 293;
    pub const RT_SIGACTION: u64 = 13;
    pub const RT_SIGPROCMASK: u64 = 14;
    pub const RT_SIGRETURN: u64 = 15;
    pub const KILL: u64 = 62;
    pub const SIGALTSTACK: u64 = 131;
    pub const TKILL: u64 = 200;
    pub const RT_SIGPENDING: u64 = 127;
    pub const TGKILL: u64 = 234;
    /// `mmap(addr, len, prot, flags, fd, offset) -> address` ([`crate::mman`]).
    pub const MMAP: u64 = 9;
    /// `mprotect(addr, len, prot) -> 0`.
    pub const MPROTECT: u64 = 10;
    /// `munmap(addr, len) -> 0`.
    pub const MUNMAP: u64 = 11;
    /// `brk(addr) -> the break`: the new one, or the old one on failure.
    pub const BRK: u64 = 12;
    /// `mremap(addr, old_len, new_len, flags, new_addr) -> address`.
    pub const MREMAP: u64 = 25;
    /// `madvise(addr, len, advice) -> 0`.
    pub const MADVISE: u64 = 28;
    /// `execve(path, argv, envp) -> !`: the caller's process runs program
    /// `path` (a program known to the kernel, `/bin/NAME`) from its start.
    pub const EXECVE: u64 = 59;
    /// `execveat(dirfd, path, argv, envp, flags) -> !` ([`crate::exec`]).
    pub const EXECVEAT: u64 = 322;

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
    pub const ALL: [u64; 47] = [
        READ,
        WRITE,
        CLOSE,
        FSTAT,
        IOCTL,
        WRITEV,
        PIPE,
        SCHED_YIELD,
        NANOSLEEP,
        DUP,
        DUP2,
        GETPID,
        CLONE,
        EXIT,
        WAIT4,
        FCNTL,
        GETPPID,
        ARCH_PRCTL,
        GETTID,
        FUTEX,
        SCHED_SETAFFINITY,
        SCHED_GETAFFINITY,
        GETCPU,
        SET_TID_ADDRESS,
        CLOCK_GETTIME,
        CLOCK_NANOSLEEP,
        EXIT_GROUP,
        DUP3,
        PIPE2,
        RT_SIGACTION,
        RT_SIGPROCMASK,
        RT_SIGRETURN,
        RT_SIGPENDING,
        KILL,
        SIGALTSTACK,
        TKILL,
        TGKILL,
        MMAP,
        MPROTECT,
        MUNMAP,
        BRK,
        MREMAP,
        MADVISE,
        SPAWN_THREAD,
        WAIT_THREAD,
        EXECVE,
        EXECVEAT,
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

/// The memory calls' constants (Linux's x86_64 values): `mmap`'s
/// protections and flags, `mremap`'s flags, `madvise`'s advice.
pub mod mman {
    pub const PROT_NONE: u64 = 0;
    pub const PROT_READ: u64 = 0x1;
    pub const PROT_WRITE: u64 = 0x2;
    pub const PROT_EXEC: u64 = 0x4;
    /// Accepted and meaningless on x86 (atomic operations work anyway).
    pub const PROT_SEM: u64 = 0x8;
    /// `mprotect`: from the start of the stack region the range reaches.
    pub const PROT_GROWSDOWN: u64 = 0x0100_0000;
    pub const PROT_GROWSUP: u64 = 0x0200_0000;

    pub const MAP_SHARED: u64 = 0x01;
    pub const MAP_PRIVATE: u64 = 0x02;
    pub const MAP_SHARED_VALIDATE: u64 = 0x03;
    /// The bits that say which of the above.
    pub const MAP_TYPE: u64 = 0x0f;
    pub const MAP_FIXED: u64 = 0x10;
    pub const MAP_ANONYMOUS: u64 = 0x20;
    pub const MAP_32BIT: u64 = 0x40;
    pub const MAP_GROWSDOWN: u64 = 0x0100;
    pub const MAP_DENYWRITE: u64 = 0x0800;
    pub const MAP_EXECUTABLE: u64 = 0x1000;
    pub const MAP_LOCKED: u64 = 0x2000;
    pub const MAP_NORESERVE: u64 = 0x4000;
    pub const MAP_POPULATE: u64 = 0x8000;
    pub const MAP_NONBLOCK: u64 = 0x1_0000;
    pub const MAP_STACK: u64 = 0x2_0000;
    pub const MAP_HUGETLB: u64 = 0x4_0000;
    pub const MAP_SYNC: u64 = 0x8_0000;
    pub const MAP_FIXED_NOREPLACE: u64 = 0x10_0000;
    pub const MAP_UNINITIALIZED: u64 = 0x400_0000;

    pub const MREMAP_MAYMOVE: u64 = 1;
    pub const MREMAP_FIXED: u64 = 2;
    pub const MREMAP_DONTUNMAP: u64 = 4;

    pub const MADV_NORMAL: i32 = 0;
    pub const MADV_RANDOM: i32 = 1;
    pub const MADV_SEQUENTIAL: i32 = 2;
    pub const MADV_WILLNEED: i32 = 3;
    pub const MADV_DONTNEED: i32 = 4;
    pub const MADV_FREE: i32 = 8;
    pub const MADV_REMOVE: i32 = 9;
    pub const MADV_DONTFORK: i32 = 10;
    pub const MADV_DOFORK: i32 = 11;
    pub const MADV_MERGEABLE: i32 = 12;
    pub const MADV_UNMERGEABLE: i32 = 13;
    pub const MADV_HUGEPAGE: i32 = 14;
    pub const MADV_NOHUGEPAGE: i32 = 15;
    pub const MADV_DONTDUMP: i32 = 16;
    pub const MADV_DODUMP: i32 = 17;
    pub const MADV_WIPEONFORK: i32 = 18;
    pub const MADV_KEEPONFORK: i32 = 19;
    pub const MADV_COLD: i32 = 20;
    pub const MADV_PAGEOUT: i32 = 21;
    pub const MADV_POPULATE_READ: i32 = 22;
    pub const MADV_POPULATE_WRITE: i32 = 23;
    pub const MADV_DONTNEED_LOCKED: i32 = 24;
    pub const MADV_COLLAPSE: i32 = 25;
    pub const MADV_HWPOISON: i32 = 100;
    pub const MADV_SOFT_OFFLINE: i32 = 101;
}

/// Linux's `TASK_SIZE_MAX` on x86_64: one page below [`USER_END`]. An FS
/// base at or above it is `EPERM` (`arch_prctl`, `clone` with `SETTLS`).
pub const TASK_SIZE_MAX: u64 = USER_END - 4096;
/// Open-file flags (`pipe2`, `dup3`, `fcntl`'s `F_GETFL`/`F_SETFL`):
/// Linux's x86_64 values. Faultline's files are the console and pipe ends,
/// so only these mean anything here.
pub mod o {
    /// The access mode, the low two bits of `F_GETFL`.
    pub const ACCMODE: u32 = 0o3;
    pub const RDONLY: u32 = 0o0;
    pub const WRONLY: u32 = 0o1;
    pub const RDWR: u32 = 0o2;
    pub const APPEND: u32 = 0o2000;
    /// Also `O_NDELAY` on x86_64.
    pub const NONBLOCK: u32 = 0o4000;
    /// `O_ASYNC` (`FASYNC`): signal-driven I/O.
    pub const ASYNC: u32 = 0o20000;
    /// On a pipe, Linux's packet mode.
    pub const DIRECT: u32 = 0o40000;
    /// What `F_GETFL` shows for a file opened with `open` on 64-bit Linux.
    pub const LARGEFILE: u32 = 0o100000;
    pub const NOATIME: u32 = 0o1000000;
    pub const CLOEXEC: u32 = 0o2000000;
}

/// `execve` and `execveat` (Linux's limits and flags).
pub mod exec {
    /// `execveat`'s directory "the current one" (`AT_FDCWD`).
    pub const AT_FDCWD: i32 = -100;
    pub const AT_SYMLINK_NOFOLLOW: i32 = 0x100;
    /// An empty path names `dirfd` itself.
    pub const AT_EMPTY_PATH: i32 = 0x1000;
    /// A path's bytes with its NUL: more is `ENAMETOOLONG`.
    pub const PATH_MAX: usize = 4096;
    /// A path component's bytes: more is `ENAMETOOLONG`.
    pub const NAME_MAX: usize = 255;
    /// One argument or environment string with its NUL: more is `E2BIG`.
    pub const MAX_ARG_STRLEN: usize = 32 * 4096;
    /// Strings that `argv` or `envp` may hold: more is `E2BIG`.
    pub const MAX_ARG_STRINGS: usize = 0x7fff_ffff;
    /// Bytes the strings (the path's too) and the pointers of both arrays
    /// may take together: a quarter of Linux's default 8 MiB stack limit.
    pub const ARG_LIMIT: usize = 8 * 1024 * 1024 / 4;
}

/// `wait4`'s options (Linux's): any other bit is `EINVAL`.
pub mod wait {
    pub const WNOHANG: i32 = 1;
    pub const WUNTRACED: i32 = 2;
    pub const WCONTINUED: i32 = 8;
    pub const WNOTHREAD: i32 = 0x2000_0000;
    pub const WALL: i32 = 0x4000_0000;
    pub const WCLONE: i32 = 0x8000_0000_u32 as i32;
    /// Every option `wait4` accepts (`WEXITED` is `waitid`'s alone).
    pub const OPTIONS: i32 = WNOHANG | WUNTRACED | WCONTINUED | WNOTHREAD | WALL | WCLONE;
}

/// `fcntl` commands and the descriptor flag (Linux's numbers).
pub mod fcntl {
    pub const F_DUPFD: u32 = 0;
    pub const F_GETFD: u32 = 1;
    pub const F_SETFD: u32 = 2;
    pub const F_GETFL: u32 = 3;
    pub const F_SETFL: u32 = 4;
    pub const F_DUPFD_CLOEXEC: u32 = 1030;
    pub const F_SETPIPE_SZ: u32 = 1031;
    pub const F_GETPIPE_SZ: u32 = 1032;
    /// The one descriptor flag (`F_GETFD`, `F_SETFD`).
    pub const FD_CLOEXEC: u32 = 1;
}

/// `ioctl` requests Faultline answers (Linux's numbers).
pub mod ioctl {
    /// Bytes ready to read, an `int` stored at the argument.
    pub const FIONREAD: u32 = 0x541b;
    /// The terminal's size, a [`crate::Winsize`] stored at the argument.
    pub const TIOCGWINSZ: u32 = 0x5413;
    /// For every file (Linux answers these before the file's own
    /// requests): `O_NONBLOCK` on or off as the `int` at the argument is
    /// non-zero or zero; `FD_CLOEXEC` on, off; `O_ASYNC` from an `int`.
    pub const FIONBIO: u32 = 0x5421;
    pub const FIONCLEX: u32 = 0x5450;
    pub const FIOCLEX: u32 = 0x5451;
    pub const FIOASYNC: u32 = 0x5452;
}

/// Linux's `struct winsize`: four `unsigned short`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Winsize {
    pub row: u16,
    pub col: u16,
    pub xpixel: u16,
    pub ypixel: u16,
}

impl Winsize {
    pub const SIZE: usize = 8;
    /// What `TIOCGWINSZ` reports for the console: a serial line has no
    /// size of its own, so the classic terminal's.
    pub const CONSOLE: Winsize = Winsize {
        row: 24,
        col: 80,
        xpixel: 0,
        ypixel: 0,
    };

    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0; 8];
        for (i, v) in [self.row, self.col, self.xpixel, self.ypixel]
            .into_iter()
            .enumerate()
        {
            b[2 * i..2 * i + 2].copy_from_slice(&v.to_le_bytes());
        }
        b
    }
}

/// Pipes: Linux's sizes and limits.
pub mod pipe {
    /// Writes of at most this many bytes are atomic (POSIX `PIPE_BUF`).
    pub const PIPE_BUF: usize = 4096;
    /// A new pipe's capacity: 16 pages, as on Linux.
    pub const DEFAULT_SIZE: usize = 65536;
    /// The largest `F_SETPIPE_SZ` a program may ask for: Linux's default
    /// `/proc/sys/fs/pipe-max-size` (programs here hold no privilege).
    pub const MAX_SIZE: usize = 1 << 20;
}

/// The most bytes one `read`, `write` or `writev` moves: Linux's
/// `MAX_RW_COUNT` (`INT_MAX` rounded down to a page).
pub const MAX_RW_COUNT: u64 = 0x7fff_f000;
/// The most `iovec`s one `writev` takes (`IOV_MAX`, Linux's `UIO_MAXIOV`).
pub const IOV_MAX: u32 = 1024;
/// Bytes of one `struct iovec { void *iov_base; size_t iov_len; }`.
pub const IOVEC_SIZE: u64 = 16;

/// File types and the identities `fstat` reports.
pub mod stat {
    pub const S_IFIFO: u32 = 0o010000;
    pub const S_IFCHR: u32 = 0o020000;
    /// A pipe end: a FIFO its creator may read and write, as Linux's.
    pub const PIPE_MODE: u32 = S_IFIFO | 0o600;
    /// The console: a terminal device node, `crw--w----` as a login's.
    pub const CONSOLE_MODE: u32 = S_IFCHR | 0o620;
    /// Where Linux's are arbitrary (numbers of its pseudo file systems),
    /// these are Faultline's: every pipe is on device `PIPE_DEV` with an
    /// inode number of its own, counted from 1 since boot; the console is
    /// one fixed node.
    pub const PIPE_DEV: u64 = 0xc;
    pub const CONSOLE_DEV: u64 = 0x6;
    pub const CONSOLE_INO: u64 = 2;
    /// The console is the first serial port: Linux's `/dev/ttyS0`, major
    /// 4 minor 64, in `stat`'s encoding.
    pub const CONSOLE_RDEV: u64 = 4 << 8 | 64;
    /// `st_blksize`: a page, as Linux reports for pipes.
    pub const BLKSIZE: i64 = 4096;
}

/// Linux's x86_64 `struct stat` (144 bytes), the fields Faultline fills;
/// owner ids are 0, since Faultline has no users yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stat {
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
    pub size: i64,
    pub blksize: i64,
    pub blocks: i64,
    pub atime: Timespec,
    pub mtime: Timespec,
    pub ctime: Timespec,
}

impl Stat {
    pub const SIZE: usize = 144;

    pub fn to_bytes(&self) -> [u8; 144] {
        let mut b = [0; 144];
        let mut put = |at: usize, bytes: &[u8]| b[at..at + bytes.len()].copy_from_slice(bytes);
        put(0, &self.dev.to_le_bytes());
        put(8, &self.ino.to_le_bytes());
        put(16, &self.nlink.to_le_bytes());
        put(24, &self.mode.to_le_bytes());
        put(28, &self.uid.to_le_bytes());
        put(32, &self.gid.to_le_bytes());
        // 36..40 is padding, 120..144 Linux's unused words: zero.
        put(40, &self.rdev.to_le_bytes());
        put(48, &self.size.to_le_bytes());
        put(56, &self.blksize.to_le_bytes());
        put(64, &self.blocks.to_le_bytes());
        put(72, &self.atime.to_bytes());
        put(88, &self.mtime.to_bytes());
        put(104, &self.ctime.to_bytes());
        b
    }

    pub fn from_bytes(b: &[u8; 144]) -> Stat {
        let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]));
        let u32_at = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or([0; 4]));
        let ts_at = |at: usize| Timespec::from_bytes(b[at..at + 16].try_into().unwrap_or([0; 16]));
        Stat {
            dev: u64_at(0),
            ino: u64_at(8),
            nlink: u64_at(16),
            mode: u32_at(24),
            uid: u32_at(28),
            gid: u32_at(32),
            rdev: u64_at(40),
            size: u64_at(48) as i64,
            blksize: u64_at(56) as i64,
            blocks: u64_at(64) as i64,
            atime: ts_at(72),
            mtime: ts_at(88),
            ctime: ts_at(104),
        }
    }
}

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
    ENOEXEC = 8,
    EBADF = 9,
    ECHILD = 10,
    EAGAIN = 11,
    ENOMEM = 12,
    EACCES = 13,
    EFAULT = 14,
    EBUSY = 16,
    EEXIST = 17,
    ENODEV = 19,
    ENOTDIR = 20,
    EISDIR = 21,
    EINVAL = 22,
    EMFILE = 24,
    ENOTTY = 25,
    EPIPE = 32,
    ENAMETOOLONG = 36,
    ENOSYS = 38,
    EOVERFLOW = 75,
    EOPNOTSUPP = 95,
    ETIMEDOUT = 110,
    // Linux's kernel-internal codes for a call a signal interrupted. They
    // never reach a program: the return to user mode turns them into a
    // restart of the call or EINTR, as the handler's SA_RESTART decides.
    /// Restart if no handler runs or the handler has SA_RESTART.
    ERESTARTSYS = 512,
    /// Restart whatever happens.
    ERESTARTNOINTR = 513,
    /// Restart if no handler runs; EINTR when one does.
    ERESTARTNOHAND = 514,
    /// As ERESTARTNOHAND (Linux restarts through `restart_syscall`).
    #[allow(non_camel_case_types)]
    ERESTART_RESTARTBLOCK = 516,
}

impl Errno {
    /// All error numbers, for tables and tests.
    pub const ALL: [Errno; 30] = [
        Errno::EPERM,
        Errno::ENOENT,
        Errno::ESRCH,
        Errno::EINTR,
        Errno::E2BIG,
        Errno::ENOEXEC,
        Errno::EBADF,
        Errno::ECHILD,
        Errno::EAGAIN,
        Errno::ENOMEM,
        Errno::EACCES,
        Errno::EFAULT,
        Errno::EBUSY,
        Errno::EEXIST,
        Errno::ENODEV,
        Errno::ENOTDIR,
        Errno::EISDIR,
        Errno::EINVAL,
        Errno::EMFILE,
        Errno::ENOTTY,
        Errno::EPIPE,
        Errno::ENAMETOOLONG,
        Errno::ENOSYS,
        Errno::EOVERFLOW,
        Errno::EOPNOTSUPP,
        Errno::ETIMEDOUT,
        Errno::ERESTARTSYS,
        Errno::ERESTARTNOINTR,
        Errno::ERESTARTNOHAND,
        Errno::ERESTART_RESTARTBLOCK,
    ];

    /// The symbolic name, e.g. "EFAULT".
    pub const fn name(self) -> &'static str {
        match self {
            Errno::EPERM => "EPERM",
            Errno::ENOENT => "ENOENT",
            Errno::ESRCH => "ESRCH",
            Errno::EINTR => "EINTR",
            Errno::E2BIG => "E2BIG",
            Errno::ENOEXEC => "ENOEXEC",
            Errno::EBADF => "EBADF",
            Errno::ECHILD => "ECHILD",
            Errno::EAGAIN => "EAGAIN",
            Errno::ENOMEM => "ENOMEM",
            Errno::EACCES => "EACCES",
            Errno::EFAULT => "EFAULT",
            Errno::EBUSY => "EBUSY",
            Errno::EEXIST => "EEXIST",
            Errno::ENODEV => "ENODEV",
            Errno::ENOTDIR => "ENOTDIR",
            Errno::EISDIR => "EISDIR",
            Errno::EINVAL => "EINVAL",
            Errno::EMFILE => "EMFILE",
            Errno::ENOTTY => "ENOTTY",
            Errno::EPIPE => "EPIPE",
            Errno::ENAMETOOLONG => "ENAMETOOLONG",
            Errno::ENOSYS => "ENOSYS",
            Errno::EOVERFLOW => "EOVERFLOW",
            Errno::EOPNOTSUPP => "EOPNOTSUPP",
            Errno::ETIMEDOUT => "ETIMEDOUT",
            Errno::ERESTARTSYS => "ERESTARTSYS",
            Errno::ERESTARTNOINTR => "ERESTARTNOINTR",
            Errno::ERESTARTNOHAND => "ERESTARTNOHAND",
            Errno::ERESTART_RESTARTBLOCK => "ERESTART_RESTARTBLOCK",
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
pub const STDIN: u32 = 0;
pub const STDOUT: u32 = 1;
pub const STDERR: u32 = 2;

/// Where user programs live: everything below this is user space.
pub const USER_END: u64 = 0x0000_8000_0000_0000;
/// The main thread's stack ends at this address. Its region starts
/// `USER_STACK_SIZE` bytes below, plus the pages the arguments take (as
/// Linux's: the argument pages and 128 KiB), and grows down on faults
/// to [`USER_STACK_MAX`] (docs/mm.md, "The stack").
pub const USER_STACK_TOP: u64 = 0x0000_7fff_ffff_0000;
pub const USER_STACK_SIZE: u64 = 128 * 1024;
/// How far the stack may grow: Linux's default `RLIMIT_STACK`, 8 MiB.
pub const USER_STACK_MAX: u64 = 8 << 20;
/// What a growing stack keeps clear below it, and what a mapping the
/// kernel places keeps clear below a stack: Linux's `stack_guard_gap`,
/// 256 pages.
pub const STACK_GUARD_GAP: u64 = 256 * 4096;
/// The lowest address a program may map: Linux's `mmap_min_addr` as
/// Debian sets it.
pub const MMAP_MIN_ADDR: u64 = 0x10000;
/// Where the kernel's choice of addresses for `mmap` starts, going
/// down: Linux's `mmap_base` without randomization, the top of the user
/// half less the smallest stack gap (128 MiB).
pub const MMAP_BASE: u64 = TASK_SIZE_MAX - (128 << 20);
/// Where the search goes when nothing fits below `MMAP_BASE`, going
/// up: Linux's `TASK_UNMAPPED_BASE`, a third of the user half.
pub const TASK_UNMAPPED_BASE: u64 = (TASK_SIZE_MAX / 3 + 4095) & !4095;

/// The status of a thread or process that called `exit(code)`: Linux's
/// wait status in the low 16 bits (the code's low byte shifted left by 8,
/// `WEXITSTATUS`); the bits above keep the rest of the `int` for
/// Faultline's `wait_thread` (see [`thread_status`]).
pub const fn exited_status(code: i64) -> i64 {
    (code as i32 as i64) << 8
}

/// What Faultline's `wait_thread` reports for a status: the whole `int`
/// an exit was given, or 128 + the signal for a thread a signal ended.
pub const fn thread_status(status: i64) -> i64 {
    match status & 0x7f {
        0 => status >> 8,
        signo => 128 + signo,
    }
}

/// Linux's wait status of a process killed by `signo`: the number, with
/// the core bit (0x80) for the signals whose default action dumps core.
pub const fn signaled_status(signo: u32) -> i64 {
    let core = if sig::dumps_core(signo) { 0x80 } else { 0 };
    (signo as i64 & 0x7f) | core
}

/// The signal behind a hardware exception in user mode, as Linux's trap
/// handlers choose it (arch/x86/kernel/traps.c).
pub const fn fault_signal(vector: u64) -> u32 {
    match vector {
        0 | 16 | 19 => sig::SIGFPE,
        1 | 3 => sig::SIGTRAP,
        6 => sig::SIGILL,
        11 | 12 | 17 => sig::SIGBUS,
        _ => sig::SIGSEGV,
    }
}

/// Wait status of a process killed by an exception (`bad`, the tests).
pub const fn killed_status(vector: u64) -> i64 {
    signaled_status(fault_signal(vector))
}

/// Describes a wait status as a shell would: `exit_status=N` for an exit,
/// the signal's name for a kill.
pub struct WaitStatus(pub i64);

impl core::fmt::Display for WaitStatus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let s = self.0;
        let signo = (s & 0x7f) as u32;
        if signo == 0 {
            write!(f, "exited exit_status={}", (s >> 8) & 0xff)
        } else {
            let core = if s & 0x80 != 0 { " (core dumped)" } else { "" };
            write!(
                f,
                "killed by {}{core} signal={signo} wait_status={s:#x}",
                sig::name(signo)
            )
        }
    }
}

/// Signals: Linux's x86_64 numbers, flags and structure layouts.
pub mod sig {
    pub const SIGHUP: u32 = 1;
    pub const SIGINT: u32 = 2;
    pub const SIGQUIT: u32 = 3;
    pub const SIGILL: u32 = 4;
    pub const SIGTRAP: u32 = 5;
    pub const SIGABRT: u32 = 6;
    pub const SIGBUS: u32 = 7;
    pub const SIGFPE: u32 = 8;
    pub const SIGKILL: u32 = 9;
    pub const SIGUSR1: u32 = 10;
    pub const SIGSEGV: u32 = 11;
    pub const SIGUSR2: u32 = 12;
    pub const SIGPIPE: u32 = 13;
    pub const SIGALRM: u32 = 14;
    pub const SIGTERM: u32 = 15;
    pub const SIGSTKFLT: u32 = 16;
    pub const SIGCHLD: u32 = 17;
    pub const SIGCONT: u32 = 18;
    pub const SIGSTOP: u32 = 19;
    pub const SIGTSTP: u32 = 20;
    pub const SIGTTIN: u32 = 21;
    pub const SIGTTOU: u32 = 22;
    pub const SIGURG: u32 = 23;
    pub const SIGXCPU: u32 = 24;
    pub const SIGXFSZ: u32 = 25;
    pub const SIGVTALRM: u32 = 26;
    pub const SIGPROF: u32 = 27;
    pub const SIGWINCH: u32 = 28;
    pub const SIGIO: u32 = 29;
    pub const SIGPWR: u32 = 30;
    pub const SIGSYS: u32 = 31;
    pub const SIGRTMIN: u32 = 32;
    /// The highest signal number (`_NSIG`).
    pub const NSIG: u32 = 64;

    /// `sa_handler` values.
    pub const SIG_DFL: u64 = 0;
    pub const SIG_IGN: u64 = 1;

    pub const SA_NOCLDSTOP: u64 = 0x1;
    pub const SA_NOCLDWAIT: u64 = 0x2;
    pub const SA_SIGINFO: u64 = 0x4;
    pub const SA_UNSUPPORTED: u64 = 0x400;
    pub const SA_EXPOSE_TAGBITS: u64 = 0x800;
    pub const SA_RESTORER: u64 = 0x0400_0000;
    /// The flags `rt_sigaction` keeps (Linux's `UAPI_SA_FLAGS`); it clears
    /// the rest, so a program can tell what is unsupported.
    pub const UAPI_SA_FLAGS: u64 = SA_NOCLDSTOP
        | SA_NOCLDWAIT
        | SA_SIGINFO
        | SA_ONSTACK
        | SA_RESTART
        | SA_NODEFER
        | SA_RESETHAND
        | SA_EXPOSE_TAGBITS
        | SA_RESTORER;
    pub const SA_ONSTACK: u64 = 0x0800_0000;
    pub const SA_RESTART: u64 = 0x1000_0000;
    pub const SA_NODEFER: u64 = 0x4000_0000;
    pub const SA_RESETHAND: u64 = 0x8000_0000;

    /// `rt_sigprocmask`'s `how`.
    pub const SIG_BLOCK: i32 = 0;
    pub const SIG_UNBLOCK: i32 = 1;
    pub const SIG_SETMASK: i32 = 2;

    /// `sigaltstack`'s flags, and its smallest stack.
    pub const SS_ONSTACK: i32 = 1;
    pub const SS_DISABLE: i32 = 2;
    pub const SS_AUTODISARM: u32 = 1 << 31;
    pub const MINSIGSTKSZ: u64 = 2048;

    /// `si_code` values.
    pub const SI_USER: i32 = 0;
    pub const SI_KERNEL: i32 = 0x80;
    pub const SI_TKILL: i32 = -6;
    pub const SEGV_MAPERR: i32 = 1;
    pub const SEGV_ACCERR: i32 = 2;
    pub const ILL_ILLOPN: i32 = 2;
    pub const FPE_INTDIV: i32 = 1;
    pub const FPE_FLTDIV: i32 = 3;
    pub const FPE_FLTOVF: i32 = 4;
    pub const FPE_FLTUND: i32 = 5;
    pub const FPE_FLTRES: i32 = 6;
    pub const FPE_FLTINV: i32 = 7;
    pub const BUS_ADRALN: i32 = 1;
    pub const TRAP_BRKPT: i32 = 1;

    /// `struct sigaction` as the kernel reads it: handler, flags,
    /// restorer, mask.
    pub const SIGACTION_SIZE: usize = 32;
    /// The only `sigsetsize` Linux takes on x86_64.
    pub const SIGSET_SIZE: u64 = 8;
    /// `stack_t`: ss_sp, ss_flags (int, padded), ss_size.
    pub const STACK_SIZE: usize = 24;
    pub const SIGINFO_SIZE: usize = 128;
    /// `struct ucontext`: flags, link, stack, mcontext (256), sigmask (8).
    pub const UCONTEXT_SIZE: usize = 304;
    /// `struct rt_sigframe`: the restorer's address, the ucontext, the
    /// siginfo; the FPU state lies above it.
    pub const FRAME_SIZE: usize = 8 + UCONTEXT_SIZE + SIGINFO_SIZE;
    /// Offsets in the frame.
    pub const FRAME_UC: usize = 8;
    pub const FRAME_INFO: usize = 8 + UCONTEXT_SIZE;
    /// Offsets in the ucontext.
    pub const UC_STACK: usize = 16;
    pub const UC_MCONTEXT: usize = 40;
    pub const UC_SIGMASK: usize = 296;
    /// `uc_flags`: the saved SS is meaningful and restored strictly.
    pub const UC_SIGCONTEXT_SS: u64 = 0x2;
    pub const UC_STRICT_RESTORE_SS: u64 = 0x4;
    /// The legacy FXSAVE area `fpstate` points at (all of it on a CPU
    /// without XSAVE, the start of the XSAVE image otherwise).
    pub const FPSTATE_SIZE: usize = 512;
    /// `uc_flags`: `fpstate` is an XSAVE image, described by the software
    /// bytes (`struct _fpx_sw_bytes`) at the end of its legacy region:
    /// magic1, extended_size (the image and magic2), xfeatures,
    /// xstate_size, then zeros; magic2 follows the image.
    pub const UC_FP_XSTATE: u64 = 0x1;
    pub const FP_SW_BYTES: usize = 464;
    pub const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;
    pub const FP_XSTATE_MAGIC2: u32 = 0x4650_5845;
    pub const FP_XSTATE_MAGIC2_SIZE: usize = 4;
    /// The smallest XSAVE image: the legacy region and the header.
    pub const XSTATE_MIN_SIZE: usize = FPSTATE_SIZE + 64;
    /// The bytes below the stack pointer a handler's frame never touches.
    pub const REDZONE: u64 = 128;

    /// The signals Linux takes first, because they come from the
    /// instruction that just ran (`SYNCHRONOUS_MASK`).
    pub const SYNCHRONOUS: u64 =
        bit(SIGSEGV) | bit(SIGBUS) | bit(SIGILL) | bit(SIGTRAP) | bit(SIGFPE) | bit(SIGSYS);

    /// The bit of `signo` in a signal set.
    pub const fn bit(signo: u32) -> u64 {
        1 << (signo - 1)
    }

    /// What a signal does when its handler is `SIG_DFL`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Default {
        Terminate,
        Core,
        Ignore,
        /// Stop and continue: Faultline has no job control, so these are
        /// ignored (docs/abi.md).
        Stop,
        Continue,
    }

    pub const fn default_action(signo: u32) -> Default {
        match signo {
            SIGQUIT | SIGILL | SIGTRAP | SIGABRT | SIGBUS | SIGFPE | SIGSEGV | SIGXCPU
            | SIGXFSZ | SIGSYS => Default::Core,
            SIGCHLD | SIGURG | SIGWINCH => Default::Ignore,
            SIGSTOP | SIGTSTP | SIGTTIN | SIGTTOU => Default::Stop,
            SIGCONT => Default::Continue,
            _ => Default::Terminate,
        }
    }

    pub const fn dumps_core(signo: u32) -> bool {
        matches!(default_action(signo), Default::Core)
    }

    pub const fn name(signo: u32) -> &'static str {
        const NAMES: [&str; 32] = [
            "SIG0",
            "SIGHUP",
            "SIGINT",
            "SIGQUIT",
            "SIGILL",
            "SIGTRAP",
            "SIGABRT",
            "SIGBUS",
            "SIGFPE",
            "SIGKILL",
            "SIGUSR1",
            "SIGSEGV",
            "SIGUSR2",
            "SIGPIPE",
            "SIGALRM",
            "SIGTERM",
            "SIGSTKFLT",
            "SIGCHLD",
            "SIGCONT",
            "SIGSTOP",
            "SIGTSTP",
            "SIGTTIN",
            "SIGTTOU",
            "SIGURG",
            "SIGXCPU",
            "SIGXFSZ",
            "SIGVTALRM",
            "SIGPROF",
            "SIGWINCH",
            "SIGIO",
            "SIGPWR",
            "SIGSYS",
        ];
        if (signo as usize) < NAMES.len() {
            NAMES[signo as usize]
        } else if signo <= NSIG {
            "SIGRT"
        } else {
            "SIG?"
        }
    }
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
            [
                nr::MMAP,
                nr::MPROTECT,
                nr::MUNMAP,
                nr::BRK,
                nr::MREMAP,
                nr::MADVISE
            ],
            [9, 10, 11, 12, 25, 28]
        );
        // Linux's mmap_base without randomization, as gdb shows it.
        assert_eq!(MMAP_BASE, 0x7fff_f7ff_f000);
        assert_eq!(TASK_UNMAPPED_BASE, 0x2aaa_aaaa_b000);
        assert_eq!(
            (nr::CLONE, nr::ARCH_PRCTL, nr::FUTEX, nr::SET_TID_ADDRESS),
            (56, 158, 202, 218)
        );
        // The sets the C libraries pass, as their sources spell them.
        assert_eq!(clone::GLIBC_PTHREAD, 0x003d_0f00);
        assert_eq!(clone::MUSL_PTHREAD, 0x007d_0f00);
        assert_eq!(
            [nr::FSTAT, nr::IOCTL, nr::WRITEV, nr::DUP, nr::DUP2],
            [5, 16, 20, 32, 33]
        );
        assert_eq!([nr::FCNTL, nr::DUP3, nr::PIPE2], [72, 292, 293]);
        // wait4 and its options (include/uapi/linux/wait.h).
        assert_eq!(nr::WAIT4, 61);
        assert_eq!(wait::OPTIONS as u32, 0xe000_000b);
    }

    #[test]
    fn stat_is_linuxs_layout() {
        let st = Stat {
            dev: 1,
            ino: 2,
            nlink: 3,
            mode: stat::PIPE_MODE,
            uid: 5,
            gid: 6,
            rdev: 7,
            size: 8,
            blksize: 9,
            blocks: 10,
            atime: Timespec { sec: 11, nsec: 12 },
            mtime: Timespec { sec: 13, nsec: 14 },
            ctime: Timespec { sec: 15, nsec: 16 },
        };
        let b = st.to_bytes();
        // Offsets from Linux's arch/x86/include/uapi/asm/stat.h.
        let word = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
        assert_eq!([word(0), word(8), word(16)], [1, 2, 3]);
        assert_eq!(u32::from_le_bytes(b[24..28].try_into().unwrap()), 0o10600);
        assert_eq!(word(40), 7);
        assert_eq!([word(48), word(56), word(64)], [8, 9, 10]);
        assert_eq!([word(72), word(80), word(88), word(96)], [11, 12, 13, 14]);
        assert_eq!([word(104), word(112)], [15, 16]);
        assert!(b[36..40].iter().chain(&b[120..]).all(|&x| x == 0));
        assert_eq!(Stat::from_bytes(&b), st);
        assert_eq!(
            Winsize::CONSOLE.to_bytes(),
            [24, 0, 80, 0, 0, 0, 0, 0],
            "rows, then columns"
        );
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
