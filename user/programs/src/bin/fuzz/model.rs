//! The main thread's model of its program: the descriptor table (which
//! file each descriptor names, and its close-on-exec flag), every pipe's
//! buffered bytes, capacity, open ends and their status flags, and the
//! helper threads not yet reaped. Each prediction is made from it, and
//! each call that succeeds is applied to it.

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;

use rt::abi::o;

use crate::helper::{Job, SLOTS, SPARE};
use crate::thread::MAX_FDS;

/// A new pipe's capacity (docs/abi.md).
pub const DEFAULT_CAPACITY: usize = rt::abi::pipe::DEFAULT_SIZE;
/// Bytes the model keeps per pipe: a default pipe's worth. A pipe grown
/// past it by F_SETPIPE_SZ is never filled past it (the fuzzer skips
/// writes that would), so its bytes are always known.
pub const MODEL_BYTES: usize = DEFAULT_CAPACITY;
/// The most bytes of pipe capacity the fuzzer holds at once: growing
/// past it is not asked for, so six instances never exhaust the frames of
/// a 256 MiB machine (ENOMEM cannot be predicted).
pub const CAPACITY_BUDGET: usize = 4 << 20;
const FDS: usize = MAX_FDS as usize;
/// Every live pipe has a descriptor, so there are never more pipes than
/// descriptors.
const PIPES: usize = FDS;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum File {
    Console,
    Read(usize),
    Write(usize),
}

pub struct Pipe {
    live: bool,
    buf: [u8; MODEL_BYTES],
    head: usize,
    pub len: usize,
    pub cap: usize,
    /// Descriptors naming each end.
    pub readers: u32,
    pub writers: u32,
    /// Each end's status flags (F_GETFL's, without the access mode).
    pub read_flags: u32,
    pub write_flags: u32,
    /// fstat's st_ino and st_mtime, learned from the first fstat (the
    /// kernel picks them); every later one must agree.
    pub ino: Option<u64>,
    pub time: Option<[u8; 16]>,
}

impl Pipe {
    pub fn room(&self) -> usize {
        self.cap - self.len
    }

    pub fn read_open(&self) -> bool {
        self.readers > 0
    }

    pub fn write_open(&self) -> bool {
        self.writers > 0
    }

    pub fn nonblocking(&self, reader: bool) -> bool {
        let flags = if reader {
            self.read_flags
        } else {
            self.write_flags
        };
        flags & o::NONBLOCK != 0
    }

    pub fn push(&mut self, byte: u8) {
        debug_assert!(self.len < MODEL_BYTES.min(self.cap));
        self.buf[(self.head + self.len) % MODEL_BYTES] = byte;
        self.len += 1;
    }

    /// The `i`th oldest byte buffered.
    pub fn peek(&self, i: usize) -> u8 {
        self.buf[(self.head + i) % MODEL_BYTES]
    }

    pub fn pop(&mut self, n: usize) {
        let n = n.min(self.len);
        self.head = (self.head + n) % MODEL_BYTES;
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
    /// thread neither closes nor replaces it until then.
    pub busy_fd: Option<usize>,
    /// The pipe that descriptor's end belongs to.
    pub busy_pipe: Option<usize>,
}

pub struct Model {
    pub fds: [Option<File>; FDS],
    pub cloexec: [bool; FDS],
    /// The console's description's status flags (fds 0, 1 and 2 share it).
    pub console_flags: u32,
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
    /// The model, fresh: fds 0, 1 and 2 on the console (docs/abi.md).
    ///
    /// # Safety
    ///
    /// Once, from the main thread.
    pub unsafe fn get() -> &'static mut Model {
        let m = MODEL.0.get() as *mut Model;
        let mut fds = [None; FDS];
        fds[0] = Some(File::Console);
        fds[1] = Some(File::Console);
        fds[2] = Some(File::Console);
        // SAFETY: the caller makes this the only access; after these
        // writes every field holds a valid value (the pipes are zero: not
        // live), so the reference is sound.
        unsafe {
            (&raw mut (*m).fds).write(fds);
            (&raw mut (*m).cloexec).write([false; FDS]);
            (&raw mut (*m).console_flags).write(0);
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

    /// The lowest free descriptor at or above `min` other than `skip` (the
    /// kernel's choice).
    pub fn lowest_free_from(&self, min: usize, skip: Option<usize>) -> Option<usize> {
        (min..FDS).find(|&fd| self.fds[fd].is_none() && Some(fd) != skip)
    }

    pub fn lowest_free(&self, skip: Option<usize>) -> Option<usize> {
        self.lowest_free_from(0, skip)
    }

    /// Some descriptor naming `file` (the lowest).
    pub fn fd_of(&self, file: File) -> Option<usize> {
        self.fds.iter().position(|f| *f == Some(file))
    }

    /// Total capacity of the live pipes, for CAPACITY_BUDGET.
    pub fn capacity_held(&self) -> usize {
        self.pipes.iter().filter(|p| p.live).map(|p| p.cap).sum()
    }

    /// Applies a successful pipe2(flags) whose ends got `r` and `w`.
    pub fn add_pipe(&mut self, r: usize, w: usize, flags: u32) {
        let Some(p) = self.pipes.iter().position(|p| !p.live) else {
            return;
        };
        let pipe = &mut self.pipes[p];
        pipe.live = true;
        pipe.head = 0;
        pipe.len = 0;
        pipe.cap = DEFAULT_CAPACITY;
        pipe.readers = 1;
        pipe.writers = 1;
        pipe.read_flags = flags & o::NONBLOCK;
        pipe.write_flags = flags & o::NONBLOCK;
        pipe.ino = None;
        pipe.time = None;
        let cloexec = flags & o::CLOEXEC != 0;
        self.fds[r] = Some(File::Read(p));
        self.fds[w] = Some(File::Write(p));
        self.cloexec[r] = cloexec;
        self.cloexec[w] = cloexec;
    }

    /// Applies a successful dup of `old` to `new` (open or not before).
    pub fn dup(&mut self, old: usize, new: usize, cloexec: bool) {
        let Some(file) = self.fds[old] else {
            return;
        };
        if old == new {
            return;
        }
        // The reference first, so a pipe both name never dies in between.
        match file {
            File::Read(p) => self.pipes[p].readers += 1,
            File::Write(p) => self.pipes[p].writers += 1,
            File::Console => {}
        }
        self.close(new);
        self.fds[new] = Some(file);
        self.cloexec[new] = cloexec;
    }

    /// Applies a successful close(fd) (or its replacement by a dup).
    pub fn close(&mut self, fd: usize) {
        let p = match self.fds[fd].take() {
            Some(File::Read(p)) => {
                self.pipes[p].readers -= 1;
                p
            }
            Some(File::Write(p)) => {
                self.pipes[p].writers -= 1;
                p
            }
            _ => return,
        };
        self.cloexec[fd] = false;
        let pipe = &mut self.pipes[p];
        if !pipe.read_open() && !pipe.write_open() {
            pipe.live = false;
        }
    }

    /// The inode numbers learned for live pipes other than `p`.
    pub fn other_inos(&self, p: usize) -> impl Iterator<Item = u64> + '_ {
        self.pipes
            .iter()
            .enumerate()
            .filter(move |&(i, pipe)| i != p && pipe.live)
            .filter_map(|(_, pipe)| pipe.ino)
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

    /// Whether a helper uses descriptor `fd` (it must stay as it is).
    pub fn busy(&self, fd: u64) -> bool {
        self.helpers
            .iter()
            .flatten()
            .any(|h| h.busy_fd.is_some_and(|b| b as u64 == fd))
    }

    /// Whether a helper uses pipe `p` at all.
    pub fn pipe_busy(&self, p: usize) -> bool {
        self.helpers
            .iter()
            .flatten()
            .any(|h| h.busy_pipe == Some(p))
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
