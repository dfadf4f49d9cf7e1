//! A pipe's ring buffer and the counts of its open ends.
//!
//! This is only the data structure: it never blocks. When a read finds the
//! pipe empty but a writer still open, or a write finds it full, it says so
//! ([`ReadResult::Empty`], [`WriteResult::Full`]) and the caller, which owns
//! the pipe's wait queues, blocks the task and retries when woken. Keeping
//! the blocking out makes the pipe testable on the host and leaves one
//! place, the system-call code, that decides who sleeps on what.
//!
//! The bytes live in one physical frame of [`PIPE_CAPACITY`] bytes, reached
//! through [`PhysMem`]: the caller allocates it from the frame allocator
//! when it creates the pipe (so running out of memory is an error code,
//! never a failed heap allocation) and frees it with the pipe. Reads take
//! from `head`, writes append at `head + len` (mod capacity), so neither
//! ever moves data.
//!
//! A read is two steps, [`Pipe::peek`] then [`Pipe::consume`]: the caller
//! copies the peeked bytes to the user and consumes only what arrived, so
//! a failed copy (a buffer unmapped meanwhile) loses nothing.
//!
//! End counts follow the file descriptors: a pipe starts with one reader
//! and one writer, `add_*` is called when a descriptor is duplicated (or
//! inherited), `close_*` when one is closed. With no writers left a reader
//! sees end of file once the buffer is drained; with no readers left a
//! write fails (EPIPE), since nobody could ever read the data.

use crate::mm::phys::PhysMem;
use crate::mm::{PAGE_SIZE, Pfn};

/// Bytes a pipe holds before writers have to wait: one frame.
pub const PIPE_CAPACITY: usize = PAGE_SIZE as usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadResult {
    /// This many bytes were copied out (0 only for an empty request).
    Data(usize),
    /// Nothing buffered, but a writer may still write: the caller blocks.
    Empty,
    /// Nothing buffered and no writer left: end of file.
    Eof,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteResult {
    /// This many bytes were taken; fewer than asked when the buffer filled.
    Wrote(usize),
    /// No room at all: the caller blocks.
    Full,
    /// No reader left: the caller fails with EPIPE.
    Broken,
}

pub struct Pipe {
    /// The frame holding the bytes.
    frame: Pfn,
    /// Index of the oldest buffered byte.
    head: usize,
    /// Bytes buffered.
    len: usize,
    readers: u32,
    writers: u32,
}

impl Pipe {
    /// An empty pipe with one reader and one writer, buffered in `frame`
    /// (which the pipe does not free: see [`Pipe::frame`]).
    pub fn new(frame: Pfn) -> Self {
        Pipe {
            frame,
            head: 0,
            len: 0,
            readers: 1,
            writers: 1,
        }
    }

    /// The buffer's frame, for the owner to free once the pipe is closed.
    pub fn frame(&self) -> Pfn {
        self.frame
    }

    /// Copies up to `out.len()` of the oldest bytes into `out`, leaving
    /// them buffered; [`Pipe::consume`] then drops what was delivered.
    pub fn peek(&self, mem: &impl PhysMem, out: &mut [u8]) -> ReadResult {
        if out.is_empty() {
            return ReadResult::Data(0);
        }
        if self.len == 0 {
            return if self.writers > 0 {
                ReadResult::Empty
            } else {
                ReadResult::Eof
            };
        }
        let n = out.len().min(self.len);
        // The bytes may wrap: first the run up to the buffer's end, then
        // the rest from its start.
        let first = n.min(PIPE_CAPACITY - self.head);
        let base = self.frame.addr();
        mem.read_bytes(base + self.head as u64, &mut out[..first]);
        mem.read_bytes(base, &mut out[first..n]);
        ReadResult::Data(n)
    }

    /// Drops the `n` oldest bytes (at most what is buffered).
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        self.head = (self.head + n) % PIPE_CAPACITY;
        self.len -= n;
    }

    /// Peeks and consumes in one step, for callers whose copy cannot fail.
    pub fn read(&mut self, mem: &impl PhysMem, out: &mut [u8]) -> ReadResult {
        let result = self.peek(mem, out);
        if let ReadResult::Data(n) = result {
            self.consume(n);
        }
        result
    }

    /// Appends as much of `data` as fits.
    pub fn write(&mut self, mem: &impl PhysMem, data: &[u8]) -> WriteResult {
        if data.is_empty() {
            return WriteResult::Wrote(0);
        }
        if self.readers == 0 {
            return WriteResult::Broken;
        }
        let n = self.room().min(data.len());
        if n == 0 {
            return WriteResult::Full;
        }
        let tail = (self.head + self.len) % PIPE_CAPACITY;
        let first = n.min(PIPE_CAPACITY - tail);
        let base = self.frame.addr();
        mem.write_bytes(base + tail as u64, &data[..first]);
        mem.write_bytes(base, &data[first..n]);
        self.len += n;
        WriteResult::Wrote(n)
    }

    /// Bytes a write could add now.
    pub fn room(&self) -> usize {
        PIPE_CAPACITY - self.len
    }

    // Counts saturate rather than wrap or panic: an unbalanced close is the
    // caller's bug, but must not bring the kernel down.

    pub fn add_reader(&mut self) {
        self.readers = self.readers.saturating_add(1);
    }

    pub fn add_writer(&mut self) {
        self.writers = self.writers.saturating_add(1);
    }

    pub fn close_reader(&mut self) {
        self.readers = self.readers.saturating_sub(1);
    }

    pub fn close_writer(&mut self) {
        self.writers = self.writers.saturating_sub(1);
    }

    pub fn readers(&self) -> u32 {
        self.readers
    }

    pub fn writers(&self) -> u32 {
        self.writers
    }

    /// Bytes buffered.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// No end is open any more: the pipe can be freed.
    pub fn is_closed(&self) -> bool {
        self.readers == 0 && self.writers == 0
    }
}

#[cfg(test)]
mod tests;
