//! System-call handlers (docs/abi.md describes each call).
//!
//! Every user pointer is checked before anything happens (canonical, in
//! the user half, mapped with the rights the call needs), so a bad one is
//! EFAULT and never a kernel fault or a half-done call. User memory is
//! reached by walking the process's page tables (`crate::task::uaccess`).
//! No handler allocates from the heap: transfers go through small buffers
//! on the kernel stack.

use abi::{Errno, Timespec, clock, nr};

use super::{File, MAX_THREADS_PER_PROCESS, Machine, Start, System, UserRegs};
use crate::sync::IrqOff;
use crate::task::sched::{Priority, SchedError, WaitResult};
use crate::task::uaccess;

/// Largest transfer per call; longer reads and writes are partial, as
/// POSIX allows.
const MAX_IO: usize = 4096;

type SysResult = Result<u64, Errno>;

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

impl<M: Machine> System<M> {
    /// Runs system call `number` with arguments `a` (rdi, rsi, rdx, r10,
    /// r8, r9) for the current task; returns what goes back in rax.
    /// `user_regs` gives every register the call was made with, for the
    /// calls that copy them (`clone`); only they call it, so the others
    /// pay nothing for it.
    pub fn syscall(&self, number: u64, a: [u64; 6], user_regs: &dyn Fn() -> UserRegs) -> u64 {
        let result = match number {
            // Threads (clone.rs, futex.rs).
            nr::CLONE => self.sys_clone(a[0], a[1], a[2], a[3], a[4], user_regs),
            nr::ARCH_PRCTL => self.sys_arch_prctl(int(a[0]), a[1]),
            nr::FUTEX => self.sys_futex(a[0], int(a[1]), a[2] as u32, a[3], a[4], a[5] as u32),
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
            nr::EXIT => self.exit_thread(int(a[0]).into()),
            nr::GETPPID => self.with_current_process(|p| Ok(p.parent.into())),
            nr::GETTID => Ok(self.current().into()),
            nr::CLOCK_GETTIME => self.sys_clock_gettime(int(a[0]), a[1]),
            nr::CLOCK_NANOSLEEP => self.sys_clock_nanosleep(int(a[0]), int(a[1]), a[2], a[3]),
            nr::EXIT_GROUP => self.exit_process(int(a[0]).into()),
            nr::SPAWN_THREAD => self.sys_spawn_thread(a[0], a[1], a[2]),
            nr::WAIT_THREAD => self.sys_wait(a[0], a[1]),
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
        self.sleep_until(until, rem)
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
            return self.sleep_until(ns, 0);
        }
        let until = self.m.now_ns().saturating_add(ns);
        self.sleep_until(until, rem)
    }

    /// Sleeps until `until`; a kill ends the sleep early with `EINTR` and
    /// the time left stored at `rem` (unless null).
    fn sleep_until(&self, until: u64, rem: u64) -> SysResult {
        let now = self.m.now_ns();
        if until > now {
            self.sleep_ns(until - now);
        }
        if self.kill_pending().is_none() {
            return Ok(0);
        }
        if rem != 0 {
            let left = until.saturating_sub(self.m.now_ns());
            self.copy_to_user(rem, &Timespec::from_ns(left).to_bytes())?;
        }
        Err(Errno::EINTR)
    }

    /// Checks `[va, va + len)` is user memory mapped with the rights needed.
    fn check_user(&self, va: u64, len: u64, write: bool) -> Result<(), Errno> {
        uaccess::check_user_range(va, len)?;
        self.with_current_process(|p| uaccess::check_mapped(p.space.page_table(), va, len, write))
    }

    fn copy_from_user(&self, va: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let mem = self.m.mem();
        self.with_current_process(|p| uaccess::copy_from_user(p.space.page_table(), mem, va, buf))
    }

    fn copy_to_user(&self, va: u64, data: &[u8]) -> Result<(), Errno> {
        let mem = self.m.mem();
        self.with_current_process(|p| uaccess::copy_to_user(p.space.page_table(), mem, va, data))
    }

    pub(super) fn file(&self, fd: u64) -> Result<File, Errno> {
        self.with_current_process(|p| p.fds.get(fd).ok_or(Errno::EBADF))
    }

    fn sys_write(&self, fd: u64, buf: u64, len: u64) -> SysResult {
        let len = (len as usize).min(MAX_IO);
        self.check_user(buf, len as u64, false)?;
        match self.file(fd)? {
            File::Console => self.console_write_user(buf, len),
            File::PipeWrite(id) => self.pipe_write(id, buf, len),
            File::PipeRead(_) => Err(Errno::EBADF),
        }
    }

    /// Copies user bytes to the console in pieces; invalid UTF-8 shows as
    /// U+FFFD, and a character split between two pieces is kept whole.
    fn console_write_user(&self, buf: u64, len: usize) -> SysResult {
        const PIECE: usize = 256;
        let mut piece = [0u8; PIECE + 3];
        let mut carried = 0;
        let mut done = 0;
        while done < len {
            let k = (len - done).min(PIECE);
            self.copy_from_user(buf + done as u64, &mut piece[carried..carried + k])?;
            done += k;
            let filled = carried + k;
            carried = self.console_write_utf8(&piece[..filled], done == len);
            piece.copy_within(filled - carried..filled, 0);
        }
        Ok(len as u64)
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

    fn sys_read(&self, fd: u64, buf: u64, len: u64) -> SysResult {
        let len = (len as usize).min(MAX_IO);
        self.check_user(buf, len as u64, true)?;
        match self.file(fd)? {
            File::PipeRead(id) => self.pipe_read(id, buf, len),
            // Console input belongs to the console shell for now.
            File::Console | File::PipeWrite(_) => Err(Errno::EBADF),
        }
    }

    fn sys_pipe(&self, fds_ptr: u64) -> SysResult {
        self.check_user(fds_ptr, 8, true)?;
        let (r, w) = self.new_pipe()?;
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&r.to_le_bytes());
        bytes[4..].copy_from_slice(&w.to_le_bytes());
        if let Err(e) = self.copy_to_user(fds_ptr, &bytes) {
            let _ = self.sys_close(r.into());
            let _ = self.sys_close(w.into());
            return Err(e);
        }
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
        let _off = IrqOff::new();
        let mut s = self.sched.lock();
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
            .spawn(
                name.as_str(),
                Some(pid),
                Priority::NORMAL,
                true,
                super::TaskExt::new(ctx),
            )
            .map_err(|_| Errno::EAGAIN)?;
        Ok(tid as u64)
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
            let result = self.sched.lock().wait_for(tid);
            match result {
                Ok(WaitResult::Blocked(sw)) => self.switch_if(sw),
                Ok(WaitResult::Exited(status, ctx)) => {
                    drop(ctx);
                    if status_ptr != 0 {
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
