use super::*;
use crate::mm::phys::SimMemory;
use alloc::collections::{BTreeSet, VecDeque};
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::ops::{Deref, DerefMut};

/// Frames for tests: scattered numbers (so code that assumed neighbouring
/// frames were adjacent would read the wrong bytes), every one tracked,
/// and a budget after which it refuses.
struct TestFrames {
    next: Cell<u64>,
    live: RefCell<BTreeSet<u64>>,
    budget: Cell<usize>,
}

impl TestFrames {
    fn new() -> TestFrames {
        TestFrames {
            next: Cell::new(0x100),
            live: RefCell::new(BTreeSet::new()),
            budget: Cell::new(usize::MAX),
        }
    }

    fn live(&self) -> usize {
        self.live.borrow().len()
    }
}

impl Frames for TestFrames {
    fn take_frame(&self) -> Option<Pfn> {
        if self.budget.get() == 0 {
            return None;
        }
        self.budget.set(self.budget.get() - 1);
        let pfn = self.next.get();
        // A stride that is not a power of two: no two frames of one pipe
        // are neighbours, and their order is not their index order.
        self.next.set(pfn + 37);
        assert!(self.live.borrow_mut().insert(pfn));
        Some(Pfn(pfn))
    }

    fn give_frame(&self, pfn: Pfn) {
        assert!(
            self.live.borrow_mut().remove(&pfn.0),
            "{pfn:?} given back twice or never taken"
        );
    }
}

/// The capacity the old tests were written for: one frame.
const PIPE_CAPACITY: usize = PAGE;

/// A pipe over simulated memory, with the memory and frames filled in.
struct TestPipe {
    pipe: Pipe,
    mem: SimMemory,
    frames: TestFrames,
}

impl TestPipe {
    fn new() -> TestPipe {
        TestPipe::with_pages(1)
    }

    fn with_pages(pages: usize) -> TestPipe {
        let mem = SimMemory::new();
        let frames = TestFrames::new();
        let pipe = Pipe::new(&mem, pages, &frames).expect("frames");
        assert_eq!(frames.live(), pages + 1);
        TestPipe { pipe, mem, frames }
    }

    fn read(&mut self, out: &mut [u8]) -> ReadResult {
        self.pipe.read(&self.mem, out)
    }

    fn write(&mut self, data: &[u8]) -> WriteResult {
        self.pipe.write(&self.mem, data)
    }

    fn resize(&mut self, pages: usize) -> Result<(), ResizeError> {
        let r = self.pipe.resize(&self.mem, pages, &self.frames);
        assert_eq!(
            self.frames.live(),
            self.pipe.frames_held(),
            "frames leaked or lost"
        );
        r
    }
}

impl Deref for TestPipe {
    type Target = Pipe;
    fn deref(&self) -> &Pipe {
        &self.pipe
    }
}

impl DerefMut for TestPipe {
    fn deref_mut(&mut self) -> &mut Pipe {
        &mut self.pipe
    }
}

fn bytes(start: usize, n: usize) -> Vec<u8> {
    (start..start + n)
        .map(|i| (i * 7 + i / 251) as u8)
        .collect()
}

#[test]
fn new_pipe_is_empty_with_both_ends() {
    let p = TestPipe::new();
    assert_eq!((p.readers(), p.writers(), p.len()), (1, 1, 0));
    assert!(p.is_empty() && !p.is_closed());
}

#[test]
fn fifo_across_wrap_around() {
    let mut p = TestPipe::new();
    let mut next_in = 0;
    let mut next_out = 0;
    // Odd sizes walk head and tail around the ring many times, so
    // copies split at the end of the buffer in every phase.
    for round in 0..200 {
        let n = 1000 + round * 13 % 777;
        assert_eq!(p.write(&bytes(next_in, n)), WriteResult::Wrote(n));
        next_in += n;
        let mut out = vec![0; n];
        assert_eq!(p.read(&mut out), ReadResult::Data(n));
        assert_eq!(out, bytes(next_out, n), "round {round}");
        next_out += n;
    }
    assert!(next_in > 20 * PIPE_CAPACITY);
    assert!(p.is_empty());
}

#[test]
fn reads_return_what_is_there() {
    let mut p = TestPipe::new();
    p.write(b"hello");
    let mut out = [0; 3];
    assert_eq!(p.read(&mut out), ReadResult::Data(3));
    assert_eq!(&out, b"hel");
    let mut out = [0; 100];
    assert_eq!(p.read(&mut out), ReadResult::Data(2));
    assert_eq!(&out[..2], b"lo");
    assert_eq!(p.read(&mut out), ReadResult::Empty);
}

#[test]
fn partial_write_when_nearly_full() {
    let mut p = TestPipe::new();
    let data = bytes(0, PIPE_CAPACITY - 10);
    assert_eq!(p.write(&data), WriteResult::Wrote(PIPE_CAPACITY - 10));
    assert_eq!(p.write(&bytes(5000, 25)), WriteResult::Wrote(10));
    assert_eq!(p.len(), PIPE_CAPACITY);
    assert_eq!(p.write(b"x"), WriteResult::Full);
    assert_eq!(p.write(b""), WriteResult::Wrote(0));
    // Room for exactly what is read.
    let mut out = [0; 4];
    assert_eq!(p.read(&mut out), ReadResult::Data(4));
    assert_eq!(p.write(&bytes(9000, 8)), WriteResult::Wrote(4));
    let mut all = vec![0; PIPE_CAPACITY];
    assert_eq!(p.read(&mut all), ReadResult::Data(PIPE_CAPACITY));
    let mut want = data[4..].to_vec();
    want.extend(bytes(5000, 10));
    want.extend(bytes(9000, 4));
    assert_eq!(all, want);
}

#[test]
fn empty_until_the_last_writer_closes_then_eof() {
    let mut p = TestPipe::new();
    let mut out = [0; 8];
    assert_eq!(p.read(&mut out), ReadResult::Empty);
    p.add_writer();
    p.write(b"ab");
    p.close_writer();
    assert_eq!(p.read(&mut out), ReadResult::Data(2), "data first");
    assert_eq!(p.read(&mut out), ReadResult::Empty, "one writer left");
    p.write(b"c");
    p.close_writer();
    assert_eq!(p.writers(), 0);
    assert_eq!(
        p.read(&mut out),
        ReadResult::Data(1),
        "buffered data outlives writers"
    );
    assert_eq!(p.read(&mut out), ReadResult::Eof);
    assert_eq!(p.read(&mut out), ReadResult::Eof);
    assert_eq!(p.read(&mut []), ReadResult::Data(0));
    assert!(!p.is_closed());
}

#[test]
fn broken_once_readers_are_gone() {
    let mut p = TestPipe::new();
    p.add_reader();
    p.close_reader();
    assert_eq!(p.write(b"still read"), WriteResult::Wrote(10));
    p.close_reader();
    assert_eq!(p.write(b"x"), WriteResult::Broken);
    assert_eq!(p.write(b""), WriteResult::Wrote(0));
    // Even when full, no readers means Broken, not Full: blocking
    // would wait forever.
    let mut p = TestPipe::new();
    p.write(&bytes(0, PIPE_CAPACITY));
    assert_eq!(p.write(b"x"), WriteResult::Full);
    p.close_reader();
    assert_eq!(p.write(b"x"), WriteResult::Broken);
    p.close_writer();
    assert!(p.is_closed());
}

#[test]
fn zero_length_requests_return_at_once() {
    let mut p = TestPipe::new();
    assert_eq!(p.read(&mut []), ReadResult::Data(0));
    p.write(&bytes(0, PIPE_CAPACITY));
    assert_eq!(p.write(&[]), WriteResult::Wrote(0));
    p.close_reader();
    p.close_writer();
    assert_eq!(p.write(&[]), WriteResult::Wrote(0));
    assert_eq!(p.read(&mut []), ReadResult::Data(0));
}

#[test]
fn unbalanced_closes_saturate() {
    let mut p = TestPipe::new();
    for _ in 0..3 {
        p.close_reader();
        p.close_writer();
    }
    assert_eq!((p.readers(), p.writers()), (0, 0));
    assert!(p.is_closed());
    p.add_writer();
    assert!(!p.is_closed());
}

/// xorshift64, for reproducible random operations.
fn rand(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

/// Random reads, writes, end changes and resizes against a VecDeque
/// model, over rings of one to eight frames.
#[test]
fn random_against_a_model() {
    for seed in [1u64, 0xfeed_f00d, 0x9e37_79b9_7f4a_7c15, 77] {
        let mut rng = seed;
        let mut p = TestPipe::with_pages(1 << (seed % 4));
        let mut model: VecDeque<u8> = VecDeque::new();
        let (mut readers, mut writers) = (1u32, 1u32);
        let mut counter = 0usize;
        let mut resized = [0usize; 3];
        for step in 0..20_000 {
            let r = rand(&mut rng);
            let cap = p.capacity();
            // Mostly large requests, so the buffer fills and wraps.
            let n = match r % 4 {
                0 => (r >> 8) as usize % 8,
                _ => (r >> 8) as usize % (cap + 100),
            };
            let why = format!("seed {seed} step {step}");
            match (r >> 32) % 100 {
                0..44 => {
                    let data = bytes(counter, n);
                    let room = cap - model.len();
                    let want = if n == 0 {
                        WriteResult::Wrote(0)
                    } else if readers == 0 {
                        WriteResult::Broken
                    } else if room == 0 {
                        WriteResult::Full
                    } else {
                        WriteResult::Wrote(n.min(room))
                    };
                    assert_eq!(p.write(&data), want, "{why}");
                    if let WriteResult::Wrote(k) = want {
                        model.extend(&data[..k]);
                        counter += k;
                    }
                }
                44..88 => {
                    let mut out = vec![0; n];
                    let want = if n == 0 {
                        ReadResult::Data(0)
                    } else if model.is_empty() {
                        if writers > 0 {
                            ReadResult::Empty
                        } else {
                            ReadResult::Eof
                        }
                    } else {
                        ReadResult::Data(n.min(model.len()))
                    };
                    assert_eq!(p.read(&mut out), want, "{why}");
                    if let ReadResult::Data(k) = want {
                        let expected: Vec<u8> = model.drain(..k).collect();
                        assert_eq!(out[..k], expected[..], "{why}");
                    }
                }
                88..91 => {
                    p.add_reader();
                    readers += 1;
                }
                91..94 => {
                    p.add_writer();
                    writers += 1;
                }
                94..95 => {
                    p.close_reader();
                    readers = readers.saturating_sub(1);
                }
                95..96 => {
                    p.close_writer();
                    writers = writers.saturating_sub(1);
                }
                _ => {
                    let pages = 1 << ((r >> 40) % 4);
                    let want = if model.len() > pages * PAGE {
                        Err(ResizeError::Busy)
                    } else {
                        Ok(())
                    };
                    assert_eq!(p.resize(pages), want, "{why}");
                    resized[usize::from(want.is_ok())] += 1;
                    if want.is_ok() && pages * PAGE < cap && !model.is_empty() {
                        resized[2] += 1;
                    }
                }
            }
            assert_eq!(p.len(), model.len());
            assert_eq!(p.is_empty(), model.is_empty());
            assert_eq!((p.readers(), p.writers()), (readers, writers));
            assert_eq!(p.is_closed(), readers == 0 && writers == 0);
        }
        assert!(
            resized.iter().all(|&k| k > 10),
            "seed {seed}: resizes {resized:?}"
        );
        // Whatever is left comes out whole and in order.
        let mut rest = vec![0; p.capacity()];
        let want = model.len();
        if want > 0 {
            assert_eq!(p.read(&mut rest), ReadResult::Data(want));
            assert!(rest[..want].iter().eq(model.iter()));
        }
    }
}

/// A ring whose data starts `head` bytes in and holds `len`, resized to
/// `pages`: every byte must come out in order, and frames balance.
fn resize_keeps_the_data(from: usize, head: usize, len: usize, pages: usize) {
    let mut p = TestPipe::with_pages(from);
    // Move the head by writing and reading, then fill.
    let skip = bytes(9999, head % p.capacity());
    assert_eq!(p.write(&skip), WriteResult::Wrote(skip.len()));
    let mut sink = vec![0; skip.len()];
    assert_eq!(p.read(&mut sink), ReadResult::Data(skip.len()));
    let data = bytes(0, len);
    assert_eq!(p.write(&data), WriteResult::Wrote(len));
    assert_eq!(
        p.resize(pages),
        Ok(()),
        "{from} -> {pages}, head {head}, len {len}"
    );
    assert_eq!((p.capacity(), p.len()), (pages * PAGE, len));
    // The new room is all usable, and the old bytes come first.
    let more = bytes(50_000, p.room());
    assert_eq!(p.write(&more), WriteResult::Wrote(more.len()));
    let mut out = vec![0; p.capacity()];
    assert_eq!(p.read(&mut out), ReadResult::Data(p.capacity()));
    assert_eq!(
        out[..len],
        data[..],
        "{from} -> {pages}, head {head}, len {len}"
    );
    assert_eq!(out[len..], more[..]);
    let TestPipe { pipe, mem, frames } = p;
    pipe.free(&mem, &frames);
    assert_eq!(frames.live(), 0);
}

#[test]
fn resizing_moves_frames_and_keeps_every_byte() {
    // Data inside the frames it starts in: frames only move.
    resize_keeps_the_data(2, 100, 3000, 4);
    resize_keeps_the_data(4, 5000, 3000, 1);
    resize_keeps_the_data(8, 3 * PAGE + 17, 2 * PAGE, 2);
    // A full ring whose data wraps onto the frame it starts in, grown:
    // that frame's front is copied to a new frame after the old end.
    resize_keeps_the_data(2, 300, 2 * PAGE, 4);
    resize_keeps_the_data(1, 1, PAGE, 2);
    // Shrunk so that the data must wrap around the new, smaller ring:
    // the tail's bytes move to the front of the first frame.
    resize_keeps_the_data(4, 3000, 2 * PAGE, 2);
    resize_keeps_the_data(2, PAGE - 1, PAGE, 1);
    resize_keeps_the_data(8, 7 * PAGE + 4000, PAGE, 1);
    // Empty, from anywhere: the ring starts afresh.
    resize_keeps_the_data(4, 12_345, 0, 1);
}

#[test]
fn resizing_refuses_what_does_not_fit_and_changes_nothing() {
    let mut p = TestPipe::with_pages(4);
    let data = bytes(0, 2 * PAGE + 1);
    p.write(&data);
    assert_eq!(p.resize(2), Err(ResizeError::Busy));
    assert_eq!(p.resize(3), Err(ResizeError::BadSize));
    assert_eq!(p.resize(0), Err(ResizeError::BadSize));
    assert_eq!(p.resize(2 * MAX_PAGES), Err(ResizeError::BadSize));
    // Out of frames part-way through: what was taken goes back.
    p.frames.budget.set(3);
    assert_eq!(p.resize(8), Err(ResizeError::NoMemory));
    assert_eq!(p.frames.live(), 5);
    p.frames.budget.set(0);
    assert_eq!(p.resize(4), Ok(()), "the same size needs nothing");
    assert_eq!(p.resize(1), Err(ResizeError::Busy));
    p.frames.budget.set(usize::MAX);
    assert_eq!(p.capacity(), 4 * PAGE);
    let mut out = vec![0; 4 * PAGE];
    assert_eq!(p.read(&mut out), ReadResult::Data(data.len()));
    assert_eq!(out[..data.len()], data[..]);
}

#[test]
fn creation_is_all_or_nothing() {
    let mem = SimMemory::new();
    let frames = TestFrames::new();
    for pages in [0, 3, 2 * MAX_PAGES] {
        assert!(Pipe::new(&mem, pages, &frames).is_none(), "{pages} pages");
    }
    for budget in [0, 1, 16] {
        frames.budget.set(budget);
        assert!(Pipe::new(&mem, 16, &frames).is_none());
        assert_eq!(frames.live(), 0, "budget {budget}");
    }
    frames.budget.set(17);
    let p = Pipe::new(&mem, 16, &frames).expect("exactly enough");
    assert_eq!(
        (p.capacity(), p.frames_held(), frames.live()),
        (16 * PAGE, 17, 17)
    );
    p.free(&mem, &frames);
    assert_eq!(frames.live(), 0);
}

#[test]
fn bytes_live_in_the_listed_frames() {
    let mut p = TestPipe::with_pages(2);
    let data = bytes(0, PAGE + 5);
    assert_eq!(p.write(&data), WriteResult::Wrote(PAGE + 5));
    let first = p.pipe.frame(&p.mem, 0);
    let second = p.pipe.frame(&p.mem, 1);
    assert_ne!(second.0, first.0 + 1, "the test frames are scattered");
    let mut raw = vec![0; 5];
    p.mem.read_bytes(second.addr(), &mut raw);
    assert_eq!(raw, data[PAGE..]);
    p.mem.read_bytes(first.addr(), &mut raw);
    assert_eq!(raw, data[..5]);
    let TestPipe { pipe, mem, frames } = p;
    pipe.free(&mem, &frames);
    assert_eq!(frames.live(), 0, "free gives every frame back");
}

#[test]
fn peek_keeps_bytes_until_consumed() {
    let mut p = TestPipe::new();
    p.write(b"abcdef");
    let mut out = [0; 4];
    // A copy to the user that fails consumes nothing: peek again.
    assert_eq!(p.pipe.peek(&p.mem, &mut out), ReadResult::Data(4));
    assert_eq!(p.pipe.peek(&p.mem, &mut out), ReadResult::Data(4));
    assert_eq!(&out, b"abcd");
    assert_eq!(p.len(), 6);
    p.consume(2);
    assert_eq!(p.read(&mut out), ReadResult::Data(4));
    assert_eq!(&out, b"cdef");
    p.consume(100);
    assert!(p.is_empty());
    assert_eq!(p.room(), PIPE_CAPACITY);
}
