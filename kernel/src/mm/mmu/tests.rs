//! Host tests of the simulated MMU, and through it of the walker's flush
//! tokens: what a missing flush looks like, and that accessed and dirty
//! bits survive entry updates.

use super::*;
use crate::mm::paging::{MapError, PageSize, PageTable, SimTableAlloc, TableAlloc};
use crate::mm::phys::SimMemory;
use crate::mm::pte::{MarkerFlags, SimPte, SwapEntry};
use crate::mm::tlb::FlushPage;

type Table<'m> = PageTable<'m, SimPte, SimMemory>;
type Mmu<'m> = SimMmu<'m, SimPte, SimMemory>;

const USER_RW: LeafFlags = LeafFlags::USER.union(LeafFlags::WRITABLE);
const VA: u64 = 0x40_0000;
/// Data frames, far below the table frames.
const A: Pfn = Pfn(0x100);
const B: Pfn = Pfn(0x101);
const MIB2: u64 = 2 << 20;

fn alloc() -> SimTableAlloc {
    SimTableAlloc::new(Pfn(0x10_0000))
}

/// Fills frame `pfn` with `byte`.
fn fill(mem: &SimMemory, pfn: Pfn, byte: u8) {
    mem.write_bytes(pfn.addr(), &[byte; PAGE_SIZE as usize]);
}

fn read_byte(mmu: &Mmu, root: Pfn, va: u64) -> Result<u8, Fault> {
    let mut b = [0];
    mmu.read(root, va, &mut b)?;
    Ok(b[0])
}

fn map(pt: &mut Table, va: u64, pfn: Pfn, flags: LeafFlags, alloc: &dyn TableAlloc) {
    pt.map(va, pfn, PageSize::Size4K, flags, alloc).unwrap();
}

fn leaf_flags(pt: &Table, va: u64) -> LeafFlags {
    pt.translate(va).expect("mapped").1
}

fn fault(va: u64, access: AccessKind, kind: FaultKind) -> Fault {
    Fault {
        va,
        access,
        mode: Mode::User,
        kind,
    }
}

#[test]
fn accesses_go_through_the_tables() {
    let (mem, alloc) = (SimMemory::new(), alloc());
    let mut pt = Table::new(&mem, &alloc).unwrap();
    let mmu = Mmu::new(&mem);
    map(&mut pt, VA, A, USER_RW, &alloc);
    map(&mut pt, VA + 0x1000, B, USER_RW, &alloc);
    // Across the page boundary: the bytes land in two frames.
    mmu.write(pt.root(), VA + 0xffe, b"faul").unwrap();
    let mut got = [0; 2];
    mem.read_bytes(A.addr() + 0xffe, &mut got);
    assert_eq!(&got, b"fa");
    mem.read_bytes(B.addr(), &mut got);
    assert_eq!(&got, b"ul");
    let mut back = [0; 4];
    mmu.read(pt.root(), VA + 0xffe, &mut back).unwrap();
    assert_eq!(&back, b"faul");
    assert_eq!(mmu.mem().read_u64(A.addr()), 0);
}

#[test]
fn accessed_and_dirty_are_set_once_by_compare_exchange() {
    let (mem, alloc) = (SimMemory::new(), alloc());
    let mut pt = Table::new(&mem, &alloc).unwrap();
    let mmu = Mmu::new(&mem);
    map(&mut pt, VA, A, USER_RW, &alloc);
    let leaf = |flags| SimPte::encode(&Pte::Leaf { pfn: A, flags }, 0).unwrap();
    let accessed = USER_RW | LeafFlags::ACCESSED;
    mem.record_writes(true);
    read_byte(&mmu, pt.root(), VA).unwrap();
    let history = mem.take_history();
    assert_eq!(history.len(), 1);
    assert_eq!(
        (history[0].old, history[0].new),
        (leaf(USER_RW), leaf(accessed))
    );
    assert_eq!(leaf_flags(&pt, VA), accessed);
    mmu.write(pt.root(), VA, b"x").unwrap();
    let history = mem.take_history();
    // The entry update, then the data.
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].new, leaf(accessed | LeafFlags::DIRTY));
    assert_eq!(leaf_flags(&pt, VA), accessed | LeafFlags::DIRTY);
    // Set bits are not set again: the next write stores only its data.
    mmu.write(pt.root(), VA + 8, b"y").unwrap();
    assert_eq!(mem.take_history().len(), 1);
    let stats = mmu.stats();
    assert_eq!((stats.ad_updates, stats.walks, stats.hits), (2, 2, 1));
}

#[test]
fn a_tlb_hit_reads_no_table() {
    let (mem, alloc) = (SimMemory::new(), alloc());
    let mut pt = Table::new(&mem, &alloc).unwrap();
    let mmu = Mmu::new(&mem);
    map(&mut pt, VA, A, USER_RW, &alloc);
    fill(&mem, A, 0xaa);
    assert_eq!(read_byte(&mmu, pt.root(), VA), Ok(0xaa));
    // Whatever the tables say now, the cached translation is used.
    let Some(Pte::Table(l0)) = pt.entry(VA, 1) else {
        panic!("no level-0 table")
    };
    mem.write_u64(l0.addr() + ((VA >> 12) % 512) * 8, 0xf << 60);
    assert_eq!(read_byte(&mmu, pt.root(), VA + 5), Ok(0xaa));
    assert_eq!((mmu.stats().walks, mmu.stats().hits), (1, 1));
    assert_eq!(
        mmu.cached(pt.root(), VA + 5).map(|c| c.0),
        Some(A.addr() + 5)
    );
    mmu.flush_space(pt.root());
    let err = read_byte(&mmu, pt.root(), VA);
    assert_eq!(err, Err(fault(VA, AccessKind::Read, FaultKind::Reserved)));
}

#[test]
fn faults_say_what_and_where() {
    let (mem, alloc) = (SimMemory::new(), alloc());
    let mut pt = Table::new(&mem, &alloc).unwrap();
    let mmu = Mmu::new(&mem);
    let root = pt.root();
    use AccessKind::*;
    use FaultKind::*;
    let flags = [
        LeafFlags::WRITABLE,                     // supervisor only
        LeafFlags::USER,                         // read-only
        LeafFlags::USER | LeafFlags::EXECUTABLE, // read-execute
        USER_RW,                                 // no execute
    ];
    for (i, f) in flags.into_iter().enumerate() {
        map(
            &mut pt,
            VA + i as u64 * 0x1000,
            Pfn(A.0 + i as u64),
            f,
            &alloc,
        );
    }
    let mut buf = [0; 4];
    let at = |i: u64| VA + i * 0x1000;
    assert_eq!(
        mmu.read(root, at(0), &mut buf),
        Err(fault(at(0), Read, Protection))
    );
    assert_eq!(
        mmu.write(root, at(1), b"x"),
        Err(fault(at(1), Write, Protection))
    );
    assert_eq!(mmu.read(root, at(1), &mut buf), Ok(()));
    assert_eq!(mmu.fetch(root, at(2), &mut buf), Ok(()));
    assert_eq!(
        mmu.write(root, at(2), b"x"),
        Err(fault(at(2), Write, Protection))
    );
    assert_eq!(
        mmu.fetch(root, at(3), &mut buf),
        Err(fault(at(3), Execute, Protection))
    );
    assert_eq!(mmu.write(root, at(3), b"x"), Ok(()));
    // Nothing mapped after the last page: the fault names the first byte
    // that failed, and the bytes before it were written.
    let err = mmu.write(root, at(4) - 2, b"abcd");
    assert_eq!(err, Err(fault(at(4), Write, NotPresent)));
    let mut got = [0; 2];
    mem.read_bytes(Pfn(A.0 + 3).addr() + 0xffe, &mut got);
    assert_eq!(&got, b"ab");
    // Supervisor accesses ignore USER but not WRITABLE or EXECUTABLE.
    let sup = |va, kind| mmu.access(root, va, kind, Mode::Supervisor).map(|_| ());
    assert_eq!(sup(at(0), Write), Ok(()));
    assert_eq!(
        sup(at(1), Write).map_err(|f| (f.kind, f.mode)),
        Err((Protection, Mode::Supervisor))
    );
    assert_eq!(sup(at(3), Execute).map_err(|f| f.kind), Err(Protection));
    // Non-present entries of every kind, a malformed one, a hole.
    let swap = Pte::Swap(SwapEntry::new(1, 2));
    let marker = Pte::Marker(MarkerFlags::GUARD);
    for (i, pte) in [(5, swap), (6, marker)] {
        let (_, flush) = pt.set_entry(at(i), 0, pte, &alloc).unwrap();
        flush.flush(&mmu);
        assert_eq!(
            mmu.read(root, at(i), &mut buf),
            Err(fault(at(i), Read, NotPresent))
        );
    }
    let Some(Pte::Table(l0)) = pt.entry(VA, 1) else {
        panic!("no level-0 table")
    };
    mem.write_u64(l0.addr() + ((at(7) >> 12) % 512) * 8, 0xf << 60);
    assert_eq!(
        mmu.read(root, at(7), &mut buf),
        Err(fault(at(7), Read, Reserved))
    );
    let hole = 0x7f00_0000_0000;
    assert_eq!(
        mmu.fetch(root, hole, &mut buf),
        Err(fault(hole, Execute, NotPresent))
    );
    let wild = 0x8000_0000_0000;
    assert_eq!(
        mmu.read(root, wild, &mut buf),
        Err(fault(wild, Read, NonCanonical))
    );
    // Running off the top of the address space.
    map(&mut pt, !0xfff, Pfn(A.0 + 8), LeafFlags::USER, &alloc);
    let err = mmu.read(root, u64::MAX - 1, &mut buf);
    assert_eq!(err.map_err(|f| (f.kind, f.va)), Err((NonCanonical, 0)));
}

#[test]
fn a_forgotten_flush_reads_the_stale_frame() {
    let (mem, alloc) = (SimMemory::new(), alloc());
    let mut pt = Table::new(&mem, &alloc).unwrap();
    let mmu = Mmu::new(&mem);
    let root = pt.root();
    fill(&mem, A, 0xaa);
    fill(&mem, B, 0xbb);
    map(&mut pt, VA, A, USER_RW, &alloc);
    mmu.write(root, VA + 8, &[0xaa]).unwrap();
    // Remap to B, forgetting the flush: A, which may already belong to
    // someone else, is still what the program reads and writes.
    let (old, _, _, flush) = pt.unmap(VA).unwrap();
    assert_eq!(old, A);
    core::mem::forget(flush);
    map(&mut pt, VA, B, USER_RW, &alloc);
    assert_eq!(read_byte(&mmu, root, VA), Ok(0xaa));
    mmu.write(root, VA, &[0x11]).unwrap();
    assert_eq!(mem.read_u64(A.addr()) & 0xff, 0x11, "the write went to A");
    // The same remap with the flush reads B.
    let (_, _, _, flush) = pt.unmap(VA).unwrap();
    flush.flush(&mmu);
    map(&mut pt, VA, B, USER_RW, &alloc);
    assert_eq!(read_byte(&mmu, root, VA), Ok(0xbb));
    // Unmapped without a flush, the page stays readable; with it, it faults.
    let (_, _, _, flush) = pt.unmap(VA).unwrap();
    assert_eq!(read_byte(&mmu, root, VA), Ok(0xbb));
    flush.flush(&mmu);
    assert_eq!(
        read_byte(&mmu, root, VA),
        Err(fault(VA, AccessKind::Read, FaultKind::NotPresent))
    );
}

#[test]
fn a_forgotten_protect_flush_keeps_the_page_writable() {
    let (mem, alloc) = (SimMemory::new(), alloc());
    let mut pt = Table::new(&mem, &alloc).unwrap();
    let mmu = Mmu::new(&mem);
    let root = pt.root();
    map(&mut pt, VA, A, USER_RW, &alloc);
    mmu.write(root, VA, b"1").unwrap();
    let (_, flush) = pt.protect(VA, LeafFlags::USER).unwrap();
    assert_eq!(
        mmu.write(root, VA, b"2"),
        Ok(()),
        "cached writable and dirty"
    );
    flush.flush(&mmu);
    let err = mmu.write(root, VA, b"3");
    assert_eq!(
        err,
        Err(fault(VA, AccessKind::Write, FaultKind::Protection))
    );
}

#[test]
fn writes_through_cached_read_only_or_clean_translations_walk_again() {
    let (mem, alloc) = (SimMemory::new(), alloc());
    let mut pt = Table::new(&mem, &alloc).unwrap();
    let mmu = Mmu::new(&mem);
    let root = pt.root();
    map(&mut pt, VA, A, LeafFlags::USER, &alloc);
    map(&mut pt, VA + 0x1000, B, USER_RW, &alloc);
    read_byte(&mmu, root, VA).unwrap();
    read_byte(&mmu, root, VA + 0x1000).unwrap();
    assert_eq!(mmu.stats().walks, 2);
    // Made writable: the cached read-only translation does not stand in
    // the way, so a widening needs no flush.
    let (_, flush) = pt.protect(VA, USER_RW).unwrap();
    core::mem::forget(flush);
    mmu.write(root, VA, b"w").unwrap();
    // Writable but clean in the TLB: the write walks to set dirty.
    mmu.write(root, VA + 0x1000, b"w").unwrap();
    assert_eq!(mmu.stats().walks, 4);
    for va in [VA, VA + 0x1000] {
        assert!(leaf_flags(&pt, va).contains(LeafFlags::DIRTY), "{va:#x}");
    }
    // Writable and dirty in the TLB: no walk.
    mmu.write(root, VA, b"x").unwrap();
    assert_eq!(mmu.stats().walks, 4);
}

#[test]
fn a_dirty_bit_cleared_without_a_flush_is_not_set_again() {
    let (mem, alloc) = (SimMemory::new(), alloc());
    let mut pt = Table::new(&mem, &alloc).unwrap();
    let mmu = Mmu::new(&mem);
    let root = pt.root();
    map(&mut pt, VA, A, USER_RW, &alloc);
    mmu.write(root, VA, b"1").unwrap();
    // Write-back cleans the page: the old flags carry the dirty bit.
    let (old, flush) = pt.protect(VA, USER_RW).unwrap();
    assert!(old.contains(LeafFlags::DIRTY));
    core::mem::forget(flush);
    mmu.write(root, VA, b"2").unwrap();
    assert_eq!(
        leaf_flags(&pt, VA),
        USER_RW,
        "the second write is lost to reclaim"
    );
    let (_, flush) = pt.protect(VA, USER_RW).unwrap();
    flush.flush(&mmu);
    mmu.write(root, VA, b"3").unwrap();
    assert!(leaf_flags(&pt, VA).contains(LeafFlags::DIRTY));
}

#[test]
fn the_dirty_bit_survives_every_entry_update() {
    let (mem, alloc) = (SimMemory::new(), alloc());
    let mut pt = Table::new(&mem, &alloc).unwrap();
    let mmu = Mmu::new(&mem);
    let root = pt.root();
    let ad = LeafFlags::ACCESSED | LeafFlags::DIRTY;
    for (i, va) in [VA, VA + 0x1000, VA + 0x2000].into_iter().enumerate() {
        map(&mut pt, va, Pfn(A.0 + i as u64), USER_RW, &alloc);
        mmu.write(root, va, b"dirty").unwrap();
    }
    // Write-protect (fork, write-back), swap-out, unmap: each returns it.
    let (old, flush) = pt.protect(VA, LeafFlags::USER).unwrap();
    flush.flush(&mmu);
    assert_eq!(old, USER_RW | ad);
    let swap = Pte::Swap(SwapEntry::new(0, 42));
    let (old, flush) = pt.set_entry(VA + 0x1000, 0, swap, &alloc).unwrap();
    flush.flush(&mmu);
    let pfn = Pfn(A.0 + 1);
    assert_eq!(
        old,
        Pte::Leaf {
            pfn,
            flags: USER_RW | ad
        }
    );
    let (_, _, old, flush) = pt.unmap(VA + 0x2000).unwrap();
    flush.flush(&mmu);
    assert_eq!(old, USER_RW | ad);
}

/// Memory that lets software change one entry between the MMU's walk and
/// its compare-exchange, as another CPU could.
struct Racing<'a> {
    mem: &'a SimMemory,
    /// The entry and what software stores there first.
    armed: Mutex<Option<(u64, u64)>>,
}

impl PhysMem for Racing<'_> {
    fn read_u64(&self, pa: u64) -> u64 {
        self.mem.read_u64(pa)
    }
    fn write_u64(&self, pa: u64, value: u64) {
        self.mem.write_u64(pa, value)
    }
    fn zero_frame(&self, pfn: Pfn) {
        self.mem.zero_frame(pfn)
    }
    fn copy_frame(&self, dst: Pfn, src: Pfn) {
        self.mem.copy_frame(dst, src)
    }
    fn compare_exchange_u64(&self, pa: u64, current: u64, new: u64) -> Result<u64, u64> {
        let armed = self.armed.lock().take();
        if let Some((at, value)) = armed
            && at == pa
        {
            self.mem.swap_u64(pa, value);
        }
        self.mem.compare_exchange_u64(pa, current, new)
    }
}

#[test]
fn a_walk_that_loses_the_race_walks_again() {
    let (mem, alloc) = (SimMemory::new(), alloc());
    let mut pt = Table::new(&mem, &alloc).unwrap();
    map(&mut pt, VA, A, USER_RW, &alloc);
    let Some(Pte::Table(l0)) = pt.entry(VA, 1) else {
        panic!("no level-0 table")
    };
    let entry = l0.addr() + ((VA >> 12) % 512) * 8;
    let racing = Racing {
        mem: &mem,
        armed: Mutex::new(None),
    };
    let mmu = SimMmu::<SimPte, Racing>::new(&racing);
    // Write-protected between the walk and the dirty update: the write
    // must fault, not set dirty in (or write through) a read-only entry.
    let read_only = SimPte::encode(
        &Pte::Leaf {
            pfn: A,
            flags: LeafFlags::USER,
        },
        0,
    )
    .unwrap();
    *racing.armed.lock() = Some((entry, read_only));
    let err = mmu.write(pt.root(), VA, b"x");
    assert_eq!(
        err,
        Err(fault(VA, AccessKind::Write, FaultKind::Protection))
    );
    assert_eq!(mem.read_u64(entry), read_only);
    assert_eq!(mmu.stats().walks, 2);
    // Moved to another frame meanwhile: the write lands in the new one.
    let writable = SimPte::encode(
        &Pte::Leaf {
            pfn: A,
            flags: USER_RW,
        },
        0,
    )
    .unwrap();
    mem.write_u64(entry, writable);
    let moved = SimPte::encode(
        &Pte::Leaf {
            pfn: B,
            flags: USER_RW,
        },
        0,
    )
    .unwrap();
    *racing.armed.lock() = Some((entry, moved));
    mmu.write(pt.root(), VA, b"x").unwrap();
    assert_eq!(mem.read_u64(B.addr()) & 0xff, u64::from(b'x'));
    assert_eq!(mem.read_u64(A.addr()), 0);
}

/// Memory through which the walker edits entries while the MMU writes
/// through one of them at the last possible moment: just before software's
/// next store to it. With `split_swap`, `swap_u64` is the trait's default,
/// a read and then a write, as `DirectMap` had it.
struct LastMoment<'a> {
    mem: &'a SimMemory,
    mmu: &'a Mmu<'a>,
    root: Pfn,
    /// The entry to watch and the address the MMU then writes.
    armed: Mutex<Option<(u64, u64)>>,
    split_swap: bool,
}

impl LastMoment<'_> {
    fn fire(&self, pa: u64) {
        let armed = self.armed.lock().take();
        match armed {
            Some((at, va)) if at == pa => self.mmu.write(self.root, va, b"w").unwrap(),
            other => *self.armed.lock() = other,
        }
    }
}

impl PhysMem for LastMoment<'_> {
    fn read_u64(&self, pa: u64) -> u64 {
        self.mem.read_u64(pa)
    }
    fn write_u64(&self, pa: u64, value: u64) {
        self.fire(pa);
        self.mem.write_u64(pa, value)
    }
    fn zero_frame(&self, pfn: Pfn) {
        self.mem.zero_frame(pfn)
    }
    fn copy_frame(&self, dst: Pfn, src: Pfn) {
        self.mem.copy_frame(dst, src)
    }
    fn swap_u64(&self, pa: u64, value: u64) -> u64 {
        if self.split_swap {
            let old = self.read_u64(pa);
            self.write_u64(pa, value);
            return old;
        }
        self.fire(pa);
        self.mem.swap_u64(pa, value)
    }
    fn compare_exchange_u64(&self, pa: u64, current: u64, new: u64) -> Result<u64, u64> {
        self.fire(pa);
        self.mem.compare_exchange_u64(pa, current, new)
    }
}

#[test]
fn a_dirty_bit_set_at_the_last_moment_is_returned() {
    let (mem, alloc) = (SimMemory::new(), alloc());
    let mmu = Mmu::new(&mem);
    let root = Table::new(&mem, &alloc).unwrap().root();
    for split_swap in [false, true] {
        let racy = LastMoment {
            mem: &mem,
            mmu: &mmu,
            root,
            armed: Mutex::new(None),
            split_swap,
        };
        let mut pt = PageTable::<SimPte, LastMoment>::from_root(&racy, root);
        let dirty = |old: LeafFlags| old.contains(LeafFlags::DIRTY);
        // Each update starts from a clean writable page the TLB does not
        // hold, and the MMU dirties it right before the update's store.
        let mut update = |op: &mut dyn FnMut(&mut PageTable<SimPte, LastMoment>) -> LeafFlags| {
            pt.map(VA, A, PageSize::Size4K, USER_RW, &alloc).unwrap();
            mmu.flush_all();
            let Some(Pte::Table(l0)) = pt.entry(VA, 1) else {
                panic!("no level-0 table")
            };
            *racy.armed.lock() = Some((l0.addr() + ((VA >> 12) % 512) * 8, VA));
            let old = op(&mut pt);
            assert_eq!(*racy.armed.lock(), None, "the MMU did not write");
            mmu.flush_all();
            let (_, _, _, flush) = pt.unmap(VA).unwrap();
            flush.ignore_fresh_table();
            old
        };
        let protected = update(&mut |pt| {
            let (old, flush) = pt.protect(VA, LeafFlags::USER).unwrap();
            flush.flush(&mmu);
            old
        });
        let unmapped = update(&mut |pt| {
            let (_, _, old, flush) = pt.unmap(VA).unwrap();
            flush.flush(&mmu);
            pt.map(VA, A, PageSize::Size4K, USER_RW, &alloc).unwrap();
            old
        });
        let swapped = update(&mut |pt| {
            let swap = Pte::Swap(SwapEntry::new(0, 7));
            let (old, flush) = pt.set_entry(VA, 0, swap, &alloc).unwrap();
            flush.flush(&mmu);
            let (_, flush) = pt.set_entry(VA, 0, Pte::Absent, &alloc).unwrap();
            flush.ignore_fresh_table();
            pt.map(VA, A, PageSize::Size4K, USER_RW, &alloc).unwrap();
            match old {
                Pte::Leaf { flags, .. } => flags,
                other => panic!("{other:?}"),
            }
        });
        let got = [dirty(protected), dirty(unmapped), dirty(swapped)];
        // A read-then-write loses exactly the bit the atomic swap keeps.
        assert_eq!(got, [!split_swap; 3], "split_swap {split_swap}");
    }
}

#[test]
fn translations_belong_to_their_space_and_globals_to_all() {
    let (mem, alloc) = (SimMemory::new(), alloc());
    let mut one = Table::new(&mem, &alloc).unwrap();
    let mut two = Table::new(&mem, &alloc).unwrap();
    let mmu = Mmu::new(&mem);
    let (r1, r2) = (one.root(), two.root());
    fill(&mem, A, 1);
    fill(&mem, B, 2);
    map(&mut one, VA, A, USER_RW, &alloc);
    map(&mut two, VA, B, USER_RW, &alloc);
    assert_eq!(read_byte(&mmu, r1, VA), Ok(1));
    assert_eq!(read_byte(&mmu, r2, VA), Ok(2));
    mmu.flush_space(r1);
    assert_eq!(mmu.cached(r1, VA), None);
    assert!(mmu.cached(r2, VA).is_some());
    // A global translation serves every space, mapped there or not, and
    // only a page or global flush drops it.
    let global = 0xffff_8000_0000_0000;
    let flags = LeafFlags::WRITABLE | LeafFlags::GLOBAL;
    map(&mut one, global, A, flags, &alloc);
    let read = |root| mmu.access(root, global, AccessKind::Read, Mode::Supervisor);
    assert_eq!(read(r1), Ok(A.addr()));
    assert_eq!(read(r2), Ok(A.addr()));
    mmu.flush_space(r1);
    mmu.flush_space(r2);
    assert_eq!(read(r2), Ok(A.addr()));
    let page = FlushPage {
        va: global,
        size: PageSize::Size4K,
    };
    mmu.flush_pages(r2, &[page]);
    assert_eq!(read(r2).map_err(|f| f.kind), Err(FaultKind::NotPresent));
    read(r1).unwrap();
    mmu.flush_all();
    assert_eq!(mmu.cache_sizes(), (0, 0));
    let stats = mmu.stats();
    assert_eq!(
        (
            stats.page_flushes,
            stats.space_flushes,
            stats.global_flushes
        ),
        (1, 3, 1)
    );
}

#[test]
fn a_huge_translation_is_cached_and_flushed_whole() {
    let (mem, alloc) = (SimMemory::new(), alloc());
    let mut pt = Table::new(&mem, &alloc).unwrap();
    let mmu = Mmu::new(&mem);
    let root = pt.root();
    pt.map(MIB2, Pfn(0x200), PageSize::Size2M, USER_RW, &alloc)
        .unwrap();
    read_byte(&mmu, root, MIB2).unwrap();
    assert_eq!(
        mmu.cached(root, 2 * MIB2 - 1).map(|c| c.0),
        Some(0x40_0000 - 1)
    );
    // Flushing any 4 KiB page inside drops the whole translation.
    let inside = FlushPage {
        va: MIB2 + 0x5000,
        size: PageSize::Size4K,
    };
    mmu.flush_pages(root, &[inside]);
    assert_eq!(mmu.cached(root, MIB2), None);
    let outside = FlushPage {
        va: 2 * MIB2,
        size: PageSize::Size4K,
    };
    read_byte(&mmu, root, MIB2).unwrap();
    mmu.flush_pages(root, &[outside]);
    assert!(mmu.cached(root, MIB2).is_some());
    // Unmapping it flushes all 2 MiB.
    let (_, size, _, flush) = pt.unmap(MIB2).unwrap();
    assert_eq!(size, PageSize::Size2M);
    flush.flush(&mmu);
    let err = read_byte(&mmu, root, 2 * MIB2 - 1).map_err(|f| f.kind);
    assert_eq!(err, Err(FaultKind::NotPresent));
}

#[test]
fn set_entry_tokens_match_what_was_replaced() {
    let (mem, alloc) = (SimMemory::new(), alloc());
    let mut pt = Table::new(&mem, &alloc).unwrap();
    let root = pt.root();
    let swap = Pte::Swap(SwapEntry::new(0, 1));
    let (_, flush) = pt.set_entry(VA, 0, swap, &alloc).unwrap();
    assert!(!flush.is_needed(), "nothing was present");
    flush.ignore_fresh_table();
    let leaf = Pte::Leaf {
        pfn: A,
        flags: USER_RW,
    };
    let (_, flush) = pt.set_entry(VA, 0, leaf, &alloc).unwrap();
    assert!(!flush.is_needed(), "a swap entry is not cached");
    flush.ignore_fresh_table();
    let (_, flush) = pt.set_entry(VA + 0x10, 0, Pte::Absent, &alloc).unwrap();
    let page = FlushPage {
        va: VA,
        size: PageSize::Size4K,
    };
    assert_eq!((flush.root(), flush.page_to_flush()), (root, Some(page)));
    flush.ignore_fresh_table();
    // Replacing a table: anything below it may be cached.
    let (old, flush) = pt.set_entry(VA, 1, Pte::Absent, &alloc).unwrap();
    assert!(matches!(old, Pte::Table(_)));
    assert!(flush.is_needed() && flush.page_to_flush().is_none());
    let mmu = Mmu::new(&mem);
    flush.flush(&mmu);
    assert_eq!(mmu.stats().space_flushes, 1);
}

/// A TLB that notes how many table frames were still allocated when it
/// was flushed, to check that tables are freed after the flush.
struct Spy<'a> {
    mmu: &'a Mmu<'a>,
    alloc: &'a SimTableAlloc,
    live_at_flush: Mutex<Vec<usize>>,
}

impl TlbFlush for Spy<'_> {
    fn flush_pages(&self, root: Pfn, pages: &[FlushPage]) {
        self.live_at_flush.lock().push(self.alloc.live());
        self.mmu.flush_pages(root, pages)
    }
    fn flush_space(&self, root: Pfn) {
        self.live_at_flush.lock().push(self.alloc.live());
        self.mmu.flush_space(root)
    }
    fn flush_all(&self) {
        self.live_at_flush.lock().push(self.alloc.live());
        self.mmu.flush_all()
    }
}

#[test]
fn pruned_tables_are_freed_after_the_flush_that_forgets_them() {
    let (mem, alloc) = (SimMemory::new(), alloc());
    let mut pt = Table::new(&mem, &alloc).unwrap();
    let mmu = Mmu::new(&mem);
    let root = pt.root();
    map(&mut pt, VA, A, USER_RW, &alloc);
    let Some(Pte::Table(l0)) = pt.entry(VA, 1) else {
        panic!("no level-0 table")
    };
    read_byte(&mmu, root, VA).unwrap();
    let (_, _, _, flush) = pt.unmap(VA).unwrap();
    flush.flush(&mmu);
    // Even a walk that ends in a fault caches the tables it passed.
    read_byte(&mmu, root, VA).unwrap_err();
    assert_eq!(mmu.cache_sizes(), (0, 3));
    let pruned = pt.prune(0, 0);
    assert_eq!((pruned.len(), alloc.live()), (3, 4));
    let spy = Spy {
        mmu: &mmu,
        alloc: &alloc,
        live_at_flush: Mutex::new(Vec::new()),
    };
    assert_eq!(pruned.flush_and_free(&spy, &alloc), 3);
    assert_eq!(*spy.live_at_flush.lock(), [4], "freed before the flush");
    assert_eq!(alloc.live(), 1);
    // The old level-0 table's frame is reused and happens to hold a leaf
    // for VA: no cached table entry may lead the MMU there any more.
    let leaf = SimPte::encode(
        &Pte::Leaf {
            pfn: B,
            flags: USER_RW,
        },
        0,
    )
    .unwrap();
    mem.write_u64(l0.addr() + ((VA >> 12) % 512) * 8, leaf);
    let err = read_byte(&mmu, root, VA);
    assert_eq!(err, Err(fault(VA, AccessKind::Read, FaultKind::NotPresent)));
    // Nothing pruned, nothing flushed.
    assert_eq!(pt.prune(0, 0).flush_and_free(&spy, &alloc), 0);
    assert_eq!(spy.live_at_flush.lock().len(), 1);
}

#[test]
#[should_panic(expected = "PrunedTables of root")]
fn dropped_pruned_tables_panic() {
    let (mem, alloc) = (SimMemory::new(), alloc());
    let mut pt = Table::new(&mem, &alloc).unwrap();
    map(&mut pt, VA, A, USER_RW, &alloc);
    pt.unmap(VA).unwrap().3.ignore_fresh_table();
    drop(pt.prune(0, 0));
}

#[test]
fn map_range_rollback_owes_a_flush() {
    let (mem, alloc) = (SimMemory::new(), alloc());
    let mut pt = Table::new(&mem, &alloc).unwrap();
    let mmu = Mmu::new(&mem);
    map(&mut pt, VA + 0x3000, B, USER_RW, &alloc);
    // The range runs into the page at +0x3000 after mapping three pages,
    // which a racing access may have cached meanwhile.
    let err = pt
        .map_range(VA, A.addr(), 0x4000, USER_RW, PageSize::Size4K, &alloc)
        .unwrap_err();
    assert_eq!(err.error, MapError::AlreadyMapped);
    assert!(err.flush.is_needed() && err.flush.page_to_flush().is_none());
    assert_eq!(err.flush(&mmu), MapError::AlreadyMapped);
    assert_eq!(mmu.stats().space_flushes, 1);
    // One page mapped before the failure: that page is flushed.
    let err = pt
        .map_range(
            VA + 0x2000,
            A.addr(),
            0x2000,
            USER_RW,
            PageSize::Size4K,
            &alloc,
        )
        .unwrap_err();
    let page = FlushPage {
        va: VA + 0x2000,
        size: PageSize::Size4K,
    };
    assert_eq!(err.flush.page_to_flush(), Some(page));
    assert_eq!(err.flush(&mmu), MapError::AlreadyMapped);
    let refused = pt.map_range(VA, 1, 0x1000, USER_RW, PageSize::Size4K, &alloc);
    let refused = refused.unwrap_err();
    assert!(!refused.flush.is_needed());
    assert_eq!(refused.ignore_fresh_table(), MapError::Misaligned);
    assert_eq!(mmu.stats().page_flushes, 1);
}
