//! System-call handlers (docs/abi.md describes each call).
//!
//! Every user pointer is checked before anything happens (canonical, in
//! the user half, mapped with the rights the call needs), so a bad one is
//! EFAULT and never a kernel fault or a half-done call. User memory is
//! reached by walking the task's page tables (`kernel::task::uaccess`).

use alloc::vec;

use abi::{Errno, nr};
use arch::phys::DirectMap;
use arch::trap::TrapFrame;
use kernel::task::pipe::{ReadResult, WriteResult};
use kernel::task::sched::{Priority, QueueId, WaitResult};
use kernel::task::uaccess;

use crate::process::{self, File, PIPES, PipeObj};
use crate::task::{self, Start};

static DIRECT_MAP: DirectMap = DirectMap;

/// Threads (running or not yet waited for) one task group may have.
pub const MAX_THREADS_PER_GROUP: usize = 64;

/// Largest transfer per call; longer reads and writes are partial, as
/// POSIX allows, which bounds the kernel buffer.
const MAX_IO: usize = 4096;

type SysResult = Result<u64, Errno>;

/// Entry from `arch::syscall`, with interrupts off and on the task's
/// kernel stack.
pub fn dispatch(frame: &mut TrapFrame) {
    // Interrupts on: a long call can be preempted like user code. Every
    // lock below is taken with interrupts off.
    arch::cpu::enable_interrupts();
    let (a0, a1, a2) = (frame.rdi, frame.rsi, frame.rdx);
    let result = match frame.rax {
        nr::EXIT => sys_exit(a0 as i64),
        nr::WRITE => sys_write(a0, a1, a2),
        nr::READ => sys_read(a0, a1, a2),
        nr::YIELD => {
            task::yield_now();
            Ok(0)
        }
        nr::SLEEP => {
            task::sleep_ns(a0);
            Ok(0)
        }
        nr::SPAWN_THREAD => sys_spawn_thread(a0, a1, a2),
        nr::WAIT => sys_wait(a0, a1),
        nr::TIME => Ok(arch::timer::uptime_ns()),
        nr::PIPE => sys_pipe(a0),
        nr::CLOSE => sys_close(a0),
        nr::GETTID => Ok(task::current() as u64),
        _ => Err(Errno::ENOSYS),
    };
    frame.rax = abi::encode(result);
    arch::cpu::disable_interrupts();
}

fn sys_exit(status: i64) -> SysResult {
    exit_self(status)
}

/// The current thread exits; from the main thread the whole group ends.
fn exit_self(status: i64) -> ! {
    let (me, pid) = task::with_sched(|s| {
        let me = s.current();
        (me, s.task(me).map(|t| t.group).unwrap_or(me))
    });
    if me == pid {
        process::exit_group(status)
    }
    task::exit_current(status)
}

/// Checks `[va, va + len)` is user memory mapped with the rights needed.
fn check_user(va: u64, len: u64, write: bool) -> Result<(), Errno> {
    uaccess::check_user_range(va, len)?;
    process::with_group(|g| uaccess::check_mapped(g.space.page_table(), va, len, write))
}

fn copy_from_user(va: u64, buf: &mut [u8]) -> Result<(), Errno> {
    process::with_group(|g| uaccess::copy_from_user(g.space.page_table(), &DIRECT_MAP, va, buf))
}

fn copy_to_user(va: u64, data: &[u8]) -> Result<(), Errno> {
    process::with_group(|g| uaccess::copy_to_user(g.space.page_table(), &DIRECT_MAP, va, data))
}

fn file(fd: u64) -> Result<File, Errno> {
    let fd = u32::try_from(fd).map_err(|_| Errno::EBADF)?;
    process::with_group(|g| g.fds.get(&fd).copied().ok_or(Errno::EBADF))
}

fn sys_write(fd: u64, buf: u64, len: u64) -> SysResult {
    let len = (len as usize).min(MAX_IO);
    check_user(buf, len as u64, false)?;
    let target = file(fd)?;
    let mut data = vec![0u8; len];
    copy_from_user(buf, &mut data)?;
    match target {
        File::Console => {
            use core::fmt::Write;
            let text = alloc::string::String::from_utf8_lossy(&data);
            let _ = arch::serial::Serial.write_str(&text);
            Ok(len as u64)
        }
        File::PipeWrite(id) => pipe_write(id, &data),
        File::PipeRead(_) => Err(Errno::EBADF),
    }
}

/// What one attempt at a pipe operation came to.
enum Attempt {
    /// Finished; wake the tasks waiting on the queue, if one is given (a
    /// read made room for writers, a write brought data for readers).
    Done(SysResult, Option<QueueId>),
    /// Could not proceed: block on this queue, then try again.
    Block(QueueId),
}

/// Runs `attempt` on pipe `id` until it finishes, blocking in between.
/// The attempt and the decision to block happen with interrupts off, so a
/// wake-up cannot slip in between; a pending kill ends the wait with EINTR.
fn pipe_op(id: u32, mut attempt: impl FnMut(&mut PipeObj) -> Attempt) -> SysResult {
    loop {
        if task::kill_pending().is_some() {
            return Err(Errno::EINTR);
        }
        let outcome = arch::cpu::without_interrupts(|| {
            let mut pipes = PIPES.lock();
            let Some(obj) = pipes.get_mut(&id) else {
                return Some(Err(Errno::EBADF));
            };
            let step = attempt(obj);
            drop(pipes);
            match step {
                Attempt::Done(result, wake) => {
                    if let Some(q) = wake {
                        task::wake_all(q);
                    }
                    Some(result)
                }
                Attempt::Block(q) => task::block_on(q, None).err().map(|_| Err(Errno::EINTR)),
            }
        });
        if let Some(result) = outcome {
            return result;
        }
    }
}

fn pipe_write(id: u32, data: &[u8]) -> SysResult {
    pipe_op(id, |obj| match obj.pipe.write(data) {
        WriteResult::Wrote(n) => Attempt::Done(Ok(n as u64), Some(obj.readable)),
        WriteResult::Broken => Attempt::Done(Err(Errno::EPIPE), None),
        WriteResult::Full => Attempt::Block(obj.writable),
    })
}

fn sys_read(fd: u64, buf: u64, len: u64) -> SysResult {
    let len = (len as usize).min(MAX_IO);
    check_user(buf, len as u64, true)?;
    let id = match file(fd)? {
        File::PipeRead(id) => id,
        // Console input belongs to the console shell for now.
        File::Console | File::PipeWrite(_) => return Err(Errno::EBADF),
    };
    let mut data = vec![0u8; len];
    let n = pipe_op(id, |obj| match obj.pipe.read(&mut data) {
        ReadResult::Data(n) => Attempt::Done(Ok(n as u64), Some(obj.writable)),
        ReadResult::Eof => Attempt::Done(Ok(0), None),
        ReadResult::Empty => Attempt::Block(obj.readable),
    })?;
    copy_to_user(buf, &data[..n as usize])?;
    Ok(n)
}

fn sys_pipe(fds_ptr: u64) -> SysResult {
    check_user(fds_ptr, 8, true)?;
    let (r, w) = process::new_pipe()?;
    let mut bytes = [0u8; 8];
    bytes[..4].copy_from_slice(&r.to_le_bytes());
    bytes[4..].copy_from_slice(&w.to_le_bytes());
    if let Err(e) = copy_to_user(fds_ptr, &bytes) {
        let _ = sys_close(r as u64);
        let _ = sys_close(w as u64);
        return Err(e);
    }
    Ok(0)
}

fn sys_close(fd: u64) -> SysResult {
    let fd = u32::try_from(fd).map_err(|_| Errno::EBADF)?;
    let file = process::with_group(|g| g.fds.remove(&fd).ok_or(Errno::EBADF))?;
    process::release(file);
    Ok(0)
}

fn sys_spawn_thread(entry: u64, stack_top: u64, arg: u64) -> SysResult {
    uaccess::check_user_range(entry, 1)?;
    // The stack top itself must be a user address: rsp = USER_END would be
    // non-canonical in ring 3.
    if stack_top >= abi::USER_END {
        return Err(Errno::EFAULT);
    }
    uaccess::check_user_range(stack_top.saturating_sub(16), 16)?;
    if !stack_top.is_multiple_of(16) {
        return Err(Errno::EINVAL);
    }
    let (pid, name) = task::with_sched(|s| {
        let me = s.current();
        let t = s.task(me);
        (
            t.map(|t| t.group).unwrap_or(me),
            t.map(|t| t.name).unwrap_or_default(),
        )
    });
    let root = task::current_root().ok_or(Errno::EPERM)?;
    // Each thread holds a kernel stack until it is waited for; a bound per
    // group keeps one program from taking every task slot and frame.
    let threads = task::with_sched(|s| s.tasks().filter(|t| t.group == pid).count());
    if threads >= MAX_THREADS_PER_GROUP {
        return Err(Errno::EAGAIN);
    }
    let start = Start::User {
        rip: entry,
        rsp: stack_top,
        arg0: arg,
        arg1: 0,
    };
    let tid = task::spawn(&name, Some(pid), Priority::NORMAL, start, Some(root))
        .map_err(|_| Errno::EAGAIN)?;
    Ok(tid as u64)
}

fn sys_wait(tid: u64, status_ptr: u64) -> SysResult {
    let tid = u32::try_from(tid).map_err(|_| Errno::ESRCH)?;
    if status_ptr != 0 {
        check_user(status_ptr, 8, true)?;
    }
    loop {
        let result = arch::cpu::without_interrupts(|| {
            let r = task::with_sched(|s| s.wait_for(tid));
            match r {
                Ok(WaitResult::Blocked(sw)) => {
                    if let Some(sw) = sw {
                        task::switch(sw);
                    }
                    Ok(None)
                }
                Ok(WaitResult::Exited(status, ())) => {
                    // In the same interrupts-off section as the reap, so the
                    // tid cannot be reused before its context is gone.
                    task::drop_ctx(tid);
                    Ok(Some(status))
                }
                Err(e) => Err(e),
            }
        });
        match result {
            Ok(None) => continue,
            Ok(Some(status)) => {
                if status_ptr != 0 {
                    copy_to_user(status_ptr, &status.to_le_bytes())?;
                }
                return Ok(tid as u64);
            }
            Err(kernel::task::sched::SchedError::NoSuchTask) => return Err(Errno::ESRCH),
            Err(kernel::task::sched::SchedError::WouldDeadlock) => return Err(Errno::EINVAL),
            Err(kernel::task::sched::SchedError::Interrupted) => return Err(Errno::EINTR),
            Err(_) => return Err(Errno::ECHILD),
        }
    }
}

/// Before any return to ring 3: a task asked to die (its group killed, or
/// its main thread exited) ends here, after its system call has unwound
/// and released everything it held.
pub fn return_to_user(_frame: &mut TrapFrame) {
    if let Some(status) = task::kill_pending() {
        exit_self(status)
    }
}

/// A fault in user mode ends the task's whole group with status
/// 128 + vector, after a one-line report; the kernel and the other tasks
/// go on.
pub fn user_fault(frame: &mut TrapFrame) {
    report_user_fault(frame);
    process::exit_group(abi::killed_status(frame.vector))
}

// Separate so that everything it allocates is dropped before exit_group,
// which never returns.
fn report_user_fault(frame: &TrapFrame) {
    let tid = task::current();
    let name = task::with_sched(|s| s.task(tid).map(|t| t.name).unwrap_or_default());
    let addr = if frame.vector == 14 {
        arch::paging::fault_address()
    } else {
        0
    };
    arch::println!(
        "task {tid} ({name}) killed: {} vector={} error={:#x} rip={:#x} addr={addr:#x}",
        arch::trap::exception_name(frame.vector),
        frame.vector,
        frame.error,
        frame.rip
    );
}
