//! The CPU calls, each result predicted exactly: sched_getaffinity,
//! sched_setaffinity (Linux's argument order and errno, as
//! tests/linux/affinity.c shows them) and getcpu.
//!
//! An affinity is per thread, so each thread knows its own: the main
//! thread's as it started (learned first), which a helper inherits, and
//! which every thread puts back before its step ends. Only ourselves are
//! ever named; another thread is named only by a tid that cannot be one.
//! Which CPU a thread runs on is the scheduler's choice, so getcpu is
//! predicted as one of the CPUs the thread may use, and exactly when it
//! has been pinned to one (a thread moved off its CPU moves before
//! sched_setaffinity returns).

use core::ptr;
use core::sync::atomic::{AtomicU64, Ordering};

use rt::abi::{Errno, nr};

use crate::space::Dir;
use crate::thread::{Checked, Expect, NO_SUCH_TID, Thread, Why};

/// The CPUs that run, learned at the start (all have joined by then).
static ONLINE: AtomicU64 = AtomicU64::new(0);
/// Every thread's affinity between its steps, as set (bits of CPUs that
/// do not run included), and as sched_getaffinity reports it.
static RAW: AtomicU64 = AtomicU64::new(0);
static SEEN: AtomicU64 = AtomicU64::new(0);

fn online() -> u64 {
    ONLINE.load(Ordering::Relaxed)
}

/// Bytes of the kernel's mask (docs/abi.md): read and written at most.
const MASK_BYTES: u64 = 8;

impl Thread {
    /// The main thread, before anything else: its affinity, and the CPUs
    /// that run (what an affinity of every CPU reports). It gets back the
    /// affinity it started with, which was every CPU if it reported them
    /// all.
    pub fn learn_cpus(&mut self) -> Checked<()> {
        let start = self.affinity_now()?;
        self.set_affinity(u64::MAX)?;
        let all = self.affinity_now()?;
        if all == 0 || start & !all != 0 || start == 0 {
            return Err(self.fail(Why::Note(
                "sched_getaffinity reported CPUs that do not run, or none",
            )));
        }
        let raw = if start == all { u64::MAX } else { start };
        self.set_affinity(raw)?;
        ONLINE.store(all, Ordering::Relaxed);
        RAW.store(raw, Ordering::Relaxed);
        SEEN.store(start, Ordering::Relaxed);
        self.getcpu_in(start)
    }

    /// sched_getaffinity(0): returns 8 and stores 8 bytes, no more.
    fn affinity_now(&mut self) -> Checked<u64> {
        let paint = self.rng.next() as u8;
        let mut buf = [paint; 24];
        let at = buf.as_mut_ptr() as u64 + 8;
        // SAFETY: the kernel writes 8 bytes in the middle of `buf`.
        unsafe { self.call(nr::SCHED_GETAFFINITY, &[0, 64, at], Expect::Ret(MASK_BYTES))? };
        // SAFETY: the call is over; read what it wrote.
        let got = unsafe { ptr::read_volatile(&buf) };
        if let Some(i) = (0..8).chain(16..24).find(|&i| got[i] != paint) {
            return Err(self.fail(Why::Memory {
                addr: buf.as_ptr() as u64 + i as u64,
                want: paint,
                got: got[i],
            }));
        }
        Ok(u64::from_le_bytes(got[8..16].try_into().unwrap()))
    }

    /// sched_setaffinity(0, 8, &mask), which must succeed.
    fn set_affinity(&mut self, mask: u64) -> Checked<()> {
        let m = mask.to_le_bytes();
        // SAFETY: the kernel reads the 8 bytes of `m`.
        unsafe {
            self.call(
                nr::SCHED_SETAFFINITY,
                &[0, MASK_BYTES, m.as_ptr() as u64],
                Expect::Ret(0),
            )?
        };
        Ok(())
    }

    /// One of the CPU calls.
    pub fn cpu_call(&mut self) -> Checked<()> {
        self.cpu_calls += 1;
        match self.rng.below(6) {
            0 | 1 => self.getaffinity(),
            2 | 3 => self.setaffinity(),
            _ => self.getcpu_in(SEEN.load(Ordering::Relaxed)),
        }
    }

    /// A `pid` for the affinity calls (an int: the high half is noise)
    /// and whether it names a thread: 0 or our own tid, else one that
    /// names none (never used, negative, the kernel's boot thread).
    fn affinity_pid(&mut self) -> (u64, bool) {
        let high = if self.rng.chance(1, 2) {
            self.rng.next() << 32
        } else {
            0
        };
        let (pid, exists) = match self.rng.below(8) {
            0..=2 => (0, true),
            3 | 4 => (self.tid as i32, true),
            5 => (self.rng.range(NO_SUCH_TID, i32::MAX as u64) as i32, false),
            6 => (self.rng.pick(&[-1, i32::MIN, 1]), false),
            _ => (-(self.rng.range(1, i32::MAX as u64) as i32), false),
        };
        (high | u64::from(pid as u32), exists)
    }

    /// An `unsigned int` length with noise in the high half.
    fn len_arg(&mut self, len: u32) -> u64 {
        let high = if self.rng.chance(1, 2) {
            self.rng.next() << 32
        } else {
            0
        };
        high | u64::from(len)
    }

    /// sched_getaffinity with any length, pid and pointer, in Linux's
    /// order: EINVAL (a length that is no multiple of 8, or has no bit for
    /// each CPU, `len * 8` reckoned in 32 bits), ESRCH, EFAULT; else 8,
    /// and the 8 bytes of our mask of the CPUs that run.
    fn getaffinity(&mut self) -> Checked<()> {
        let len = match self.rng.below(5) {
            0 | 1 => self.rng.pick(&[
                8,
                8,
                16,
                24,
                64,
                128,
                4096,
                (1 << 29) + 8,
                (3 << 29) + 64,
                0xffff_fff8,
            ]),
            2 => self
                .rng
                .pick(&[0, 1, 4, 7, 9, 12, 15, 31, 0x8000_0004, u32::MAX]),
            // Lengths whose bit count wraps to 0.
            3 => (self.rng.below(8) as u32) << 29,
            _ => self.rng.next() as u32,
        };
        let count = u64::from(online().count_ones());
        let (pid, exists) = self.affinity_pid();
        let o = self.out(MASK_BYTES, false);
        let expect = if !len.is_multiple_of(8) || u64::from(len.wrapping_mul(8)) < count {
            Expect::Err(Errno::EINVAL)
        } else if !exists {
            Expect::Err(Errno::ESRCH)
        } else if !o.good() {
            Expect::Err(Errno::EFAULT)
        } else {
            Expect::Ret(MASK_BYTES)
        };
        let len = self.len_arg(len);
        // SAFETY: at most 8 bytes into our own memory, or refused.
        unsafe { self.call(nr::SCHED_GETAFFINITY, &[pid, len, o.ptr], expect)? };
        let seen = SEEN.load(Ordering::Relaxed).to_le_bytes();
        self.check_out(
            &o,
            if expect == Expect::Ret(MASK_BYTES) {
                &seen
            } else {
                &[]
            },
        )
    }

    /// sched_setaffinity with any length, pid and mask, in Linux's order:
    /// EFAULT (the `min(len, 8)` bytes read; none for 0, whatever the
    /// pointer), ESRCH, EINVAL (no CPU that runs, a short mask's higher
    /// bytes being clear). A new affinity is read back, getcpu must name
    /// one of its CPUs (that one, if it is one), and ours comes back.
    fn setaffinity(&mut self) -> Checked<()> {
        let on = online();
        let len = match self.rng.below(8) {
            0 => 0,
            1 => self.rng.range(1, 7) as u32,
            2 => self.rng.pick(&[9, 16, 64, 4096, u32::MAX]),
            _ => 8,
        };
        let n = len.min(MASK_BYTES as u32) as usize;
        let cpu = self.one_cpu(on);
        let r = &mut self.rng;
        let mask = match r.below(8) {
            0 | 1 => 1 << cpu,
            2 => on,
            3 => u64::MAX,
            // CPUs that run and some that do not: the latter are kept.
            4 => (1 << cpu) | (r.next() & !on),
            // Only CPUs that do not run: EINVAL.
            5 => r.next() & !on,
            6 => 0,
            _ => r.next(),
        };
        let (pid, exists) = self.affinity_pid();
        let mut seen = [0u8; 8];
        let (ptr, readable) = match self.rng.below(8) {
            0 => (0, n == 0),
            // Nothing is read: any pointer at all.
            _ if n == 0 => (self.gen_ptr(MASK_BYTES, Dir::KernelReads).0, true),
            _ => self.input(&mask.to_le_bytes()[..n], &mut seen[..n], None),
        };
        let mask = u64::from_le_bytes(seen);
        let expect = if !readable {
            Expect::Err(Errno::EFAULT)
        } else if !exists {
            Expect::Err(Errno::ESRCH)
        } else if mask & on == 0 {
            Expect::Err(Errno::EINVAL)
        } else {
            Expect::Ret(0)
        };
        let len = self.len_arg(len);
        // SAFETY: the kernel only reads at `ptr`; only our own affinity
        // can change, and it is put back below.
        unsafe { self.call(nr::SCHED_SETAFFINITY, &[pid, len, ptr], expect)? };
        if expect != Expect::Ret(0) {
            return Ok(());
        }
        if self.affinity_now()? != mask & on {
            return Err(self.fail(Why::Note(
                "sched_getaffinity does not report the mask just set",
            )));
        }
        self.getcpu_in(mask & on)?;
        self.set_affinity(RAW.load(Ordering::Relaxed))?;
        if self.affinity_now()? != SEEN.load(Ordering::Relaxed) {
            return Err(self.fail(Why::Note(
                "sched_getaffinity does not report the affinity put back",
            )));
        }
        Ok(())
    }

    /// A CPU that runs, by index.
    fn one_cpu(&mut self, on: u64) -> u32 {
        let k = self.rng.below(u64::from(on.count_ones()));
        (0..64)
            .filter(|&c| on & (1 << c) != 0)
            .nth(k as usize)
            .unwrap_or(0)
    }

    /// An address getcpu cannot store 4 bytes at (null would mean "not
    /// wanted").
    fn unstorable(&mut self) -> u64 {
        loop {
            let p = self.space.hostile(&mut self.rng, 4);
            if p != 0 && !self.predict(p, 4, Dir::KernelWrites) {
                break p;
            }
        }
    }

    /// getcpu with each of its pointers null, bad or good (both the same,
    /// or overlapping): EFAULT if a store failed, the other made all the
    /// same; the CPU one of `allowed`, the node 0, written in that order;
    /// `cache` ignored.
    fn getcpu_in(&mut self, allowed: u64) -> Checked<()> {
        #[derive(Clone, Copy, PartialEq, Eq)]
        enum Where {
            Null,
            Bad(u64),
            At(usize),
        }
        let paint = self.rng.next() as u8;
        let mut buf = [paint; 40];
        let base = buf.as_mut_ptr() as u64;
        let pick = |t: &mut Thread, other: Option<Where>| match t.rng.below(6) {
            0 => Where::Null,
            1 => Where::Bad(t.unstorable()),
            2 if other.is_some_and(|w| matches!(w, Where::At(_))) => other.unwrap(),
            _ => Where::At(t.rng.range(8, 28) as usize),
        };
        let cpu = pick(self, None);
        let node = pick(self, Some(cpu));
        let arg = |w: Where| match w {
            Where::Null => 0,
            Where::Bad(p) => p,
            Where::At(k) => base + k as u64,
        };
        let bad = matches!(cpu, Where::Bad(_)) || matches!(node, Where::Bad(_));
        let expect = if bad {
            Expect::Err(Errno::EFAULT)
        } else {
            Expect::Ret(0)
        };
        let cache = self.rng.next();
        // SAFETY: the kernel stores 4 bytes at each good pointer, inside
        // `buf`, which nothing borrows; the bad ones it must refuse.
        unsafe { self.call(nr::GETCPU, &[arg(cpu), arg(node), cache], expect)? };
        // SAFETY: the call is over; read what it wrote.
        let got = unsafe { ptr::read_volatile(&buf) };
        let want = |c: u32| {
            let mut w = [paint; 40];
            if let Where::At(k) = cpu {
                w[k..k + 4].copy_from_slice(&c.to_le_bytes());
            }
            if let Where::At(k) = node {
                w[k..k + 4].copy_from_slice(&0u32.to_le_bytes());
            }
            w
        };
        if (0..64).any(|c| allowed & (1 << c) != 0 && want(c) == got) {
            return Ok(());
        }
        // Wrong bytes where only the CPU goes: a CPU it may not use.
        let w = want(allowed.trailing_zeros());
        let i = (0..40).find(|&i| w[i] != got[i]).unwrap_or(0);
        let only_cpu = |i: usize| {
            let inside = |w: Where| matches!(w, Where::At(k) if (k..k + 4).contains(&i));
            inside(cpu) && !inside(node)
        };
        Err(self.fail(if only_cpu(i) {
            Why::Note("getcpu stored a CPU this thread may not run on")
        } else {
            Why::Memory {
                addr: base + i as u64,
                want: w[i],
                got: got[i],
            }
        }))
    }
}
