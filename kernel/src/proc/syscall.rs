//! System-call handlers (docs/abi.md describes each call).
//!
//! Every user pointer is checked before it is used (canonical, in the
//! user half, mapped with the rights the call needs), so a bad one is
//! EFAULT and never a kernel fault or a half-done call. The checks come in
//! Linux's order: a descriptor is judged before the pointers that go with
//! it (`write(99, NULL, 1)` is EBADF). User memory is reached by walking
//! the process's page tables (`crate::task::uaccess`).
//! No handler allocates from the heap: transfers go through small buffers
//! on the kernel stack.

use abi::{Errno, IOV_MAX, IOVEC_SIZE, MAX_RW_COUNT, Timespec, clock, nr, o};

use super::{File, MAX_THREADS_PER_PROCESS, Machine, Start, System, TaskExt, UserFrame};
use crate::sync::IrqOff;
use crate::task::sched::{CpuMask, Priority, SchedError, Scheduler, State, Tid, WaitResult};
use crate::task::uaccess::{self, UserMem};

type SysResult = Result<u64, Errno>;

/// Where a write's bytes come from: one user buffer, or the buffers an
/// iovec array lists, read in order. The array is read again as the
/// bytes are taken (the kernel stack has no room for 1024 iovecs), so the
/// copy checks every access once more: a program that changes its array
/// mid-call gets what it changed to, never a kernel fault.
#[derive(Clone, Copy)]
pub(super) struct Source {
    /// The iovec array and its length, or None for one buffer at `base`.
    iov: Option<(u64, u64)>,
    /// Bytes in all, at most MAX_RW_COUNT.
    total: u64,
    /// Bytes taken so far.
    taken: u64,
    /// The next iovec to read.
    next: u64,
    /// What is left of the current buffer.
    base: u64,
    left: u64,
}

impl Source {
    pub(super) fn buffer(base: u64, len: u64) -> Source {
        Source {
            iov: None,
            total: len,
            taken: 0,
            next: 0,
            base,
            left: len,
        }
    }

    fn iovecs(iov: u64, count: u32, total: u64) -> Source {
        Source {
            iov: Some((iov, count.into())),
            total,
            taken: 0,
            next: 0,
            base: 0,
            left: 0,
        }
    }

    pub(super) fn len(&self) -> u64 {
        self.total
    }

    /// Copies the next `out.len()` bytes into `out` (the caller asks for
    /// no more than are left); EFAULT when memory cannot be read.
    pub(super) fn fill(&mut self, user: &mut impl UserMem, out: &mut [u8]) -> Result<(), Errno> {
        let mut at = 0;
        while at < out.len() {
            if self.left == 0 {
                // Past the array only if it changed since it was checked.
                let (iov, _) = self
                    .iov
                    .filter(|&(_, c)| self.next < c)
                    .ok_or(Errno::EFAULT)?;
                let entry = iov.wrapping_add(self.next.wrapping_mul(IOVEC_SIZE));
                self.base = uaccess::read_user_u64(user, entry)?;
                let len = uaccess::read_user_u64(user, entry.wrapping_add(8))?;
                self.left = len.min(self.total - self.taken);
                self.next += 1;
                continue;
            }
            let k = (out.len() - at).min(usize::try_from(self.left).unwrap_or(usize::MAX));
            uaccess::copy_from_user(user, self.base, &mut out[at..at + k])?;
            at += k;
            self.base = self.base.wrapping_add(k as u64);
            self.left -= k as u64;
            self.taken += k as u64;
        }
        Ok(())
    }
}

/// An `unsigned int fd` argument: Linux keeps the low 32 bits of the
/// register, so `close(1 << 32 | 3)` closes descriptor 3 there too.
fn fd(reg: u64) -> u64 {
    u64::from(reg as u32)
}

/// An `int` argument (a clock id, flags, an exit status): the low 32 bits,
/// sign-extended, as Linux reads it.
fn int(reg: u64) -> i32 {
    reg as i32
}

/// An `unsigned int` argument other than a descriptor (a command, a
/// count): the low 32 bits.
fn uint(reg: u64) -> u32 {
    reg as u32
}

/// A transfer's length as Linux bounds it: at most MAX_RW_COUNT bytes.
fn rw_count(len: u64) -> u64 {
    len.min(MAX_RW_COUNT)
}

impl<M: Machine> System<M> {
    /// Runs system call `number` with arguments `a` (rdi, rsi, rdx, r10,
    /// r8, r9) for the current task; returns what goes back in rax.
    /// `frame` holds every register the call was made with, for the calls
    /// that copy or replace them (`clone`, `rt_sigreturn`); only they read
    /// it, so the others pay nothing for it.
    pub fn syscall(&self, number: u64, a: [u64; 6], frame: &mut dyn UserFrame) -> u64 {
        let result = match number {
            // Threads (clone.rs, futex.rs).
            nr::CLONE => self.sys_clone(a[0], a[1], a[2], a[3], a[4], frame.regs()),
            nr::ARCH_PRCTL => self.sys_arch_prctl(int(a[0]), a[1]),
            nr::FUTEX => self.sys_futex(a[0], int(a[1]), a[2] as u32, a[3], a[4], a[5] as u32),
            nr::SCHED_SETAFFINITY => self.sys_sched_setaffinity(int(a[0]), uint(a[1]), a[2]),
            nr::SCHED_GETAFFINITY => self.sys_sched_getaffinity(int(a[0]), uint(a[1]), a[2]),
            nr::GETCPU => self.sys_getcpu(a[0], a[1]),
            nr::SET_TID_ADDRESS => Ok(self.sys_set_tid_address(a[0])),
            nr::READ => self.sys_read(fd(a[0]), a[1], a[2]),
            nr::WRITE => self.sys_write(fd(a[0]), a[1], a[2]),
            nr::CLOSE => self.sys_close(fd(a[0])),
            nr::PIPE => self.sys_pipe(a[0]),
            nr::SCHED_YIELD => {
                self.yield_now();
                Ok(0)
            }
            nr::NANOSLEEP => self.sys_nanosleep(a[0], a[1]),
            nr::GETPID => Ok(self.current_pid().into()),
            nr::EXIT => self.exit_thread(abi::exited_status(int(a[0]).into())),
            nr::WAIT4 => self.sys_wait4(int(a[0]), int(a[2])),
            nr::GETPPID => self.with_current_process(|p| Ok(p.parent.into())),
            nr::GETTID => Ok(self.current().into()),
            nr::CLOCK_GETTIME => self.sys_clock_gettime(int(a[0]), a[1]),
            nr::CLOCK_NANOSLEEP => self.sys_clock_nanosleep(int(a[0]), int(a[1]), a[2], a[3]),
            nr::EXIT_GROUP => self.exit_group(int(a[0])),
            // Signals (signal.rs).
            nr::RT_SIGACTION => self.sys_rt_sigaction(int(a[0]), a[1], a[2], a[3]),
            nr::RT_SIGPROCMASK => self.sys_rt_sigprocmask(int(a[0]), a[1], a[2], a[3]),
            nr::RT_SIGRETURN => self.sys_rt_sigreturn(frame),
            nr::RT_SIGPENDING => self.sys_rt_sigpending(a[0], a[1]),
            nr::SIGALTSTACK => self.sys_sigaltstack(a[0], a[1], frame.regs().rsp),
            nr::KILL => self.sys_kill(int(a[0]), int(a[1])),
            nr::TKILL => self.sys_tgkill(None, int(a[0]), int(a[1])),
            nr::TGKILL => self.sys_tgkill(Some(int(a[0])), int(a[1]), int(a[2])),
            nr::SPAWN_THREAD => self.sys_spawn_thread(a[0], a[1], a[2]),
            nr::WAIT_THREAD => self.sys_wait(a[0], a[1]),
            // Descriptors and pipes.
            nr::FSTAT => self.sys_fstat(fd(a[0]), a[1]),
            nr::IOCTL => self.sys_ioctl(fd(a[0]), uint(a[1]), a[2]),
            nr::WRITEV => self.sys_writev(fd(a[0]), a[1], uint(a[2])),
            nr::DUP => self.sys_dup(fd(a[0])),
            nr::DUP2 => self.sys_dup2(fd(a[0]), fd(a[1])),
            nr::DUP3 => self.sys_dup3(fd(a[0]), fd(a[1]), int(a[2])),
            nr::FCNTL => self.sys_fcntl(fd(a[0]), uint(a[1]), a[2]),
            nr::PIPE2 => self.sys_pipe2(a[0], int(a[1])),
            // Memory (mm.rs).
            nr::MMAP => self.sys_mmap(a[0], a[1], a[2], a[3], a[4], a[5]),
            nr::MUNMAP => self.sys_munmap(a[0], a[1]),
            nr::MPROTECT => self.sys_mprotect(a[0], a[1], a[2]),
            nr::BRK => self.sys_brk(a[0]),
            nr::MADVISE => self.sys_madvise(a[0], a[1], int(a[2])),
            nr::MREMAP => self.sys_mremap(a[0], a[1], a[2], a[3], a[4]),
            // A new program (exec.rs).
            nr::EXECVE => self.sys_execve(a[0], a[1], a[2], frame),
            nr::EXECVEAT => self.execveat(int(a[0]), a[1], a[2], a[3], int(a[4]), frame),
            _ => Err(Errno::ENOSYS),
        };
        abi::encode(result)
    }

    /// A clock Linux knows; `EINVAL` for any other id, checked before the
    /// pointer as Linux does.
    fn clock_now(&self, clock: i32) -> Result<u64, Errno> {
        match clock {
            // No clock hardware is read: real time counts from boot.
            clock::REALTIME
            | clock::MONOTONIC
            | clock::MONOTONIC_RAW
            | clock::REALTIME_COARSE
            | clock::MONOTONIC_COARSE
            | clock::BOOTTIME
            | clock::REALTIME_ALARM
            | clock::BOOTTIME_ALARM
            | clock::TAI => Ok(self.m.now_ns()),
            clock::PROCESS_CPUTIME_ID | clock::THREAD_CPUTIME_ID => Ok(self.cpu_time_ns(clock)),
            // Negative ids name another process's or thread's CPU clock;
            // Faultline has none of those yet.
            _ => Err(Errno::EINVAL),
        }
    }

    /// CPU time charged to the calling thread, or to its whole process,
    /// at the resolution the scheduler counts it: timer ticks.
    fn cpu_time_ns(&self, clock: i32) -> u64 {
        let me = self.current();
        let pid = self.current_pid();
        let ticks: u64 = self.with_sched(|s| {
            s.tasks()
                .filter(|t| match clock {
                    clock::THREAD_CPUTIME_ID => t.tid == me,
                    _ => t.group == pid,
                })
                .map(|t| t.cpu_ticks)
                .sum()
        });
        ticks.saturating_mul(self.m.tick_ns())
    }

    fn sys_clock_gettime(&self, clock: i32, tp: u64) -> SysResult {
        let now = self.clock_now(clock)?;
        self.copy_to_user(tp, &Timespec::from_ns(now).to_bytes())?;
        Ok(0)
    }

    /// Reads a timespec a sleep was given: `EFAULT` if unreadable, `EINVAL`
    /// if out of range.
    fn read_timespec(&self, va: u64) -> Result<u64, Errno> {
        let mut bytes = [0u8; Timespec::SIZE];
        self.copy_from_user(va, &mut bytes)?;
        Timespec::from_bytes(bytes).to_ns().ok_or(Errno::EINVAL)
    }

    fn sys_nanosleep(&self, req: u64, rem: u64) -> SysResult {
        let ns = self.read_timespec(req)?;
        let until = self.m.now_ns().saturating_add(ns);
        self.sleep_until(until, rem, Errno::ERESTART_RESTARTBLOCK)
    }

    fn sys_clock_nanosleep(&self, clock: i32, flags: i32, req: u64, rem: u64) -> SysResult {
        match clock {
            clock::REALTIME
            | clock::MONOTONIC
            | clock::BOOTTIME
            | clock::REALTIME_ALARM
            | clock::BOOTTIME_ALARM
            | clock::TAI => {}
            // Clocks that exist but cannot be slept on.
            clock::MONOTONIC_RAW
            | clock::REALTIME_COARSE
            | clock::MONOTONIC_COARSE
            | clock::PROCESS_CPUTIME_ID
            | clock::THREAD_CPUTIME_ID => return Err(Errno::EOPNOTSUPP),
            _ => return Err(Errno::EINVAL),
        }
        let ns = self.read_timespec(req)?;
        // Linux ignores flag bits other than TIMER_ABSTIME.
        if flags & clock::TIMER_ABSTIME != 0 {
            // An absolute sleep is not restarted with a remainder.
            return self.sleep_until(ns, 0, Errno::ERESTARTNOHAND);
        }
        let until = self.m.now_ns().saturating_add(ns);
        self.sleep_until(until, rem, Errno::ERESTART_RESTARTBLOCK)
    }

    /// Sleeps until `until`; a kill ends the sleep early with `EINTR`, a
    /// signal with `restart` (EINTR once a handler runs, a restart when
    /// none does), and the time left is stored at `rem` (unless null).
    fn sleep_until(&self, until: u64, rem: u64, restart: Errno) -> SysResult {
        let now = self.m.now_ns();
        if until > now {
            self.sleep_ns(until - now);
        }
        let killed = self.kill_pending().is_some();
        if !killed && (!self.signal_interrupts() || self.m.now_ns() >= until) {
            return Ok(0);
        }
        if rem != 0 {
            let left = until.saturating_sub(self.m.now_ns());
            self.copy_to_user(rem, &Timespec::from_ns(left).to_bytes())?;
        }
        Err(if killed { Errno::EINTR } else { restart })
    }

    /// Checks `[va, va + len)` is user memory mapped with the rights needed.
    pub(super) fn check_user(&self, va: u64, len: u64, write: bool) -> Result<(), Errno> {
        uaccess::check_user_range(va, len)?;
        self.with_user(|u| uaccess::check_mapped(u, va, len, write))
    }

    /// A transfer's buffer (`read`, `write`, each of `writev`'s): mapped
    /// for its length, or, when empty, at most `TASK_SIZE_MAX`. An empty
    /// buffer needs no memory, but Linux's `access_ok` still wants a user
    /// address: `write(fd, NULL, 0)` is 0, a kernel-half one is EFAULT.
    fn check_buffer(&self, va: u64, len: u64, write: bool) -> Result<(), Errno> {
        if len == 0 && va > abi::TASK_SIZE_MAX {
            return Err(Errno::EFAULT);
        }
        self.check_user(va, len, write)
    }

    pub(super) fn copy_from_user(&self, va: u64, buf: &mut [u8]) -> Result<(), Errno> {
        self.with_user(|u| uaccess::copy_from_user(u, va, buf))
    }

    pub(super) fn copy_to_user(&self, va: u64, data: &[u8]) -> Result<(), Errno> {
        self.with_user(|u| uaccess::copy_to_user(u, va, data))
    }

    pub(super) fn file(&self, fd: u64) -> Result<File, Errno> {
        self.with_current_process(|p| p.fds.get(fd).ok_or(Errno::EBADF))
    }

    /// The descriptor first (EBADF when it is not open or not open for
    /// writing), then the buffer: Linux's order.
    fn sys_write(&self, fd: u64, buf: u64, len: u64) -> SysResult {
        let file = self.file(fd)?;
        if let File::PipeRead(_) = file {
            return Err(Errno::EBADF);
        }
        let len = rw_count(len);
        self.check_buffer(buf, len, false)?;
        self.write_file(file, Source::buffer(buf, len))
    }

    /// `writev`, checked whole before anything moves, in Linux's order: a
    /// descriptor that is not open; the count; the array (its range, then
    /// each entry as it is read: unreadable, or a negative length); the
    /// buffers, each for the bytes the call will take; and only then a
    /// descriptor not open for writing (Linux reads the array before it
    /// asks the file). Then it is one write of the buffers' bytes in
    /// order: atomic on a pipe up to PIPE_BUF in all.
    fn sys_writev(&self, fd: u64, iov: u64, count: u32) -> SysResult {
        let file = self.file(fd)?;
        if count > IOV_MAX {
            return Err(Errno::EINVAL);
        }
        let array = u64::from(count) * IOVEC_SIZE;
        uaccess::check_user_range(iov, array)?;
        let entry = |i: u64| {
            self.with_user(|u| {
                let at = iov + i * IOVEC_SIZE;
                Ok((
                    uaccess::read_user_u64(u, at)?,
                    uaccess::read_user_u64(u, at + 8)?,
                ))
            })
        };
        for i in 0..u64::from(count) {
            // A size_t that does not fit ssize_t; an entry past it that
            // cannot be read is not reached.
            if (entry(i)?.1 as i64) < 0 {
                return Err(Errno::EINVAL);
            }
        }
        let mut total = 0u64;
        for i in 0..u64::from(count) {
            let (base, len) = entry(i)?;
            // Linux stops counting at MAX_RW_COUNT, and so does the copy.
            let len = len.min(MAX_RW_COUNT - total);
            self.check_buffer(base, len, false)?;
            total += len;
        }
        self.write_file(file, Source::iovecs(iov, count, total))
    }

    fn write_file(&self, file: File, src: Source) -> SysResult {
        match file {
            File::Console => self.console_write_user(src),
            File::PipeWrite(id) => self.pipe_write(id, src),
            File::PipeRead(_) => Err(Errno::EBADF),
        }
    }

    /// Copies user bytes to the console in pieces; invalid UTF-8 shows as
    /// U+FFFD, and a character split between two pieces (or two buffers
    /// of a writev) is kept whole.
    fn console_write_user(&self, mut src: Source) -> SysResult {
        const PIECE: usize = 256;
        let len = src.len();
        let mut piece = [0u8; PIECE + 3];
        let mut carried = 0;
        let mut done = 0;
        while done < len {
            let k = (len - done).min(PIECE as u64) as usize;
            let copied = self.with_user(|u| src.fill(u, &mut piece[carried..carried + k]));
            if let Err(e) = copied {
                return if done > 0 { Ok(done) } else { Err(e) };
            }
            done += k as u64;
            let filled = carried + k;
            carried = self.console_write_utf8(&piece[..filled], done == len);
            piece.copy_within(filled - carried..filled, 0);
        }
        Ok(len)
    }

    /// Writes `bytes` as text; returns how many bytes at the end begin a
    /// character that may continue in the next piece (0 when `last`).
    fn console_write_utf8(&self, mut bytes: &[u8], last: bool) -> usize {
        loop {
            match core::str::from_utf8(bytes) {
                Ok(text) => {
                    self.m.console_write(text.as_bytes());
                    return 0;
                }
                Err(e) => {
                    let (valid, rest) = bytes.split_at(e.valid_up_to());
                    self.m.console_write(valid);
                    match e.error_len() {
                        Some(bad) => {
                            self.m.console_write("\u{FFFD}".as_bytes());
                            bytes = &rest[bad..];
                        }
                        None if !last => return rest.len(),
                        None => {
                            self.m.console_write("\u{FFFD}".as_bytes());
                            return 0;
                        }
                    }
                }
            }
        }
    }

    /// The descriptor first (EBADF when it is not open or not open for
    /// reading), then the buffer: Linux's order.
    fn sys_read(&self, fd: u64, buf: u64, len: u64) -> SysResult {
        let file = self.file(fd)?;
        if let File::PipeWrite(_) = file {
            return Err(Errno::EBADF);
        }
        let len = rw_count(len);
        self.check_buffer(buf, len, true)?;
        match file {
            File::PipeRead(id) => self.pipe_read(id, buf, len as usize),
            // Console input belongs to the console shell: a program reads
            // end of file, as from a terminal whose input has ended, so a
            // program that reads its stdin finishes instead of hanging.
            File::Console => Ok(0),
            File::PipeWrite(_) => Err(Errno::EBADF),
        }
    }

    fn sys_pipe(&self, fds_ptr: u64) -> SysResult {
        self.sys_pipe2(fds_ptr, 0)
    }

    /// Linux's order: the flags (EINVAL), the pipe (ENOMEM), its two
    /// descriptors (EMFILE), and only then the pointer (EFAULT), whose
    /// failure undoes the rest before any other thread can see a
    /// descriptor (`new_pipe`). `O_DIRECT` (Linux's packet mode) is not
    /// supported.
    fn sys_pipe2(&self, fds_ptr: u64, flags: i32) -> SysResult {
        let flags = flags as u32;
        if flags & !(o::NONBLOCK | o::CLOEXEC) != 0 {
            return Err(Errno::EINVAL);
        }
        self.new_pipe(flags, fds_ptr)?;
        Ok(0)
    }

    fn sys_close(&self, fd: u64) -> SysResult {
        let file = self.with_current_process(|p| p.fds.close(fd).ok_or(Errno::EBADF))?;
        self.release_file(file);
        Ok(0)
    }

    fn sys_spawn_thread(&self, entry: u64, stack_top: u64, arg: u64) -> SysResult {
        uaccess::check_user_range(entry, 1)?;
        // The stack top itself must be a user address: rsp = USER_END would
        // be non-canonical in ring 3.
        if stack_top >= abi::USER_END {
            return Err(Errno::EFAULT);
        }
        // [stack_top - 16, stack_top) must be user memory; below 16 it
        // would wrap, and a saturating subtraction would turn that into
        // [0, 16) and start a thread with rsp = 0 (found by the fuzzer).
        let below = stack_top.checked_sub(16).ok_or(Errno::EFAULT)?;
        uaccess::check_user_range(below, 16)?;
        if !stack_top.is_multiple_of(16) {
            return Err(Errno::EINVAL);
        }
        let root = self.with_current_process(|p| Ok(p.space.root()))?;
        let start = Start::User {
            rip: entry,
            rsp: stack_top,
            arg0: arg,
            arg1: 0,
        };
        let ctx = self
            .m
            .new_context(start, Some(root))
            .map_err(|_| Errno::EAGAIN)?;
        // Before the locks: the signal state is allocated.
        let ext = super::TaskExt::new(ctx).ok_or(Errno::EAGAIN)?;
        let _off = IrqOff::new();
        let mut s = self.sched();
        let me = s.current();
        let Some(info) = s.task(me) else {
            return Err(Errno::ESRCH);
        };
        let (pid, name) = (info.group, info.name);
        // A process's end asks every thread to exit under this lock: a
        // caller with a kill pending is part of an ending process and must
        // not leave a thread behind it (dropping `ctx` frees the stack).
        if s.kill_pending(me).is_some() {
            return Err(Errno::EINTR);
        }
        // Each thread holds a kernel stack until it is waited for; a bound
        // per process keeps one program from taking every task slot.
        if s.tasks().filter(|t| t.group == pid).count() >= MAX_THREADS_PER_PROCESS {
            return Err(Errno::EAGAIN);
        }
        let tid = s
            .spawn(name.as_str(), Some(pid), Priority::NORMAL, true, ext)
            .map_err(|_| Errno::EAGAIN)?;
        Ok(tid as u64)
    }

    /// The thread the affinity calls' `pid` names: 0 the caller, else a
    /// user thread that has not exited (kernel threads are not a program's
    /// to name, as for `tgkill`); ESRCH for anything else.
    fn affinity_target(s: &Scheduler<TaskExt<M>>, pid: i32) -> Result<Tid, Errno> {
        let tid = match pid {
            0 => s.current(),
            p => u32::try_from(p).map_err(|_| Errno::ESRCH)?,
        };
        s.task(tid)
            .filter(|t| t.user && !matches!(t.state, State::Exited(_)))
            .map(|t| t.tid)
            .ok_or(Errno::ESRCH)
    }

    /// `sched_setaffinity(pid, len, mask)`, in Linux's order: the mask is
    /// read first (`EFAULT`; a shorter one than the kernel's 8 bytes is
    /// the low CPUs' with the rest clear, a longer one is cut to 8, `len`
    /// 0 reads nothing and is an empty mask), then the thread found
    /// (`ESRCH`), then a mask with no CPU that runs is `EINVAL`. Bits of
    /// CPUs that are not running are kept. The caller moved off its own
    /// CPU switches before the call returns.
    fn sys_sched_setaffinity(&self, pid: i32, len: u32, mask_ptr: u64) -> SysResult {
        let mut bytes = [0u8; CpuMask::BYTES];
        let n = usize::try_from(len).map_or(CpuMask::BYTES, |l| l.min(CpuMask::BYTES));
        self.copy_from_user(mask_ptr, &mut bytes[..n])?;
        let mask = CpuMask(u64::from_le_bytes(bytes));
        let _off = IrqOff::new();
        let planned = {
            let mut s = self.sched();
            let tid = Self::affinity_target(&s, pid)?;
            s.set_affinity(tid, mask).map_err(|e| match e {
                SchedError::NoCpu | SchedError::IdleTask => Errno::EINVAL,
                _ => Errno::ESRCH,
            })?;
            let sw = if s.should_preempt() {
                s.schedule()
            } else {
                None
            };
            s.plan(sw)
        };
        self.switch_if(planned);
        Ok(0)
    }

    /// `sched_getaffinity(pid, len, mask)`: stores the CPUs thread `pid`
    /// may run on, of those running, as Linux's 8-byte mask, and returns
    /// 8, the size of the kernel's mask. Linux's checks in its order:
    /// `EINVAL` when `len` has no bit for each CPU (`len * 8`, reckoned in
    /// 32 bits as Linux does) or is not a multiple of 8; `ESRCH`; `EFAULT`
    /// (nothing stored).
    fn sys_sched_getaffinity(&self, pid: i32, len: u32, mask_ptr: u64) -> SysResult {
        let mask = {
            let s = self.sched();
            let bits = usize::try_from(len.wrapping_mul(8)).unwrap_or(usize::MAX);
            if bits < s.cpu_count() || !len.is_multiple_of(8) {
                return Err(Errno::EINVAL);
            }
            let tid = Self::affinity_target(&s, pid)?;
            s.affinity(tid).unwrap_or_default().and(s.online())
        };
        let n = usize::try_from(len).map_or(CpuMask::BYTES, |l| l.min(CpuMask::BYTES));
        self.copy_to_user(mask_ptr, &mask.0.to_le_bytes()[..n])?;
        Ok(n as u64)
    }

    /// `getcpu(cpu, node, cache)`: the CPU the caller was on when asked
    /// (it may be elsewhere by the time it reads it, as on Linux) and node
    /// 0. Linux stores through each pointer that is not NULL, both even
    /// when the first fails, and says EFAULT if either did.
    fn sys_getcpu(&self, cpu_ptr: u64, node_ptr: u64) -> SysResult {
        let cpu = {
            let _off = IrqOff::new();
            self.m.cpu_index() as u32
        };
        let mut result = Ok(0);
        for (ptr, value) in [(cpu_ptr, cpu), (node_ptr, 0)] {
            if ptr != 0 && self.copy_to_user(ptr, &value.to_le_bytes()).is_err() {
                result = Err(Errno::EFAULT);
            }
        }
        result
    }

    /// `wait4`: no program has a child process (nothing makes one before
    /// `fork` exists), so once Linux's argument checks pass it is ECHILD,
    /// whatever `pid` names, as Linux says to a process without children.
    /// The status and rusage pointers are never used, as on Linux when
    /// nothing is reaped.
    fn sys_wait4(&self, pid: i32, options: i32) -> SysResult {
        if options & !abi::wait::OPTIONS != 0 {
            return Err(Errno::EINVAL);
        }
        // Linux: the group -INT_MIN cannot be named.
        if pid == i32::MIN {
            return Err(Errno::ESRCH);
        }
        Err(Errno::ECHILD)
    }

    fn sys_wait(&self, tid: u64, status_ptr: u64) -> SysResult {
        // The pointer first, whatever the tid: docs/abi.md promises EFAULT
        // before anything else.
        if status_ptr != 0 {
            self.check_user(status_ptr, 8, true)?;
        }
        let tid = u32::try_from(tid).map_err(|_| Errno::ESRCH)?;
        // The main thread's record carries the process's status until the
        // process is collected: no thread may reap it.
        if tid == self.current_pid() && tid != self.current() {
            return Err(Errno::ECHILD);
        }
        loop {
            let _off = IrqOff::new();
            let result = {
                let mut s = self.sched();
                // The record of a task it collects goes after the lock.
                match s.wait_for(tid) {
                    Ok(WaitResult::Blocked(sw)) => Ok(Err(s.plan(sw))),
                    Ok(WaitResult::Exited(status, ext)) => Ok(Ok((status, ext))),
                    Err(e) => Err(e),
                }
            };
            match result {
                Ok(Err(planned)) => self.switch_if(planned),
                Ok(Ok((status, ctx))) => {
                    drop(ctx);
                    if status_ptr != 0 {
                        let status = abi::thread_status(status);
                        self.copy_to_user(status_ptr, &status.to_le_bytes())?;
                    }
                    return Ok(tid.into());
                }
                Err(SchedError::NoSuchTask) => return Err(Errno::ESRCH),
                Err(SchedError::WouldDeadlock) => return Err(Errno::EINVAL),
                Err(SchedError::Interrupted) => return Err(Errno::EINTR),
                Err(_) => return Err(Errno::ECHILD),
            }
        }
    }
}
