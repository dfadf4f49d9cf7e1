//! The memory calls and demand paging on the host: mmap, munmap,
//! mprotect, brk, madvise, mremap through the system-call path, faults
//! through the simulated MMU, frames and counters checked on the way.

use super::*;
use crate::mm::fault::Outcome;
use crate::mm::pte::LeafFlags;
use crate::mm::region::{Region, VmFlags};
use crate::testutil::Rng;
use abi::mman::*;
use abi::sig::{SEGV_ACCERR, SEGV_MAPERR};
use abi::{MMAP_BASE, USER_STACK_MAX, USER_STACK_TOP};

const P: u64 = 4096;
const EEXIST: i64 = -(Errno::EEXIST as i64);
const EACCES: i64 = -(Errno::EACCES as i64);
const ENODEV: i64 = -(Errno::ENODEV as i64);
const RW: u64 = PROT_READ | PROT_WRITE;
const ANON: u64 = MAP_PRIVATE | MAP_ANONYMOUS;

impl User {
    pub(super) fn mmap(&self, addr: u64, len: u64, prot: u64, flags: u64) -> i64 {
        self.call(nr::MMAP, &[addr, len, prot, flags, u64::MAX, 0])
    }

    fn munmap(&self, addr: u64, len: u64) -> i64 {
        self.call(nr::MUNMAP, &[addr, len])
    }

    fn mprotect(&self, addr: u64, len: u64, prot: u64) -> i64 {
        self.call(nr::MPROTECT, &[addr, len, prot])
    }

    fn madvise(&self, addr: u64, len: u64, advice: i32) -> i64 {
        self.call(nr::MADVISE, &[addr, len, advice as u64])
    }

    fn brk(&self, addr: u64) -> u64 {
        self.call(nr::BRK, &[addr]) as u64
    }

    /// One byte read as the program would, or the fault it cannot pass.
    pub(super) fn load(&self, va: u64) -> Result<u8, Outcome> {
        let mut b = [0];
        self.touch(va, AccessKind::Read, &mut |mmu, root| {
            mmu.read(root, va, &mut b)
        })
        .map(|()| b[0])
    }

    fn store(&self, va: u64, v: u8) -> Result<(), Outcome> {
        self.touch(va, AccessKind::Write, &mut |mmu, root| {
            mmu.write(root, va, &[v])
        })
    }

    /// The process's regions as (start, end, rights).
    fn regions(&self) -> Vec<(u64, u64, VmFlags)> {
        self.sys
            .with_current_process(|p| {
                Ok(crate::testutil::alloc::normal(|| {
                    p.space
                        .regions()
                        .iter()
                        .map(|r| (r.start, r.end, r.flags & VmFlags::ACCESS))
                        .collect()
                }))
            })
            .unwrap()
    }

    fn rss(&self) -> u64 {
        self.sys
            .with_current_process(|p| Ok(p.space.rss()))
            .unwrap()
    }

    fn free(&self) -> u64 {
        self.sys.m.frames.stats().free
    }
}

fn segv(code: i32, present: bool) -> Result<u8, Outcome> {
    Err(Outcome::Signal { code, present })
}

#[test]
fn untouched_memory_costs_nothing_reads_zero_and_comes_back_on_munmap() {
    let w = World::new();
    let frames = w.free_frames();
    let status = w.run_to_end(|u| {
        let before = u.sys.vm_stats();
        let rss = u.rss();
        let a = u.mmap(0, 4 * P, RW, ANON) as u64;
        // Top-down from Linux's mmap_base.
        assert_eq!(a, MMAP_BASE - 4 * P);
        // A read maps the zero page: no frame (but the tables), not
        // anonymous memory.
        assert_eq!(u.load(a + 10), Ok(0));
        let free = u.free();
        assert_eq!(u.rss(), rss, "the zero page is shared");
        let s = u.sys.vm_stats();
        assert_eq!(s.nr_anon_pages, before.nr_anon_pages);
        assert_eq!(s.zero_page_maps, before.zero_page_maps + 1);
        // A write breaks it: one frame of zeros of its own.
        assert_eq!(u.store(a + 10, 7), Ok(()));
        assert_eq!((u.load(a + 10), u.load(a + 11)), (Ok(7), Ok(0)));
        assert_eq!((u.free(), u.rss()), (free - 1, rss + 1));
        assert_eq!(u.sys.vm_stats().nr_anon_pages, before.nr_anon_pages + 1);
        assert!(u.sys.vm_stats().pgfault >= before.pgfault + 2);
        // Another page, written first: no zero page on the way.
        assert_eq!(u.store(a + 3 * P, 9), Ok(()));
        assert_eq!(u.free(), free - 2);
        assert_eq!(u.munmap(a, 4 * P), 0);
        // The frames and the tables the range left empty.
        assert!(u.free() > free, "frames back");
        assert_eq!(u.rss(), rss);
        assert_eq!(u.sys.vm_stats().nr_anon_pages, before.nr_anon_pages);
        // Gone: the translation too, flushed before the frame went back.
        let root = u.root();
        assert_eq!(u.sys.m.mmu.cached(root, a + 10), None);
        assert_eq!(u.load(a + 10), segv(SEGV_MAPERR, false));
        0
    });
    assert_eq!(status, 0);
    assert_eq!(w.free_frames(), frames, "frames leaked");
    w.assert_quiet();
}

#[test]
fn dropped_pages_read_zero_again_through_a_flushed_tlb() {
    let w = World::new();
    w.run_to_end(|u| {
        let a = u.mmap(0, 2 * P, RW, ANON) as u64;
        u.store(a, 0x5a).unwrap();
        u.store(a + P, 0x5b).unwrap();
        // The TLB holds a writable, dirty translation now: without a flush
        // the next read would still reach the old frame.
        assert_eq!(u.madvise(a, P, MADV_DONTNEED), 0);
        assert_eq!(u.load(a), Ok(0), "stale translation after DONTNEED");
        assert_eq!(u.load(a + P), Ok(0x5b), "only the page asked for");
        assert_eq!(u.madvise(a, 2 * P, MADV_FREE), 0);
        assert_eq!(u.load(a + P), Ok(0));
        // Read-only now: a cached writable translation would let this in.
        u.store(a, 1).unwrap();
        assert_eq!(u.mprotect(a, P, PROT_READ), 0);
        assert_eq!(
            u.store(a, 2),
            Err(Outcome::Signal {
                code: SEGV_ACCERR,
                present: true
            })
        );
        assert_eq!(u.load(a), Ok(1));
        // PROT_NONE keeps the bytes and refuses every access, as a page
        // Linux sees as not present.
        assert_eq!(u.mprotect(a, P, PROT_NONE), 0);
        assert_eq!(u.load(a), segv(SEGV_ACCERR, false));
        assert_eq!(u.mprotect(a, P, RW), 0);
        assert_eq!(u.load(a), Ok(1));
        assert_eq!(u.store(a, 3), Ok(()));
        0
    });
    w.assert_quiet();
}

#[test]
fn system_calls_fault_buffers_in_and_refuse_what_no_region_allows() {
    let w = World::new();
    w.run_to_end(|u| {
        let a = u.mmap(0, 2 * P, RW, ANON) as u64;
        let (r, wr) = u.pipe();
        // write() from a page never touched: the zero page's bytes.
        assert_eq!(u.call(nr::WRITE, &[wr, a, 8]), 8);
        u.poke(DATA, &[0xee; 8]);
        assert_eq!(u.call(nr::READ, &[r, DATA, 8]), 8);
        assert_eq!(u.peek(DATA, 8), [0; 8]);
        // read() into an untouched page, across into the next.
        u.poke(DATA, b"abcdefgh");
        assert_eq!(u.call(nr::WRITE, &[wr, DATA, 8]), 8);
        let free = u.free();
        assert_eq!(u.call(nr::READ, &[r, a + P - 4, 8]), 8);
        assert_eq!(u.free(), free - 2, "two frames faulted in");
        assert_eq!(u.peek(a + P - 4, 8), b"abcdefgh");
        // The kernel's access set the bits the MMU would.
        let flags = u
            .sys
            .with_current_process(|p| Ok(p.space.page_table().translate(a + P).unwrap().1))
            .unwrap();
        assert!(flags.contains(LeafFlags::ACCESSED | LeafFlags::DIRTY));
        // Read-only, none, nothing: EFAULT, and nothing consumed.
        assert_eq!(u.mprotect(a, P, PROT_READ), 0);
        assert_eq!(u.call(nr::WRITE, &[wr, DATA, 4]), 4);
        assert_eq!(u.call(nr::READ, &[r, a, 4]), EFAULT);
        assert_eq!(u.mprotect(a, P, PROT_NONE), 0);
        assert_eq!(u.call(nr::WRITE, &[wr, a, 4]), EFAULT);
        assert_eq!(u.munmap(a, 2 * P), 0);
        assert_eq!(u.call(nr::READ, &[r, a + P, 4]), EFAULT);
        assert_eq!(
            u.call(nr::READ, &[r, DATA, 4]),
            4,
            "the bytes are still there"
        );
        0
    });
    w.assert_quiet();
}

#[test]
fn mmap_arguments_are_judged_in_linuxs_order() {
    let w = World::new();
    w.run_to_end(|u| {
        let kernel = 0xffff_8000_0000_0000u64;
        let call = |addr: u64, len: u64, prot: u64, flags: u64, fd: u64, off: u64| {
            u.call(nr::MMAP, &[addr, len, prot, flags, fd, off])
        };
        // The offset first, then the descriptor, then the length.
        assert_eq!(call(0, 0, RW, MAP_PRIVATE, 99, 1), EINVAL);
        assert_eq!(call(0, 0, RW, MAP_PRIVATE, 99, 0), EBADF);
        assert_eq!(call(0, 0, RW, ANON, 99, 0), EINVAL);
        assert_eq!(call(0, u64::MAX, RW, ANON, 0, 0), ENOMEM, "wraps");
        assert_eq!(call(0, 1 << 47, RW, ANON, 0, 0), ENOMEM);
        // Open descriptors that cannot be mapped: the console, a pipe end.
        assert_eq!(call(0, P, RW, MAP_PRIVATE, 1, 0), ENODEV);
        assert_eq!(call(0, P, RW, MAP_SHARED, 1, 0), ENODEV);
        let (_, wr) = u.pipe();
        assert_eq!(call(0, P, PROT_READ, MAP_PRIVATE, wr, 0), EACCES);
        // A map type of neither kind, after the address.
        assert_eq!(call(0, P, RW, MAP_ANONYMOUS, 0, 0), EINVAL);
        assert_eq!(
            call(0, P, RW, MAP_ANONYMOUS | MAP_SHARED_VALIDATE, 0, 0),
            EINVAL
        );
        assert_eq!(call(kernel, P, RW, MAP_ANONYMOUS | MAP_FIXED, 0, 0), ENOMEM);
        // MAP_FIXED: the kernel half and past it, misaligned, too low.
        assert_eq!(call(kernel, P, RW, ANON | MAP_FIXED, 0, 0), ENOMEM);
        assert_eq!(
            call(abi::TASK_SIZE_MAX, P, RW, ANON | MAP_FIXED, 0, 0),
            ENOMEM
        );
        assert_eq!(call(0x10_0001, P, RW, ANON | MAP_FIXED, 0, 0), EINVAL);
        assert_eq!(call(0x1000, P, RW, ANON | MAP_FIXED, 0, 0), EPERM);
        // A low hint is raised to mmap_min_addr; a free hint is taken.
        assert_eq!(call(0x1000, P, RW, ANON, 0, 0), abi::MMAP_MIN_ADDR as i64);
        assert_eq!(call(0x5000_0000, P, RW, ANON, 0, 0), 0x5000_0000);
        // MAP_FIXED_NOREPLACE over it: EEXIST; MAP_FIXED replaces it.
        let fixed = ANON | MAP_FIXED_NOREPLACE;
        assert_eq!(call(0x5000_0000, P, RW, fixed, 0, 0), EEXIST);
        u.store(0x5000_0000, 1).unwrap();
        assert_eq!(
            call(0x5000_0000, P, RW, ANON | MAP_FIXED, 0, 0),
            0x5000_0000
        );
        assert_eq!(u.load(0x5000_0000), Ok(0), "a fresh mapping");
        // More than all of memory, writable and charged: Linux's
        // heuristic refuses it; without the charge it is fine.
        assert_eq!(call(0, 1 << 40, RW, ANON, 0, 0), ENOMEM);
        assert!(call(0, 1 << 40, RW, ANON | MAP_NORESERVE, 0, 0) > 0);
        assert!(call(0, 1 << 40, PROT_READ, ANON, 0, 0) > 0);
        assert_eq!(call(0, P, RW, ANON | MAP_HUGETLB, 0, 0), ENOMEM);
        assert_eq!(call(0, P, RW, ANON | MAP_HUGETLB | 5 << 26, 0, 0), EINVAL);
        // MAP_32BIT: between 1 and 2 GiB.
        let low = call(0, P, RW, ANON | MAP_32BIT, 0, 0);
        assert!((0x4000_0000..0x8000_0000).contains(&low), "{low:#x}");
        0
    });
    w.assert_quiet();
}

#[test]
fn regions_split_and_merge_as_linuxs() {
    let w = World::new();
    w.run_to_end(|u| {
        let a = u.mmap(0, 4 * P, RW, ANON) as u64;
        // Below it, adjacent and compatible: one region.
        let b = u.mmap(0, 2 * P, RW, ANON) as u64;
        assert_eq!(b, a - 2 * P);
        let rw = VmFlags::READ | VmFlags::WRITE;
        let mine = |u: &User| {
            u.regions()
                .into_iter()
                .filter(|r| r.0 >= b && r.1 <= a + 4 * P)
                .collect::<Vec<_>>()
        };
        assert_eq!(mine(u), [(b, a + 4 * P, rw)]);
        // A hole in the middle: two.
        assert_eq!(u.munmap(a, P), 0);
        assert_eq!(mine(u), [(b, a, rw), (a + P, a + 4 * P, rw)]);
        // mprotect in the middle: three, then back: one again.
        assert_eq!(u.mprotect(a + 2 * P, P, PROT_READ), 0);
        assert_eq!(mine(u).len(), 4);
        assert_eq!(u.mprotect(a + 2 * P, P, RW), 0);
        assert_eq!(mine(u), [(b, a, rw), (a + P, a + 4 * P, rw)]);
        // Over the hole: ENOMEM, but the part before it changed.
        assert_eq!(u.mprotect(b, 6 * P, PROT_READ), ENOMEM);
        assert_eq!(mine(u)[0], (b, a, VmFlags::READ));
        assert_eq!(mine(u)[1], (a + P, a + 4 * P, rw));
        // Read-only made writable again is charged anew and merges.
        assert_eq!(u.mprotect(b, 2 * P, RW), 0);
        // Filling the hole joins all three.
        assert_eq!(u.mmap(a, P, RW, ANON | MAP_FIXED), a as i64);
        assert_eq!(mine(u), [(b, a + 4 * P, rw)]);
        // Argument errors.
        assert_eq!(u.mprotect(a + 1, P, PROT_READ), EINVAL);
        assert_eq!(u.mprotect(a, P, 0x10), EINVAL);
        assert_eq!(u.mprotect(a, 0, 0x10), 0, "len 0 comes first");
        assert_eq!(u.mprotect(a, u64::MAX, PROT_READ), ENOMEM);
        assert_eq!(u.mprotect(0x1000, P, PROT_READ), ENOMEM);
        assert_eq!(u.mprotect(a, P, PROT_GROWSDOWN | PROT_GROWSUP), EINVAL);
        assert_eq!(u.mprotect(a, P, PROT_READ | PROT_GROWSDOWN), EINVAL);
        assert_eq!(u.munmap(a + 1, P), EINVAL);
        assert_eq!(u.munmap(a, 0), EINVAL);
        assert_eq!(u.munmap(0xffff_8000_0000_0000, P), EINVAL);
        assert_eq!(u.munmap(a, u64::MAX), EINVAL);
        assert_eq!(u.munmap(0x1000_0000, P), 0, "nothing there is fine");
        0
    });
    w.assert_quiet();
}

#[test]
fn the_break_moves_as_linuxs_and_says_where_it_is() {
    let w = World::new();
    w.run_to_end(|u| {
        let start = u.brk(0);
        // The page after the program's last segment.
        assert_eq!(start, DATA + DATA_LEN);
        assert_eq!(u.brk(start - 1), start, "below the start: refused");
        assert_eq!(u.brk(start + 10), start + 10);
        assert_eq!(u.load(start + 9), Ok(0));
        u.store(start + 9, 5).unwrap();
        assert_eq!(u.brk(start + 3 * P), start + 3 * P);
        assert_eq!(u.load(start + 9), Ok(5), "growing keeps the bytes");
        // Shrinking drops the pages: growing again gives zeros.
        assert_eq!(u.brk(start), start);
        assert_eq!(u.load(start + 9), segv(SEGV_MAPERR, false));
        assert_eq!(u.brk(start + P), start + P);
        assert_eq!(u.load(start + 9), Ok(0));
        // Something mapped above: the break stops a page short of it.
        let above = start + 8 * P;
        assert_eq!(u.mmap(above, P, RW, ANON | MAP_FIXED), above as i64);
        assert_eq!(u.brk(above), start + P, "into a mapping");
        assert_eq!(u.brk(above - P + 1), start + P, "no page left free");
        assert_eq!(u.brk(above - P), above - P);
        assert_eq!(u.brk(u64::MAX), above - P);
        0
    });
    w.assert_quiet();
}

#[test]
fn the_stack_grows_down_to_linuxs_limit() {
    let w = World::new();
    w.run_to_end(|u| {
        let stack = u
            .regions()
            .into_iter()
            .find(|r| r.1 == USER_STACK_TOP)
            .expect("a stack region");
        // 128 KiB and the argument pages, as Linux's first stack region.
        assert_eq!(USER_STACK_TOP - stack.0, abi::USER_STACK_SIZE + P);
        // A touch far below grows it; one past 8 MiB does not.
        let deep = USER_STACK_TOP - USER_STACK_MAX;
        assert_eq!(u.store(deep, 1), Ok(()));
        assert_eq!(u.regions().last().unwrap().0, deep);
        assert_eq!(u.load(deep - 1), segv(SEGV_MAPERR, false));
        // The kernel's accesses grow it too, within the guard rules:
        // nothing else may sit within the guard gap below it.
        let gap = abi::STACK_GUARD_GAP;
        let below = deep - gap - 2 * P;
        assert_eq!(u.mmap(below, P, RW, ANON | MAP_FIXED), below as i64);
        assert_eq!(u.munmap(deep, P), 0);
        // mmap's own choice stays clear of the gap.
        assert_eq!(u.munmap(deep + P, 16 * P), 0);
        0
    });
    w.assert_quiet();
}

#[test]
fn madvise_and_mremap_check_as_linux() {
    let w = World::new();
    w.run_to_end(|u| {
        let a = u.mmap(0, 4 * P, RW, ANON) as u64;
        assert_eq!(u.madvise(a, P, 999), EINVAL);
        assert_eq!(u.madvise(a + 1, P, MADV_DONTNEED), EINVAL);
        assert_eq!(u.madvise(a, 0, MADV_DONTNEED), 0);
        assert_eq!(u.madvise(a, u64::MAX, MADV_DONTNEED), EINVAL);
        assert_eq!(u.madvise(a, P, MADV_WILLNEED), 0);
        assert_eq!(u.madvise(a, P, MADV_REMOVE), EINVAL, "private memory");
        assert_eq!(u.madvise(0x1000_0000, P, MADV_DONTNEED), ENOMEM);
        // A hole: the rest is done, and ENOMEM.
        u.store(a + 3 * P, 4).unwrap();
        assert_eq!(u.madvise(a + 3 * P, 2 * P, MADV_DONTNEED), ENOMEM);
        assert_eq!(u.load(a + 3 * P), Ok(0));
        // Advice that is a flag splits the region.
        let before = u.regions().len();
        assert_eq!(u.madvise(a + P, P, MADV_DONTFORK), 0);
        assert_eq!(u.regions().len(), before + 2);
        assert_eq!(u.madvise(a + P, P, MADV_DOFORK), 0);
        assert_eq!(u.regions().len(), before);
        assert_eq!(u.madvise(a, 4 * P, MADV_POPULATE_WRITE), 0);
        assert_eq!(u.mprotect(a, P, PROT_READ), 0);
        assert_eq!(u.madvise(a, P, MADV_POPULATE_WRITE), EINVAL);
        // mremap: grow in place, shrink, move.
        let mremap = |addr: u64, old: u64, new: u64, flags: u64, to: u64| {
            u.call(nr::MREMAP, &[addr, old, new, flags, to])
        };
        u.store(a + P, 0x11).unwrap();
        assert_eq!(mremap(a + P, 3 * P, 2 * P, 0, 0), (a + P) as i64);
        assert_eq!(u.load(a + 3 * P), segv(SEGV_MAPERR, false));
        assert_eq!(
            mremap(a + P, 2 * P, 3 * P, 0, 0),
            (a + P) as i64,
            "in place"
        );
        // Not room above: ENOMEM without MAYMOVE; moved with it.
        let b = u.mmap(a + 4 * P, P, PROT_READ, ANON | MAP_FIXED) as u64;
        assert_eq!(mremap(a + P, 3 * P, 4 * P, 0, 0), ENOMEM);
        let moved = mremap(a + P, 3 * P, 8 * P, MREMAP_MAYMOVE, 0);
        assert!(moved > 0 && moved as u64 != a + P);
        let moved = moved as u64;
        assert_eq!(u.load(moved), Ok(0x11), "the bytes came along");
        assert_eq!(u.load(a + P), segv(SEGV_MAPERR, false));
        assert_eq!(u.load(moved + 7 * P), Ok(0), "the new part is zeros");
        // Errors.
        assert_eq!(mremap(a, P, P, 8, 0), EINVAL);
        assert_eq!(mremap(a, P, P, MREMAP_FIXED, b), EINVAL);
        assert_eq!(mremap(a, P, 0, 0, 0), EINVAL);
        assert_eq!(mremap(a + 1, P, P, 0, 0), EINVAL);
        assert_eq!(mremap(0x1000_0000, P, 2 * P, 0, 0), EFAULT);
        assert_eq!(mremap(moved, 9 * P, 10 * P, MREMAP_MAYMOVE, 0), EFAULT);
        assert_eq!(mremap(moved, 0, P, MREMAP_MAYMOVE, 0), EINVAL);
        // MREMAP_FIXED onto b, which goes.
        let to = mremap(moved, P, P, MREMAP_MAYMOVE | MREMAP_FIXED, b);
        assert_eq!(to, b as i64);
        assert_eq!(u.load(b), Ok(0x11));
        0
    });
    w.assert_quiet();
}

#[test]
fn out_of_memory_on_a_fault_ends_the_process_and_nothing_leaks() {
    let w = World::new();
    let frames = w.free_frames();
    let status = w.run_to_end(|u| {
        let len = 4096 * P;
        let a = u.mmap(0, len, RW, ANON | MAP_NORESERVE) as u64;
        for va in (a..a + len).step_by(P as usize) {
            if let Err(e) = u.store(va, 1) {
                assert_eq!(e, Outcome::OutOfMemory);
                // What the machine's hook does with it: the end.
                let access = crate::mm::fault::Access {
                    write: true,
                    exec: false,
                    present: false,
                };
                let fault = crate::mm::fault::Fault { addr: va, access };
                u.sys.user_fault(14, "page fault", 6, TEXT, Some(fault), 0);
                unreachable!("the process goes on after running out");
            }
        }
        unreachable!("memory never ran out");
    });
    assert_eq!(status, abi::signaled_status(abi::sig::SIGKILL));
    w.assert_quiet();
    assert_eq!(w.free_frames(), frames, "frames leaked");
    // And the same through a system call: a read into untouched memory.
    let status = w.run_to_end(|u| {
        let len = 4096 * P;
        let a = u.mmap(0, len, RW, ANON | MAP_NORESERVE) as u64;
        let (r, wr) = u.pipe();
        u.poke(DATA, &[1; 64]);
        for va in (a..a + len).step_by(P as usize) {
            assert_eq!(u.call(nr::WRITE, &[wr, DATA, 1]), 1);
            if u.raw_call(nr::READ, &[r, va, 1], TEXT + 2) == EFAULT {
                u.return_to_user();
                unreachable!("the kill comes on the way back");
            }
        }
        0
    });
    assert_eq!(status, abi::signaled_status(abi::sig::SIGKILL));
    assert!(w.console().contains("oom: killed pid="), "{}", w.console());
    assert!(w.console().contains(" rss_pages="));
    assert_eq!(w.sys.vm_stats().oom_kill, 2);
    w.assert_quiet();
    assert_eq!(w.free_frames(), frames, "frames leaked");
}

#[test]
fn the_fault_path_allocates_nothing_but_its_frame() {
    let w = World::new();
    w.run_to_end(|u| {
        let a = u.mmap(0, 64 * P, RW, ANON) as u64;
        let root = u.root();
        for i in 0..64u64 {
            let va = a + i * P;
            let fault = crate::mm::fault::Fault {
                addr: va,
                access: crate::mm::fault::Access {
                    write: i % 2 == 0,
                    exec: false,
                    present: false,
                },
            };
            let (outcome, allocs) = crate::testutil::alloc::count(|| u.sys.resolve_fault(fault));
            assert_eq!((outcome, allocs), (Outcome::Resolved, 0), "page {i}");
            let _ = root;
        }
        0
    });
    w.assert_quiet();
}

/// The model of the random test: per page of a window, its rights and
/// the byte at its start (0 until written).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Page {
    prot: u64,
    byte: u8,
}

const WINDOW: u64 = 48;

#[test]
fn random_calls_agree_with_a_page_model() {
    for seed in 1..=12u64 {
        let w = World::new();
        let frames = w.free_frames();
        w.run_to_end(move |u| {
            let base = 0x6000_0000u64;
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let mut model: Vec<Option<Page>> = vec![None; WINDOW as usize];
            for step in 0..300 {
                let a = rng.below(WINDOW);
                let n = 1 + rng.below(6).min(WINDOW - a - 1);
                let (va, len) = (base + a * P, n * P);
                let prot = [PROT_NONE, PROT_READ, RW, PROT_READ | PROT_EXEC][rng.index(4)];
                let pages = a as usize..(a + n) as usize;
                match rng.below(6) {
                    0 => {
                        assert_eq!(u.mmap(va, len, prot, ANON | MAP_FIXED), va as i64);
                        model[pages].fill(Some(Page { prot, byte: 0 }));
                    }
                    1 => {
                        assert_eq!(u.munmap(va, len), 0);
                        model[pages].fill(None);
                    }
                    2 => {
                        let holes = model[pages.clone()].iter().any(Option::is_none);
                        let got = u.mprotect(va, len, prot);
                        if holes {
                            assert_eq!(got, ENOMEM, "step {step}");
                            // Linux changed the regions before the hole.
                            for p in pages {
                                match &mut model[p] {
                                    Some(page) => page.prot = prot,
                                    None => break,
                                }
                            }
                        } else {
                            assert_eq!(got, 0, "step {step}");
                            model[pages]
                                .iter_mut()
                                .flatten()
                                .for_each(|p| p.prot = prot);
                        }
                    }
                    3 => {
                        let holes = model[pages.clone()].iter().any(Option::is_none);
                        let got = u.madvise(va, len, MADV_DONTNEED);
                        let all_holes = model[pages.clone()].iter().all(Option::is_none);
                        let want = if holes { ENOMEM } else { 0 };
                        if !all_holes || holes {
                            assert_eq!(got, want, "step {step}");
                        }
                        model[pages].iter_mut().flatten().for_each(|p| p.byte = 0);
                    }
                    4 => {
                        let v = rng.below(255) as u8 + 1;
                        let got = u.store(va, v);
                        match model[a as usize] {
                            None => assert_eq!(
                                got,
                                Err(Outcome::Signal {
                                    code: SEGV_MAPERR,
                                    present: false
                                })
                            ),
                            Some(ref mut p) if p.prot & PROT_WRITE != 0 => {
                                assert_eq!(got, Ok(()), "step {step}");
                                p.byte = v;
                            }
                            Some(_) => assert!(matches!(
                                got,
                                Err(Outcome::Signal {
                                    code: SEGV_ACCERR,
                                    ..
                                })
                            )),
                        }
                    }
                    _ => {
                        let got = u.load(va);
                        match model[a as usize] {
                            None => assert_eq!(got, segv(SEGV_MAPERR, false)),
                            Some(p) if p.prot == PROT_NONE => {
                                assert_eq!(got, segv(SEGV_ACCERR, false))
                            }
                            Some(p) => assert_eq!(got, Ok(p.byte), "step {step}"),
                        }
                    }
                }
                check_regions(u, base, &model);
            }
            assert_eq!(u.munmap(base, WINDOW * P), 0);
            0
        });
        w.assert_quiet();
        assert_eq!(w.free_frames(), frames, "seed {seed}: frames leaked");
    }
}

/// The regions in the window cover exactly the mapped pages with their
/// rights, and none is left apart from a neighbour it could merge with.
fn check_regions(u: &User, base: u64, model: &[Option<Page>]) {
    let regions: Vec<Region> = u
        .sys
        .with_current_process(|p| {
            Ok(crate::testutil::alloc::normal(|| {
                p.space.regions().check().unwrap();
                p.space.regions().iter().copied().collect()
            }))
        })
        .unwrap();
    let end = base + WINDOW * P;
    let mine: Vec<&Region> = regions
        .iter()
        .filter(|r| r.start >= base && r.end <= end)
        .collect();
    for (i, page) in model.iter().enumerate() {
        let va = base + i as u64 * P;
        let r = mine.iter().find(|r| r.contains(va));
        let want = page.map(|p| match p.prot {
            PROT_NONE => VmFlags::empty(),
            PROT_READ => VmFlags::READ,
            RW => VmFlags::READ | VmFlags::WRITE,
            _ => VmFlags::READ | VmFlags::EXEC,
        });
        assert_eq!(r.map(|r| r.flags & VmFlags::ACCESS), want, "page {i}");
    }
    for w in mine.windows(2) {
        assert!(
            !w[0].merges_with_next(w[1]),
            "{:x?} {:x?} left apart",
            w[0],
            w[1]
        );
    }
}
