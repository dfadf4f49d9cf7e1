//! The regions of a user address space: Linux's VMAs.
//!
//! A [`Region`] is a page-aligned range `[start, end)` with one set of
//! [`VmFlags`] (the protection, what it may become, how it grows), a
//! [`Backing`] (what its pages hold before they are written) and an
//! offset into the backing in pages (`pgoff`, Linux's `vm_pgoff`). The
//! page tables say which pages exist now; the regions say which may
//! exist, with which rights: every present user page lies in a region,
//! and a fault is resolved from the region it falls in (`mm::fault`).
//!
//! # The structure
//!
//! [`Regions`] keeps them sorted by address, never overlapping, in a
//! vector: a lookup is a binary search (no allocation, for the fault
//! path), a change moves the entries after it. Programs have a few dozen
//! regions; Linux's limit of 65530 (`max_map_count`) bounds the move.
//! Growth is fallible: every change reserves the slots it may need
//! first (`try_reserve`), and fails with `ENOMEM` before anything
//! changed when it cannot have them, so a user cannot make the kernel
//! panic for memory. (Linux keeps a maple tree.)
//!
//! # Merging
//!
//! A region made or changed next to another merges with it exactly when
//! Linux's `vma_merge` would: adjacent, the same flags, the same backing,
//! `pgoff`s that continue each other, and compatible anonymous memory
//! (`anon`, standing for Linux's `anon_vma`: set at a region's first
//! fault, shared by the pieces of a split and by a neighbour it could be
//! reused from, and two regions that both have one of their own do not
//! merge). When both neighbours qualify but not with each other, the one
//! below wins, as in Linux. Unmapping never merges.
//!
//! Merges are visible to programs: `mremap` works on one region only, so
//! the same calls must leave the same boundaries as on Linux.

use abi::Errno;
use bitflags::bitflags;

use super::PAGE_SIZE;
use super::pte::LeafFlags;
use alloc::vec::Vec;

bitflags! {
    /// A region's flags, with Linux's `vm_flags` bit values, so that
    /// what merges and what `/proc` will show agree with Linux.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct VmFlags: u64 {
        const READ = 0x1;
        const WRITE = 0x2;
        const EXEC = 0x4;
        const SHARED = 0x8;
        const MAYREAD = 0x10;
        const MAYWRITE = 0x20;
        const MAYEXEC = 0x40;
        const MAYSHARE = 0x80;
        /// A stack: faults below it grow it (docs/mm.md, "The stack").
        const GROWSDOWN = 0x100;
        /// `MAP_LOCKED`: populated at once, never given back.
        const LOCKED = 0x2000;
        /// `MADV_SEQUENTIAL`, `MADV_RANDOM`: only remembered.
        const SEQ_READ = 0x8000;
        const RAND_READ = 0x1_0000;
        /// `MADV_DONTFORK`: a child would not get it.
        const DONTCOPY = 0x2_0000;
        /// Counted against the commit limit (Linux's overcommit heuristic).
        const ACCOUNT = 0x10_0000;
        /// `MAP_NORESERVE`: not counted.
        const NORESERVE = 0x20_0000;
        /// `MADV_WIPEONFORK`: a child would get zeros.
        const WIPEONFORK = 0x200_0000;
        /// `MADV_DONTDUMP`.
        const DONTDUMP = 0x400_0000;
        /// `MADV_HUGEPAGE`, `MADV_NOHUGEPAGE`: only remembered.
        const HUGEPAGE = 0x2000_0000;
        const NOHUGEPAGE = 0x4000_0000;
        /// `MADV_MERGEABLE`: only remembered.
        const MERGEABLE = 0x8000_0000;
    }
}

impl VmFlags {
    /// The access rights.
    pub const ACCESS: VmFlags = VmFlags::READ.union(VmFlags::WRITE).union(VmFlags::EXEC);
    /// What every region a program makes may become.
    pub const MAY: VmFlags = VmFlags::MAYREAD
        .union(VmFlags::MAYWRITE)
        .union(VmFlags::MAYEXEC);

    /// Any access at all (Linux's `vma_is_accessible`).
    pub fn accessible(self) -> bool {
        self.intersects(VmFlags::ACCESS)
    }

    /// The leaf flags its pages are mapped with. x86 cannot map a page
    /// writable but not readable, nor readable but not executable
    /// without NX: write implies read, as on Linux. An inaccessible
    /// (`PROT_NONE`) page keeps its frame but loses `USER`, so every user
    /// access faults on it while its contents stay.
    pub fn leaf_flags(self) -> LeafFlags {
        let mut flags = LeafFlags::empty();
        flags.set(LeafFlags::USER, self.accessible());
        flags.set(LeafFlags::WRITABLE, self.contains(VmFlags::WRITE));
        flags.set(LeafFlags::EXECUTABLE, self.contains(VmFlags::EXEC));
        flags
    }
}

/// What a region's pages hold before they are written. Shared objects
/// and files come later, as variants of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backing {
    /// Private anonymous memory: zeros until written.
    Anon,
    /// Shared anonymous memory (`MAP_SHARED | MAP_ANONYMOUS`), one object
    /// per `mmap` call, so two never merge. With no `fork` yet it behaves
    /// as private memory but for what Linux does differently
    /// (`MADV_DONTNEED` keeps its contents, `MADV_FREE` refuses it).
    SharedAnon(u32),
    /// The program's own segments: a file mapping on Linux. Their pages
    /// are copied in at load and are anonymous memory afterwards.
    Image,
}

/// One region. See the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub end: u64,
    pub flags: VmFlags,
    pub backing: Backing,
    /// Offset of `start` in the backing, in pages.
    pub pgoff: u64,
    /// The anonymous memory it shares (Linux's `anon_vma`); 0 until its
    /// first fault.
    pub anon: u32,
}

impl Region {
    /// A private anonymous region at `[start, end)`, whose offset is its
    /// address as Linux's are.
    pub fn anon(start: u64, end: u64, flags: VmFlags) -> Region {
        Region {
            start,
            end,
            flags,
            backing: Backing::Anon,
            pgoff: start / PAGE_SIZE,
            anon: 0,
        }
    }

    pub fn pages(&self) -> u64 {
        (self.end - self.start) / PAGE_SIZE
    }

    pub fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }

    /// Where the free space below it must end: a stack keeps its guard
    /// gap clear (Linux's `vm_start_gap`).
    pub fn start_gap(&self) -> u64 {
        if self.flags.contains(VmFlags::GROWSDOWN) {
            self.start.saturating_sub(abi::STACK_GUARD_GAP)
        } else {
            self.start
        }
    }

    /// The offset of `addr` in the backing, in pages.
    pub fn pgoff_at(&self, addr: u64) -> u64 {
        self.pgoff + (addr - self.start) / PAGE_SIZE
    }

    /// Whether `next` may be merged onto this region's end (Linux's
    /// `can_vma_merge_after` and `is_mergeable_anon_vma`).
    pub fn merges_with_next(&self, next: &Region) -> bool {
        self.end == next.start
            && self.flags == next.flags
            && self.backing == next.backing
            && self.pgoff + self.pages() == next.pgoff
            && anon_compatible(self.anon, next.anon)
    }

    /// Whether `next` could reuse this region's anonymous memory: as
    /// mergeable, but the access rights may differ (Linux's
    /// `anon_vma_compatible`).
    fn shares_anon_with_next(&self, next: &Region) -> bool {
        self.end == next.start
            && (self.flags ^ next.flags)
                .difference(VmFlags::ACCESS)
                .is_empty()
            && self.backing == next.backing
            && self.pgoff + self.pages() == next.pgoff
    }
}

fn anon_compatible(a: u32, b: u32) -> bool {
    a == 0 || b == 0 || a == b
}

/// Linux's default `vm.max_map_count`.
pub const MAX_MAP_COUNT: usize = 65530;

/// The regions of one address space. See the module doc.
#[derive(Debug)]
pub struct Regions {
    list: Vec<Region>,
    /// The most regions a change may leave (Linux's `max_map_count`).
    max: usize,
    /// The last `anon` handed out.
    last_anon: u32,
    /// The last shared object made.
    last_shared: u32,
}

impl Default for Regions {
    fn default() -> Regions {
        Regions::new()
    }
}

impl Regions {
    pub const fn new() -> Regions {
        Regions {
            list: Vec::new(),
            max: MAX_MAP_COUNT,
            last_anon: 0,
            last_shared: 0,
        }
    }

    /// As `new`, with another limit on the count (for tests).
    pub fn with_limit(max: usize) -> Regions {
        Regions {
            max,
            ..Regions::new()
        }
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The limit on the count.
    pub fn max(&self) -> usize {
        self.max
    }

    pub fn iter(&self) -> impl Iterator<Item = &Region> {
        self.list.iter()
    }

    pub fn get(&self, index: usize) -> Option<&Region> {
        self.list.get(index)
    }

    /// The index of the first region that ends above `addr` (the one
    /// containing it, or the next): Linux's `find_vma`. `len()` if none.
    pub fn index_from(&self, addr: u64) -> usize {
        self.list.partition_point(|r| r.end <= addr)
    }

    /// The first region that ends above `addr`, with its index.
    pub fn find_from(&self, addr: u64) -> Option<(usize, &Region)> {
        let i = self.index_from(addr);
        self.list.get(i).map(|r| (i, r))
    }

    /// The region containing `addr`.
    pub fn find(&self, addr: u64) -> Option<&Region> {
        self.find_from(addr)
            .map(|(_, r)| r)
            .filter(|r| r.start <= addr)
    }

    /// Whether any region overlaps `[start, end)`.
    pub fn intersects(&self, start: u64, end: u64) -> bool {
        self.find_from(start).is_some_and(|(_, r)| r.start < end)
    }

    /// A new shared object's number.
    pub fn new_shared(&mut self) -> u32 {
        self.last_shared = self.last_shared.wrapping_add(1).max(1);
        self.last_shared
    }

    /// The highest `len` bytes free in `[low, high)`, kept clear of a
    /// stack's guard gap (Linux's `unmapped_area_topdown`).
    pub fn gap_topdown(&self, len: u64, low: u64, high: u64) -> Option<u64> {
        // The top of the free space being looked at.
        let mut top = high;
        for r in self.list.iter().rev() {
            if r.end < top
                && let Some(at) = fit_top(r.end.max(low), top, len)
            {
                return Some(at);
            }
            top = top.min(r.start_gap());
            if top <= low {
                return None;
            }
        }
        fit_top(low, top, len)
    }

    /// The lowest `len` bytes free in `[low, high)` (Linux's
    /// `unmapped_area`).
    pub fn gap_bottomup(&self, len: u64, low: u64, high: u64) -> Option<u64> {
        let mut below = low;
        for r in &self.list[self.index_from(low)..] {
            let gap_end = r.start_gap().min(high);
            if gap_end >= below && gap_end - below >= len {
                return Some(below);
            }
            below = below.max(r.end);
            if below >= high {
                return None;
            }
        }
        (high >= below && high - below >= len).then_some(below)
    }

    /// Whether `[addr, addr + len)` is free of regions and their guard
    /// gaps: what a hint must be to be taken.
    pub fn is_free_for(&self, addr: u64, len: u64) -> bool {
        self.find_from(addr)
            .is_none_or(|(_, r)| addr + len <= r.start_gap())
    }

    /// Room for `extra` more regions, or `ENOMEM`.
    fn reserve(&mut self, extra: usize) -> Result<(), Errno> {
        self.list.try_reserve(extra).map_err(|_| Errno::ENOMEM)
    }

    /// Room for what putting a region over others may need (a split of
    /// what it replaces, and itself), so that the change cannot fail for
    /// memory half-way.
    pub fn reserve_for_map(&mut self) -> Result<(), Errno> {
        self.reserve(2)
    }

    /// Puts `region` into free space and merges it with its neighbours.
    /// Returns the index of the region that holds it afterwards.
    /// `ENOMEM` (nothing changed) without memory for one more entry;
    /// `EEXIST` if it overlaps a region.
    pub fn insert(&mut self, region: Region) -> Result<usize, Errno> {
        if self.intersects(region.start, region.end) {
            return Err(Errno::EEXIST);
        }
        self.reserve(1)?;
        let i = self.index_from(region.start);
        self.list.insert(i, region);
        Ok(self.merge_around(i))
    }

    /// Makes `addr` a boundary: splits the region containing it in two,
    /// both halves keeping everything but their range. The caller has
    /// reserved the slot.
    fn split_at(&mut self, addr: u64) {
        let i = self.index_from(addr);
        let Some(&r) = self.list.get(i) else {
            return;
        };
        if r.start >= addr {
            return;
        }
        let upper = Region {
            start: addr,
            pgoff: r.pgoff_at(addr),
            ..r
        };
        self.list[i].end = addr;
        self.list.insert(i + 1, upper);
    }

    /// Removes `[start, end)` (page-aligned) from every region, splitting
    /// those that stick out. `ENOMEM`, with nothing changed, when it would
    /// split a region in three at the limit on the count (Linux's check)
    /// or without memory for the entry.
    pub fn remove(&mut self, start: u64, end: u64) -> Result<(), Errno> {
        let i = self.index_from(start);
        let Some(first) = self.list.get(i) else {
            return Ok(());
        };
        if first.start >= end {
            return Ok(());
        }
        if first.start < start && end < first.end {
            if self.list.len() >= self.max {
                return Err(Errno::ENOMEM);
            }
            self.reserve(1)?;
        }
        self.cut(start, end);
        Ok(())
    }

    /// `remove` once the room is there: at most one split adds a region.
    fn cut(&mut self, start: u64, end: u64) {
        let i = self.index_from(start);
        if self
            .list
            .get(i)
            .is_some_and(|r| r.start < start && end < r.end)
        {
            self.split_at(end);
        }
        let i = self.index_from(start);
        if let Some(r) = self.list.get_mut(i)
            && r.start < start
        {
            r.end = start;
        }
        let i = self.index_from(start);
        let last = self.list[i..].partition_point(|r| r.end <= end) + i;
        self.list.drain(i..last);
        if let Some(r) = self.list.get_mut(i)
            && r.start < end
        {
            r.pgoff = r.pgoff_at(end);
            r.start = end;
        }
    }

    /// Gives `[start, end)`, which lies inside region `index`, the flags
    /// `flags`, splitting the region around it and merging the piece
    /// with its neighbours as Linux's `mprotect_fixup` does. Returns the
    /// index of the region holding the piece afterwards. `ENOMEM`,
    /// nothing changed, when a split is needed at the limit or without
    /// memory.
    pub fn set_flags(
        &mut self,
        index: usize,
        start: u64,
        end: u64,
        flags: VmFlags,
    ) -> Result<usize, Errno> {
        let Some(&r) = self.list.get(index) else {
            return Err(Errno::ENOMEM);
        };
        if r.flags == flags {
            return Ok(index);
        }
        let merged = self.try_merge_piece(index, start, end, flags);
        if let Some(at) = merged {
            return Ok(at);
        }
        let splits = usize::from(r.start < start) + usize::from(end < r.end);
        if splits > 0 && self.list.len() >= self.max {
            return Err(Errno::ENOMEM);
        }
        self.reserve(splits)?;
        self.split_at(start);
        self.split_at(end);
        let i = self.index_from(start);
        self.list[i].flags = flags;
        Ok(i)
    }

    /// Linux's `vma_merge` for a change of `[start, end)` inside region
    /// `index` to `flags`: the piece joins a neighbour when it touches one
    /// that is compatible, needing no new entry. None when no merge
    /// applies (the caller splits).
    fn try_merge_piece(
        &mut self,
        index: usize,
        start: u64,
        end: u64,
        flags: VmFlags,
    ) -> Option<usize> {
        let r = self.list[index];
        let piece = Region {
            start,
            end,
            flags,
            pgoff: r.pgoff_at(start),
            ..r
        };
        let prev = index.checked_sub(1).map(|p| self.list[p]);
        let next = self.list.get(index + 1).copied();
        let with_prev = start == r.start && prev.is_some_and(|p| p.merges_with_next(&piece));
        let with_next = end == r.end && next.is_some_and(|n| piece.merges_with_next(&n));
        match (with_prev, with_next) {
            (false, false) => {
                // The whole region changes and touches no compatible
                // neighbour: it stays one region.
                (start == r.start && end == r.end).then(|| {
                    self.list[index].flags = flags;
                    index
                })
            }
            (true, _) if end == r.end => {
                self.list[index].flags = flags;
                Some(self.merge_around(index))
            }
            (true, _) => {
                // The piece is the lower part: the region below grows
                // over it.
                self.list[index - 1].end = end;
                self.list[index - 1].anon = join(self.list[index - 1].anon, r.anon);
                self.list[index].start = end;
                self.list[index].pgoff = r.pgoff_at(end);
                Some(index - 1)
            }
            (false, true) if start == r.start => {
                self.list[index].flags = flags;
                Some(self.merge_around(index))
            }
            (false, true) => {
                // The upper part: the region above grows down over it.
                self.list[index].end = start;
                let n = &mut self.list[index + 1];
                n.start = start;
                n.pgoff = piece.pgoff;
                n.anon = join(n.anon, r.anon);
                Some(index + 1)
            }
        }
    }

    /// Merges region `i` with the regions on either side where Linux's
    /// `vma_merge` would. Returns the index of the region holding it.
    fn merge_around(&mut self, i: usize) -> usize {
        let r = self.list[i];
        let prev = i.checked_sub(1).map(|p| self.list[p]);
        let next = self.list.get(i + 1).copied();
        let with_prev = prev.is_some_and(|p| p.merges_with_next(&r));
        let with_next = next.is_some_and(|n| r.merges_with_next(&n));
        let both = match (prev, next) {
            (Some(p), Some(n)) => with_prev && with_next && anon_compatible(p.anon, n.anon),
            _ => false,
        };
        if both || with_prev {
            let absorbed = if both { 2 } else { 1 };
            let end = self.list[i + absorbed - 1].end;
            let mut anon = self.list[i - 1].anon;
            for k in i..i + absorbed {
                anon = join(anon, self.list[k].anon);
            }
            self.list[i - 1].end = end;
            self.list[i - 1].anon = anon;
            self.list.drain(i..i + absorbed);
            i - 1
        } else if with_next {
            let n = self.list[i + 1];
            self.list[i].end = n.end;
            self.list[i].anon = join(r.anon, n.anon);
            self.list.remove(i + 1);
            i
        } else {
            i
        }
    }

    /// Region `index`'s anonymous memory, given on its first fault: a
    /// compatible neighbour's when it has one (Linux's
    /// `find_mergeable_anon_vma`), else a new one.
    pub fn anon_of(&mut self, index: usize) -> u32 {
        let r = self.list[index];
        if r.anon != 0 {
            return r.anon;
        }
        let next = self
            .list
            .get(index + 1)
            .filter(|n| r.shares_anon_with_next(n) && n.anon != 0);
        let prev = index
            .checked_sub(1)
            .map(|p| &self.list[p])
            .filter(|p| p.shares_anon_with_next(&r) && p.anon != 0);
        let anon = match (next, prev) {
            (Some(n), _) => n.anon,
            (None, Some(p)) => p.anon,
            (None, None) => {
                self.last_anon = self.last_anon.wrapping_add(1).max(1);
                self.last_anon
            }
        };
        self.list[index].anon = anon;
        anon
    }

    /// Grows region `index` down to `start` (a stack's growth), which
    /// must be free.
    pub fn grow_down(&mut self, index: usize, start: u64) {
        let r = &mut self.list[index];
        r.pgoff = r.pgoff.wrapping_sub((r.start - start) / PAGE_SIZE);
        r.start = start;
    }

    /// Grows region `index` up to `end`, which must be free, and merges
    /// it with the region above when that now qualifies (`mremap`'s and
    /// `brk`'s growth in place).
    pub fn grow_up(&mut self, index: usize, end: u64) -> usize {
        self.list[index].end = end;
        self.merge_around(index)
    }

    /// Checks the invariants: sorted, non-empty, page-aligned, apart.
    pub fn check(&self) -> Result<(), &'static str> {
        for r in &self.list {
            if r.start >= r.end || !(r.start | r.end).is_multiple_of(PAGE_SIZE) {
                return Err("an empty or misaligned region");
            }
        }
        for w in self.list.windows(2) {
            if w[0].end > w[1].start {
                return Err("regions overlap or are out of order");
            }
        }
        Ok(())
    }
}

/// Two regions' anonymous memory once they are one (one of them has
/// none, or both the same).
fn join(a: u32, b: u32) -> u32 {
    if a != 0 { a } else { b }
}

/// The highest `len` bytes that end by `high` and start at or above
/// `low`, page-aligned (both are).
fn fit_top(low: u64, high: u64, len: u64) -> Option<u64> {
    (high >= low && high - low >= len).then(|| high - len)
}

#[cfg(test)]
mod tests;
