//! Host tests of the page-table walker.

use super::*;
use crate::mm::phys::SimMemory;
use crate::mm::pte::{MarkerFlags, SimPte, SwapEntry};
use crate::testutil::Rng;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

type Table<'m> = PageTable<'m, SimPte, SimMemory>;

const GIB: u64 = 1 << 30;
const MIB2: u64 = 2 << 20;
const RW: LeafFlags = LeafFlags::WRITABLE;

/// Table frames far above the frames the tests map.
fn sim_alloc() -> SimTableAlloc {
    SimTableAlloc::new(Pfn(0x10_0000_0000))
}

/// The walker's changing operations, for trees no MMU ever loaded: their
/// flushes are owed to no one, and the tests compare plain results.
trait Fresh {
    fn unmap_fresh(&mut self, va: u64) -> Result<(Pfn, PageSize, LeafFlags), MapError>;
    fn protect_fresh(&mut self, va: u64, flags: LeafFlags) -> Result<LeafFlags, MapError>;
    fn set_entry_fresh(
        &mut self,
        va: u64,
        level: usize,
        pte: Pte,
        alloc: &dyn TableAlloc,
    ) -> Result<Pte, MapError>;
    fn prune_fresh(&mut self, start: u64, end: u64, alloc: &dyn TableAlloc) -> usize;
    fn map_range_fresh(
        &mut self,
        va: u64,
        pa: u64,
        len: u64,
        flags: LeafFlags,
        max: PageSize,
        alloc: &dyn TableAlloc,
    ) -> Result<u64, MapError>;
}

impl Fresh for Table<'_> {
    fn unmap_fresh(&mut self, va: u64) -> Result<(Pfn, PageSize, LeafFlags), MapError> {
        let (pfn, size, flags, flush) = self.unmap(va)?;
        flush.ignore_fresh_table();
        Ok((pfn, size, flags))
    }

    fn protect_fresh(&mut self, va: u64, flags: LeafFlags) -> Result<LeafFlags, MapError> {
        let (old, flush) = self.protect(va, flags)?;
        flush.ignore_fresh_table();
        Ok(old)
    }

    fn set_entry_fresh(
        &mut self,
        va: u64,
        level: usize,
        pte: Pte,
        alloc: &dyn TableAlloc,
    ) -> Result<Pte, MapError> {
        let (old, flush) = self.set_entry(va, level, pte, alloc)?;
        flush.ignore_fresh_table();
        Ok(old)
    }

    fn prune_fresh(&mut self, start: u64, end: u64, alloc: &dyn TableAlloc) -> usize {
        self.prune(start, end).free_fresh_table(alloc)
    }

    fn map_range_fresh(
        &mut self,
        va: u64,
        pa: u64,
        len: u64,
        flags: LeafFlags,
        max: PageSize,
        alloc: &dyn TableAlloc,
    ) -> Result<u64, MapError> {
        (self.map_range(va, pa, len, flags, max, alloc)).map_err(|e| e.ignore_fresh_table())
    }
}

fn leaves(pt: &Table, start: u64, end: u64) -> Vec<(u64, Pfn, PageSize, LeafFlags)> {
    let mut out = Vec::new();
    pt.for_each_leaf(start, end, &mut |va, pfn, size, flags| {
        out.push((va, pfn, size, flags))
    });
    out
}

#[test]
fn errors_display() {
    let e = MapError::Pte(PteError::Malformed(0x7));
    assert_eq!(
        std::format!("{e}"),
        "page-table entry: malformed page-table entry 0x7"
    );
    assert_eq!(
        std::format!("{}", MapError::NoMemory),
        "out of page-table frames"
    );
}

#[test]
fn map_translate_unmap_each_size() {
    let (mem, alloc) = (SimMemory::new(), sim_alloc());
    for size in PageSize::ALL {
        let mut pt = Table::new(&mem, &alloc).unwrap();
        let (va, pfn) = (0x40 * GIB, Pfn(5 * size.frames()));
        let flags = RW | LeafFlags::USER;
        pt.map(va, pfn, size, flags, &alloc).unwrap();
        // Root plus one table per level above the leaf.
        assert_eq!(alloc.live(), 1 + (3 - size.level()));
        let inside = va + size.bytes() - 8;
        let expect = (pfn.addr() + size.bytes() - 8, flags, size);
        assert_eq!(pt.translate(inside), Some(expect));
        assert_eq!(pt.translate(va - 1), None);
        assert_eq!(pt.translate(va + size.bytes()), None);
        assert_eq!(pt.entry(va, size.level()), Some(Pte::Leaf { pfn, flags }));
        assert_eq!(pt.unmap_fresh(va), Ok((pfn, size, flags)));
        assert_eq!(pt.translate(va), None);
        assert_eq!(pt.unmap_fresh(va), Err(MapError::NotMapped));
        pt.destroy(&alloc);
        alloc.assert_no_leaks();
    }
}

#[test]
fn upper_half_and_top_page() {
    let (mem, alloc) = (SimMemory::new(), sim_alloc());
    let mut pt = Table::new(&mem, &alloc).unwrap();
    let (low, high, top) = (0x1000, 0xffff_8000_0000_0000, 0xffff_ffff_ffff_f000);
    for (i, va) in [top, low, high].into_iter().enumerate() {
        pt.map(va, Pfn(i as u64), PageSize::Size4K, RW, &alloc)
            .unwrap();
    }
    assert_eq!(
        pt.translate(top + 0xfff),
        Some((0xfff, RW, PageSize::Size4K))
    );
    let found: Vec<u64> = leaves(&pt, 0, 0).iter().map(|l| l.0).collect();
    assert_eq!(found, [low, high, top]);
    assert_eq!(leaves(&pt, high, top).len(), 1);
    assert_eq!(leaves(&pt, top, 0).len(), 1);
    pt.destroy(&alloc);
    alloc.assert_no_leaks();
}

#[test]
fn misaligned_and_non_canonical_refused() {
    let (mem, alloc) = (SimMemory::new(), sim_alloc());
    let mut pt = Table::new(&mem, &alloc).unwrap();
    let map = |pt: &mut Table, va, pfn, size| pt.map(va, Pfn(pfn), size, RW, &alloc);
    assert_eq!(
        map(&mut pt, 0x1001, 0, PageSize::Size4K),
        Err(MapError::Misaligned)
    );
    assert_eq!(
        map(&mut pt, 0x1000, 0, PageSize::Size2M),
        Err(MapError::Misaligned)
    );
    assert_eq!(
        map(&mut pt, MIB2, 1, PageSize::Size2M),
        Err(MapError::Misaligned)
    );
    assert_eq!(
        map(&mut pt, MIB2, 512, PageSize::Size1G),
        Err(MapError::Misaligned)
    );
    for va in [1 << 47, 0xffff_0000_0000_0000, 0x7fff_8000_0000_0000] {
        assert_eq!(
            map(&mut pt, va, 0, PageSize::Size4K),
            Err(MapError::NonCanonical)
        );
        assert_eq!(pt.translate(va), None);
        assert_eq!(pt.unmap_fresh(va), Err(MapError::NonCanonical));
        assert_eq!(pt.protect_fresh(va, RW), Err(MapError::NonCanonical));
        let swap = Pte::Swap(SwapEntry::new(0, 1));
        assert_eq!(
            pt.set_entry_fresh(va, 0, swap, &alloc),
            Err(MapError::NonCanonical)
        );
        assert_eq!(pt.entry(va, 0), None);
    }
    assert_eq!(alloc.live(), 1, "refusals must not allocate");
    // A page the format cannot address is the format's refusal.
    let big = Pfn(SimPte::MAX_PFN + 1);
    let err = pt.map(0, big, PageSize::Size4K, RW, &alloc);
    assert_eq!(err, Err(MapError::Pte(PteError::OutOfRange)));
    assert_eq!(alloc.live(), 1);
}

#[test]
fn occupied_entries_are_already_mapped() {
    let (mem, alloc) = (SimMemory::new(), sim_alloc());
    let mut pt = Table::new(&mem, &alloc).unwrap();
    pt.map(0x5000, Pfn(1), PageSize::Size4K, RW, &alloc)
        .unwrap();
    let again = pt.map(0x5000, Pfn(2), PageSize::Size4K, RW, &alloc);
    assert_eq!(again, Err(MapError::AlreadyMapped));
    // An (even empty) table where a 2 MiB leaf would go.
    pt.unmap_fresh(0x5000).unwrap();
    let huge = pt.map(0, Pfn(0), PageSize::Size2M, RW, &alloc);
    assert_eq!(huge, Err(MapError::AlreadyMapped));
    // A swap entry or marker occupies its slot too.
    let swap = Pte::Swap(SwapEntry::new(1, 2));
    pt.set_entry_fresh(0x6000, 0, swap, &alloc).unwrap();
    let over = pt.map(0x6000, Pfn(3), PageSize::Size4K, RW, &alloc);
    assert_eq!(over, Err(MapError::AlreadyMapped));
    assert_eq!(pt.entry(0x6000, 0), Some(swap));
    assert_eq!(pt.translate(0x5000), None);
}

#[test]
fn huge_entries_get_in_the_way() {
    let (mem, alloc) = (SimMemory::new(), sim_alloc());
    let mut pt = Table::new(&mem, &alloc).unwrap();
    pt.map(MIB2, Pfn(512), PageSize::Size2M, RW, &alloc)
        .unwrap();
    pt.map(GIB, Pfn(1 << 18), PageSize::Size1G, RW, &alloc)
        .unwrap();
    let live = alloc.live();
    let tries = [
        (MIB2 + 0x3000, PageSize::Size4K),
        (GIB + 0x3000, PageSize::Size4K),
        (GIB + MIB2, PageSize::Size2M),
    ];
    for (va, size) in tries {
        let pfn = Pfn(size.frames());
        let err = pt.map(va, pfn, size, RW, &alloc);
        assert_eq!(err, Err(MapError::HugeInTheWay), "{va:#x}");
    }
    let marker = Pte::Marker(MarkerFlags::GUARD);
    let err = pt.set_entry_fresh(MIB2, 0, marker, &alloc);
    assert_eq!(err, Err(MapError::HugeInTheWay));
    assert_eq!(pt.entry(MIB2, 0), None);
    // A huge swap entry covers its range like a huge leaf.
    let swap = Pte::Swap(SwapEntry::new(0, 9));
    pt.set_entry_fresh(4 * MIB2, 1, swap, &alloc).unwrap();
    let err = pt.map(4 * MIB2, Pfn(0), PageSize::Size4K, RW, &alloc);
    assert_eq!(err, Err(MapError::HugeInTheWay));
    assert_eq!(alloc.live(), live);
}

#[test]
fn no_memory_changes_nothing() {
    let (mem, alloc) = (SimMemory::new(), sim_alloc());
    let mut pt = Table::new(&mem, &alloc).unwrap();
    // A 4 KiB page in an empty tree needs three tables.
    for budget in 0..3 {
        alloc.set_budget(Some(budget));
        mem.record_writes(true);
        let err = pt.map(0x7000, Pfn(7), PageSize::Size4K, RW, &alloc);
        assert_eq!(err, Err(MapError::NoMemory));
        assert_eq!(mem.take_history(), [], "budget {budget}");
        assert_eq!(alloc.live(), 1);
    }
    alloc.set_budget(Some(3));
    pt.map(0x7000, Pfn(7), PageSize::Size4K, RW, &alloc)
        .unwrap();
    assert_eq!(alloc.live(), 4);
    // The root, 0 + 1 + 2 frames handed back by the failed tries, 3 kept.
    assert_eq!(alloc.allocated(), 1 + 3 + 3);
    alloc.set_budget(None);
    assert_eq!(
        Table::new(&mem, &alloc).map(|t| t.root()),
        Ok(Pfn(0x10_0000_0000 + 7))
    );
}

#[test]
fn table_frames_beyond_the_format_are_freed() {
    let mem = SimMemory::new();
    let (low, high) = (sim_alloc(), SimTableAlloc::new(Pfn(SimPte::MAX_PFN + 1)));
    let mut pt = Table::new(&mem, &low).unwrap();
    let err = pt.map(0, Pfn(0), PageSize::Size4K, RW, &high);
    assert_eq!(err, Err(MapError::Pte(PteError::OutOfRange)));
    high.assert_no_leaks();
    assert_eq!(pt.entry(0, 3), Some(Pte::Absent));
}

#[test]
fn every_change_is_one_store() {
    let (mem, alloc) = (SimMemory::new(), sim_alloc());
    let mut pt = Table::new(&mem, &alloc).unwrap();
    let root = pt.root();
    mem.record_writes(true);
    pt.map(0x4000_3000, Pfn(3), PageSize::Size4K, RW, &alloc)
        .unwrap();
    // The new path is written first; one store into the root links it.
    let history = mem.take_history();
    let in_root = |pa: u64| Pfn::containing(pa) == root;
    assert_eq!(history.len(), 4);
    assert!(history[..3].iter().all(|w| !in_root(w.pa) && w.old == 0));
    assert!(in_root(history[3].pa));
    // Into existing tables, map, protect and unmap store once each.
    pt.map(0x4000_4000, Pfn(4), PageSize::Size4K, RW, &alloc)
        .unwrap();
    pt.protect_fresh(0x4000_4000, LeafFlags::USER).unwrap();
    pt.unmap_fresh(0x4000_4000).unwrap();
    let history = mem.take_history();
    assert_eq!(history.len(), 3);
    assert!(history.iter().all(|w| w.pa == history[0].pa));
    assert_eq!(history[2].new, 0);
}

#[test]
fn unmap_and_protect_want_the_leaf_start() {
    let (mem, alloc) = (SimMemory::new(), sim_alloc());
    let mut pt = Table::new(&mem, &alloc).unwrap();
    pt.map(MIB2, Pfn(512), PageSize::Size2M, RW, &alloc)
        .unwrap();
    assert_eq!(pt.unmap_fresh(MIB2 + 0x1000), Err(MapError::Misaligned));
    assert_eq!(
        pt.protect_fresh(MIB2 + 0x1000, RW),
        Err(MapError::Misaligned)
    );
    assert_eq!(
        pt.translate(MIB2 + 0x1000).map(|t| t.0),
        Some(MIB2 + 0x1000)
    );
    assert_eq!(pt.unmap_fresh(MIB2), Ok((Pfn(512), PageSize::Size2M, RW)));
}

#[test]
fn protect_replaces_flags_and_reports_old_ones() {
    let (mem, alloc) = (SimMemory::new(), sim_alloc());
    let mut pt = Table::new(&mem, &alloc).unwrap();
    let rwx = RW | LeafFlags::EXECUTABLE;
    pt.map(GIB, Pfn(1 << 18), PageSize::Size1G, rwx, &alloc)
        .unwrap();
    // The MMU marks the page dirty behind our back.
    let dirty = Pte::Leaf {
        pfn: Pfn(1 << 18),
        flags: rwx | LeafFlags::ACCESSED | LeafFlags::DIRTY,
    };
    pt.set_entry_fresh(GIB, 2, dirty, &alloc).unwrap();
    let old = pt.protect_fresh(GIB, LeafFlags::USER);
    assert_eq!(old, Ok(rwx | LeafFlags::ACCESSED | LeafFlags::DIRTY));
    let now = pt.translate(GIB + 5);
    assert_eq!(now, Some((GIB + 5, LeafFlags::USER, PageSize::Size1G)));
    assert_eq!(pt.protect_fresh(0, RW), Err(MapError::NotMapped));
    let unknown = LeafFlags::from_bits_retain(1 << 30);
    assert_eq!(
        pt.protect_fresh(GIB, unknown),
        Err(MapError::Pte(PteError::OutOfRange))
    );
    assert_eq!(pt.translate(GIB).map(|t| t.1), Some(LeafFlags::USER));
}

#[test]
fn swap_entries_and_markers() {
    let (mem, alloc) = (SimMemory::new(), sim_alloc());
    let mut pt = Table::new(&mem, &alloc).unwrap();
    let va = 0x7f12_3456_7000;
    // Clearing where nothing is allocates nothing.
    assert_eq!(
        pt.set_entry_fresh(va, 0, Pte::Absent, &alloc),
        Ok(Pte::Absent)
    );
    assert_eq!((alloc.live(), pt.entry(va, 0)), (1, None));
    let swap = Pte::Swap(SwapEntry {
        device: 3,
        offset: 0xab_cdef,
        uffd_wp: true,
        exclusive: false,
    });
    assert_eq!(pt.set_entry_fresh(va, 0, swap, &alloc), Ok(Pte::Absent));
    assert_eq!((alloc.live(), pt.entry(va, 0)), (4, Some(swap)));
    assert_eq!(pt.translate(va), None);
    assert_eq!(pt.unmap_fresh(va), Err(MapError::NotMapped));
    assert_eq!(pt.protect_fresh(va, RW), Err(MapError::NotMapped));
    assert_eq!(leaves(&pt, 0, 0), []);
    let marker = Pte::Marker(MarkerFlags::UFFD_WP);
    assert_eq!(pt.set_entry_fresh(va, 0, marker, &alloc), Ok(swap));
    assert_eq!(pt.set_entry_fresh(va, 0, Pte::Absent, &alloc), Ok(marker));
    assert_eq!(pt.entry(va, 0), Some(Pte::Absent));
    assert_eq!(pt.entry(va, 1).map(|p| p.is_present()), Some(true));
    // The format's rules still apply.
    let empty = Pte::Marker(MarkerFlags::empty());
    let err = pt.set_entry_fresh(va, 0, empty, &alloc);
    assert_eq!(err, Err(MapError::Pte(PteError::EmptyMarker)));
    let err = pt.set_entry_fresh(va, 4, Pte::Absent, &alloc);
    assert_eq!(err, Err(MapError::Pte(PteError::BadLevel)));
    let err = pt.set_entry_fresh(va, 3, marker, &alloc);
    assert_eq!(err, Err(MapError::Pte(PteError::LeafNotAllowed)));
    assert_eq!(pt.entry(va, 4), None);
    pt.destroy(&alloc);
    alloc.assert_no_leaks();
}

#[test]
fn malformed_entries_are_errors_not_panics() {
    let (mem, alloc) = (SimMemory::new(), sim_alloc());
    let mut pt = Table::new(&mem, &alloc).unwrap();
    let va = 0x40_0020_1000;
    pt.map(va, Pfn(1), PageSize::Size4K, RW, &alloc).unwrap();
    pt.map(va + 0x1000, Pfn(2), PageSize::Size4K, RW, &alloc)
        .unwrap();
    // Corrupt the level-1 entry: the walk breaks above both leaves.
    let junk = 0xf << 60 | 0x123;
    let Some(Pte::Table(l1)) = pt.entry(va, 2) else {
        panic!("no level-1 table")
    };
    mem.write_u64(Table::slot(l1, va, 1), junk);
    let bad = Err(MapError::Pte(PteError::Malformed(junk)));
    assert_eq!(pt.translate(va), None);
    assert_eq!(pt.entry(va, 0), None);
    assert_eq!(pt.entry(va, 1), None);
    assert_eq!(pt.unmap_fresh(va).map(|_| ()), bad);
    assert_eq!(pt.protect_fresh(va, RW).map(|_| ()), bad);
    assert_eq!(
        pt.map(va + 0x2000, Pfn(3), PageSize::Size4K, RW, &alloc),
        bad
    );
    let swap = Pte::Swap(SwapEntry::new(0, 0));
    assert_eq!(pt.set_entry_fresh(va, 0, swap, &alloc).map(|_| ()), bad);
    assert_eq!(pt.set_entry_fresh(va, 1, swap, &alloc).map(|_| ()), bad);
    assert_eq!(leaves(&pt, 0, 0), []);
    assert_eq!(mem.read_u64(Table::slot(l1, va, 1)), junk);
    assert_eq!(pt.prune_fresh(0, 0, &alloc), 0);
    // The level-0 table behind the junk is unreachable, so it stays.
    pt.destroy(&alloc);
    assert_eq!(alloc.live(), 1);
}

#[test]
fn malformed_leaf_is_reported() {
    let (mem, alloc) = (SimMemory::new(), sim_alloc());
    let mut pt = Table::new(&mem, &alloc).unwrap();
    pt.map(0x3000, Pfn(1), PageSize::Size4K, RW, &alloc)
        .unwrap();
    let Some(Pte::Table(l0)) = pt.entry(0x3000, 1) else {
        panic!("no level-0 table")
    };
    let junk = 1 << 60 | 5; // a table pointer, invalid at level 0
    mem.write_u64(Table::slot(l0, 0x3000, 0), junk);
    let bad = Err(MapError::Pte(PteError::Malformed(junk)));
    assert_eq!(pt.unmap_fresh(0x3000).map(|_| ()), bad);
    assert_eq!(
        pt.set_entry_fresh(0x3000, 0, Pte::Absent, &alloc)
            .map(|_| ()),
        bad
    );
    assert_eq!(pt.entry(0x3000, 0), None);
    assert_eq!(pt.prune_fresh(0, 0, &alloc), 0);
    pt.destroy(&alloc);
    alloc.assert_no_leaks();
}

#[test]
fn map_range_uses_huge_pages_where_aligned() {
    let (mem, alloc) = (SimMemory::new(), sim_alloc());
    let mut pt = Table::new(&mem, &alloc).unwrap();
    // Three 4K pages up to a 1 GiB boundary, 1 GiB, 2 MiB, two 4K pages.
    let (va, pa) = (0xffff_8000_0000_0000 + GIB - 0x3000, 3 * GIB - 0x3000);
    let len = 0x3000 + GIB + MIB2 + 0x2000;
    assert_eq!(
        pt.map_range_fresh(va, pa, len, RW, PageSize::Size1G, &alloc),
        Ok(7)
    );
    let sizes: Vec<PageSize> = leaves(&pt, 0, 0).iter().map(|l| l.2).collect();
    use PageSize::*;
    assert_eq!(
        sizes,
        [Size4K, Size4K, Size4K, Size1G, Size2M, Size4K, Size4K]
    );
    for off in [0, 0x2fff, 0x3000, GIB, len - 1] {
        assert_eq!(pt.translate(va + off).map(|t| t.0), Some(pa + off));
    }
    assert_eq!(pt.translate(va + len), None);
    assert_eq!(pt.translate(va - 1), None);
}

#[test]
fn map_range_respects_max_and_alignment() {
    let (mem, alloc) = (SimMemory::new(), sim_alloc());
    let mut pt = Table::new(&mem, &alloc).unwrap();
    assert_eq!(
        pt.map_range_fresh(0, 0, GIB, RW, PageSize::Size2M, &alloc),
        Ok(512)
    );
    // va and pa disagree modulo 2 MiB: only 4 KiB pages fit.
    let mapped = pt.map_range_fresh(2 * GIB, 0x1000, MIB2, RW, PageSize::Size1G, &alloc);
    assert_eq!(mapped, Ok(512));
    assert_eq!(
        pt.map_range_fresh(4 * GIB, 0, 0, RW, PageSize::Size1G, &alloc),
        Ok(0)
    );
    let err = pt.map_range_fresh(4 * GIB, 0, 0x800, RW, PageSize::Size1G, &alloc);
    assert_eq!(err, Err(MapError::Misaligned));
    let err = pt.map_range_fresh(
        4 * GIB,
        u64::MAX - 0xfff,
        0x2000,
        RW,
        PageSize::Size1G,
        &alloc,
    );
    assert_eq!(err, Err(MapError::Pte(PteError::OutOfRange)));
}

#[test]
fn map_range_reaches_the_top_of_memory() {
    let (mem, alloc) = (SimMemory::new(), sim_alloc());
    let mut pt = Table::new(&mem, &alloc).unwrap();
    let va = 0xffff_ffff_8000_0000;
    assert_eq!(
        pt.map_range_fresh(va, 0, 2 * GIB, RW, PageSize::Size1G, &alloc),
        Ok(2)
    );
    assert_eq!(pt.translate(u64::MAX).map(|t| t.0), Some(2 * GIB - 1));
}

#[test]
fn map_range_is_all_or_nothing() {
    let (mem, alloc) = (SimMemory::new(), sim_alloc());
    let mut pt = Table::new(&mem, &alloc).unwrap();
    pt.map(GIB + 0x5000, Pfn(9), PageSize::Size4K, RW, &alloc)
        .unwrap();
    let err = pt.map_range_fresh(0, 0, GIB + MIB2, RW, PageSize::Size1G, &alloc);
    assert_eq!(err, Err(MapError::AlreadyMapped));
    let left = leaves(&pt, 0, 0);
    assert_eq!(left, [(GIB + 0x5000, Pfn(9), PageSize::Size4K, RW)]);
    // Crossing into the non-canonical hole fails the same way.
    let va = (1 << 47) - MIB2;
    let err = pt.map_range_fresh(va, 0, 2 * MIB2, RW, PageSize::Size2M, &alloc);
    assert_eq!(err, Err(MapError::NonCanonical));
    assert_eq!(leaves(&pt, 0, 0).len(), 1);
}

#[test]
fn for_each_leaf_clips_and_orders() {
    let (mem, alloc) = (SimMemory::new(), sim_alloc());
    let mut pt = Table::new(&mem, &alloc).unwrap();
    pt.map(3 * GIB, Pfn(0), PageSize::Size1G, RW, &alloc)
        .unwrap();
    pt.map(MIB2, Pfn(512), PageSize::Size2M, RW, &alloc)
        .unwrap();
    pt.map(0x1000, Pfn(1), PageSize::Size4K, RW, &alloc)
        .unwrap();
    let starts = |s, e| -> Vec<u64> { leaves(&pt, s, e).iter().map(|l| l.0).collect() };
    assert_eq!(starts(0, 0), [0x1000, MIB2, 3 * GIB]);
    // A huge leaf overlapping either end is included.
    assert_eq!(starts(MIB2 + 0x1000, 3 * GIB + 1), [MIB2, 3 * GIB]);
    assert_eq!(starts(0x2000, MIB2), []);
    assert_eq!(starts(0x1fff, 0x2000), [0x1000]);
    assert_eq!(starts(5, 5), []);
    assert_eq!(starts(4 * GIB, 0), []);
}

#[test]
fn destroy_frees_exactly_the_tables() {
    let (mem, alloc) = (SimMemory::new(), sim_alloc());
    let mut pt = Table::new(&mem, &alloc).unwrap();
    let high = 0xffff_c000_0000_0000;
    pt.map_range_fresh(0, 0, 3 * GIB, RW, PageSize::Size2M, &alloc)
        .unwrap();
    pt.map_range_fresh(high, 0, 4 * MIB2 + 0x3000, RW, PageSize::Size1G, &alloc)
        .unwrap();
    pt.set_entry_fresh(0x7fff_ffff_f000, 0, Pte::Marker(MarkerFlags::GUARD), &alloc)
        .unwrap();
    // Root; a level-2 table per root slot (0, 255, 384); level-1 tables
    // for 3 + 1 + 1 GiB regions; level-0 tables for the 4 KiB tail and
    // the marker.
    assert_eq!(alloc.live(), 1 + 3 + 5 + 2);
    pt.destroy(&alloc);
    alloc.assert_no_leaks();
}

#[test]
fn prune_frees_empty_tables_only() {
    let (mem, alloc) = (SimMemory::new(), sim_alloc());
    let mut pt = Table::new(&mem, &alloc).unwrap();
    pt.map(0, Pfn(0), PageSize::Size4K, RW, &alloc).unwrap();
    pt.map(GIB, Pfn(1), PageSize::Size4K, RW, &alloc).unwrap();
    let swap = Pte::Swap(SwapEntry::new(0, 0));
    pt.set_entry_fresh(2 * GIB, 0, swap, &alloc).unwrap();
    assert_eq!(alloc.live(), 1 + 1 + 3 + 3);
    pt.unmap_fresh(GIB).unwrap();
    pt.unmap_fresh(0).unwrap();
    // Outside the range nothing goes, and the swap entry keeps its path.
    assert_eq!(pt.prune_fresh(3 * GIB, 0, &alloc), 0);
    assert_eq!(pt.prune_fresh(GIB, GIB + 1, &alloc), 2);
    assert_eq!(pt.prune_fresh(0, 0, &alloc), 2);
    assert_eq!(alloc.live(), 1 + 1 + 1 + 1);
    assert_eq!(pt.entry(2 * GIB, 0), Some(swap));
    pt.set_entry_fresh(2 * GIB, 0, Pte::Absent, &alloc).unwrap();
    assert_eq!(pt.prune_fresh(0, 0, &alloc), 3);
    assert_eq!(alloc.live(), 1);
    assert!(alloc.is_live(pt.root()));
    pt.map(GIB, Pfn(1), PageSize::Size4K, RW, &alloc).unwrap();
    assert_eq!(pt.translate(GIB).map(|t| t.0), Some(0x1000));
}

// ---- randomised comparison against a model ----

/// What the tables should hold: leaves by first address, and the
/// tables below the root as (level of their entries, first address).
#[derive(Default)]
struct Model {
    leaves: BTreeMap<u64, (Pfn, PageSize, LeafFlags)>,
    tables: BTreeSet<(usize, u64)>,
}

/// First address of the region an entry at `level` covers.
fn region(va: u64, level: usize) -> u64 {
    va & !(level_size(level) - 1)
}

impl Model {
    /// The leaf covering `va`, if any.
    fn covering(&self, va: u64) -> Option<(u64, (Pfn, PageSize, LeafFlags))> {
        let (&start, &leaf) = self.leaves.range(..=va).next_back()?;
        (va - start < leaf.1.bytes()).then_some((start, leaf))
    }

    fn any_leaf_in(&self, start: u64, len: u64) -> bool {
        self.leaves
            .range(start..=start + (len - 1))
            .next()
            .is_some()
    }

    fn map(&mut self, va: u64, pfn: Pfn, size: PageSize, flags: LeafFlags) -> Result<(), MapError> {
        if let Some((_, (_, big, _))) = self.covering(va)
            && big > size
        {
            return Err(MapError::HugeInTheWay);
        }
        let level = size.level();
        let table_below = level > 0 && self.tables.contains(&(level - 1, va));
        if self.any_leaf_in(va, size.bytes()) || table_below {
            return Err(MapError::AlreadyMapped);
        }
        self.leaves.insert(va, (pfn, size, flags));
        for l in level..3 {
            self.tables.insert((l, region(va, l + 1)));
        }
        Ok(())
    }

    fn unmap(&mut self, va: u64) -> Result<(Pfn, PageSize, LeafFlags), MapError> {
        match self.covering(va) {
            None => Err(MapError::NotMapped),
            Some((start, _)) if start != va => Err(MapError::Misaligned),
            Some(_) => Ok(self.leaves.remove(&va).unwrap()),
        }
    }

    fn protect(&mut self, va: u64, flags: LeafFlags) -> Result<LeafFlags, MapError> {
        let (pfn, size, old) = self.unmap(va)?;
        self.leaves.insert(va, (pfn, size, flags));
        Ok(old)
    }

    /// Bottom-up, as the walker frees children before judging parents.
    fn prune(&mut self, start: u64, last: u64) -> usize {
        let mut freed = 0;
        for level in 0..3 {
            let span = level_size(level + 1);
            let doomed: Vec<(usize, u64)> = (self.tables.iter())
                .filter(|&&(l, base)| {
                    l == level
                        && base <= last
                        && base + (span - 1) >= start
                        && !self.any_leaf_in(base, span)
                        && !self.tables.iter().any(|&(cl, cb)| {
                            level > 0 && cl == level - 1 && region(cb, level + 1) == base
                        })
                })
                .copied()
                .collect();
            freed += doomed.len();
            doomed.iter().for_each(|t| _ = self.tables.remove(t));
        }
        freed
    }
}

/// An address in a small window (so that operations collide), aligned
/// to `size`: 3 bases x 4 GiB x 8 x 2 MiB x 8 pages.
fn random_va(rng: &mut Rng, size: PageSize) -> u64 {
    let bases = [0, 0x7f_0000_0000, 0xffff_8000_0000_0000];
    let va = bases[rng.below(3) as usize]
        + rng.below(4) * GIB
        + rng.below(8) * MIB2
        + rng.below(8) * 0x1000;
    va & !(size.bytes() - 1)
}

fn random_size(rng: &mut Rng) -> PageSize {
    match rng.below(20) {
        0 => PageSize::Size1G,
        1..=3 => PageSize::Size2M,
        _ => PageSize::Size4K,
    }
}

fn random_flags(rng: &mut Rng) -> LeafFlags {
    LeafFlags::from_bits_truncate(rng.next() as u32)
}

fn check_address(pt: &Table, model: &Model, va: u64) {
    let expect = model
        .covering(va)
        .map(|(start, (pfn, size, flags))| (pfn.addr() + (va - start), flags, size));
    assert_eq!(pt.translate(va), expect, "translate {va:#x}");
}

/// Names an outcome, for the tally that proves the test reaches every
/// branch.
fn outcome<T>(result: &Result<T, MapError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(MapError::AlreadyMapped) => "already mapped",
        Err(MapError::HugeInTheWay) => "huge in the way",
        Err(MapError::NotMapped) => "not mapped",
        Err(MapError::Misaligned) => "misaligned",
        Err(_) => "other",
    }
}

#[test]
fn random_operations_match_a_model() {
    for seed in [0x2545_f491_4f6c_dd1d, 0x9e37_79b9_7f4a_7c15, 1, 0xfa17_11e5] {
        random_run(seed);
    }
}

/// 6000 random map/unmap/protect/prune operations, each checked against
/// the model, as are the touched addresses and the table count.
fn random_run(seed: u64) {
    let (mem, alloc) = (SimMemory::new(), sim_alloc());
    let mut pt = Table::new(&mem, &alloc).unwrap();
    let (mut model, mut rng) = (Model::default(), Rng(seed));
    let mut touched = BTreeSet::new();
    let mut tally: BTreeMap<(&str, &str), u32> = BTreeMap::new();
    let mut pruned = 0;
    for step in 0..6000 {
        let size = random_size(&mut rng);
        let va = random_va(&mut rng, size);
        match rng.below(10) {
            0..=4 => {
                let pfn = Pfn(rng.below(1 << 20) * size.frames());
                let flags = random_flags(&mut rng);
                let got = pt.map(va, pfn, size, flags, &alloc);
                assert_eq!(
                    got,
                    model.map(va, pfn, size, flags),
                    "seed {seed:#x} step {step}"
                );
                *tally.entry(("map", outcome(&got))).or_default() += 1;
            }
            5..=7 => {
                // Mostly existing leaves, sometimes anything.
                let n = model.leaves.len() as u64;
                let va = match model.leaves.keys().nth(rng.below(n + 1) as usize) {
                    Some(&start) if rng.below(4) != 0 => start,
                    _ => va,
                };
                let got = pt.unmap_fresh(va);
                assert_eq!(got, model.unmap(va), "seed {seed:#x} step {step}");
                *tally.entry(("unmap", outcome(&got))).or_default() += 1;
            }
            8 => {
                let flags = random_flags(&mut rng);
                let got = pt.protect_fresh(va, flags);
                assert_eq!(got, model.protect(va, flags), "seed {seed:#x} step {step}");
                *tally.entry(("protect", outcome(&got))).or_default() += 1;
            }
            _ => {
                let (a, b) = (random_va(&mut rng, size), random_va(&mut rng, size));
                let (start, last) = (a.min(b), a.max(b));
                let got = pt.prune_fresh(start, last.wrapping_add(1), &alloc);
                assert_eq!(got, model.prune(start, last), "seed {seed:#x} step {step}");
                pruned += got;
            }
        }
        touched.insert(va);
        let inside = va + rng.below(size.bytes());
        check_address(&pt, &model, va);
        check_address(&pt, &model, inside);
        assert_eq!(
            alloc.live(),
            1 + model.tables.len(),
            "seed {seed:#x} step {step}"
        );
    }
    for &va in &touched {
        check_address(&pt, &model, va);
    }
    let expect: Vec<_> = (model.leaves.iter())
        .map(|(&va, &(pfn, size, flags))| (va, pfn, size, flags))
        .collect();
    assert_eq!(leaves(&pt, 0, 0), expect);
    // The mix must reach every outcome, or the comparison proves little.
    let reached = [
        ("map", "ok"),
        ("map", "already mapped"),
        ("map", "huge in the way"),
        ("unmap", "ok"),
        ("unmap", "not mapped"),
        ("unmap", "misaligned"),
        ("protect", "ok"),
        ("protect", "not mapped"),
    ];
    for key in reached {
        assert!(
            tally.get(&key).copied().unwrap_or(0) >= 10,
            "{key:?}: {tally:?}"
        );
    }
    assert!(
        pruned >= 10 && model.leaves.len() >= 100,
        "{pruned} {tally:?}"
    );
    pt.destroy(&alloc);
    alloc.assert_no_leaks();
}

#[test]
fn the_overlapping_entries_are_found_exactly() {
    let mut rng = Rng(0x0bad_cafe);
    let edges = [
        0,
        1,
        0xfff,
        0x1000,
        0x7fff_ffff_ffff,
        0xffff_8000_0000_0000,
        u64::MAX,
    ];
    for round in 0..4000 {
        let pick = |rng: &mut Rng| match rng.below(3) {
            0 => edges[rng.index(edges.len())],
            1 => rng.below(1 << 48),
            _ => Table::sign_extend(rng.next() & ((1 << 48) - 1)),
        };
        let (a, b) = (pick(&mut rng), pick(&mut rng));
        let range = (a.min(b), a.max(b));
        let level = rng.below(4) as usize;
        // A table's base: aligned to what one of its level's tables spans.
        let span = level_size(level + 1);
        let base = if level == 3 {
            0
        } else {
            rng.below((1 << 48) / span) * span
        };
        let want: Vec<u64> = (0..512)
            .filter(|&i| Table::overlaps(Table::entry_base(base, i, level), level, range))
            .collect();
        let got: Vec<u64> = Table::overlapping(base, level, range).collect();
        assert_eq!(
            got, want,
            "round {round}: base {base:#x} level {level} {range:x?}"
        );
    }
}
