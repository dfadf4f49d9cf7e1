//! Host tests of the frame allocator.

use super::*;
use crate::testutil::Rng;
use alloc::string::ToString;
use alloc::vec::Vec;

fn descs(n: usize) -> Vec<FrameDesc> {
    (0..n).map(|_| FrameDesc::default()).collect()
}

fn pfns(start: u64, end: u64) -> Range<Pfn> {
    Pfn(start)..Pfn(end)
}

/// All free blocks as (pfn, order), sorted, read from the lists
/// themselves rather than from the counters.
fn free_blocks(a: &FrameAllocator) -> Vec<(u64, u32)> {
    let st = a.state.lock();
    let mut blocks = Vec::new();
    for order in 0..=MAX_ORDER {
        let mut cur = st.heads[order as usize];
        while cur != NONE {
            blocks.push((u64::from(cur), order));
            cur = a.descs[cur as usize].next.load(Ordering::Relaxed);
            assert!(blocks.len() <= a.descs.len(), "cycle in free list");
        }
    }
    blocks.sort();
    blocks
}

/// Everything a rejected call must leave alone.
fn snapshot(a: &FrameAllocator) -> (FrameStats, Vec<(u64, u32)>) {
    (a.stats(), free_blocks(a))
}

fn assert_consistent(a: &FrameAllocator) {
    if let Err(e) = a.check() {
        panic!("check failed: {e}");
    }
    let s = a.stats();
    assert_eq!(s.free + s.reserved + s.allocated, s.total, "{s}");
}

/// Allocate order-0 frames until the allocator runs dry.
fn drain(a: &FrameAllocator) -> Vec<u64> {
    let mut got = Vec::new();
    loop {
        match a.alloc_frame() {
            Ok(p) => got.push(p.0),
            Err(e) => {
                assert_eq!(e, FrameError::OutOfMemory);
                return got;
            }
        }
    }
}

#[test]
fn descs_bytes_counts_one_descriptor_per_frame() {
    let size = core::mem::size_of::<FrameDesc>() as u64;
    assert_eq!(FrameAllocator::descs_bytes(0), 0);
    assert_eq!(FrameAllocator::descs_bytes(1000), 1000 * size);
    assert_eq!(FrameAllocator::descs_bytes(u64::MAX), u64::MAX);
    // Usable in a const context, where the boot code sizes the array.
    const BYTES: u64 = FrameAllocator::descs_bytes(4);
    assert_eq!(BYTES, 4 * size);
}

#[test]
fn new_splits_ram_into_maximal_blocks() {
    let d = descs(4096);
    let a = FrameAllocator::new(&d, &[pfns(0, 4096)]);
    assert_consistent(&a);
    assert_eq!(
        free_blocks(&a),
        [(0, 10), (1024, 10), (2048, 10), (3072, 10)]
    );
    assert_eq!(
        a.stats(),
        FrameStats {
            total: 4096,
            free: 4096,
            reserved: 0,
            allocated: 0,
            mapped_frees: 0,
        }
    );
}

#[test]
fn new_handles_holes_and_unaligned_starts() {
    let d = descs(64);
    let a = FrameAllocator::new(&d, &[pfns(3, 17), pfns(40, 41)]);
    assert_consistent(&a);
    assert_eq!(free_blocks(&a), [(3, 0), (4, 2), (8, 3), (16, 0), (40, 0)]);
    assert_eq!(a.stats().total, 15);
    assert_eq!(a.stats().reserved, 0);
    let hole = FrameFlags::RESERVED | FrameFlags::HOLE;
    for p in [0, 2, 17, 39, 41, 63] {
        assert_eq!(a.desc(Pfn(p)).map(|d| d.flags()), Some(hole), "pfn {p}");
    }
    let mut got = drain(&a);
    got.sort();
    let want: Vec<u64> = (3..17).chain(40..41).collect();
    assert_eq!(got, want);
    assert_consistent(&a);
}

#[test]
fn new_unions_overlapping_unsorted_ranges_and_clips() {
    let d = descs(64);
    #[allow(clippy::reversed_empty_ranges)]
    let usable = [
        pfns(10, 20),
        pfns(0, 12),
        pfns(15, 16),
        pfns(60, 200),
        pfns(30, 25),
        pfns(100, 300),
    ];
    let a = FrameAllocator::new(&d, &usable);
    assert_consistent(&a);
    assert_eq!(free_blocks(&a), [(0, 4), (16, 2), (60, 2)]);
    assert_eq!(a.stats().total, 24);
    assert!(a.desc(Pfn(63)).is_some());
    assert!(a.desc(Pfn(64)).is_none());
    assert!(a.desc(Pfn(u64::MAX)).is_none());
}

#[test]
fn new_ignores_previous_descriptor_contents() {
    let d = descs(256);
    for (i, x) in d.iter().enumerate() {
        x.refcount.store(7, Ordering::Relaxed);
        x.mapcount.store(-3, Ordering::Relaxed);
        x.flags.store(u32::MAX, Ordering::Relaxed);
        x.next.store(i as u32 ^ 5, Ordering::Relaxed);
        x.prev.store(12345, Ordering::Relaxed);
        x.order.store(200, Ordering::Relaxed);
    }
    let a = FrameAllocator::new(&d, &[pfns(0, 128)]);
    assert_consistent(&a);
    assert_eq!(free_blocks(&a), [(0, 7)]);
    assert_eq!(a.desc(Pfn(5)).map(|d| d.refcount()), Some(0));
    assert_eq!(drain(&a).len(), 128);
}

#[test]
fn alloc_returns_aligned_distinct_blocks() {
    let d = descs(1024);
    let a = FrameAllocator::new(&d, &[pfns(0, 1024)]);
    let mut owned = [false; 1024];
    let mut live = 0;
    for order in (0..=4).cycle() {
        let Ok(p) = a.alloc(order) else { break };
        let size = 1u64 << order;
        assert_eq!(p.0 % size, 0, "block {p:?} of order {order} misaligned");
        let desc = a.desc(p).expect("allocated pfn has a descriptor");
        assert_eq!(desc.refcount(), 1);
        assert_eq!(desc.mapcount(), 0);
        assert_eq!(desc.flags(), FrameFlags::HEAD);
        assert_eq!(desc.order(), order);
        for f in p.0..p.0 + size {
            assert!(!owned[f as usize], "pfn {f} handed out twice");
            owned[f as usize] = true;
        }
        live += size;
        assert_eq!(a.stats().allocated, live);
        assert_consistent(&a);
    }
    // The loop only stops on failure; what is left is too small for the
    // order that failed.
    assert!(
        live > 1024 - 16,
        "gave up early with {live} frames handed out"
    );
}

#[test]
fn alloc_rejects_bad_order() {
    let d = descs(2048);
    let a = FrameAllocator::new(&d, &[pfns(0, 2048)]);
    let before = snapshot(&a);
    assert_eq!(a.alloc(MAX_ORDER + 1), Err(FrameError::BadOrder));
    assert_eq!(a.alloc(u32::MAX), Err(FrameError::BadOrder));
    assert_eq!(snapshot(&a), before);
    let p = a.alloc(MAX_ORDER).expect("a whole max-order block is free");
    assert_eq!(p.0 % 1024, 0);
    assert_consistent(&a);
}

#[test]
fn free_coalesces_back_to_maximal_blocks() {
    let d = descs(2048);
    // Starting at 1 makes the initial shape uneven: one block per order.
    let a = FrameAllocator::new(&d, &[pfns(1, 2048)]);
    let initial = free_blocks(&a);
    assert_eq!(initial.len(), 11);
    let mut frames = drain(&a);
    assert_eq!(frames.len(), 2047);
    assert_eq!(free_blocks(&a), []);
    // Free in a scrambled order so merges happen in every pattern.
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for i in (1..frames.len()).rev() {
        frames.swap(i, rng.below(i as u64 + 1) as usize);
    }
    for (n, p) in frames.iter().enumerate() {
        assert_eq!(a.free(Pfn(*p), 0), Ok(()));
        if n % 64 == 0 {
            assert_consistent(&a);
        }
    }
    assert_consistent(&a);
    assert_eq!(free_blocks(&a), initial);
    assert_eq!(a.alloc(MAX_ORDER), Ok(Pfn(1024)));
    assert_eq!(a.alloc(MAX_ORDER), Err(FrameError::OutOfMemory));
}

#[test]
fn split_blocks_merge_when_freed() {
    let d = descs(1024);
    let a = FrameAllocator::new(&d, &[pfns(0, 1024)]);
    let big = a.alloc(3).expect("alloc order 3");
    let small = a.alloc(0).expect("alloc order 0");
    // Both came out of splits; every unused half is listed.
    assert_eq!(
        free_blocks(&a),
        [
            (9, 0),
            (10, 1),
            (12, 2),
            (16, 4),
            (32, 5),
            (64, 6),
            (128, 7),
            (256, 8),
            (512, 9)
        ]
    );
    assert_eq!((big, small), (Pfn(0), Pfn(8)));
    assert_eq!(a.free(small, 0), Ok(()));
    assert_eq!(a.free(big, 3), Ok(()));
    assert_eq!(free_blocks(&a), [(0, 10)]);
    assert_consistent(&a);
}

#[test]
fn exhaustion_returns_oom_and_allocator_recovers() {
    let d = descs(64);
    let a = FrameAllocator::new(&d, &[pfns(0, 64)]);
    let blocks: Vec<Pfn> = (0..8).map(|_| a.alloc(3).expect("alloc order 3")).collect();
    let full = snapshot(&a);
    assert_eq!(full.0.free, 0);
    for order in [0, 1, 3, MAX_ORDER] {
        assert_eq!(a.alloc(order), Err(FrameError::OutOfMemory));
    }
    assert_eq!(snapshot(&a), full);
    assert_consistent(&a);

    assert_eq!(a.free(blocks[5], 3), Ok(()));
    let p = a.alloc_frame().expect("a frame after freeing a block");
    assert!((blocks[5].0..blocks[5].0 + 8).contains(&p.0));
    assert_eq!(a.alloc(3), Err(FrameError::OutOfMemory));
    assert_eq!(a.alloc(2), Ok(Pfn(blocks[5].0 + 4)));
    assert_consistent(&a);
}

#[test]
fn double_free_is_rejected_and_changes_nothing() {
    let d = descs(16);
    let a = FrameAllocator::new(&d, &[pfns(0, 16)]);
    let x = a.alloc_frame().expect("alloc");
    let y = Pfn(x.0 ^ 1);
    assert_eq!(a.alloc_frame(), Ok(y), "the buddy is next on the list");
    assert_eq!(a.free(x, 0), Ok(()));
    let before = snapshot(&a);
    assert_eq!(a.free(x, 0), Err(FrameError::NotAllocated));
    assert_eq!(snapshot(&a), before);
    assert_consistent(&a);
    // Once merged, one of the two is a free head and the other a tail.
    assert_eq!(a.free(y, 0), Ok(()));
    let before = snapshot(&a);
    assert_eq!(a.free(x, 0), Err(FrameError::NotAllocated));
    assert_eq!(a.free(y, 0), Err(FrameError::NotAllocated));
    assert_eq!(a.free(Pfn(0), 4), Err(FrameError::NotAllocated));
    assert_eq!(snapshot(&a), before);
    assert_eq!(before.1, [(0, 4)]);
    assert_consistent(&a);
}

#[test]
fn misaligned_free_is_rejected_and_changes_nothing() {
    let d = descs(64);
    let a = FrameAllocator::new(&d, &[pfns(0, 64)]);
    let p = a.alloc(2).expect("alloc order 2");
    let before = snapshot(&a);
    assert_eq!(a.free(Pfn(p.0 + 1), 2), Err(FrameError::Misaligned));
    assert_eq!(a.free(Pfn(p.0 + 2), 2), Err(FrameError::Misaligned));
    // Aligned for order 1, but a tail of the block.
    assert_eq!(a.free(Pfn(p.0 + 2), 1), Err(FrameError::NotAllocated));
    assert_eq!(a.free(Pfn(p.0 + 3), 0), Err(FrameError::NotAllocated));
    assert_eq!(snapshot(&a), before);
    assert_consistent(&a);
    assert_eq!(a.free(p, 2), Ok(()));
    assert_eq!(free_blocks(&a), [(0, 6)]);
}

#[test]
fn wrong_order_free_is_rejected_and_changes_nothing() {
    let d = descs(64);
    let a = FrameAllocator::new(&d, &[pfns(0, 64)]);
    let p = a.alloc(2).expect("alloc order 2");
    let before = snapshot(&a);
    assert_eq!(a.free(p, 0), Err(FrameError::BadOrder));
    assert_eq!(a.free(p, 1), Err(FrameError::BadOrder));
    assert_eq!(a.free(p, MAX_ORDER + 1), Err(FrameError::BadOrder));
    assert_eq!(a.free(p, u32::MAX), Err(FrameError::BadOrder));
    assert_eq!(snapshot(&a), before);
    assert_consistent(&a);
    assert_eq!(a.free(p, 2), Ok(()));
    assert_consistent(&a);
}

#[test]
fn free_of_reserved_hole_free_or_unmanaged_frame_is_rejected() {
    let d = descs(64);
    let a = FrameAllocator::new(&d, &[pfns(0, 32)]);
    assert_eq!(a.reserve(pfns(4, 6)), Ok(()));
    let _held = a.alloc_frame().expect("alloc");
    let before = snapshot(&a);
    let cases = [
        (Pfn(4), FrameError::NotAllocated),  // reserved
        (Pfn(5), FrameError::NotAllocated),  // reserved
        (Pfn(16), FrameError::NotAllocated), // head of a free block
        (Pfn(40), FrameError::NotManaged),   // hole
        (Pfn(64), FrameError::NotManaged),   // past the array
        (Pfn(u64::MAX), FrameError::NotManaged),
    ];
    for (p, err) in cases {
        assert_eq!(a.free(p, 0), Err(err), "free({p:?}, 0)");
    }
    assert_eq!(snapshot(&a), before);
    assert_consistent(&a);
}

#[test]
fn reserve_in_middle_of_free_block() {
    let d = descs(1024);
    let a = FrameAllocator::new(&d, &[pfns(0, 1024)]);
    assert_eq!(a.reserve(pfns(100, 300)), Ok(()));
    assert_consistent(&a);
    assert_eq!(
        a.stats(),
        FrameStats {
            total: 1024,
            free: 824,
            reserved: 200,
            allocated: 0,
            mapped_frees: 0,
        }
    );
    let want = [
        (0, 6),
        (64, 5),
        (96, 2),
        (300, 2),
        (304, 4),
        (320, 6),
        (384, 7),
        (512, 9),
    ];
    assert_eq!(free_blocks(&a), want);
    for p in [100, 150, 299] {
        assert_eq!(
            a.desc(Pfn(p)).map(|d| d.flags()),
            Some(FrameFlags::RESERVED)
        );
    }
    let frames = drain(&a);
    assert_eq!(frames.len(), 824);
    assert!(frames.iter().all(|p| !(100..300).contains(p)));
    for p in frames {
        assert_eq!(a.free(Pfn(p), 0), Ok(()));
    }
    assert_eq!(free_blocks(&a), want, "reserved frames must not merge back");
    assert_consistent(&a);
}

#[test]
fn reserve_of_allocated_frame_is_in_use_and_changes_nothing() {
    let d = descs(64);
    let a = FrameAllocator::new(&d, &[pfns(0, 64)]);
    let p = a.alloc(2).expect("alloc order 2");
    let before = snapshot(&a);
    let (lo, hi) = (p.0.saturating_sub(8), p.0 + 12);
    assert_eq!(a.reserve(pfns(lo, hi)), Err(FrameError::InUse));
    assert_eq!(a.reserve(pfns(p.0 + 3, p.0 + 4)), Err(FrameError::InUse));
    assert_eq!(a.reserve(pfns(0, 64)), Err(FrameError::InUse));
    assert_eq!(snapshot(&a), before);
    assert_consistent(&a);
    // Right next to the block is fine.
    assert_eq!(a.reserve(pfns(p.0 + 4, p.0 + 5)), Ok(()));
    assert_eq!(a.stats().reserved, 1);
    assert_consistent(&a);
}

#[test]
fn reserve_skips_holes_and_already_reserved_frames() {
    let d = descs(64);
    let a = FrameAllocator::new(&d, &[pfns(0, 16), pfns(32, 48)]);
    assert_eq!(a.reserve(pfns(8, 40)), Ok(()));
    assert_eq!(a.stats().reserved, 16);
    assert_eq!(
        a.reserve(pfns(8, 40)),
        Ok(()),
        "reserving twice is harmless"
    );
    assert_eq!(a.stats().reserved, 16);
    assert_eq!(
        a.desc(Pfn(20)).map(|d| d.flags()),
        Some(FrameFlags::RESERVED | FrameFlags::HOLE),
        "a hole stays a hole"
    );
    let before = snapshot(&a);
    assert_eq!(a.reserve(pfns(100, 200)), Ok(()));
    #[allow(clippy::reversed_empty_ranges)]
    let backwards = pfns(12, 10);
    assert_eq!(a.reserve(backwards), Ok(()));
    assert_eq!(snapshot(&a), before);
    assert_eq!(a.reserve(pfns(0, u64::MAX)), Ok(()));
    assert_eq!(
        a.stats(),
        FrameStats {
            total: 32,
            free: 0,
            reserved: 32,
            allocated: 0,
            mapped_frees: 0,
        }
    );
    assert_eq!(a.alloc_frame(), Err(FrameError::OutOfMemory));
    assert_consistent(&a);
}

#[test]
fn free_clears_counts_left_by_owners() {
    let d = descs(16);
    let a = FrameAllocator::new(&d, &[pfns(0, 16)]);
    let p = a.alloc(1).expect("alloc");
    let desc = a.desc(p).expect("desc");
    assert_eq!(desc.get(), 2);
    // A tail touched by an owner must not leak into a later free head.
    // Only the head's counts stand for the block, so the tail's mapcount
    // does not make the free refuse.
    let tail = a.desc(Pfn(p.0 + 1)).expect("desc");
    tail.get();
    tail.inc_mapcount();
    assert_eq!(a.free(p, 1), Ok(()));
    assert_consistent(&a);
    let q = a.alloc_frame().expect("alloc");
    let r = a.alloc_frame().expect("alloc");
    for f in [q, r] {
        let desc = a.desc(f).expect("desc");
        assert_eq!((desc.refcount(), desc.mapcount()), (1, 0), "{f:?}");
    }
    assert_consistent(&a);
}

#[test]
fn free_of_a_mapped_frame_is_refused_and_counted() {
    let d = descs(16);
    let a = FrameAllocator::new(&d, &[pfns(0, 16)]);
    let p = a.alloc(2).expect("alloc");
    let desc = a.desc(p).expect("desc");
    desc.inc_mapcount();
    let before = snapshot(&a);
    assert_eq!(a.free(p, 2), Err(FrameError::Mapped));
    assert_eq!(a.free(p, 2), Err(FrameError::Mapped));
    // Still allocated, still mapped; only the counter moved.
    let (stats, blocks) = snapshot(&a);
    assert_eq!(stats.mapped_frees, 2);
    assert_eq!(
        (
            FrameStats {
                mapped_frees: 0,
                ..stats
            },
            blocks
        ),
        before
    );
    assert_eq!((desc.flags(), desc.mapcount()), (FrameFlags::HEAD, 1));
    assert!(
        stats.to_string().ends_with(" frames_mapped_frees=2"),
        "{stats}"
    );
    assert_consistent(&a);
    // Once the mapping is gone the same free goes through.
    assert_eq!(desc.dec_mapcount(), 0);
    assert_eq!(a.free(p, 2), Ok(()));
    assert_eq!(a.stats().mapped_frees, 2);
    assert_eq!(a.stats().allocated, 0);
    assert_consistent(&a);
}

#[test]
fn refcount_and_mapcount_never_wrap() {
    let d = FrameDesc::default();
    assert_eq!(
        (d.refcount(), d.mapcount(), d.flags()),
        (0, 0, FrameFlags::empty())
    );
    assert_eq!(d.get(), 1);
    assert_eq!(d.get(), 2);
    assert_eq!(d.put(), 1);
    assert_eq!(d.put(), 0);
    assert_eq!(d.put(), 0, "put on zero saturates");
    assert_eq!(d.refcount(), 0);
    d.refcount.store(u32::MAX, Ordering::Relaxed);
    assert_eq!(d.get(), u32::MAX, "get on max saturates");

    assert_eq!(d.inc_mapcount(), 1);
    assert_eq!(d.dec_mapcount(), 0);
    assert_eq!(d.dec_mapcount(), 0, "unmap of an unmapped frame saturates");
    assert_eq!(d.mapcount(), 0);
}

#[test]
fn stats_display_format() {
    let s = FrameStats {
        total: 10,
        free: 4,
        reserved: 3,
        allocated: 3,
        mapped_frees: 0,
    };
    assert_eq!(
        s.to_string(),
        "frames_total=10 frames_free=4 frames_reserved=3 frames_used=3 frames_mapped_frees=0"
    );
    let d = descs(64);
    let a = FrameAllocator::new(&d, &[pfns(0, 64)]);
    a.reserve(pfns(0, 3)).expect("reserve");
    a.alloc(2).expect("alloc");
    assert_eq!(
        a.stats().to_string(),
        "frames_total=64 frames_free=57 frames_reserved=3 frames_used=4 frames_mapped_frees=0"
    );
}

#[test]
fn error_messages_are_distinct() {
    let all = [
        FrameError::OutOfMemory,
        FrameError::BadOrder,
        FrameError::NotManaged,
        FrameError::Misaligned,
        FrameError::NotAllocated,
        FrameError::InUse,
        FrameError::Mapped,
    ];
    let msgs: Vec<String> = all.iter().map(|e| e.to_string()).collect();
    for (i, m) in msgs.iter().enumerate() {
        assert!(!m.is_empty());
        assert!(!msgs[..i].contains(m), "duplicate message {m:?}");
    }
}

#[test]
fn check_detects_corruption() {
    type Corrupt = fn(&FrameAllocator);
    let corruptions: [(&str, Corrupt); 8] = [
        ("free head loses FREE", |a| {
            a.descs[0].set_state(FrameFlags::HEAD, 6);
        }),
        ("tail gains HEAD", |a| {
            a.descs[5].set_state(FrameFlags::HEAD, 0)
        }),
        ("allocated head loses HEAD", |a| {
            a.descs[200].set_state(FrameFlags::empty(), 0);
        }),
        ("stats drift", |a| a.state.lock().stats.free -= 1),
        ("list length drift", |a| a.state.lock().lens[6] += 1),
        ("broken prev links", |a| {
            a.descs[0].prev.store(3, Ordering::Relaxed);
            a.descs[128].prev.store(3, Ordering::Relaxed);
        }),
        ("cycle on a list", |a| {
            a.descs[0].next.store(0, Ordering::Relaxed);
            a.descs[128].next.store(128, Ordering::Relaxed);
        }),
        ("unmerged buddies", |a| {
            let mut st = a.state.lock();
            a.unlink(&mut st, 0, 6);
            a.make_free(&mut st, 0, 5);
            a.make_free(&mut st, 32, 5);
        }),
    ];
    for (what, corrupt) in corruptions {
        let d = descs(256);
        // Two order-6 blocks that are not buddies share list 6.
        let a = FrameAllocator::new(&d, &[pfns(0, 64), pfns(128, 192), pfns(200, 201)]);
        assert_eq!(free_blocks(&a), [(0, 6), (128, 6), (200, 0)]);
        assert_eq!(a.alloc_frame(), Ok(Pfn(200)));
        assert_consistent(&a);
        corrupt(&a);
        assert!(a.check().is_err(), "check() missed: {what}");
    }
}

#[test]
fn allocator_can_be_shared_between_threads() {
    fn assert_sync<T: Sync + Send>() {}
    assert_sync::<FrameAllocator<'static>>();

    let d = descs(4096);
    let a = FrameAllocator::new(&d, &[pfns(0, 4096)]);
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let a = &a;
            s.spawn(move || {
                let mut rng = Rng(t + 1);
                let mut held = Vec::new();
                for _ in 0..2000 {
                    if held.len() < 32 && rng.below(2) == 0 {
                        let order = rng.below(4) as u32;
                        if let Ok(p) = a.alloc(order) {
                            held.push((p, order));
                        }
                    } else if let Some((p, order)) = held.pop() {
                        assert_eq!(a.free(p, order), Ok(()));
                    }
                }
                for (p, order) in held {
                    assert_eq!(a.free(p, order), Ok(()));
                }
            });
        }
    });
    assert_consistent(&a);
    assert_eq!(
        free_blocks(&a),
        [(0, 10), (1024, 10), (2048, 10), (3072, 10)]
    );
}

/// What the model in the stress test knows about each frame.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Cell {
    Hole,
    Free,
    Used,
    Reserved,
}

/// An independent model of the allocator: one cell per frame.
struct Model {
    cells: Vec<Cell>,
    live: Vec<(u64, u32)>,
    /// How often each kind of step ran: allocs, OOMs, frees, refused
    /// reserves, reserves, refused frees.
    seen: [u32; 6],
}

impl Model {
    fn count(&self, c: Cell) -> u64 {
        self.cells.iter().filter(|&&x| x == c).count() as u64
    }

    /// Is there an aligned run of 2^order free frames? With complete
    /// merging, alloc(order) must succeed exactly when there is.
    fn has_free_run(&self, order: u32) -> bool {
        let size = 1usize << order;
        self.cells
            .chunks_exact(size)
            .any(|run| run.iter().all(|&c| c == Cell::Free))
    }

    fn set(&mut self, start: u64, order: u32, from: Cell, to: Cell) {
        for f in start..start + (1 << order) {
            let cell = &mut self.cells[f as usize];
            assert_eq!(*cell, from, "pfn {f}");
            *cell = to;
        }
    }
}

const STRESS_FRAMES: usize = 3000;

fn stress_alloc(a: &FrameAllocator, m: &mut Model, rng: &mut Rng, step: usize) {
    // Mostly small orders, now and then any order.
    let order = if rng.below(8) == 0 {
        rng.below(u64::from(MAX_ORDER) + 1) as u32
    } else {
        rng.below(3) as u32
    };
    match a.alloc(order) {
        Ok(p) => {
            assert_eq!(p.0 % (1 << order), 0, "step {step}");
            m.set(p.0, order, Cell::Free, Cell::Used);
            m.live.push((p.0, order));
            m.seen[0] += 1;
        }
        Err(e) => {
            assert_eq!(e, FrameError::OutOfMemory, "step {step}");
            assert!(!m.has_free_run(order), "step {step}: OOM with free run");
            m.seen[1] += 1;
        }
    }
}

fn stress_free(a: &FrameAllocator, m: &mut Model, rng: &mut Rng, step: usize) {
    if m.live.is_empty() {
        return;
    }
    let (p, order) = m.live.swap_remove(rng.below(m.live.len() as u64) as usize);
    assert_eq!(a.free(Pfn(p), order), Ok(()), "step {step}");
    m.set(p, order, Cell::Used, Cell::Free);
    m.seen[2] += 1;
}

/// Reserve a few frames; must fail exactly when one of them is in use.
fn stress_reserve(a: &FrameAllocator, m: &mut Model, rng: &mut Rng, step: usize) {
    let n = STRESS_FRAMES as u64;
    let start = rng.below(n + 10);
    let end = start + 1 + rng.below(8);
    let cells = (start.min(n) as usize)..(end.min(n) as usize);
    let before = snapshot(a);
    let got = a.reserve(Pfn(start)..Pfn(end));
    if m.cells[cells.clone()].contains(&Cell::Used) {
        assert_eq!(got, Err(FrameError::InUse), "step {step}");
        assert_eq!(snapshot(a), before, "step {step}");
        m.seen[3] += 1;
    } else {
        assert_eq!(got, Ok(()), "step {step}");
        for c in &mut m.cells[cells] {
            if *c == Cell::Free {
                *c = Cell::Reserved;
            }
        }
        m.seen[4] += 1;
    }
}

/// A free that must be refused: a live block with the pfn or the order
/// off, or any (pfn, order) that is not a live block.
fn stress_bad_free(a: &FrameAllocator, m: &mut Model, rng: &mut Rng, step: usize) {
    let (p, order) = match m.live.get(rng.below(m.live.len() as u64 + 1) as usize) {
        Some(&(p, order)) if rng.below(2) == 0 => (p + 1 + rng.below(1 << order), order),
        Some(&(p, order)) => (p, (order + 1 + rng.below(3) as u32) % (MAX_ORDER + 3)),
        None => (
            rng.below(STRESS_FRAMES as u64 + 10),
            rng.below(u64::from(MAX_ORDER) + 3) as u32,
        ),
    };
    if m.live.contains(&(p, order)) {
        return;
    }
    let before = snapshot(a);
    assert!(
        a.free(Pfn(p), order).is_err(),
        "step {step}: free({p}, {order})"
    );
    assert_eq!(snapshot(a), before, "step {step}");
    m.seen[5] += 1;
}

fn stress(seed: u64, steps: usize) {
    let d = descs(STRESS_FRAMES);
    let usable = [pfns(1000, 1700), pfns(5, 1500), pfns(1600, 2900)];
    let a = FrameAllocator::new(&d, &usable);
    let mut m = Model {
        cells: vec![Cell::Hole; STRESS_FRAMES],
        live: Vec::new(),
        seen: [0; 6],
    };
    m.cells[5..2900].fill(Cell::Free);
    let mut rng = Rng(seed);
    for step in 0..steps {
        // Alternate filling and draining phases so that both the nearly
        // empty and the exhausted allocator get exercised.
        let alloc_per_mille = if (step / 700) % 2 == 0 { 700 } else { 300 };
        let roll = rng.below(1000);
        if roll < 15 {
            stress_reserve(&a, &mut m, &mut rng, step);
        } else if roll < 60 {
            stress_bad_free(&a, &mut m, &mut rng, step);
        } else if roll < 60 + alloc_per_mille {
            stress_alloc(&a, &mut m, &mut rng, step);
        } else {
            stress_free(&a, &mut m, &mut rng, step);
        }
        if let Err(e) = a.check() {
            panic!("seed {seed} step {step}: {e}");
        }
        let want = FrameStats {
            total: 2895,
            free: m.count(Cell::Free),
            reserved: m.count(Cell::Reserved),
            allocated: m.count(Cell::Used),
            mapped_frees: 0,
        };
        assert_eq!(a.stats(), want, "seed {seed} step {step}");
    }
    // Every kind of step must have happened, or the test proves little.
    assert!(m.seen.iter().all(|&n| n > 0), "seed {seed}: {:?}", m.seen);
    for (p, order) in core::mem::take(&mut m.live) {
        assert_eq!(a.free(Pfn(p), order), Ok(()));
        m.set(p, order, Cell::Used, Cell::Free);
    }
    assert_consistent(&a);
    assert_eq!(a.stats().allocated, 0);
    assert_eq!(drain(&a).len() as u64, m.count(Cell::Free));
}

#[test]
fn random_stress_against_model() {
    for seed in [1, 0xdead_beef, 0x1234_5678_9abc_def0] {
        stress(seed, 6000);
    }
}
