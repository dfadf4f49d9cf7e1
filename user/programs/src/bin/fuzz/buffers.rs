//! Memory the fuzzer's calls read and write, for the calls whose
//! arguments and results are small structures (signals.rs, cpus.rs):
//! inputs placed in our own memory or read from memory that never
//! changes, outputs painted around so that a stray byte shows.

use core::ptr;

use crate::space::{Dir, Region};
use crate::thread::{Checked, Thread, Why};

/// What the kernel writes next to its output and must leave alone.
const MARGIN: u64 = 16;

/// Where a call writes: null (for the calls where null means "not
/// wanted"), a pointer it must refuse, or our own memory, painted around
/// so that a stray byte shows.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Null,
    Bad,
    Good,
}

#[derive(Clone, Copy)]
pub struct Out {
    pub ptr: u64,
    pub kind: Kind,
    len: u64,
    salt: u64,
}

impl Out {
    pub fn good(&self) -> bool {
        self.kind == Kind::Good
    }

    /// The addresses painted around it (those that are ours).
    fn window(&self) -> (u64, u64) {
        let lo = self.ptr.saturating_sub(MARGIN);
        (lo, self.ptr.saturating_add(self.len).saturating_add(MARGIN))
    }
}

impl Thread {
    /// Whether `[ptr, ptr + len)` is memory only this thread uses.
    fn mine(&self, ptr: u64, len: u64) -> bool {
        let Some(end) = ptr.checked_add(len) else {
            return false;
        };
        let inside = |r: Region| r.start <= ptr && end <= r.end;
        inside(self.own) || (self.slack && inside(self.space.slack))
    }

    /// A pointer the kernel reads `want.len()` bytes from (never null:
    /// these calls take null as "none"), and whether it must accept it;
    /// `seen` gets what it will read there: `want`, written into our own
    /// memory away from the painted window of `out`, or what other
    /// readable memory holds (rodata, text, the unused bottom of the main
    /// stack: none of it changes).
    pub fn input(&mut self, want: &[u8], seen: &mut [u8], out: Option<&Out>) -> (u64, bool) {
        let len = want.len() as u64;
        let (p, ok) = loop {
            let (p, ok) = self.gen_ptr(len, Dir::KernelReads);
            let clash = out.is_some_and(|o| {
                let (lo, hi) = o.window();
                p < hi && lo < p.saturating_add(len)
            });
            if p != 0 && !clash {
                break (p, ok);
            }
        };
        if !ok {
            return (p, false);
        }
        let mine = self.mine(p, len);
        for (i, (&w, s)) in want.iter().zip(seen.iter_mut()).enumerate() {
            let at = (p + i as u64) as *mut u8;
            if mine {
                // SAFETY: our own memory, which nothing borrows.
                unsafe { ptr::write_volatile(at, w) };
                *s = w;
            } else {
                // SAFETY: mapped and readable (the prediction says so),
                // and nobody writes it.
                *s = unsafe { ptr::read_volatile(at) };
            }
        }
        (p, true)
    }

    /// Where the kernel writes `len` bytes (see `Kind`); null is offered
    /// only where the call takes it as "not wanted".
    pub fn out(&mut self, len: u64, null: bool) -> Out {
        let (ptr, kind) = loop {
            if null && self.rng.chance(1, 5) {
                break (0, Kind::Null);
            }
            let (p, ok) = self.gen_ptr(len, Dir::KernelWrites);
            match (ok, p) {
                (_, 0) if null => break (0, Kind::Null),
                (false, _) => break (p, Kind::Bad),
                // Valid writes are made only into memory that is ours.
                (true, _) if self.mine(p, len) => break (p, Kind::Good),
                _ => {}
            }
        };
        let o = Out {
            ptr,
            kind,
            len,
            salt: self.rng.next(),
        };
        for r in self.windows(&o).into_iter().flatten() {
            for a in r.start..r.end {
                // SAFETY: our own memory, which nothing borrows.
                unsafe { ptr::write_volatile(a as *mut u8, canary(o.salt, a)) };
            }
        }
        o
    }

    /// The parts of our memory within MARGIN bytes of an output.
    fn windows(&self, o: &Out) -> [Option<Region>; 2] {
        let (lo, hi) = o.window();
        [
            self.own.clip(lo, hi),
            if self.slack {
                self.space.slack.clip(lo, hi)
            } else {
                None
            },
        ]
    }

    /// After the call: the output holds `written` (nothing, for a refused
    /// or null pointer or a failed call), and every painted byte around
    /// it is untouched.
    pub fn check_out(&self, o: &Out, written: &[u8]) -> Checked<()> {
        let n = if o.kind == Kind::Good {
            written.len() as u64
        } else {
            0
        };
        for r in self.windows(o).into_iter().flatten() {
            for a in r.start..r.end {
                // SAFETY: our own memory; the call is over.
                let got = unsafe { ptr::read_volatile(a as *const u8) };
                let want = match a.checked_sub(o.ptr) {
                    Some(k) if k < n => written[k as usize],
                    _ => canary(o.salt, a),
                };
                if got != want {
                    return Err(self.fail(Why::Memory { addr: a, want, got }));
                }
            }
        }
        Ok(())
    }
}

fn canary(salt: u64, addr: u64) -> u8 {
    ((salt ^ addr).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8
}
