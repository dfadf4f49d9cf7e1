use super::*;
use crate::mm::phys::SimMemory;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::ops::{Deref, DerefMut};

/// A pipe over simulated memory, with the memory argument filled in.
struct TestPipe {
    pipe: Pipe,
    mem: SimMemory,
}

impl TestPipe {
    fn new() -> TestPipe {
        TestPipe {
            pipe: Pipe::new(Pfn(0x42)),
            mem: SimMemory::new(),
        }
    }

    fn read(&mut self, out: &mut [u8]) -> ReadResult {
        self.pipe.read(&self.mem, out)
    }

    fn write(&mut self, data: &[u8]) -> WriteResult {
        self.pipe.write(&self.mem, data)
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

/// Random reads, writes and end changes against a VecDeque model.
#[test]
fn random_against_a_model() {
    for seed in [1u64, 0xfeed_f00d, 0x9e37_79b9_7f4a_7c15] {
        let mut rng = seed;
        let mut p = TestPipe::new();
        let mut model: VecDeque<u8> = VecDeque::new();
        let (mut readers, mut writers) = (1u32, 1u32);
        let mut counter = 0usize;
        for step in 0..20_000 {
            let r = rand(&mut rng);
            // Mostly large requests, so the buffer fills and wraps.
            let n = match r % 4 {
                0 => (r >> 8) as usize % 8,
                _ => (r >> 8) as usize % (PIPE_CAPACITY + 100),
            };
            match (r >> 32) % 100 {
                0..45 => {
                    let data = bytes(counter, n);
                    let room = PIPE_CAPACITY - model.len();
                    let want = if n == 0 {
                        WriteResult::Wrote(0)
                    } else if readers == 0 {
                        WriteResult::Broken
                    } else if room == 0 {
                        WriteResult::Full
                    } else {
                        WriteResult::Wrote(n.min(room))
                    };
                    assert_eq!(p.write(&data), want, "seed {seed} step {step}");
                    if let WriteResult::Wrote(k) = want {
                        model.extend(&data[..k]);
                        counter += k;
                    }
                }
                45..90 => {
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
                    assert_eq!(p.read(&mut out), want, "seed {seed} step {step}");
                    if let ReadResult::Data(k) = want {
                        let expected: Vec<u8> = model.drain(..k).collect();
                        assert_eq!(out[..k], expected[..], "seed {seed} step {step}");
                    }
                }
                90..93 => {
                    p.add_reader();
                    readers += 1;
                }
                93..96 => {
                    p.add_writer();
                    writers += 1;
                }
                96..98 => {
                    p.close_reader();
                    readers = readers.saturating_sub(1);
                }
                _ => {
                    p.close_writer();
                    writers = writers.saturating_sub(1);
                }
            }
            assert_eq!(p.len(), model.len());
            assert_eq!(p.is_empty(), model.is_empty());
            assert_eq!((p.readers(), p.writers()), (readers, writers));
            assert_eq!(p.is_closed(), readers == 0 && writers == 0);
        }
    }
}

#[test]
fn bytes_live_in_the_given_frame() {
    let mut p = TestPipe::new();
    p.write(b"frame");
    let mut raw = [0; 5];
    p.mem.read_bytes(Pfn(0x42).addr(), &mut raw);
    assert_eq!(&raw, b"frame");
    assert_eq!(p.frame(), Pfn(0x42));
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
