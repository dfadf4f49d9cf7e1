//! A pipe's ring buffer and the counts of its open ends.
//!
//! This is only the data structure: it never blocks. When a read finds the
//! pipe empty but a writer still open, or a write finds it full, it says so
//! ([`ReadResult::Empty`], [`WriteResult::Full`]) and the caller, which owns
//! the pipe's wait queues, blocks the task and retries when woken. Keeping
//! the blocking out makes the pipe testable on the host and leaves one
//! place, the system-call code, that decides who sleeps on what.
//!
//! # Frames
//!
//! The bytes live in `pages` physical frames (a power of two, 1 to
//! [`MAX_PAGES`]), reached through [`PhysMem`]. Their numbers are listed,
//! in ring order, in one more frame, the index, so a pipe of any size is a
//! few words of kernel memory and the frames need not be contiguous: a
//! megabyte pipe never waits for the buddy allocator to find a free
//! megabyte. Frames come from a [`Frames`] source (the frame allocator in
//! the kernel), all or nothing, so running out of memory is an error code,
//! never a failed heap allocation. Reads take from `head`, writes append
//! at `head + len` (mod capacity), so neither ever moves data.
//!
//! [`Pipe::resize`] moves frames rather than bytes: the new ring lists the
//! old frames starting with the one holding `head`, so the data keeps its
//! place within its frames, and at most one partial frame is copied (where
//! the data wraps around the old ring, or must wrap around the new one).
//! A resize to a megabyte therefore costs no megabyte copy under a lock
//! held with interrupts off.
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

const PAGE: usize = PAGE_SIZE as usize;
/// The most frames one index frame can list.
pub const MAX_PAGES: usize = PAGE / 8;

/// Where a pipe's frames come from and go back to.
pub trait Frames {
    fn take_frame(&self) -> Option<Pfn>;
    fn give_frame(&self, pfn: Pfn);
}

impl Frames for crate::mm::frame::FrameAllocator<'_> {
    fn take_frame(&self) -> Option<Pfn> {
        self.alloc_frame().ok()
    }

    fn give_frame(&self, pfn: Pfn) {
        // Only frames this pipe took come back here.
        let _ = self.free(pfn, 0);
    }
}

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

/// Why [`Pipe::resize`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeError {
    /// More bytes are buffered than the new size holds.
    Busy,
    /// A frame could not be had; nothing changed.
    NoMemory,
    /// Not a power of two in `1..=MAX_PAGES`.
    BadSize,
}

pub struct Pipe {
    /// The frame listing the data frames, one little-endian frame number
    /// per word, in ring order.
    index: Pfn,
    /// Data frames: a power of two.
    pages: usize,
    /// Ring offset of the oldest buffered byte.
    head: usize,
    /// Bytes buffered.
    len: usize,
    readers: u32,
    writers: u32,
}

impl Pipe {
    /// An empty pipe of `pages` frames with one reader and one writer, or
    /// None when `frames` runs out (what was taken is given back) or
    /// `pages` is not a power of two up to [`MAX_PAGES`].
    pub fn new(mem: &impl PhysMem, pages: usize, frames: &impl Frames) -> Option<Pipe> {
        if !valid_pages(pages) {
            return None;
        }
        let index = frames.take_frame()?;
        for i in 0..pages {
            match frames.take_frame() {
                Some(pfn) => mem.write_u64(slot(index, i), pfn.0),
                None => {
                    for j in 0..i {
                        frames.give_frame(Pfn(mem.read_u64(slot(index, j))));
                    }
                    frames.give_frame(index);
                    return None;
                }
            }
        }
        Some(Pipe {
            index,
            pages,
            head: 0,
            len: 0,
            readers: 1,
            writers: 1,
        })
    }

    /// Gives every frame back; the pipe is gone.
    pub fn free(self, mem: &impl PhysMem, frames: &impl Frames) {
        for i in 0..self.pages {
            frames.give_frame(self.frame(mem, i));
        }
        frames.give_frame(self.index);
    }

    /// Frames the pipe holds, the index included (for leak accounting).
    pub fn frames_held(&self) -> usize {
        self.pages + 1
    }

    /// Bytes the buffer holds when full.
    pub fn capacity(&self) -> usize {
        self.pages * PAGE
    }

    fn frame(&self, mem: &impl PhysMem, page: usize) -> Pfn {
        Pfn(mem.read_u64(slot(self.index, page)))
    }

    /// Calls `f(pa, at, n)` for the pieces of ring bytes `[pos, pos + n)`
    /// (mod capacity), split where a frame ends.
    fn pieces(
        &self,
        mem: &impl PhysMem,
        pos: usize,
        n: usize,
        mut f: impl FnMut(u64, usize, usize),
    ) {
        let mut at = 0;
        let mut pos = pos % self.capacity();
        while at < n {
            let off = pos % PAGE;
            let k = (PAGE - off).min(n - at);
            f(self.frame(mem, pos / PAGE).addr() + off as u64, at, k);
            at += k;
            pos = (pos + k) % self.capacity();
        }
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
        self.pieces(mem, self.head, n, |pa, at, k| {
            mem.read_bytes(pa, &mut out[at..at + k]);
        });
        ReadResult::Data(n)
    }

    /// Drops the `n` oldest bytes (at most what is buffered).
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        self.head = (self.head + n) % self.capacity();
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
        self.pieces(mem, self.head + self.len, n, |pa, at, k| {
            mem.write_bytes(pa, &data[at..at + k]);
        });
        self.len += n;
        WriteResult::Wrote(n)
    }

    /// Bytes a write could add now.
    pub fn room(&self) -> usize {
        self.capacity() - self.len
    }

    /// Changes the buffer to `pages` frames, keeping every buffered byte.
    /// All or nothing: on an error the pipe is as it was.
    pub fn resize(
        &mut self,
        mem: &impl PhysMem,
        pages: usize,
        frames: &impl Frames,
    ) -> Result<(), ResizeError> {
        if !valid_pages(pages) {
            return Err(ResizeError::BadSize);
        }
        if self.len > pages * PAGE {
            return Err(ResizeError::Busy);
        }
        if pages == self.pages {
            return Ok(());
        }
        let old = self.pages;
        if self.len == 0 {
            // Nothing to keep in place: start the ring afresh.
            self.head = 0;
        }
        // The old frames in the order the new ring lists them: the one
        // holding `head` first, so every byte keeps its offset in its frame.
        let first = self.head / PAGE;
        let rotated = |i: usize| self.frame(mem, (first + i) % old);
        let h = self.head % PAGE;
        // Frame positions (of the rotated list) the data touches.
        let span = (h + self.len).div_ceil(PAGE);

        let index = frames.take_frame().ok_or(ResizeError::NoMemory)?;
        for i in old..pages {
            match frames.take_frame() {
                Some(pfn) => mem.write_u64(slot(index, i), pfn.0),
                None => {
                    for j in old..i {
                        frames.give_frame(Pfn(mem.read_u64(slot(index, j))));
                    }
                    frames.give_frame(index);
                    return Err(ResizeError::NoMemory);
                }
            }
        }
        for i in 0..old.min(pages) {
            mem.write_u64(slot(index, i), rotated(i).0);
        }
        if span > old {
            // Growing a full ring whose data wraps onto the frame it
            // starts in: the frame's front holds the newest bytes, which
            // now belong one frame past the old end. (`span` is at most
            // `old + 1`, and `pages > old` since the data fits.)
            mem.copy_frame(Pfn(mem.read_u64(slot(index, old))), rotated(0));
        } else if span > pages {
            // Shrinking: the data runs one frame past the new end, whose
            // front bytes now wrap to the front of the first frame, which
            // is free there (`h + len <= h + pages * PAGE`).
            let tail = h + self.len - pages * PAGE;
            let (from, to) = (rotated(pages).addr(), rotated(0).addr());
            let mut chunk = [0u8; 256];
            let mut at = 0;
            while at < tail {
                let k = (tail - at).min(chunk.len());
                mem.read_bytes(from + at as u64, &mut chunk[..k]);
                mem.write_bytes(to + at as u64, &chunk[..k]);
                at += k;
            }
        }
        for i in pages..old {
            frames.give_frame(rotated(i));
        }
        frames.give_frame(self.index);
        self.index = index;
        self.pages = pages;
        self.head = h;
        Ok(())
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

fn valid_pages(pages: usize) -> bool {
    pages.is_power_of_two() && pages <= MAX_PAGES
}

/// The physical address of entry `i` of index frame `index`.
fn slot(index: Pfn, i: usize) -> u64 {
    index.addr() + 8 * i as u64
}

#[cfg(test)]
mod tests;
