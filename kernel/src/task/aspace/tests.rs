use super::testing::*;
use super::*;
use crate::mm::frame::FrameFlags;
use crate::mm::mmu::FaultKind;
use crate::mm::pte::{MarkerFlags, Pte};
use alloc::vec;

const RW: LeafFlags = LeafFlags::WRITABLE;
const GIB: u64 = 1 << 30;

fn leaves(space: &Space) -> Vec<(u64, Pfn, PageSize, LeafFlags)> {
    let mut out = Vec::new();
    space
        .page_table()
        .for_each_leaf(0, USER_END, &mut |va, pfn, size, flags| {
            out.push((va, pfn, size, flags))
        });
    out
}

fn is_allocated(w: &World, pfn: Pfn) -> bool {
    w.frames
        .desc(pfn)
        .is_some_and(|d| d.flags() == FrameFlags::HEAD)
}

#[test]
fn kernel_half_is_shared_and_user_half_empty() {
    let w = World::new(64);
    let space = w.space();
    assert_ne!(space.root(), w.kernel_root);
    let kernel_pa = w.kernel_frame.addr();
    let seen = space.page_table().translate(KERNEL_VA + 8);
    assert_eq!(seen.map(|t| t.0), Some(kernel_pa + 8));
    // A later kernel mapping inside the same top-level entry goes into
    // the kernel's existing tables, and so shows through the user root.
    let later = KERNEL_VA + 0x4000_0000;
    let mut kpt = w.kernel_pt();
    let tables_before = w.stats().allocated;
    kpt.map(later, Pfn(0x99), PageSize::Size4K, RW, &w.tables())
        .expect("kernel map");
    assert!(w.stats().allocated > tables_before, "needed new tables");
    let seen = space.page_table().translate(later);
    assert_eq!(seen.map(|t| t.0), Some(Pfn(0x99).addr()));
    // Nothing in the user half: no entries at all in the root's lower half.
    assert_eq!(space.mapped_pages(), 0);
    for index in 0..256 {
        assert_eq!(w.mem.read_u64(space.root().addr() + index * 8), 0);
    }
    space.destroy(&w.frames, &w.tables());
}

#[test]
fn new_without_memory_is_enomem() {
    let w = World::new(16);
    let held = w.hog(0);
    let before = w.stats();
    let got = Space::new(w.mem, w.kernel_root, &w.tables(), &w.mmu, w.shared);
    assert_eq!(got.err(), Some(Errno::ENOMEM));
    assert_eq!(w.stats(), before);
    w.unhog(held);
}

#[test]
fn map_zeroed_maps_fresh_zeroed_frames() {
    let w = World::new(64);
    let mut space = w.space();
    w.dirty_free_frames();
    let va = 0x40_0000;
    let flags = RW | LeafFlags::EXECUTABLE;
    space
        .map_zeroed(va, 0x3000, flags, &w.frames, &w.tables())
        .expect("map");
    let got = leaves(&space);
    assert_eq!(got.len(), 3);
    for (i, &(at, pfn, size, f)) in got.iter().enumerate() {
        assert_eq!(at, va + i as u64 * PAGE_SIZE);
        assert_eq!(size, PageSize::Size4K);
        assert_eq!(f, flags | LeafFlags::USER);
        let desc = w.frames.desc(pfn).expect("desc");
        assert_eq!((desc.refcount(), desc.mapcount()), (1, 1));
        let mut page = vec![0xff; PAGE_SIZE as usize];
        w.mem.read_bytes(pfn.addr(), &mut page);
        assert!(page.iter().all(|&b| b == 0), "frame {pfn:?} not zeroed");
    }
    assert_eq!(space.mapped_pages(), 3);
    // Read-only is the default.
    space
        .map_zeroed(
            va + 0x3000,
            0x1000,
            LeafFlags::empty(),
            &w.frames,
            &w.tables(),
        )
        .expect("map");
    let flags = space.page_table().translate(va + 0x3000).map(|t| t.1);
    assert_eq!(flags, Some(LeafFlags::USER));
    assert_eq!(space.map_zeroed(va, 0, RW, &w.frames, &w.tables()), Ok(()));
    space.destroy(&w.frames, &w.tables());
}

#[test]
fn map_zeroed_refuses_bad_requests_without_side_effects() {
    let w = World::new(64);
    let mut space = w.space();
    space
        .map_zeroed(0x10_0000, 0x2000, RW, &w.frames, &w.tables())
        .expect("map");
    let before = (w.stats(), leaves(&space));
    let cases = [
        (0x20_0800, 0x1000, RW, Errno::EINVAL),
        (0x20_0000, 0x800, RW, Errno::EINVAL),
        (0x20_0000, 0x1000, LeafFlags::GLOBAL, Errno::EINVAL),
        (0x20_0000, 0x1000, LeafFlags::DIRTY, Errno::EINVAL),
        (USER_END, 0x1000, RW, Errno::EFAULT),
        (USER_END - 0x1000, 0x2000, RW, Errno::EFAULT),
        (0xffff_8000_0000_0000, 0x1000, RW, Errno::EFAULT),
        (0x1000, u64::MAX - 0xfff, RW, Errno::EFAULT),
        (0x10_1000, 0x1000, RW, Errno::EEXIST),
        (0x0f_f000, 0x3000, RW, Errno::EEXIST),
    ];
    for (va, len, flags, err) in cases {
        let got = space.map_zeroed(va, len, flags, &w.frames, &w.tables());
        assert_eq!(got, Err(err), "{va:#x}+{len:#x} {flags:?}");
        assert_eq!((w.stats(), leaves(&space)), before, "{va:#x}+{len:#x}");
    }
    space.destroy(&w.frames, &w.tables());
}

#[test]
fn map_zeroed_meets_a_non_leaf_entry_and_rolls_back() {
    // A marker is not a leaf, so only map() itself notices it, after
    // pages before it were mapped.
    let w = World::new(64);
    let mut space = w.space();
    let before = w.stats();
    let marker = Pte::Marker(MarkerFlags::GUARD);
    let tables = w.tables();
    let (_, flush) = (space.pt.set_entry(0x10_3000, 0, marker, &tables)).expect("marker");
    flush.flush(&w.mmu);
    let got = space.map_zeroed(0x10_0000, 0x8000, RW, &w.frames, &tables);
    assert_eq!(got, Err(Errno::EEXIST));
    assert_eq!(space.mapped_pages(), 0);
    let (_, flush) = space
        .pt
        .set_entry(0x10_3000, 0, Pte::Absent, &tables)
        .unwrap();
    flush.flush(&w.mmu);
    space.pt.prune(0, USER_END).flush_and_free(&w.mmu, &tables);
    assert_eq!(w.stats(), before);
    space.destroy(&w.frames, &tables);
}

/// Frames and the heap exhausted at once, as a program that takes all
/// memory leaves the kernel: the failure path (unmap what was mapped,
/// prune tables) must not need the heap. Tables it cannot remember stay
/// linked, empty, and go with the space.
#[test]
fn map_zeroed_with_no_heap_either_fails_cleanly() {
    let (va, len) = (GIB - 0x2000, 0x5000);
    for keep in 0..10 {
        let w = World::new(64);
        let start = w.stats();
        let mut space = w.space();
        let held = w.hog(keep);
        let got = crate::testutil::alloc::failing(|| {
            space.map_zeroed(va, len, RW, &w.frames, &w.tables())
        });
        assert_eq!(got, Err(Errno::ENOMEM), "keep {keep}");
        assert_eq!(space.mapped_pages(), 0);
        w.unhog(held);
        space.destroy(&w.frames, &w.tables());
        assert_eq!(w.stats(), start, "keep {keep}: leaked");
    }
}

#[test]
fn map_zeroed_out_of_memory_leaves_nothing_behind() {
    // 5 pages across a 1 GiB boundary: 5 frames plus new tables on both
    // sides (a level-2, two level-1 and two level-0 tables).
    let (va, len) = (GIB - 0x2000, 0x5000);
    let needed = 5 + 5;
    for keep in 0..=needed {
        let w = World::new(64);
        let mut space = w.space();
        let held = w.hog(keep);
        let before = w.stats();
        let got = space.map_zeroed(va, len, RW, &w.frames, &w.tables());
        if keep < needed {
            assert_eq!(got, Err(Errno::ENOMEM), "keep {keep}");
            assert_eq!(w.stats(), before, "keep {keep}: leaked");
            assert_eq!(space.mapped_pages(), 0);
        } else {
            assert_eq!(got, Ok(()), "keep {keep}");
            assert_eq!(space.mapped_pages(), 5);
        }
        w.unhog(held);
        space.destroy(&w.frames, &w.tables());
    }
}

#[test]
fn destroy_frees_everything_but_the_kernel_tables() {
    let w = World::new(256);
    // The kernel's tables: the root and every table on KERNEL_VA's path.
    let mut kernel_tables = vec![w.kernel_root];
    for level in 1..4 {
        match w.kernel_pt().entry(KERNEL_VA, level) {
            Some(Pte::Table(pfn)) => kernel_tables.push(pfn),
            other => panic!("level {level}: {other:?}"),
        }
    }
    let before = w.stats();
    let mut space = w.space();
    let t = w.tables();
    let ranges = [
        (0x1000, 0x1000),
        (0x40_0000, 0x8000),
        (GIB - 0x1000, 0x2000),
        (USER_END - 0x4000, 0x4000),
    ];
    for (va, len) in ranges {
        space.map_zeroed(va, len, RW, &w.frames, &t).expect("map");
    }
    assert_eq!(space.mapped_pages(), 1 + 8 + 2 + 4);
    assert_eq!(space.destroy(&w.frames, &t), 15);
    assert_eq!(w.stats(), before, "leaked frames or tables");
    assert_eq!(w.frames.check(), Ok(()));
    for pfn in kernel_tables {
        assert!(is_allocated(&w, pfn), "kernel table {pfn:?} freed");
    }
    let seen = w.kernel_pt().translate(KERNEL_VA);
    assert_eq!(seen.map(|t| t.0), Some(w.kernel_frame.addr()));
}

#[test]
fn destroy_keeps_frames_others_still_hold() {
    let w = World::new(64);
    let before = w.stats();
    let mut space = w.space();
    let t = w.tables();
    space.map_zeroed(0x1000, 0x2000, RW, &w.frames, &t).unwrap();
    let (pa, _, _) = space.page_table().translate(0x2000).unwrap();
    let shared = Pfn::containing(pa);
    let desc = w.frames.desc(shared).unwrap();
    assert_eq!(desc.get(), 2);
    assert_eq!(space.destroy(&w.frames, &t), 1);
    assert_eq!((desc.refcount(), desc.mapcount()), (1, 0));
    assert!(is_allocated(&w, shared));
    assert_eq!(desc.put(), 0);
    assert_eq!(w.frames.free(shared, 0), Ok(()));
    assert_eq!(w.stats(), before);
}

#[test]
fn unmap_range_frees_frames_and_empty_tables() {
    let w = World::new(64);
    let mut space = w.space();
    let t = w.tables();
    let after_new = w.stats();
    space
        .map_zeroed(0x10_0000, 0x4000, RW, &w.frames, &t)
        .unwrap();
    assert_eq!(space.unmap_range(0x10_1000, 0x2000, &w.frames, &t), Ok(2));
    let starts: Vec<u64> = leaves(&space).iter().map(|l| l.0).collect();
    assert_eq!(starts, [0x10_0000, 0x10_3000]);
    assert_eq!(space.unmap_range(0x10_1000, 0x1000, &w.frames, &t), Ok(0));
    let bad = space.unmap_range(0x10_0001, 0x1000, &w.frames, &t);
    assert_eq!(bad, Err(Errno::EINVAL));
    let bad = space.unmap_range(USER_END, 0x1000, &w.frames, &t);
    assert_eq!(bad, Err(Errno::EFAULT));
    assert_eq!(space.unmap_range(0, USER_END, &w.frames, &t), Ok(2));
    assert_eq!(w.stats(), after_new, "tables not pruned");
    space.destroy(&w.frames, &t);
}

/// The machine's MMU, noting how many frames were free at each flush.
struct Noting<'a> {
    w: &'a World,
    free_at_flush: spin::Mutex<Vec<u64>>,
}

impl TlbFlush for Noting<'_> {
    fn flush_pages(&self, root: Pfn, pages: &[crate::mm::tlb::FlushPage]) {
        self.free_at_flush.lock().push(self.w.stats().free);
        self.w.mmu.flush_pages(root, pages);
    }
    fn flush_space(&self, root: Pfn) {
        self.free_at_flush.lock().push(self.w.stats().free);
        self.w.mmu.flush_space(root);
    }
    fn flush_all(&self) {
        self.free_at_flush.lock().push(self.w.stats().free);
        self.w.mmu.flush_all();
    }
}

#[test]
fn unmap_range_flushes_before_the_frames_go_back() {
    let w = World::new(64);
    let noting = Noting {
        w: &w,
        free_at_flush: spin::Mutex::new(Vec::new()),
    };
    let t = w.tables();
    let mut space = Space::new(w.mem, w.kernel_root, &t, &noting, w.shared).unwrap();
    let (va, root) = (0x10_0000, space.root());
    space.map_zeroed(va, 0x2000, RW, &w.frames, &t).unwrap();
    w.mmu.write(root, va, b"secret").unwrap();
    let mut buf = [0; 6];
    w.mmu.read(root, va + 0x1000, &mut buf).unwrap();
    let free = w.stats().free;
    assert_eq!(space.unmap_range(va, 0x2000, &w.frames, &t), Ok(2));
    // The pages' flush came before their two frames went back; the
    // flush for the three emptied tables came before those went back.
    assert_eq!(*noting.free_at_flush.lock(), [free, free + 2]);
    assert_eq!(w.stats().free, free + 2 + 3);
    let err = w.mmu.read(root, va, &mut buf).map_err(|f| f.kind);
    assert_eq!(err, Err(FaultKind::NotPresent));
    space.destroy(&w.frames, &t);
}

#[test]
fn destroy_flushes_the_space_before_its_root_is_reused() {
    let w = World::new(64);
    let t = w.tables();
    let mut space = w.space();
    let (va, root) = (0x10_0000, space.root());
    space.map_zeroed(va, 0x1000, RW, &w.frames, &t).unwrap();
    w.mmu.write(root, va, b"secret").unwrap();
    space.destroy(&w.frames, &t);
    let next = w.space();
    assert_eq!(next.root(), root, "the test needs the root frame reused");
    let mut buf = [0; 6];
    let err = w.mmu.read(root, va, &mut buf).map_err(|f| f.kind);
    assert_eq!(err, Err(FaultKind::NotPresent));
    next.destroy(&w.frames, &t);
}

#[test]
fn two_spaces_are_independent() {
    let w = World::new(64);
    let t = w.tables();
    let before = w.stats();
    let (mut a, mut b) = (w.space(), w.space());
    a.map_zeroed(0x1000, 0x1000, RW, &w.frames, &t).unwrap();
    b.map_zeroed(0x1000, 0x1000, RW, &w.frames, &t).unwrap();
    let pa = |s: &Space| s.page_table().translate(0x1000).map(|x| x.0);
    assert_ne!(pa(&a), pa(&b));
    a.destroy(&w.frames, &t);
    assert_eq!(b.mapped_pages(), 1);
    let seen = b.page_table().translate(KERNEL_VA);
    assert_eq!(seen.map(|x| x.0), Some(w.kernel_frame.addr()));
    b.destroy(&w.frames, &t);
    assert_eq!(w.stats(), before);
}

#[test]
fn huge_user_pages_are_released_as_blocks() {
    let w = World::new(2048);
    let before = w.stats();
    let mut space = w.space();
    let t = w.tables();
    let block = w.frames.alloc(9).expect("2 MiB block");
    let flags = LeafFlags::USER | RW;
    space
        .pt
        .map(0x20_0000, block, PageSize::Size2M, flags, &t)
        .unwrap();
    w.frames.desc(block).unwrap().inc_mapcount();
    assert_eq!(space.mapped_pages(), 512);
    assert_eq!(space.destroy(&w.frames, &t), 512);
    assert_eq!(w.stats(), before);
}
