//! The memory calls: mmap, munmap, mprotect, brk, madvise, mremap.
//!
//! Any thread makes the calls whose result no state can change
//! (`Thread::mem_hostile`): the argument errors, in Linux's order. The
//! main thread alone changes its memory, in two windows no other pointer
//! is ever generated in (space.rs): the arena right below `MMAP_BASE`,
//! where it maps, unmaps, protects, drops and shrinks pages, and the heap
//! above its last segment, where it moves the break. The model (`Mem`)
//! holds each page's protection and the first word it holds, and predicts
//! every result exactly, the kernel's choice of address included (the
//! highest free pages below `MMAP_BASE`, which are the arena's). Pages are
//! checked three ways: the main thread's own loads and stores (only where
//! the model says they cannot fault), a store by the kernel
//! (`clock_gettime` into the page: 0 or EFAULT) and a load by the kernel
//! (`futex` wait with a word that does not match and a zero timeout:
//! EAGAIN or EFAULT). Region boundaries are not modelled: `mremap` is made
//! only where they do not matter (a shrink).

use core::ptr;

use rt::abi::mman::*;
use rt::abi::{Errno, MMAP_MIN_ADDR, TASK_SIZE_MAX, Timespec, clock, futex, nr};

use crate::Fuzz;
use crate::space::{ARENA_PAGES, ARENA_START, HEAP_PAGES, PAGE};
use crate::thread::{Checked, Expect, Thread, Why};

const ANON: u64 = MAP_PRIVATE | MAP_ANONYMOUS;
const KERNEL_HALF: u64 = 0xffff_8000_0000_0000;
/// The rights the main thread gives its pages: it touches only what they
/// allow, so no write-only or exec-only page (x86 cannot refuse reads).
const PROTS: [u64; 3] = [PROT_NONE, PROT_READ, PROT_READ | PROT_WRITE];

/// What the main thread knows of its arena and heap.
pub struct Mem {
    /// Each arena page's protection and first word; None: unmapped.
    pages: [Option<(u64, u32)>; ARENA_PAGES as usize],
    /// The break as the last brk left it (0: not asked yet).
    brk: u64,
    /// The first word of each heap page below the break.
    heap: [u32; HEAP_PAGES as usize],
    pub calls: u64,
}

impl Mem {
    pub const fn new() -> Mem {
        Mem {
            pages: [None; ARENA_PAGES as usize],
            brk: 0,
            heap: [0; HEAP_PAGES as usize],
            calls: 0,
        }
    }
}

fn page_addr(i: usize) -> u64 {
    ARENA_START + i as u64 * PAGE
}

fn readable(prot: u64) -> bool {
    prot & PROT_READ != 0
}

fn writable(prot: u64) -> bool {
    prot & PROT_WRITE != 0
}

impl Fuzz {
    /// One memory operation of the main thread (see the module doc).
    pub fn mem(&mut self) -> Checked<()> {
        self.mem_model.calls += 1;
        if self.mem_model.brk == 0 {
            return self.brk_query();
        }
        match self.t.rng.below(14) {
            0 | 1 => self.map_fixed(),
            2 => self.map_chosen(),
            3 => self.unmap(),
            4 | 5 => self.protect(),
            6 => self.dontneed(),
            7 => self.shrink(),
            8 | 9 => self.touch(),
            10 => self.kernel_store(),
            11 => self.kernel_load(),
            12 => self.brk_move(),
            _ => self.heap_touch(),
        }
    }

    /// A range of the arena: first page and count.
    fn arena_range(&mut self) -> (usize, usize) {
        let first = self.t.rng.below(ARENA_PAGES) as usize;
        let n = self.t.rng.range(1, 8).min(ARENA_PAGES - first as u64) as usize;
        (first, n)
    }

    fn map_fixed(&mut self) -> Checked<()> {
        let (first, n) = self.arena_range();
        let prot = self.t.rng.pick(&PROTS);
        let extra = self
            .t
            .rng
            .pick(&[0, MAP_NORESERVE, MAP_POPULATE, MAP_STACK]);
        let noreplace = self.t.rng.chance(1, 3);
        let flags = ANON
            | extra
            | if noreplace {
                MAP_FIXED_NOREPLACE
            } else {
                MAP_FIXED
            };
        let taken = self.mem_model.pages[first..first + n]
            .iter()
            .any(Option::is_some);
        let addr = page_addr(first);
        let expect = if noreplace && taken {
            Expect::Err(Errno::EEXIST)
        } else {
            Expect::Ret(addr)
        };
        let len = n as u64 * PAGE - self.t.rng.below(PAGE);
        // SAFETY: the arena holds no Rust object; the kernel writes nothing.
        unsafe {
            self.t
                .call(nr::MMAP, &[addr, len, prot, flags, u64::MAX, 0], expect)?
        };
        if expect == Expect::Ret(addr) {
            self.mem_model.pages[first..first + n].fill(Some((prot, 0)));
        }
        Ok(())
    }

    /// mmap where the kernel chooses: the highest free pages below
    /// `MMAP_BASE`, or a free hint. Made only when the arena has room, so
    /// that the choice stays in it.
    fn map_chosen(&mut self) -> Checked<()> {
        let n = self.t.rng.range(1, 6) as usize;
        let pages = &self.mem_model.pages;
        let free = |at: usize| pages[at..at + n].iter().all(Option::is_none);
        let top = (0..=ARENA_PAGES as usize - n).rev().find(|&at| free(at));
        let hint = self.t.rng.below(ARENA_PAGES - n as u64 + 1) as usize;
        let (addr, at) = if free(hint) && self.t.rng.chance(1, 2) {
            (page_addr(hint), hint)
        } else if let Some(at) = top {
            // A hint that is taken goes to the search too.
            let taken = (0..ARENA_PAGES as usize).find(|&i| pages[i].is_some());
            (taken.map_or(0, page_addr), at)
        } else {
            self.stats.skipped += 1;
            return Ok(());
        };
        let prot = self.t.rng.pick(&PROTS);
        let want = page_addr(at);
        // SAFETY: as in map_fixed.
        let expect = Expect::Ret(want);
        unsafe {
            self.t
                .call(nr::MMAP, &[addr, n as u64 * PAGE, prot, ANON, 0, 0], expect)?
        };
        self.mem_model.pages[at..at + n].fill(Some((prot, 0)));
        Ok(())
    }

    fn unmap(&mut self) -> Checked<()> {
        let (first, n) = self.arena_range();
        let len = n as u64 * PAGE - self.t.rng.below(PAGE);
        // SAFETY: only arena pages go, which hold no Rust object.
        unsafe {
            self.t
                .call(nr::MUNMAP, &[page_addr(first), len], Expect::Ret(0))?
        };
        self.mem_model.pages[first..first + n].fill(None);
        Ok(())
    }

    /// mprotect: over a hole ENOMEM, the pages before it changed.
    fn protect(&mut self) -> Checked<()> {
        let (first, n) = self.arena_range();
        let prot = self.t.rng.pick(&PROTS) | self.t.rng.pick(&[0, 0, PROT_SEM]);
        let pages = &mut self.mem_model.pages[first..first + n];
        let hole = pages.iter().position(Option::is_none);
        let expect = match hole {
            Some(_) => Expect::Err(Errno::ENOMEM),
            None => Expect::Ret(0),
        };
        for page in pages[..hole.unwrap_or(n)].iter_mut().flatten() {
            page.0 = prot & !PROT_SEM;
        }
        // SAFETY: the kernel writes nothing.
        unsafe {
            self.t.call(
                nr::MPROTECT,
                &[page_addr(first), n as u64 * PAGE, prot],
                expect,
            )?
        };
        Ok(())
    }

    /// MADV_DONTNEED (or MADV_FREE, which drops pages at once too):
    /// zeros after; a hole anywhere makes it ENOMEM, the rest done.
    fn dontneed(&mut self) -> Checked<()> {
        let (first, n) = self.arena_range();
        let advice = self.t.rng.pick(&[MADV_DONTNEED, MADV_FREE]);
        let pages = &mut self.mem_model.pages[first..first + n];
        let expect = if pages.iter().any(Option::is_none) {
            Expect::Err(Errno::ENOMEM)
        } else {
            Expect::Ret(0)
        };
        for page in pages.iter_mut().flatten() {
            page.1 = 0;
        }
        let args = [page_addr(first), n as u64 * PAGE, advice as u64];
        // SAFETY: the kernel writes nothing; the pages' bytes are the model's.
        unsafe { self.t.call(nr::MADVISE, &args, expect)? };
        Ok(())
    }

    /// mremap shrinking a range that starts on a mapped page: the tail
    /// goes, whatever the regions (EFAULT when nothing is mapped there).
    fn shrink(&mut self) -> Checked<()> {
        let (first, n) = self.arena_range();
        let keep = self.t.rng.range(1, n as u64) as usize;
        let addr = page_addr(first);
        let expect = if self.mem_model.pages[first].is_some() {
            Expect::Ret(addr)
        } else {
            Expect::Err(Errno::EFAULT)
        };
        let args = [addr, n as u64 * PAGE, keep as u64 * PAGE, 0, 0];
        // SAFETY: only arena pages go.
        unsafe { self.t.call(nr::MREMAP, &args, expect)? };
        if expect == Expect::Ret(addr) {
            self.mem_model.pages[first + keep..first + n].fill(None);
        }
        Ok(())
    }

    /// A mapped page, and its model entry, chosen among those `ok` takes.
    fn pick_page(&mut self, ok: fn(u64) -> bool) -> Option<usize> {
        let n = self
            .mem_model
            .pages
            .iter()
            .flatten()
            .filter(|p| ok(p.0))
            .count();
        if n == 0 {
            return None;
        }
        let nth = self.t.rng.below(n as u64) as usize;
        (0..ARENA_PAGES as usize)
            .filter(|&i| self.mem_model.pages[i].is_some_and(|p| ok(p.0)))
            .nth(nth)
    }

    /// The main thread's own load (and maybe store) where the model says
    /// neither can fault: a fault would end the run.
    fn touch(&mut self) -> Checked<()> {
        let Some(i) = self.pick_page(readable) else {
            self.stats.skipped += 1;
            return Ok(());
        };
        let Some((prot, word)) = self.mem_model.pages[i] else {
            return Ok(());
        };
        let at = page_addr(i) as *mut u32;
        // SAFETY: mapped readable (the model), and no Rust object is there.
        let got = unsafe { ptr::read_volatile(at) };
        if got != word {
            return Err(self
                .t
                .fail(Why::Note("an arena page does not hold what was left there")));
        }
        if writable(prot) && self.t.rng.chance(1, 2) {
            let v = self.t.rng.next() as u32;
            // SAFETY: mapped writable (the model).
            unsafe { ptr::write_volatile(at, v) };
            self.mem_model.pages[i] = Some((prot, v));
        }
        Ok(())
    }

    /// A store by the kernel: clock_gettime into an arena page.
    fn kernel_store(&mut self) -> Checked<()> {
        let i = self.t.rng.below(ARENA_PAGES) as usize;
        let page = self.mem_model.pages[i];
        let ok = page.is_some_and(|p| writable(p.0));
        let expect = if ok {
            Expect::Ret(0)
        } else {
            Expect::Err(Errno::EFAULT)
        };
        let args = [clock::MONOTONIC as u64, page_addr(i)];
        // SAFETY: the arena holds no Rust object.
        unsafe { self.t.call(nr::CLOCK_GETTIME, &args, expect)? };
        if let Some((prot, _)) = page.filter(|_| ok) {
            // SAFETY: mapped writable: the kernel just wrote there.
            let word = unsafe { ptr::read_volatile(page_addr(i) as *const u32) };
            self.mem_model.pages[i] = Some((prot, word));
        }
        Ok(())
    }

    /// A load by the kernel: a futex wait whose word does not match, with
    /// a zero timeout, so it never blocks.
    fn kernel_load(&mut self) -> Checked<()> {
        let i = self.t.rng.below(ARENA_PAGES) as usize;
        let page = self.mem_model.pages[i];
        let (expect, word) = match page {
            Some((prot, word)) if readable(prot) => (Expect::Err(Errno::EAGAIN), word),
            _ => (Expect::Err(Errno::EFAULT), 0),
        };
        let zero = Timespec::from_ns(0).to_bytes();
        let op = (futex::WAIT | futex::PRIVATE_FLAG) as u64;
        let val = u64::from(word.wrapping_add(1));
        let args = [page_addr(i), op, val, zero.as_ptr() as u64];
        // SAFETY: the kernel only reads the word and the timeout.
        unsafe { self.t.call(nr::FUTEX, &args, expect)? };
        Ok(())
    }

    /// brk(0): where the break is; the heap starts on the page after the
    /// last segment.
    fn brk_query(&mut self) -> Checked<()> {
        let start = self.t.space.heap.start;
        let want = if self.mem_model.brk == 0 {
            start
        } else {
            self.mem_model.brk
        };
        // SAFETY: brk(0) changes nothing.
        unsafe { self.t.call(nr::BRK, &[0], Expect::Ret(want))? };
        self.mem_model.brk = want;
        Ok(())
    }

    /// brk inside the heap's window (below its start: the old break).
    fn brk_move(&mut self) -> Checked<()> {
        let heap = self.t.space.heap;
        if self.t.rng.chance(1, 5) {
            return self.brk_query();
        }
        let to = self
            .t
            .rng
            .range(heap.start - 2 * PAGE, heap.end - 2 * PAGE - 1);
        let old = self.mem_model.brk;
        let want = if to < heap.start { old } else { to };
        // SAFETY: only heap pages go or come, which hold no Rust object.
        unsafe { self.t.call(nr::BRK, &[to], Expect::Ret(want))? };
        if want != old {
            // Pages above the new break are gone: zeros when they come back.
            let kept = (want.next_multiple_of(PAGE) - heap.start) / PAGE;
            self.mem_model.heap[kept as usize..].fill(0);
            self.mem_model.brk = want;
        }
        Ok(())
    }

    /// A load and a store in a heap page below the break.
    fn heap_touch(&mut self) -> Checked<()> {
        let heap = self.t.space.heap;
        let pages = (self.mem_model.brk.next_multiple_of(PAGE) - heap.start) / PAGE;
        if pages == 0 {
            self.stats.skipped += 1;
            return Ok(());
        }
        let i = self.t.rng.below(pages) as usize;
        let at = (heap.start + i as u64 * PAGE) as *mut u32;
        // SAFETY: below the break, so mapped writable; no Rust object there.
        let got = unsafe { ptr::read_volatile(at) };
        if got != self.mem_model.heap[i] {
            return Err(self
                .t
                .fail(Why::Note("a heap page does not hold what was left there")));
        }
        let v = self.t.rng.next() as u32;
        // SAFETY: as above.
        unsafe { ptr::write_volatile(at, v) };
        self.mem_model.heap[i] = v;
        Ok(())
    }
}

impl Thread {
    /// A memory call whose result no thread's state can change: the
    /// argument errors, in Linux's order (docs/abi.md).
    pub fn mem_hostile(&mut self) -> Checked<()> {
        let r = &mut self.rng;
        let any = r.next() & !(PAGE - 1);
        let user = r.range(MMAP_MIN_ADDR / PAGE, TASK_SIZE_MAX / PAGE - 16) * PAGE;
        let odd = user | r.range(1, PAGE - 1);
        let huge_len = r.range(u64::MAX - PAGE + 2, u64::MAX);
        let (call, args, err): (u64, [u64; 6], Errno) = match r.below(16) {
            // mmap: the offset first, then the descriptor, then the length.
            0 => (
                nr::MMAP,
                [any, r.next(), r.next(), r.next(), r.next(), odd],
                Errno::EINVAL,
            ),
            1 => (
                nr::MMAP,
                [
                    any,
                    r.next(),
                    3,
                    MAP_PRIVATE,
                    u64::from(r.range(64, 1000) as u32),
                    0,
                ],
                Errno::EBADF,
            ),
            2 => (nr::MMAP, [0, 0, 3, ANON, u64::MAX, 0], Errno::EINVAL),
            3 => (nr::MMAP, [0, huge_len, 3, ANON, u64::MAX, 0], Errno::ENOMEM),
            4 => (
                nr::MMAP,
                [
                    KERNEL_HALF + any % (1 << 40),
                    PAGE,
                    3,
                    ANON | MAP_FIXED,
                    0,
                    0,
                ],
                Errno::ENOMEM,
            ),
            5 => (
                nr::MMAP,
                [odd, PAGE, 3, ANON | MAP_FIXED, 0, 0],
                Errno::EINVAL,
            ),
            6 => (
                nr::MMAP,
                [PAGE * r.range(1, 15), PAGE, 3, ANON | MAP_FIXED, 0, 0],
                Errno::EPERM,
            ),
            // Neither private nor shared, after a search that finds room.
            7 => (
                nr::MMAP,
                [0, PAGE, 3, MAP_ANONYMOUS | r.pick(&[0, 3, 4, 0xf]), 0, 0],
                Errno::EINVAL,
            ),
            // Writable, charged, larger than all of memory.
            8 => (nr::MMAP, [0, 1 << 40, 3, ANON, 0, 0], Errno::ENOMEM),
            9 => match r.below(3) {
                0 => (nr::MUNMAP, [odd, PAGE, 0, 0, 0, 0], Errno::EINVAL),
                1 => (nr::MUNMAP, [user, 0, 0, 0, 0, 0], Errno::EINVAL),
                _ => (
                    nr::MUNMAP,
                    [KERNEL_HALF + any % (1 << 40), PAGE, 0, 0, 0, 0],
                    Errno::EINVAL,
                ),
            },
            10 => match r.below(4) {
                0 => (nr::MPROTECT, [odd, PAGE, 1, 0, 0, 0], Errno::EINVAL),
                1 => (
                    nr::MPROTECT,
                    [user, PAGE, 0x10 << r.below(20), 0, 0, 0],
                    Errno::EINVAL,
                ),
                2 => (nr::MPROTECT, [user, huge_len, 1, 0, 0, 0], Errno::ENOMEM),
                _ => (nr::MPROTECT, [KERNEL_HALF, PAGE, 1, 0, 0, 0], Errno::ENOMEM),
            },
            11 => (
                nr::MPROTECT,
                [any, PAGE, PROT_GROWSDOWN | PROT_GROWSUP, 0, 0, 0],
                Errno::EINVAL,
            ),
            12 => match r.below(4) {
                0 => (
                    nr::MADVISE,
                    [any, r.next(), r.range(26, 99), 0, 0, 0],
                    Errno::EINVAL,
                ),
                1 => (
                    nr::MADVISE,
                    [odd, PAGE, MADV_DONTNEED as u64, 0, 0, 0],
                    Errno::EINVAL,
                ),
                2 => (
                    nr::MADVISE,
                    [user, u64::MAX, MADV_DONTNEED as u64, 0, 0, 0],
                    Errno::EINVAL,
                ),
                _ => (
                    nr::MADVISE,
                    [KERNEL_HALF, PAGE, MADV_WILLNEED as u64, 0, 0, 0],
                    Errno::ENOMEM,
                ),
            },
            13 => match r.below(4) {
                0 => (
                    nr::MREMAP,
                    [any, PAGE, PAGE, 8 << r.below(40), 0, 0],
                    Errno::EINVAL,
                ),
                1 => (
                    nr::MREMAP,
                    [any, PAGE, PAGE, MREMAP_FIXED, any, 0],
                    Errno::EINVAL,
                ),
                2 => (nr::MREMAP, [odd, PAGE, PAGE, 0, 0, 0], Errno::EINVAL),
                _ => (
                    nr::MREMAP,
                    [KERNEL_HALF, PAGE, 2 * PAGE, MREMAP_MAYMOVE, 0, 0],
                    Errno::EFAULT,
                ),
            },
            14 => (nr::MREMAP, [user, PAGE, 0, 0, 0, 0], Errno::EINVAL),
            // An empty range: nothing to do, whatever is there.
            _ => {
                let call = r.pick(&[nr::MPROTECT, nr::MADVISE]);
                let arg = if call == nr::MPROTECT {
                    0x10
                } else {
                    MADV_DONTNEED as u64
                };
                return {
                    // SAFETY: an empty range touches nothing.
                    unsafe { self.call(call, &[user, 0, arg], Expect::Ret(0))? };
                    Ok(())
                };
            }
        };
        // SAFETY: each is refused before the kernel touches memory.
        unsafe { self.call(call, &args, Expect::Err(err))? };
        Ok(())
    }
}
