//! The table of pipes, and the descriptor-level operations on them:
//! creating a pair of descriptors, duplicating and closing an end, their
//! flags and sizes, and reading and writing with Linux's blocking rules.
//!
//! Bytes move between user memory and the pipe's frames through a small
//! buffer on the kernel stack, so no transfer allocates. A read copies to
//! the user before it consumes (peek, copy, consume): a copy that fails
//! leaves the bytes in the pipe for the next reader.
//!
//! # Steps
//!
//! A transfer holds the process and pipe locks, with interrupts off, while
//! it copies, so it moves at most [`STEP`] bytes per locked section and
//! lets the timer in between: a megabyte write does not stop the clock
//! for the time a megabyte copy takes. A step is `PIPE_BUF` bytes, so a
//! transfer of up to `PIPE_BUF` bytes is one section and never interleaves
//! with another on the same pipe: the atomicity POSIX promises writers,
//! and for reads what Linux's pipe mutex gives (longer reads may
//! interleave with another reader's; docs/abi.md).

use alloc::vec::Vec;
use core::cell::Cell;

use abi::{Errno, o};

use super::fd::PipeId;
use super::syscall::Source;
use super::{File, Machine, System};
use crate::mm::PAGE_SIZE;
use crate::sync::IrqOff;
use crate::task::pipe::{Pipe, ReadResult, ResizeError};
use crate::task::sched::QueueId;
use crate::task::uaccess::{self, Faulting};

/// Bytes moved per copy between user memory and a pipe.
const CHUNK: usize = 256;
/// Bytes moved per locked section (see "Steps").
const STEP: usize = abi::pipe::PIPE_BUF;

pub struct PipeObj {
    pub pipe: Pipe,
    /// Readers wait here for data or end of file.
    pub readable: QueueId,
    /// Writers wait here for room.
    pub writable: QueueId,
    /// Each end's one open file description: its status flags
    /// (`O_NONBLOCK`, ...; fd.rs says why they live here).
    read_flags: u32,
    write_flags: u32,
    /// `fstat`'s `st_ino`, and its times (nanoseconds since boot).
    ino: u64,
    created_ns: u64,
}

/// Pipes by slot; a freed slot is reused under a new generation.
pub struct PipeTable {
    slots: Vec<(u32, Option<PipeObj>)>,
    /// The next pipe's inode number.
    next_ino: u64,
}

impl PipeTable {
    pub const fn new() -> PipeTable {
        PipeTable {
            slots: Vec::new(),
            next_ino: 1,
        }
    }

    fn insert(&mut self, mut obj: PipeObj) -> Result<PipeId, PipeObj> {
        obj.ino = self.next_ino;
        if let Some(slot) = self.slots.iter().position(|(_, p)| p.is_none()) {
            self.next_ino += 1;
            let (generation, entry) = &mut self.slots[slot];
            *generation = generation.wrapping_add(1);
            *entry = Some(obj);
            return Ok(PipeId {
                slot: slot as u32,
                generation: *generation,
            });
        }
        if self.slots.try_reserve(1).is_err() {
            return Err(obj);
        }
        self.next_ino += 1;
        self.slots.push((0, Some(obj)));
        Ok(PipeId {
            slot: self.slots.len() as u32 - 1,
            generation: 0,
        })
    }

    fn get_mut(&mut self, id: PipeId) -> Option<&mut PipeObj> {
        match self.slots.get_mut(id.slot as usize)? {
            (generation, Some(obj)) if *generation == id.generation => Some(obj),
            _ => None,
        }
    }

    fn remove(&mut self, id: PipeId) -> Option<PipeObj> {
        self.get_mut(id)?;
        self.slots.get_mut(id.slot as usize)?.1.take()
    }

    /// Pipes that exist (for leak checks).
    pub fn count(&self) -> usize {
        self.slots.iter().filter(|(_, p)| p.is_some()).count()
    }
}

/// A transfer that a kill, or the pipe's freeing between two steps (every
/// descriptor of both ends closed by other threads), ends after `done`
/// bytes returns their count, as any end after some bytes does.
fn partial_end(result: Result<u64, Errno>, done: usize) -> Result<u64, Errno> {
    match result {
        Err(Errno::EINTR | Errno::ERESTARTSYS | Errno::EBADF) if done > 0 => Ok(done as u64),
        _ => result,
    }
}

/// What one attempt at a pipe transfer came to.
enum Attempt {
    /// Finished; wake this queue (the other side) once the locks are gone.
    Done(Result<u64, Errno>, Option<QueueId>),
    /// A step is done and more may follow at once: wake this queue, let
    /// interrupts in, and attempt again.
    Again(QueueId),
    /// Could not proceed: block on this queue, then try again.
    Block(QueueId),
}

impl<M: Machine> System<M> {
    /// Pipes that exist (for leak checks).
    pub fn pipe_count(&self) -> usize {
        self.pipes.lock().count()
    }

    /// Creates a pipe in the current process and stores its (read fd,
    /// write fd) as two `int`s at `fds_ptr`, which it returns. `flags` are
    /// `pipe2`'s, already checked: `O_NONBLOCK` goes to both ends'
    /// descriptions, `O_CLOEXEC` to both descriptors.
    pub(super) fn new_pipe(&self, flags: u32, fds_ptr: u64) -> Result<(u32, u32), Errno> {
        let (mem, frames) = (self.m.mem(), self.m.frames());
        let pages = abi::pipe::DEFAULT_SIZE / PAGE_SIZE as usize;
        let pipe = Pipe::new(mem, pages, frames).ok_or(Errno::ENOMEM)?;
        let queues = {
            let mut s = self.sched();
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
        let (readable, writable) = match queues {
            Ok(q) => q,
            Err(e) => {
                pipe.free(mem, frames);
                return Err(e);
            }
        };
        let status = flags & o::NONBLOCK;
        let obj = PipeObj {
            pipe,
            readable,
            writable,
            read_flags: status,
            write_flags: status,
            ino: 0,
            created_ns: self.m.now_ns(),
        };
        self.install_pipe(obj, flags & o::CLOEXEC != 0, fds_ptr)
    }

    /// Puts `obj` in the table and two descriptors for it in the current
    /// process, and stores their numbers at `fds_ptr`: all or nothing, in
    /// one locked section, so a store that fails (EFAULT, judged after
    /// EMFILE as on Linux) takes the descriptors back before any other
    /// thread could use or replace them.
    fn install_pipe(&self, obj: PipeObj, cloexec: bool, fds_ptr: u64) -> Result<(u32, u32), Errno> {
        let pid = self.current_pid();
        let _off = IrqOff::new();
        let mut procs = self.procs.lock();
        let mut pipes = self.pipes.lock();
        let undo = |obj: PipeObj| {
            let mut s = self.sched();
            s.free_queue(obj.readable);
            s.free_queue(obj.writable);
            drop(s);
            obj.pipe.free(self.m.mem(), self.m.frames());
        };
        let Some(p) = procs.iter_mut().find(|p| p.pid == pid) else {
            undo(obj);
            return Err(Errno::ESRCH);
        };
        let id = pipes.insert(obj).map_err(|obj| {
            undo(obj);
            Errno::ENOMEM
        })?;
        let fds = match p.fds.open_from(0, File::PipeRead(id), cloexec) {
            Some(r) => match p.fds.open_from(0, File::PipeWrite(id), cloexec) {
                Some(w) => Ok((r, w)),
                None => {
                    p.fds.close(r.into());
                    Err(Errno::EMFILE)
                }
            },
            None => Err(Errno::EMFILE),
        };
        let fds = fds.and_then(|(r, w)| {
            let mut bytes = [0u8; 8];
            bytes[..4].copy_from_slice(&r.to_le_bytes());
            bytes[4..].copy_from_slice(&w.to_le_bytes());
            let mut user = Faulting {
                space: &mut p.space,
                alloc: self.alloc(),
            };
            let stored = uaccess::copy_to_user(&mut user, fds_ptr, &bytes);
            if stored.is_err() {
                p.fds.close(r.into());
                p.fds.close(w.into());
            }
            stored.map(|()| (r, w))
        });
        if fds.is_err()
            && let Some(obj) = pipes.remove(id)
        {
            undo(obj);
        }
        fds
    }

    /// A new descriptor for `file` is about to be made: its end gains a
    /// reference. False when the pipe is gone. The caller holds the
    /// process lock (the lock order allows the pipes' under it).
    pub(super) fn add_reference(&self, file: File) -> bool {
        let (id, reader) = match file {
            File::Console => return true,
            File::PipeRead(id) => (id, true),
            File::PipeWrite(id) => (id, false),
        };
        let _off = IrqOff::new();
        let mut pipes = self.pipes.lock();
        let Some(obj) = pipes.get_mut(id) else {
            return false;
        };
        if reader {
            obj.pipe.add_reader();
        } else {
            obj.pipe.add_writer();
        }
        true
    }

    /// Drops one reference to a file; a pipe end's last closing wakes the
    /// other side, and the pipe's last frees it.
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
                let mut s = self.sched();
                s.free_queue(obj.readable);
                s.free_queue(obj.writable);
                drop(s);
                obj.pipe.free(self.m.mem(), self.m.frames());
            }
            None => {
                self.wake_all(queues.0);
                self.wake_all(queues.1);
            }
        }
    }

    /// Runs `f` on pipe `id`; EBADF when it is gone (closed by another
    /// thread after the caller looked its descriptor up).
    fn with_pipe<R>(&self, id: PipeId, f: impl FnOnce(&mut PipeObj) -> R) -> Result<R, Errno> {
        let _off = IrqOff::new();
        let mut pipes = self.pipes.lock();
        pipes.get_mut(id).map(f).ok_or(Errno::EBADF)
    }

    /// An end's status flags.
    pub(super) fn pipe_flags(&self, id: PipeId, reader: bool) -> Result<u32, Errno> {
        self.with_pipe(id, |obj| {
            if reader {
                obj.read_flags
            } else {
                obj.write_flags
            }
        })
    }

    /// Sets an end's status flags (already masked to the settable ones).
    /// A task blocked on the end keeps waiting: Linux too decides on
    /// `O_NONBLOCK` only when a call starts or wakes.
    pub(super) fn set_pipe_flags(&self, id: PipeId, reader: bool, flags: u32) -> Result<(), Errno> {
        self.with_pipe(id, |obj| {
            if reader {
                obj.read_flags = flags;
            } else {
                obj.write_flags = flags;
            }
        })
    }

    /// Changes an end's status flags in one step (`FIONBIO`'s
    /// read-modify-write must not lose a concurrent `F_SETFL`).
    pub(super) fn update_pipe_flags(
        &self,
        id: PipeId,
        reader: bool,
        f: impl FnOnce(u32) -> u32,
    ) -> Result<(), Errno> {
        self.with_pipe(id, |obj| {
            let flags = if reader {
                &mut obj.read_flags
            } else {
                &mut obj.write_flags
            };
            *flags = f(*flags);
        })
    }

    pub(super) fn pipe_capacity(&self, id: PipeId) -> Result<usize, Errno> {
        self.with_pipe(id, |obj| obj.pipe.capacity())
    }

    /// Bytes buffered (`FIONREAD`).
    pub(super) fn pipe_buffered(&self, id: PipeId) -> Result<usize, Errno> {
        self.with_pipe(id, |obj| obj.pipe.len())
    }

    /// (`st_ino`, creation time in ns) for `fstat`.
    pub(super) fn pipe_identity(&self, id: PipeId) -> Result<(u64, u64), Errno> {
        self.with_pipe(id, |obj| (obj.ino, obj.created_ns))
    }

    /// `F_SETPIPE_SZ` to `size` bytes (a power of two of pages, checked):
    /// EBUSY when more is buffered than fits, ENOMEM when frames run out.
    /// The frames are taken under the pipe lock, which the lock order
    /// allows (docs/locking.md), so the bytes cannot change meanwhile.
    pub(super) fn resize_pipe(&self, id: PipeId, size: usize) -> Result<(), Errno> {
        let (mem, frames) = (self.m.mem(), self.m.frames());
        let pages = size / PAGE_SIZE as usize;
        let writable = self.with_pipe(id, |obj| {
            obj.pipe
                .resize(mem, pages, frames)
                .map(|()| obj.writable)
                .map_err(|e| match e {
                    ResizeError::Busy => Errno::EBUSY,
                    ResizeError::NoMemory => Errno::ENOMEM,
                    ResizeError::BadSize => Errno::EINVAL,
                })
        })??;
        // More room may let a blocked writer on.
        self.wake_all(writable);
        Ok(())
    }

    /// Runs `attempt` on pipe `id` with the current process's memory until
    /// it finishes, blocking or stepping in between. The attempt and the
    /// decision to block happen under the pipe lock, so a wake-up cannot
    /// slip in between; a pending kill ends the wait with EINTR.
    fn pipe_op(
        &self,
        id: PipeId,
        mut attempt: impl FnMut(&mut PipeObj, &mut super::Process<M>) -> Attempt,
    ) -> Result<u64, Errno> {
        let pid = self.current_pid();
        loop {
            if self.kill_pending().is_some() {
                return Err(Errno::EINTR);
            }
            // A signal to take: Linux's pipe calls restart when its
            // handler says SA_RESTART.
            if self.signal_interrupts() {
                return Err(Errno::ERESTARTSYS);
            }
            let _off = IrqOff::new();
            let (oom, next) = {
                let mut procs = self.procs.lock();
                let mut pipes = self.pipes.lock();
                let p = procs
                    .iter_mut()
                    .find(|p| p.pid == pid)
                    .ok_or(Errno::ESRCH)?;
                let obj = pipes.get_mut(id).ok_or(Errno::EBADF)?;
                let attempted = attempt(obj, p);
                let oom = p.space.take_oom().then(|| p.space.rss());
                let next = match attempted {
                    Attempt::Done(result, wake) => Err((result, wake)),
                    Attempt::Again(wake) => Ok(Ok(wake)),
                    Attempt::Block(q) => {
                        let mut s = self.sched();
                        let sw = s.block_current(q, None);
                        Ok(Err(sw.map(|sw| s.plan(sw))))
                    }
                };
                (oom, next)
            };
            // The locks are released: now the wake-ups and the switch.
            if let Some(rss) = oom {
                self.oom_kill(pid, rss);
            }
            match next {
                Err((result, wake)) => {
                    if let Some(q) = wake {
                        self.wake_all(q);
                    }
                    return result;
                }
                // Interrupts come in when `_off` ends, before the next step.
                Ok(Ok(wake)) => self.wake_all(wake),
                Ok(Err(Ok(sw))) => self.switch_if(sw),
                Ok(Err(Err(_))) => return Err(Errno::EINTR),
            }
        }
    }

    /// Writes `src` (at most MAX_RW_COUNT bytes, checked readable) to pipe
    /// `id` with Linux's rules: up to PIPE_BUF bytes go in at once or wait
    /// until they can; more go in as room appears until all are written;
    /// `O_NONBLOCK` returns what fit, or EAGAIN when nothing (or, up to
    /// PIPE_BUF, not all) fits. Once some bytes are in, an end (no reader,
    /// a fault, a kill) returns their count rather than an error.
    pub(super) fn pipe_write(&self, id: PipeId, mut src: Source) -> Result<u64, Errno> {
        let (mem, alloc) = (self.m.mem(), self.alloc());
        let n = src.len() as usize;
        let done = Cell::new(0usize);
        let broken = Cell::new(false);
        let result = self.pipe_op(id, |obj, p| {
            let sofar = done.get();
            if n == 0 {
                return Attempt::Done(Ok(0), None);
            }
            let partial = |e| match sofar {
                0 => Err(e),
                k => Ok(k as u64),
            };
            if obj.pipe.readers() == 0 {
                broken.set(true);
                return Attempt::Done(partial(Errno::EPIPE), None);
            }
            let room = obj.pipe.room();
            // Atomic: all of a small write or none of it.
            let need = if n <= abi::pipe::PIPE_BUF { n } else { 1 };
            if room < need {
                if obj.write_flags & o::NONBLOCK != 0 {
                    return Attempt::Done(partial(Errno::EAGAIN), None);
                }
                return Attempt::Block(obj.writable);
            }
            let step = room.min(n - sofar).min(STEP);
            let mut user = Faulting {
                space: &mut p.space,
                alloc,
            };
            let mut chunk = [0u8; CHUNK];
            let mut moved = 0;
            let mut faulted = false;
            while moved < step {
                let k = (step - moved).min(CHUNK);
                if src.fill(&mut user, &mut chunk[..k]).is_err() {
                    faulted = true;
                    break;
                }
                // Room was checked: the pipe takes all k.
                obj.pipe.write(mem, &chunk[..k]);
                moved += k;
            }
            done.set(sofar + moved);
            let wake = (moved > 0).then_some(obj.readable);
            match done.get() {
                // Linux's rule: a fault after some bytes returns the count.
                0 if faulted => Attempt::Done(Err(Errno::EFAULT), None),
                k if faulted || k == n => Attempt::Done(Ok(k as u64), wake),
                _ => Attempt::Again(obj.readable),
            }
        });
        if broken.get() {
            // Linux sends SIGPIPE to the writer's process whenever a write
            // finds no reader, even after some bytes went in: it ends the
            // program unless caught, ignored or blocked.
            let pid = self.current_pid();
            let info = super::signal::Info {
                code: abi::sig::SI_USER,
                word: pid.into(),
            };
            let _ = self.send_signal(super::signal::Target::Process(pid), abi::sig::SIGPIPE, info);
        }
        partial_end(result, done.get())
    }

    /// Reads up to `len` bytes (checked writable at `buf`) from pipe `id`:
    /// blocks while it is empty and has a writer (EAGAIN with
    /// `O_NONBLOCK`), then takes what is there, never waiting for more.
    pub(super) fn pipe_read(&self, id: PipeId, buf: u64, len: usize) -> Result<u64, Errno> {
        let (mem, alloc) = (self.m.mem(), self.alloc());
        let done = Cell::new(0usize);
        let result = self.pipe_op(id, |obj, p| {
            let sofar = done.get();
            if len == 0 {
                return Attempt::Done(Ok(0), None);
            }
            if obj.pipe.is_empty() {
                return if sofar > 0 {
                    Attempt::Done(Ok(sofar as u64), None)
                } else if obj.pipe.writers() == 0 {
                    Attempt::Done(Ok(0), None)
                } else if obj.read_flags & o::NONBLOCK != 0 {
                    Attempt::Done(Err(Errno::EAGAIN), None)
                } else {
                    Attempt::Block(obj.readable)
                };
            }
            let step = obj.pipe.len().min(len - sofar).min(STEP);
            let mut user = Faulting {
                space: &mut p.space,
                alloc,
            };
            let mut chunk = [0u8; CHUNK];
            let mut moved = 0;
            let mut faulted = false;
            while moved < step {
                let k = (step - moved).min(CHUNK);
                let ReadResult::Data(got) = obj.pipe.peek(mem, &mut chunk[..k]) else {
                    break;
                };
                let at = buf + (sofar + moved) as u64;
                if uaccess::copy_to_user(&mut user, at, &chunk[..got]).is_err() {
                    // Nothing consumed of this chunk: the bytes stay for
                    // the next read.
                    faulted = true;
                    break;
                }
                obj.pipe.consume(got);
                moved += got;
            }
            done.set(sofar + moved);
            let wake = (moved > 0).then_some(obj.writable);
            match done.get() {
                0 if faulted => Attempt::Done(Err(Errno::EFAULT), None),
                k if faulted || k == len => Attempt::Done(Ok(k as u64), wake),
                _ => Attempt::Again(obj.writable),
            }
        });
        partial_end(result, done.get())
    }
}
