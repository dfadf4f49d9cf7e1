//! What the fuzzer knows about its own address space, so that it can say
//! for any pointer whether the kernel must accept it or refuse it with
//! EFAULT (docs/abi.md, "User pointers" and "Memory layout").
//!
//! Only ranges whose answer is certain are ever generated: wholly inside
//! one region known to be mapped (with known rights), or touching memory
//! known to be unmapped or outside the user half. `predict` returns None
//! for anything else, which the generators never produce.

use rt::abi::{
    MMAP_BASE, TASK_SIZE_MAX, USER_END, USER_STACK_MAX, USER_STACK_SIZE, USER_STACK_TOP,
};

use crate::rng::Rng;

pub const PAGE: u64 = 4096;
/// user.ld links programs here and nothing lies below: null pointers fault.
pub const LOAD_BASE: u64 = 0x40_0000;
/// The first bytes of the main stack: mapped and, at this program's stack
/// depth, never used, so the kernel may read them (they stay zero).
const STACK_BOTTOM_BYTES: u64 = 1024;
/// Pages above the last segment the main thread's `brk` may take (mem.rs):
/// no pointer is ever generated there, and the last page stays free.
pub const HEAP_PAGES: u64 = 32;
/// Pages right below `MMAP_BASE` where the main thread maps, unmaps and
/// protects memory (mem.rs): the kernel's own choice of address falls
/// there first. No other pointer is ever generated in it.
pub const ARENA_PAGES: u64 = 256;
pub const ARENA_START: u64 = MMAP_BASE - ARENA_PAGES * PAGE;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub end: u64,
}

impl Region {
    pub const fn new(start: u64, end: u64) -> Region {
        Region { start, end }
    }

    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    fn contains(&self, start: u64, end: u64) -> bool {
        self.start <= start && end <= self.end
    }

    fn intersects(&self, start: u64, end: u64) -> bool {
        start < self.end && self.start < end
    }

    /// The part of `[start, end)` inside this region, if any.
    pub fn clip(&self, start: u64, end: u64) -> Option<Region> {
        let r = Region::new(start.max(self.start), end.min(self.end));
        (r.start < r.end).then_some(r)
    }

    /// A start for `len` bytes wholly inside this region (len <= len()).
    fn place(&self, rng: &mut Rng, len: u64) -> u64 {
        self.start + rng.below(self.len() - len + 1)
    }
}

/// Which way the kernel moves the bytes: out of user memory (`write`'s
/// buffer) or into it (`read`'s buffer, `pipe`'s and `wait`'s results).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    KernelReads,
    KernelWrites,
}

#[derive(Clone, Copy)]
pub struct Space {
    /// The first page of text: `_start` comes first (user.ld), and rodata,
    /// which follows text, was found to start past it.
    pub text: Option<Region>,
    pub ro: Region,
    pub stack: Region,
    pub stack_bottom: Region,
    /// The fuzzer's own writable statics (main's buffer, the helper slots).
    pub owned: [Region; 2],
    /// From the end of .bss to the end of its page: mapped, zero-filled,
    /// owned by no Rust object; written only by the main thread's calls.
    pub slack: Region,
    /// Where the heap may grow (the main thread's brk), and the main
    /// thread's arena of mappings: never predicted here.
    pub heap: Region,
    unmapped: [Region; 5],
}

impl Space {
    pub fn new(ro: Region, owned: [Region; 2], bss_end: u64) -> Space {
        let data_end = bss_end.next_multiple_of(PAGE);
        let stack = Region::new(USER_STACK_TOP - USER_STACK_SIZE, USER_STACK_TOP);
        // Below its first pages the stack region goes on (the argument
        // pages), and grows down to USER_STACK_MAX on any access there:
        // only what lies below that is certainly unmapped.
        let growth = USER_STACK_TOP - USER_STACK_MAX;
        let heap_end = data_end + HEAP_PAGES * PAGE;
        Space {
            text: (ro.start >= LOAD_BASE + PAGE)
                .then_some(Region::new(LOAD_BASE, LOAD_BASE + PAGE)),
            ro,
            stack,
            stack_bottom: Region::new(stack.start, stack.start + STACK_BOTTOM_BYTES),
            owned,
            slack: Region::new(bss_end, data_end),
            heap: Region::new(data_end, heap_end),
            unmapped: [
                Region::new(0, LOAD_BASE),
                // Nothing is mapped between the heap's window and the
                // arena, between the arena and where the stack may grow
                // to, or above the stack. (The first gap is split in two,
                // so both halves keep a region.)
                Region::new(heap_end, heap_end + (ARENA_START - heap_end) / 2),
                Region::new(heap_end + (ARENA_START - heap_end) / 2, ARENA_START),
                Region::new(MMAP_BASE, growth),
                Region::new(USER_STACK_TOP, USER_END),
            ],
        }
    }

    /// An address in the big unmapped gap between the program and the
    /// stack.
    pub fn unmapped_mid(&self, rng: &mut Rng) -> u64 {
        let gap = self.unmapped[1];
        rng.range(gap.start, gap.end - 1)
    }

    fn mapped(&self) -> [(Option<Region>, bool); 6] {
        [
            (self.text, false),
            (Some(self.ro), false),
            (Some(self.stack), true),
            (Some(self.owned[0]), true),
            (Some(self.owned[1]), true),
            (Some(self.slack), true),
        ]
    }

    /// Whether the kernel must accept `[addr, addr + len)` for `dir`. An
    /// empty range needs no memory, only a user address (Linux's
    /// `access_ok`: at most TASK_SIZE_MAX), as a transfer's buffer does.
    pub fn predict(&self, addr: u64, len: u64, dir: Dir) -> Option<bool> {
        if len == 0 {
            return Some(addr <= TASK_SIZE_MAX);
        }
        let Some(end) = addr.checked_add(len) else {
            return Some(false);
        };
        if end > USER_END || self.unmapped.iter().any(|u| u.intersects(addr, end)) {
            return Some(false);
        }
        for (region, writable) in self.mapped() {
            if region.is_some_and(|r| r.contains(addr, end)) {
                return Some(dir == Dir::KernelReads || writable);
            }
        }
        None
    }

    /// A pointer for `len` bytes that the kernel will access in `dir`:
    /// valid about half the time, else one of every kind of bad address.
    /// Valid ones lie in `own` (which the caller may use freely) or, for
    /// reads by the kernel, in memory whose contents the caller can read
    /// itself; `slack` allows the slack region too. A range longer than
    /// every region that could hold it gets a bad address, so no range is
    /// ever generated that `predict` cannot judge.
    pub fn pointer(&self, rng: &mut Rng, len: u64, dir: Dir, own: Region, slack: bool) -> u64 {
        let fits = |r: Region| len <= r.len();
        match rng.below(20) {
            0..=7 if fits(own) => own.place(rng, len),
            8 if slack && fits(self.slack) => self.slack.place(rng, len),
            // Read-only memory: fine to read from, EFAULT to read into.
            9 if fits(self.ro) => self.ro.place(rng, len),
            10 if fits(self.ro) => self.ro.place(rng, len),
            11 => match self.text {
                Some(text) if fits(text) => text.place(rng, len),
                _ if fits(own) => own.place(rng, len),
                _ => self.hostile(rng, len),
            },
            12 if dir == Dir::KernelReads && fits(self.stack_bottom) => {
                self.stack_bottom.place(rng, len)
            }
            _ => self.hostile(rng, len),
        }
    }

    /// An address the kernel must refuse for `len` bytes, or (a straddle
    /// with len 1 at a mapped region's end) one it must accept; `predict`
    /// tells which.
    pub fn hostile(&self, rng: &mut Rng, len: u64) -> u64 {
        let [low, mid, between, over_arena, above] = self.unmapped;
        match rng.below(11) {
            0 => rng.below(PAGE),
            1 => rng.range(low.start, low.end - 1),
            2 => rng.range(mid.start, mid.end - 1),
            3 if rng.chance(1, 2) => rng.range(between.start, between.end - 1),
            3 => rng.range(over_arena.start, over_arena.end - 1),
            4 => rng.range(above.start, above.end - 1),
            // The direct map, the heap and the kernel image: mapped, but
            // supervisor-only.
            5 => 0xffff_8000_0000_0000 + rng.below(1 << 32),
            6 => 0xffff_c000_0000_0000 + rng.below(1 << 32),
            7 => 0xffff_ffff_8000_0000 + rng.below(1 << 24),
            // Not canonical.
            8 => USER_END + rng.below(0xffff_0000_0000_0000),
            9 => {
                let top = u64::MAX - rng.below(64);
                rng.pick(&[
                    USER_END,
                    0x1234_5678_9abc_d000,
                    0xffff_7fff_ffff_f000,
                    0x8000_0000_0000_0000,
                    top,
                ])
            }
            // Across a boundary between mapped and unmapped memory, the
            // end of the user half or the end of the address space. A
            // range of one byte cannot straddle anything.
            _ if len < 2 => USER_END,
            _ => {
                // (Not the slack's end: the heap may go on past it.)
                let edges = [
                    LOAD_BASE,
                    USER_STACK_TOP - USER_STACK_MAX,
                    USER_STACK_TOP,
                    USER_END,
                    0,
                    self.heap.end,
                ];
                let edge = rng.pick(&edges);
                edge.wrapping_sub(rng.range(1, len - 1))
            }
        }
    }
}
