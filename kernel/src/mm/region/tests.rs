use super::*;
use crate::testutil::Rng;
use alloc::vec;

const P: u64 = PAGE_SIZE;
const RW: VmFlags = VmFlags::READ
    .union(VmFlags::WRITE)
    .union(VmFlags::MAY)
    .union(VmFlags::ACCOUNT);
const RO: VmFlags = VmFlags::READ.union(VmFlags::MAY);

fn anon(start: u64, end: u64, flags: VmFlags) -> Region {
    Region::anon(start * P, end * P, flags)
}

/// The regions as (first page, last page + 1, flags).
fn shape(rs: &Regions) -> Vec<(u64, u64, VmFlags)> {
    rs.iter()
        .map(|r| (r.start / P, r.end / P, r.flags))
        .collect()
}

#[test]
fn neighbours_merge_on_insert_and_not_across_flags() {
    let mut rs = Regions::new();
    rs.insert(anon(10, 12, RW)).unwrap();
    rs.insert(anon(14, 16, RW)).unwrap();
    rs.insert(anon(12, 14, RW)).unwrap();
    assert_eq!(shape(&rs), [(10, 16, RW)], "both sides merge");
    rs.insert(anon(16, 17, RO)).unwrap();
    rs.insert(anon(9, 10, RW | VmFlags::NORESERVE)).unwrap();
    assert_eq!(
        shape(&rs),
        [(9, 10, RW | VmFlags::NORESERVE), (10, 16, RW), (16, 17, RO)]
    );
    assert_eq!(rs.insert(anon(15, 18, RW)), Err(Errno::EEXIST));
    rs.check().unwrap();
}

#[test]
fn offsets_must_continue_for_a_merge() {
    let mut rs = Regions::new();
    rs.insert(anon(10, 12, RW)).unwrap();
    // Moved memory keeps the offset it had (mremap): it does not continue.
    let moved = Region {
        pgoff: 100,
        ..anon(12, 13, RW)
    };
    rs.insert(moved).unwrap();
    assert_eq!(rs.len(), 2);
    let image = Region {
        backing: Backing::Image,
        ..anon(13, 14, RW)
    };
    rs.insert(image).unwrap();
    assert_eq!(rs.len(), 3, "another backing never merges");
}

#[test]
fn anonymous_memory_of_two_regions_keeps_them_apart() {
    let mut rs = Regions::new();
    rs.insert(anon(10, 11, RW)).unwrap();
    rs.insert(anon(12, 13, RW)).unwrap();
    // Both faulted, each with memory of its own.
    let (a, b) = (rs.anon_of(0), rs.anon_of(1));
    assert_ne!(a, b);
    // The hole between them filled: Linux merges the one below only.
    rs.insert(anon(11, 12, RW)).unwrap();
    assert_eq!(shape(&rs), [(10, 12, RW), (12, 13, RW)]);
    assert_eq!((rs.get(0).unwrap().anon, rs.get(1).unwrap().anon), (a, b));
}

#[test]
fn a_neighbours_anonymous_memory_is_reused_across_rights() {
    let mut rs = Regions::new();
    rs.insert(anon(10, 11, RW)).unwrap();
    // Read-only after an mprotect: still counted, as the one below is.
    rs.insert(anon(11, 12, RO | VmFlags::ACCOUNT)).unwrap();
    let a = rs.anon_of(0);
    assert_eq!(rs.anon_of(1), a, "compatible but for the rights");
    // Made writable, it merges: the memory is the same.
    let i = rs.set_flags(1, 11 * P, 12 * P, RW).unwrap();
    assert_eq!((i, shape(&rs)), (0, vec![(10, 12, RW)]));
}

#[test]
fn set_flags_splits_and_merges_as_mprotect() {
    let mut rs = Regions::new();
    rs.insert(anon(10, 20, RW)).unwrap();
    // The middle: three regions.
    let i = rs.set_flags(0, 12 * P, 14 * P, RO).unwrap();
    assert_eq!(i, 1);
    assert_eq!(shape(&rs), [(10, 12, RW), (12, 14, RO), (14, 20, RW)]);
    // Its upper part back: the region above grows down over it.
    let i = rs.set_flags(1, 13 * P, 14 * P, RW).unwrap();
    assert_eq!(shape(&rs), [(10, 12, RW), (12, 13, RO), (13, 20, RW)]);
    assert_eq!(i, 2);
    assert_eq!(rs.get(2).unwrap().pgoff, 13);
    // Its lower part: the region below grows over it.
    let i = rs.set_flags(1, 12 * P, 12 * P + P, RW).unwrap();
    assert_eq!(i, 0);
    assert_eq!(shape(&rs), [(10, 20, RW)], "all one again");
    // The same flags change nothing and need nothing.
    let mut full = Regions::with_limit(1);
    full.insert(anon(10, 20, RW)).unwrap();
    assert_eq!(full.set_flags(0, 12 * P, 13 * P, RW), Ok(0));
    assert_eq!(full.set_flags(0, 12 * P, 13 * P, RO), Err(Errno::ENOMEM));
    assert_eq!(full.set_flags(0, 10 * P, 20 * P, RO), Ok(0), "no split");
}

#[test]
fn remove_splits_and_refuses_a_third_piece_at_the_limit() {
    let mut rs = Regions::with_limit(2);
    rs.insert(anon(10, 20, RW)).unwrap();
    rs.insert(anon(30, 40, RO)).unwrap();
    assert_eq!(rs.remove(12 * P, 14 * P), Err(Errno::ENOMEM));
    assert_eq!(rs.len(), 2, "nothing changed");
    // Trimming needs no entry.
    rs.remove(18 * P, 32 * P).unwrap();
    assert_eq!(shape(&rs), [(10, 18, RW), (32, 40, RO)]);
    assert_eq!(rs.get(1).unwrap().pgoff, 32);
    rs.remove(0, 100 * P).unwrap();
    assert!(rs.is_empty());
    // Nothing there is fine.
    rs.remove(0, P).unwrap();
}

#[test]
fn gaps_top_down_keep_clear_of_a_stack() {
    let mut rs = Regions::new();
    let stack = Region::anon(1000 * P, 1010 * P, RW | VmFlags::GROWSDOWN);
    rs.insert(stack).unwrap();
    rs.insert(anon(500, 600, RW)).unwrap();
    let gap = abi::STACK_GUARD_GAP;
    assert_eq!(
        rs.gap_topdown(P, P, 2000 * P),
        Some(2000 * P - P),
        "above everything"
    );
    assert_eq!(rs.gap_topdown(P, P, 1005 * P), Some(1000 * P - gap - P));
    // Exactly the room between the two.
    let room = 1000 * P - gap - 600 * P;
    assert_eq!(rs.gap_topdown(room, P, 1005 * P), Some(600 * P));
    assert_eq!(
        rs.gap_topdown(room + P, P, 1005 * P),
        Some(500 * P - room - P)
    );
    assert_eq!(rs.gap_topdown(500 * P, P, 1005 * P), None);
    assert_eq!(rs.gap_bottomup(P, 550 * P, 2000 * P), Some(600 * P));
    assert_eq!(rs.gap_bottomup(room + P, 550 * P, 2000 * P), Some(1010 * P));
    assert!(rs.is_free_for(600 * P, room));
    assert!(!rs.is_free_for(600 * P, room + P));
    assert!(!rs.is_free_for(550 * P, P));
}

/// The page-level truth the regions must agree with.
struct Model {
    pages: Vec<Option<VmFlags>>,
}

const WINDOW: u64 = 64;

impl Model {
    fn check(&self, rs: &Regions) {
        rs.check().unwrap();
        let mut seen = vec![None; WINDOW as usize];
        for r in rs.iter() {
            for p in r.start / P..r.end / P {
                seen[p as usize] = Some(r.flags);
            }
        }
        assert_eq!(seen, self.pages, "{:?}", shape(rs));
        // Nothing mergeable is left apart (no region here has faulted).
        for w in rs.list.windows(2) {
            assert!(!w[0].merges_with_next(&w[1]), "{:?}", shape(rs));
        }
    }

    /// The index of the region holding page `p`.
    fn index_of(rs: &Regions, p: u64) -> usize {
        rs.index_from(p * P)
    }
}

#[test]
fn random_changes_agree_with_a_page_model() {
    let flags = [
        RW,
        RO,
        VmFlags::MAY,
        RW | VmFlags::NORESERVE,
        RO | VmFlags::EXEC,
    ];
    for seed in 1..=40u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut rs = Regions::new();
        let mut m = Model {
            pages: vec![None; WINDOW as usize],
        };
        for _ in 0..400 {
            let a = rng.below(WINDOW);
            let b = (a + 1 + rng.below(8)).min(WINDOW);
            let f = flags[rng.index(flags.len())];
            match rng.below(3) {
                0 => {
                    let free = (a..b).all(|p| m.pages[p as usize].is_none());
                    let got = rs.insert(anon(a, b, f));
                    assert_eq!(got.is_ok(), free, "insert {a}..{b}");
                    if free {
                        (a..b).for_each(|p| m.pages[p as usize] = Some(f));
                    }
                }
                1 => {
                    rs.remove(a * P, b * P).unwrap();
                    (a..b).for_each(|p| m.pages[p as usize] = None);
                }
                _ => {
                    // As mprotect: region by region over a mapped range.
                    if (a..b).any(|p| m.pages[p as usize].is_none()) {
                        continue;
                    }
                    let mut at = a;
                    while at < b {
                        let i = Model::index_of(&rs, at);
                        let end = (rs.get(i).unwrap().end / P).min(b);
                        let j = rs.set_flags(i, at * P, end * P, f).unwrap();
                        assert!(rs.get(j).unwrap().contains(at * P));
                        at = end;
                    }
                    (a..b).for_each(|p| m.pages[p as usize] = Some(f));
                }
            }
            m.check(&rs);
        }
    }
}

#[test]
fn random_gaps_agree_with_a_search_of_the_pages() {
    for seed in 1..=40u64 {
        let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d));
        let mut rs = Regions::new();
        for _ in 0..12 {
            let a = rng.below(WINDOW);
            let b = (a + 1 + rng.below(4)).min(WINDOW);
            let _ = rs.insert(anon(a, b, RW));
        }
        let free = |p: u64| rs.find(p * P).is_none();
        for _ in 0..40 {
            let len = 1 + rng.below(6);
            let (low, high) = (rng.below(WINDOW / 2), WINDOW / 2 + rng.below(WINDOW / 2));
            let fits = |s: u64| s >= low && s + len <= high && (s..s + len).all(free);
            let top = (low..=high.saturating_sub(len)).rev().find(|&s| fits(s));
            let bottom = (low..=high.saturating_sub(len)).find(|&s| fits(s));
            assert_eq!(
                rs.gap_topdown(len * P, low * P, high * P),
                top.map(|s| s * P)
            );
            assert_eq!(
                rs.gap_bottomup(len * P, low * P, high * P),
                bottom.map(|s| s * P)
            );
        }
    }
}
