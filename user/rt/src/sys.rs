//! Typed wrappers, one per system call. Each borrows exactly the memory the
//! kernel touches, so they are safe to call; `spawn_thread` and
//! `set_tid_address` are the exceptions, because the memory they hand the
//! kernel outlives any borrow. `clone` is in thread.rs: the child returns
//! from it on another stack, which only assembly can take.

use core::arch::asm;
use core::sync::atomic::AtomicU32;

use abi::{Errno, decode, futex, nr};

use crate::raw;

/// Ends the program (every thread) with `status`, as C's `exit` does
/// through `exit_group`. Linux keeps the low 32 bits (and a parent sees
/// the low 8).
pub fn exit(status: i64) -> ! {
    // SAFETY: exit_group takes no pointers.
    unsafe { raw::syscall1(nr::EXIT_GROUP, status as u64) };
    // exit never returns. If a broken kernel did return, fault right here
    // (the kernel reports the #UD) rather than run on past the end.
    // SAFETY: ud2 only raises an exception.
    unsafe { asm!("ud2", options(noreturn, nomem, nostack)) }
}

/// Ends only the calling thread; the program ends with its last thread.
pub fn exit_thread(status: i64) -> ! {
    // SAFETY: exit takes no pointers.
    unsafe { raw::syscall1(nr::EXIT, status as u64) };
    // exit never returns. If a broken kernel did return, fault right here
    // (the kernel reports the #UD) rather than run on past the end.
    // SAFETY: ud2 only raises an exception.
    unsafe { asm!("ud2", options(noreturn, nomem, nostack)) }
}

/// Writes up to `buf.len()` bytes to `fd`; returns how many were written
/// (a pipe may take fewer than offered).
pub fn write(fd: u32, buf: &[u8]) -> Result<usize, Errno> {
    // SAFETY: the kernel reads at most `buf.len()` bytes at `buf`, which we borrow.
    let ret = unsafe { raw::syscall3(nr::WRITE, fd.into(), buf.as_ptr() as u64, buf.len() as u64) };
    decode(ret).map(|n| n as usize)
}

/// Reads up to `buf.len()` bytes from `fd`, blocking until at least one is
/// available; `Ok(0)` means end of file.
pub fn read(fd: u32, buf: &mut [u8]) -> Result<usize, Errno> {
    // SAFETY: the kernel writes at most `buf.len()` bytes at `buf`, which we
    // borrow mutably, and any byte pattern is a valid u8.
    let ret = unsafe {
        raw::syscall3(
            nr::READ,
            fd.into(),
            buf.as_mut_ptr() as u64,
            buf.len() as u64,
        )
    };
    decode(ret).map(|n| n as usize)
}

/// Lets another ready thread run. It cannot fail.
pub fn yield_now() {
    // SAFETY: sched_yield takes no pointers.
    unsafe { raw::syscall0(nr::SCHED_YIELD) };
}

/// Blocks for at least `ns` nanoseconds (`nanosleep`). It cannot fail.
pub fn sleep(ns: u64) {
    let req = abi::Timespec::from_ns(ns).to_bytes();
    // SAFETY: the kernel reads 16 bytes at `req`, which we borrow; `rem`
    // is null.
    unsafe { raw::syscall2(nr::NANOSLEEP, req.as_ptr() as u64, 0) };
}

/// Starts a thread in this program at `entry` with `rdi = arg` and
/// `rsp = stack_top`; returns its thread id. Most code wants [`crate::spawn`].
///
/// `stack_top` must be 16-byte aligned (else `EINVAL`); `entry` and the
/// stack must be user addresses (else `EFAULT`). The kernel enters `entry`
/// by a jump, not a call, so a plain `extern "C"` function starts with its
/// stack 8 bytes off the SysV alignment; `spawn` realigns in assembly.
///
/// # Safety
///
/// The memory below `stack_top` must be usable as the thread's stack for as
/// long as the thread runs and must not be used by anything else meanwhile.
pub unsafe fn spawn_thread(
    entry: extern "C" fn(u64) -> !,
    stack_top: u64,
    arg: u64,
) -> Result<u32, Errno> {
    // SAFETY: the kernel dereferences neither address; the stack's exclusive
    // use is the caller's promise.
    let ret = unsafe { raw::syscall3(nr::SPAWN_THREAD, entry as usize as u64, stack_top, arg) };
    // Thread ids fit in 32 bits (docs/abi.md).
    decode(ret).map(|tid| tid as u32)
}

/// Waits for thread `tid` of this program, one made by `spawn_thread`, to
/// exit and returns its status. Each thread can be waited for once;
/// [`crate::spawn`]'s threads are joined with [`crate::join`] instead.
pub fn wait_thread(tid: u32) -> Result<i64, Errno> {
    let mut status: i64 = 0;
    // SAFETY: the kernel writes one i64 to `status`, which we borrow mutably.
    let ret = unsafe { raw::syscall2(nr::WAIT_THREAD, tid.into(), &raw mut status as u64) };
    decode(ret).map(|_tid| status)
}

/// Nanoseconds on the monotonic clock (since boot on Faultline). It
/// cannot fail.
pub fn time_ns() -> u64 {
    let mut ts = [0u8; abi::Timespec::SIZE];
    // SAFETY: the kernel writes 16 bytes to `ts`, which we borrow mutably.
    unsafe {
        raw::syscall2(
            nr::CLOCK_GETTIME,
            abi::clock::MONOTONIC as u64,
            ts.as_mut_ptr() as u64,
        )
    };
    abi::Timespec::from_bytes(ts).to_ns().unwrap_or(0)
}

/// The process id.
pub fn getpid() -> u32 {
    // SAFETY: getpid takes no pointers.
    let ret = unsafe { raw::syscall0(nr::GETPID) };
    ret as u32
}

/// Ignores signal `signo` (`sigaction(signo, SIG_IGN)`): a program that
/// wants `EPIPE` from a pipe without readers ignores `SIGPIPE`, as on Linux.
pub fn ignore_signal(signo: u32) -> Result<(), Errno> {
    // handler, flags, restorer, mask: Linux's `struct sigaction`.
    let act = [abi::sig::SIG_IGN, 0u64, 0, 0];
    // SAFETY: the kernel reads the 32 bytes of `act`; no old action is asked.
    let ret = unsafe {
        raw::syscall4(
            nr::RT_SIGACTION,
            signo.into(),
            act.as_ptr() as u64,
            0,
            abi::sig::SIGSET_SIZE,
        )
    };
    decode(ret).map(|_| ())
}

/// Creates a pipe; returns `(read_end, write_end)`.
pub fn pipe() -> Result<(u32, u32), Errno> {
    let mut fds = [0u32; 2];
    // SAFETY: the kernel writes two u32s to `fds`, which we borrow mutably.
    let ret = unsafe { raw::syscall1(nr::PIPE, fds.as_mut_ptr() as u64) };
    decode(ret).map(|_| (fds[0], fds[1]))
}

/// Closes `fd`.
pub fn close(fd: u32) -> Result<(), Errno> {
    // SAFETY: close takes no pointers.
    let ret = unsafe { raw::syscall1(nr::CLOSE, fd.into()) };
    decode(ret).map(|_| ())
}

/// The calling thread's id. It cannot fail.
pub fn gettid() -> u32 {
    // SAFETY: gettid takes no pointers.
    let ret = unsafe { raw::syscall0(nr::GETTID) };
    // Thread ids fit in 32 bits (docs/abi.md).
    ret as u32
}

/// `futex(FUTEX_WAIT)`: sleeps while `word` holds `expected`, until a
/// wake, `timeout_ns` (relative) or an interruption. `private` futexes
/// (`FUTEX_PRIVATE_FLAG`) are met only by private wakes of this process;
/// shared ones by shared wakes on the same memory, the kernel's wake at a
/// thread's exit included. `EAGAIN`: `word` held another value already.
pub fn futex_wait(
    word: &AtomicU32,
    expected: u32,
    timeout_ns: Option<u64>,
    private: bool,
) -> Result<(), Errno> {
    let ts = timeout_ns.map(|ns| abi::Timespec::from_ns(ns).to_bytes());
    let timeout = ts.as_ref().map_or(0, |t| t.as_ptr() as u64);
    let op = futex::WAIT | if private { futex::PRIVATE_FLAG } else { 0 };
    // SAFETY: the kernel reads the word (an atomic we borrow) and the
    // 16-byte timespec, if any, which we borrow too.
    let ret = unsafe {
        raw::syscall4(
            nr::FUTEX,
            word.as_ptr() as u64,
            op as u64,
            expected.into(),
            timeout,
        )
    };
    decode(ret).map(drop)
}

/// `futex(FUTEX_WAKE)`: wakes up to `n` waiters on `word` (`i32::MAX`:
/// all); returns how many it woke. The count is an `int`, and as on Linux
/// any `n` below 1 wakes one.
pub fn futex_wake(word: &AtomicU32, n: i32, private: bool) -> Result<u32, Errno> {
    let op = futex::WAKE | if private { futex::PRIVATE_FLAG } else { 0 };
    let n = u64::from(n as u32);
    // SAFETY: a wake reads no memory; the word is ours.
    let ret = unsafe { raw::syscall3(nr::FUTEX, word.as_ptr() as u64, op as u64, n) };
    decode(ret).map(|n| n as u32)
}

/// `set_tid_address(tidptr)`: at this thread's exit the kernel stores 0
/// at `tidptr` and wakes one futex waiter there (null: nothing). Returns
/// the caller's thread id.
///
/// # Safety
///
/// `tidptr`, if not null, must stay valid for a 4-byte store until the
/// thread exits or sets another.
pub unsafe fn set_tid_address(tidptr: *mut u32) -> u32 {
    // SAFETY: the kernel only records the pointer now; the caller vouches
    // for the store at exit.
    let ret = unsafe { raw::syscall1(nr::SET_TID_ADDRESS, tidptr as u64) };
    ret as u32
}

/// `arch_prctl(ARCH_SET_FS)`: this thread's FS base (rt itself never uses
/// FS). `EPERM` at or above `abi::TASK_SIZE_MAX`.
pub fn set_fs_base(base: u64) -> Result<(), Errno> {
    // SAFETY: no memory is touched; the base only matters to FS-relative
    // accesses, which this runtime does not make.
    let ret = unsafe { raw::syscall2(nr::ARCH_PRCTL, abi::arch_prctl::SET_FS as u64, base) };
    decode(ret).map(drop)
}

/// `arch_prctl(ARCH_GET_FS)`: this thread's FS base.
pub fn fs_base() -> u64 {
    let mut base: u64 = 0;
    // SAFETY: the kernel writes one u64 to `base`, which we borrow mutably.
    unsafe {
        raw::syscall2(
            nr::ARCH_PRCTL,
            abi::arch_prctl::GET_FS as u64,
            &raw mut base as u64,
        )
    };
    base
}

/// Creates a pipe with `flags` (`O_NONBLOCK`, `O_CLOEXEC`); returns
/// `(read_end, write_end)`.
pub fn pipe2(flags: u32) -> Result<(u32, u32), Errno> {
    let mut fds = [0u32; 2];
    // SAFETY: the kernel writes two u32s to `fds`, which we borrow mutably.
    let ret = unsafe { raw::syscall2(nr::PIPE2, fds.as_mut_ptr() as u64, flags.into()) };
    decode(ret).map(|_| (fds[0], fds[1]))
}

/// A new descriptor (the lowest free) for the file `fd` names.
pub fn dup(fd: u32) -> Result<u32, Errno> {
    // SAFETY: dup takes no pointers.
    let ret = unsafe { raw::syscall1(nr::DUP, fd.into()) };
    decode(ret).map(|fd| fd as u32)
}

/// Makes `new` name the file `fd` names, closing what it named.
pub fn dup2(fd: u32, new: u32) -> Result<u32, Errno> {
    // SAFETY: dup2 takes no pointers.
    let ret = unsafe { raw::syscall2(nr::DUP2, fd.into(), new.into()) };
    decode(ret).map(|fd| fd as u32)
}

/// `dup2` with flags (`O_CLOEXEC`); `fd == new` is `EINVAL`.
pub fn dup3(fd: u32, new: u32, flags: u32) -> Result<u32, Errno> {
    // SAFETY: dup3 takes no pointers.
    let ret = unsafe { raw::syscall3(nr::DUP3, fd.into(), new.into(), flags.into()) };
    decode(ret).map(|fd| fd as u32)
}

/// `fcntl` with an integer argument (every command Faultline has).
pub fn fcntl(fd: u32, cmd: u32, arg: u64) -> Result<u64, Errno> {
    // SAFETY: none of the commands the kernel knows takes a pointer.
    let ret = unsafe { raw::syscall3(nr::FCNTL, fd.into(), cmd.into(), arg) };
    decode(ret)
}

/// What `fd` is: Linux's `struct stat`.
pub fn fstat(fd: u32) -> Result<abi::Stat, Errno> {
    let mut buf = [0u8; abi::Stat::SIZE];
    // SAFETY: the kernel writes 144 bytes to `buf`, which we borrow mutably.
    let ret = unsafe { raw::syscall2(nr::FSTAT, fd.into(), buf.as_mut_ptr() as u64) };
    decode(ret).map(|_| abi::Stat::from_bytes(&buf))
}

/// Bytes ready to read from `fd` (`ioctl(FIONREAD)`).
pub fn bytes_ready(fd: u32) -> Result<usize, Errno> {
    let mut n = 0i32;
    let req = abi::ioctl::FIONREAD.into();
    // SAFETY: the kernel writes one int to `n`, which we borrow mutably.
    let ret = unsafe { raw::syscall3(nr::IOCTL, fd.into(), req, &raw mut n as u64) };
    decode(ret).map(|_| n as usize)
}

/// The terminal size of `fd` (`ioctl(TIOCGWINSZ)`); `ENOTTY` for others.
pub fn window_size(fd: u32) -> Result<abi::Winsize, Errno> {
    let mut b = [0u8; abi::Winsize::SIZE];
    let req = abi::ioctl::TIOCGWINSZ.into();
    // SAFETY: the kernel writes 8 bytes to `b`, which we borrow mutably.
    let ret = unsafe { raw::syscall3(nr::IOCTL, fd.into(), req, b.as_mut_ptr() as u64) };
    let half = |i: usize| u16::from_le_bytes([b[2 * i], b[2 * i + 1]]);
    decode(ret).map(|_| abi::Winsize {
        row: half(0),
        col: half(1),
        xpixel: half(2),
        ypixel: half(3),
    })
}

/// One buffer of a [`writev`]: Linux's `struct iovec`, borrowing its bytes.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IoVec<'a> {
    base: *const u8,
    len: usize,
    _bytes: core::marker::PhantomData<&'a [u8]>,
}

impl<'a> IoVec<'a> {
    pub fn new(bytes: &'a [u8]) -> IoVec<'a> {
        IoVec {
            base: bytes.as_ptr(),
            len: bytes.len(),
            _bytes: core::marker::PhantomData,
        }
    }
}

/// Writes the buffers in order as one write (atomic on a pipe up to
/// `PIPE_BUF` bytes in all); returns how many bytes were written.
pub fn writev(fd: u32, bufs: &[IoVec<'_>]) -> Result<usize, Errno> {
    // SAFETY: the kernel reads the array and the buffers it lists, all
    // borrowed for the call; IoVec is laid out as struct iovec.
    let ret = unsafe {
        raw::syscall3(
            nr::WRITEV,
            fd.into(),
            bufs.as_ptr() as u64,
            bufs.len() as u64,
        )
    };
    decode(ret).map(|n| n as usize)
}
