//! The main thread's model of its program: the descriptor table, every
//! pipe's buffered bytes and open ends, and the helper threads not yet
//! reaped. Each prediction is made from it, and each call that succeeds
//! is applied to it.

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;

use crate::helper::{Job, SLOTS, SPARE};
use crate::thread::MAX_FDS;

/// Bytes a pipe holds before writers wait (kernel/src/task/pipe.rs).
pub const PIPE_CAPACITY: usize = 4096;
const FDS: usize = MAX_FDS as usize;
/// Without dup, each pipe end has one descriptor, so there are never more
/// pipes than descriptors.
const PIPES: usize = FDS;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum File {
    Console,
    Read(usize),
    Write(usize),
}

pub struct Pipe {
    live: bool,
    buf: [u8; PIPE_CAPACITY],
    head: usize,
    pub len: usize,
    pub read_open: bool,
    pub write_open: bool,
}

impl Pipe {
    pub fn room(&self) -> usize {
        PIPE_CAPACITY - self.len
    }

    pub fn push(&mut self, byte: u8) {
        debug_assert!(self.len < PIPE_CAPACITY);
        self.buf[(self.head + self.len) % PIPE_CAPACITY] = byte;
        self.len += 1;
    }

    /// The `i`th oldest byte buffered.
    pub fn peek(&self, i: usize) -> u8 {
        self.buf[(self.head + i) % PIPE_CAPACITY]
    }

    pub fn pop(&mut self, n: usize) {
        let n = n.min(self.len);
        self.head = (self.head + n) % PIPE_CAPACITY;
        self.len -= n;
    }
}

#[derive(Clone, Copy)]
pub struct Helper {
    pub tid: u64,
    pub job: Job,
    /// Another helper waits for this one: the main thread must not (which
    /// of the two got it would depend on timing), and reaps the other.
    pub claimed: bool,
    /// A descriptor the helper uses until it is reaped, so the main
    /// thread leaves it alone until then.
    pub busy_fd: Option<usize>,
}

pub struct Model {
    pub fds: [Option<File>; FDS],
    pub pipes: [Pipe; PIPES],
    /// By slot; the spare slot never holds a helper.
    pub helpers: [Option<Helper>; SPARE],
}

struct Cell(UnsafeCell<MaybeUninit<Model>>);

// SAFETY: only the main thread ever calls `get` (helpers never see the
// model), so there is no sharing.
unsafe impl Sync for Cell {}

/// Zeroed, so it lands in .bss: zero is a valid `Pipe` (not live, no
/// bytes), and `get` writes the rest before making a reference.
static MODEL: Cell = Cell(UnsafeCell::new(MaybeUninit::zeroed()));

impl Model {
    /// The model, fresh: fds 1 and 2 on the console (docs/abi.md).
    ///
    /// # Safety
    ///
    /// Once, from the main thread.
    pub unsafe fn get() -> &'static mut Model {
        let m = MODEL.0.get() as *mut Model;
        let mut fds = [None; FDS];
        fds[1] = Some(File::Console);
        fds[2] = Some(File::Console);
        // SAFETY: the caller makes this the only access; after these two
        // writes every field holds a valid value, so the reference is sound.
        unsafe {
            (&raw mut (*m).fds).write(fds);
            (&raw mut (*m).helpers).write([None; SPARE]);
            &mut *m
        }
    }

    pub fn file(&self, fd: u64) -> Option<File> {
        self.fds.get(usize::try_from(fd).ok()?).copied().flatten()
    }

    pub fn open_count(&self) -> usize {
        self.fds.iter().filter(|f| f.is_some()).count()
    }

    /// The lowest free descriptor other than `skip` (the kernel's choice).
    pub fn lowest_free(&self, skip: Option<usize>) -> Option<usize> {
        (0..FDS).find(|&fd| self.fds[fd].is_none() && Some(fd) != skip)
    }

    pub fn fd_of(&self, file: File) -> Option<usize> {
        self.fds.iter().position(|f| *f == Some(file))
    }

    /// Applies a successful pipe(): returns (read fd, write fd).
    pub fn add_pipe(&mut self, r: usize, w: usize) {
        let Some(p) = self.pipes.iter().position(|p| !p.live) else {
            return;
        };
        let pipe = &mut self.pipes[p];
        pipe.live = true;
        pipe.head = 0;
        pipe.len = 0;
        pipe.read_open = true;
        pipe.write_open = true;
        self.fds[r] = Some(File::Read(p));
        self.fds[w] = Some(File::Write(p));
    }

    /// Applies a successful close(fd).
    pub fn close(&mut self, fd: usize) {
        match self.fds[fd].take() {
            Some(File::Read(p)) => self.pipes[p].read_open = false,
            Some(File::Write(p)) => self.pipes[p].write_open = false,
            _ => return,
        }
        for pipe in self.pipes.iter_mut() {
            if pipe.live && !pipe.read_open && !pipe.write_open {
                pipe.live = false;
            }
        }
    }

    pub fn live_helpers(&self) -> usize {
        self.helpers.iter().filter(|h| h.is_some()).count()
    }

    /// The most threads the kernel may count now: the main thread and
    /// every helper not reaped by the main thread.
    pub fn threads_max(&self) -> usize {
        1 + self.live_helpers()
    }

    /// The fewest: claimed helpers may have been reaped by their waiters.
    pub fn threads_min(&self) -> usize {
        self.threads_max() - self.helpers.iter().flatten().filter(|h| h.claimed).count()
    }

    pub fn busy(&self, fd: u64) -> bool {
        self.helpers
            .iter()
            .flatten()
            .any(|h| h.busy_fd.is_some_and(|b| b as u64 == fd))
    }

    pub fn free_slot(&self, pick: u64) -> Option<usize> {
        let free = self.helpers.iter().filter(|h| h.is_none()).count();
        if free == 0 {
            return None;
        }
        let nth = (pick % free as u64) as usize;
        self.helpers
            .iter()
            .enumerate()
            .filter(|(_, h)| h.is_none())
            .nth(nth)
            .map(|(i, _)| i)
    }

    /// A helper the main thread may wait for (not claimed by another).
    pub fn live_slot(&self, pick: u64) -> Option<usize> {
        self.nth_slot(pick, |h| h.is_some_and(|h| !h.claimed))
    }

    /// A helper another one may wait for: unclaimed, and doing nothing
    /// that waits for the main thread (a plain job).
    pub fn claimable_slot(&self, pick: u64) -> Option<usize> {
        self.nth_slot(pick, |h| {
            h.is_some_and(|h| !h.claimed && matches!(h.job, Job::Plain { .. }))
        })
    }

    fn nth_slot(&self, pick: u64, ok: impl Fn(Option<Helper>) -> bool) -> Option<usize> {
        let n = self.helpers.iter().filter(|h| ok(**h)).count();
        if n == 0 {
            return None;
        }
        let nth = (pick % n as u64) as usize;
        (0..self.helpers.len())
            .filter(|&i| ok(self.helpers[i]))
            .nth(nth)
    }
}

const _: () = assert!(SPARE + 1 == SLOTS);
