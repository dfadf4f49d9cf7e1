//! The table of pipes, and the descriptor-level operations on them: creating
//! a pair of descriptors, closing one end, and reading and writing with
//! blocking.
//!
//! Bytes move between user memory and the pipe's frame through a small
//! buffer on the kernel stack, so no transfer allocates. A read copies to
//! the user before it consumes (peek, copy, consume): a copy that fails
//! leaves the bytes in the pipe for the next reader.

use alloc::vec::Vec;

use abi::Errno;

use super::{File, Machine, System};
use crate::sync::IrqOff;
use crate::task::pipe::{Pipe, ReadResult, WriteResult};
use crate::task::sched::QueueId;
use crate::task::uaccess;

/// Bytes moved per step between user memory and a pipe.
const CHUNK: usize = 256;

pub struct PipeObj {
    pub pipe: Pipe,
    /// Readers wait here for data or end of file.
    pub readable: QueueId,
    /// Writers wait here for room.
    pub writable: QueueId,
}

/// Pipes by id (the index); freed slots are reused.
pub struct PipeTable {
    slots: Vec<Option<PipeObj>>,
}

impl PipeTable {
    pub const fn new() -> PipeTable {
        PipeTable { slots: Vec::new() }
    }

    fn insert(&mut self, obj: PipeObj) -> Result<u32, PipeObj> {
        if let Some(id) = self.slots.iter().position(Option::is_none) {
            self.slots[id] = Some(obj);
            return Ok(id as u32);
        }
        if self.slots.try_reserve(1).is_err() {
            return Err(obj);
        }
        self.slots.push(Some(obj));
        Ok(self.slots.len() as u32 - 1)
    }

    fn get_mut(&mut self, id: u32) -> Option<&mut PipeObj> {
        self.slots.get_mut(id as usize)?.as_mut()
    }

    fn remove(&mut self, id: u32) -> Option<PipeObj> {
        self.slots.get_mut(id as usize)?.take()
    }

    /// Pipes that exist (for leak checks).
    pub fn count(&self) -> usize {
        self.slots.iter().flatten().count()
    }
}

/// What one attempt at a pipe transfer came to.
enum Attempt {
    Done(Result<u64, Errno>),
    /// Could not proceed: block on this queue, then try again.
    Block(QueueId),
}

impl<M: Machine> System<M> {
    /// Pipes that exist (for leak checks).
    pub fn pipe_count(&self) -> usize {
        self.pipes.lock().count()
    }

    /// Creates a pipe in the current process; returns (read fd, write fd).
    pub(super) fn new_pipe(&self) -> Result<(u32, u32), Errno> {
        let frame = self.m.frames().alloc_frame().map_err(|_| Errno::ENOMEM)?;
        let queues = {
            let mut s = self.sched.lock();
            match (s.new_queue(), s.new_queue()) {
                (Ok(r), Ok(w)) => Ok((r, w)),
                (r, w) => {
                    for q in [r, w].into_iter().flatten() {
                        s.free_queue(q);
                    }
                    Err(Errno::ENOMEM)
                }
            }
        };
        let result = queues.and_then(|(readable, writable)| {
            self.install_pipe(PipeObj {
                pipe: Pipe::new(frame),
                readable,
                writable,
            })
        });
        result.inspect_err(|_| {
            let _ = self.m.frames().free(frame, 0);
        })
    }

    /// Puts `obj` in the table and two descriptors for it in the current
    /// process, all or nothing.
    fn install_pipe(&self, obj: PipeObj) -> Result<(u32, u32), Errno> {
        let pid = self.current_pid();
        let mut procs = self.procs.lock();
        let mut pipes = self.pipes.lock();
        let undo = |obj: PipeObj| {
            let mut s = self.sched.lock();
            s.free_queue(obj.readable);
            s.free_queue(obj.writable);
        };
        let Some(p) = procs.iter_mut().find(|p| p.pid == pid) else {
            undo(obj);
            return Err(Errno::ESRCH);
        };
        let id = pipes.insert(obj).map_err(|obj| {
            undo(obj);
            Errno::ENOMEM
        })?;
        let fds = match p.fds.open(File::PipeRead(id)) {
            Some(r) => match p.fds.open(File::PipeWrite(id)) {
                Some(w) => Ok((r, w)),
                None => {
                    p.fds.close(r.into());
                    Err(Errno::EMFILE)
                }
            },
            None => Err(Errno::EMFILE),
        };
        if fds.is_err()
            && let Some(obj) = pipes.remove(id)
        {
            undo(obj);
        }
        fds
    }

    /// Drops one reference to a file; a pipe end's closing wakes the other
    /// side, and the last one frees the pipe.
    pub(super) fn release_file(&self, file: File) {
        let (id, reader) = match file {
            File::Console => return,
            File::PipeRead(id) => (id, true),
            File::PipeWrite(id) => (id, false),
        };
        let _off = IrqOff::new();
        let mut pipes = self.pipes.lock();
        let Some(obj) = pipes.get_mut(id) else {
            return;
        };
        if reader {
            obj.pipe.close_reader();
        } else {
            obj.pipe.close_writer();
        }
        let queues = (obj.readable, obj.writable);
        let freed = if obj.pipe.is_closed() {
            pipes.remove(id)
        } else {
            None
        };
        drop(pipes);
        match freed {
            Some(obj) => {
                let mut s = self.sched.lock();
                s.free_queue(obj.readable);
                s.free_queue(obj.writable);
                drop(s);
                let _ = self.m.frames().free(obj.pipe.frame(), 0);
            }
            None => {
                self.wake_all(queues.0);
                self.wake_all(queues.1);
            }
        }
    }

    /// Runs `attempt` on pipe `id` with the current process's memory until
    /// it finishes, blocking in between. The attempt and the decision to
    /// block happen under the pipe lock, so a wake-up cannot slip in
    /// between; a pending kill ends the wait with EINTR.
    fn pipe_op(
        &self,
        id: u32,
        mut attempt: impl FnMut(&mut PipeObj, &super::Process<M>) -> Attempt,
    ) -> Result<u64, Errno> {
        let pid = self.current_pid();
        loop {
            if self.kill_pending().is_some() {
                return Err(Errno::EINTR);
            }
            let _off = IrqOff::new();
            let blocked = {
                let procs = self.procs.lock();
                let mut pipes = self.pipes.lock();
                let p = procs.iter().find(|p| p.pid == pid).ok_or(Errno::ESRCH)?;
                let obj = pipes.get_mut(id).ok_or(Errno::EBADF)?;
                match attempt(obj, p) {
                    Attempt::Done(result) => return result,
                    Attempt::Block(q) => self.sched.lock().block_current(q, None),
                }
            };
            // The locks are released: now the switch.
            match blocked {
                Ok(sw) => self.switch_if(sw),
                Err(_) => return Err(Errno::EINTR),
            }
        }
    }

    pub(super) fn pipe_write(&self, id: u32, buf: u64, len: usize) -> Result<u64, Errno> {
        let mem = self.m.mem();
        let mut woke = None;
        let result = self.pipe_op(id, |obj, p| {
            if len == 0 {
                return Attempt::Done(Ok(0));
            }
            if obj.pipe.readers() == 0 {
                return Attempt::Done(Err(Errno::EPIPE));
            }
            let n = obj.pipe.room().min(len);
            if n == 0 {
                return Attempt::Block(obj.writable);
            }
            let mut chunk = [0u8; CHUNK];
            let mut done = 0;
            while done < n {
                let k = (n - done).min(CHUNK);
                let pt = p.space.page_table();
                if uaccess::copy_from_user(pt, mem, buf + done as u64, &mut chunk[..k]).is_err() {
                    break;
                }
                match obj.pipe.write(mem, &chunk[..k]) {
                    WriteResult::Wrote(w) => done += w,
                    WriteResult::Full | WriteResult::Broken => break,
                }
            }
            woke = Some(obj.readable);
            // Linux's rule: a fault after some bytes returns the count.
            Attempt::Done(if done == 0 {
                Err(Errno::EFAULT)
            } else {
                Ok(done as u64)
            })
        });
        if let (Ok(_), Some(q)) = (result, woke) {
            self.wake_all(q);
        }
        result
    }

    pub(super) fn pipe_read(&self, id: u32, buf: u64, len: usize) -> Result<u64, Errno> {
        let mem = self.m.mem();
        let mut woke = None;
        let result = self.pipe_op(id, |obj, p| {
            let mut chunk = [0u8; CHUNK];
            let mut done = 0;
            loop {
                let k = (len - done).min(CHUNK);
                match obj.pipe.peek(mem, &mut chunk[..k]) {
                    ReadResult::Data(n) if n > 0 => {
                        let pt = p.space.page_table();
                        if uaccess::copy_to_user(pt, mem, buf + done as u64, &chunk[..n]).is_err() {
                            // Nothing consumed of this chunk: the bytes
                            // stay for the next read.
                            break;
                        }
                        obj.pipe.consume(n);
                        done += n;
                        if done == len {
                            break;
                        }
                    }
                    ReadResult::Data(_) => break,
                    ReadResult::Empty if done == 0 => return Attempt::Block(obj.readable),
                    ReadResult::Empty | ReadResult::Eof => break,
                }
            }
            if done > 0 {
                woke = Some(obj.writable);
                Attempt::Done(Ok(done as u64))
            } else if len == 0 || obj.pipe.writers() == 0 && obj.pipe.is_empty() {
                Attempt::Done(Ok(0))
            } else {
                Attempt::Done(Err(Errno::EFAULT))
            }
        });
        if let (Ok(_), Some(q)) = (result, woke) {
            self.wake_all(q);
        }
        result
    }
}
