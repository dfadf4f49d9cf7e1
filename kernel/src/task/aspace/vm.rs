//! The calls that change a space's regions (`mmap`, `munmap`,
//! `mprotect`, `brk`, `madvise`, `mremap`), checked as Linux checks them
//! (mm/mmap.c, mm/mprotect.c, mm/mremap.c, mm/madvise.c of 6.1), and the
//! page work under them and under faults: making a page present,
//! changing its rights, moving it, dropping it. Every change of a present
//! entry is flushed through the space's `TlbFlush` before its frame can
//! go back (docs/mm.md).
//!
//! The order of the checks is Linux's, since it decides which errno a
//! call with several faults gets. A call fails before it changes
//! anything, except where Linux's does not either: `mprotect` and
//! `madvise` over a hole apply to the regions before it, and a
//! `MAP_FIXED` mapping that the commit heuristic refuses has already
//! unmapped what was there.

use super::*;
use crate::mm::region::{Backing, Region, VmFlags};
use abi::mman::*;
use abi::{MMAP_BASE, MMAP_MIN_ADDR, STACK_GUARD_GAP, TASK_SIZE_MAX, TASK_UNMAPPED_BASE};

/// Linux's `TASK_SIZE` for a 64-bit program with 4-level paging.
const TASK_SIZE: u64 = TASK_SIZE_MAX;

/// What `mmap`'s descriptor names when the mapping is not anonymous.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapFile {
    /// Not an open descriptor: `EBADF`.
    Closed,
    /// An open file (the console, a pipe end), readable and writable as
    /// it was opened. None of them can be mapped yet: `ENODEV` once the
    /// checks before it pass.
    Open { read: bool, write: bool },
}

/// `mmap`'s arguments but the descriptor, as the program passed them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmapArgs {
    pub addr: u64,
    pub len: u64,
    pub prot: u64,
    pub flags: u64,
    pub off: u64,
}

/// Pages rounded up from bytes; 0 when it wraps.
fn page_align(len: u64) -> u64 {
    len.checked_next_multiple_of(PAGE_SIZE).unwrap_or(0)
}

/// The rights of a protection (`calc_vm_prot_bits`).
fn prot_flags(prot: u64) -> VmFlags {
    let mut flags = VmFlags::empty();
    flags.set(VmFlags::READ, prot & PROT_READ != 0);
    flags.set(VmFlags::WRITE, prot & PROT_WRITE != 0);
    flags.set(VmFlags::EXEC, prot & PROT_EXEC != 0);
    flags
}

/// Leaves found in one pass over a range (see `leaves`).
const BATCH: usize = 32;

impl<'m, F: PteFormat, M: PhysMem> UserSpace<'m, F, M> {
    pub fn regions(&self) -> &Regions {
        &self.regions
    }

    /// For tests that need a tighter limit on the region count.
    pub fn set_regions(&mut self, regions: Regions) {
        self.regions = regions;
    }

    /// Anonymous pages mapped (the out-of-memory report's `rss_pages`).
    pub fn rss(&self) -> u64 {
        self.rss
    }

    pub fn heap(&self) -> Heap {
        self.heap
    }

    /// Where the heap starts: the page after the program's last segment.
    pub fn set_heap_start(&mut self, start: u64) {
        self.heap = Heap { start, brk: start };
    }

    pub fn zero_page(&self) -> Pfn {
        self.shared.zero_page()
    }

    pub fn stats(&self) -> &VmStats {
        &self.shared.stats
    }

    /// Whether a fault on the user's behalf ran out of memory since the
    /// last call (the process model then ends the process).
    pub fn take_oom(&mut self) -> bool {
        core::mem::take(&mut self.oom)
    }

    pub(crate) fn note_oom(&mut self) {
        self.oom = true;
    }

    /// Puts a region of the program's own (its segments, its stack) into
    /// free space; no page is touched. `ENOMEM`, `EEXIST`.
    pub fn add_region(&mut self, region: Region) -> Result<(), Errno> {
        self.regions.insert(region).map(|_| ())
    }

    /// Removes the regions in `[start, end)` without touching pages (the
    /// loader's way back after a failed load).
    pub(crate) fn drop_regions(&mut self, start: u64, end: u64) {
        // A range the loader added whole, so no split is needed.
        let _ = self.regions.remove(start, end);
    }

    /// Counts a new mapping of an anonymous frame.
    pub(super) fn count_mapped(&mut self, frames: &FrameAllocator<'_>, pfn: Pfn) {
        if let Some(desc) = frames.desc(pfn)
            && desc.inc_mapcount() == 1
        {
            VmStats::add(&self.shared.stats.nr_anon_pages, 1);
        }
        self.rss += 1;
    }

    /// Whether a present leaf maps `va` for the user: `PROT_NONE` pages
    /// (kept without `USER`) are not present for Linux either.
    pub fn user_present(&self, va: u64) -> Option<LeafFlags> {
        let (_, flags, _) = self.pt.translate(va)?;
        flags.contains(LeafFlags::USER).then_some(flags)
    }

    // ---- pages ----

    /// Makes the page at `va`, in region `index`, present for a write or
    /// a read, with the region's rights (the caller has checked that they
    /// allow the access): a read of a page nobody wrote maps the zero page
    /// (private memory), a write a frame of zeros of its own; a write to
    /// the zero page replaces it, one to a frame only this mapping holds
    /// makes it writable, one to a frame others hold too copies it.
    /// `ENOMEM` when no frame or table is left; nothing changed then.
    pub(crate) fn populate_page(
        &mut self,
        a: Alloc<'_>,
        index: usize,
        va: u64,
        write: bool,
    ) -> Result<(), Errno> {
        let page = va & !(PAGE_SIZE - 1);
        let Some(&r) = self.regions.get(index) else {
            return Err(Errno::EFAULT);
        };
        let mut flags = r.flags.leaf_flags() | LeafFlags::ACCESSED;
        let current = self.pt.translate(page);
        let Some((pa, old, _)) = current else {
            let private = !matches!(r.backing, Backing::SharedAnon(_));
            if !write && private {
                flags.remove(LeafFlags::WRITABLE);
                let zero = self.zero_page();
                self.pt
                    .map(page, zero, PageSize::Size4K, flags, a.tables)
                    .map_err(|_| Errno::ENOMEM)?;
                VmStats::add(&self.shared.stats.zero_page_maps, 1);
                return Ok(());
            }
            if write {
                flags |= LeafFlags::DIRTY;
            }
            self.regions.anon_of(index);
            return self.map_fresh_page(page, flags, a.frames, a.tables);
        };
        let pfn = Pfn::containing(pa);
        if !write {
            if old.contains(LeafFlags::USER) {
                return Ok(());
            }
            // A page whose region's rights came back: readable again,
            // writable only through a write fault.
            return self.refresh(page, pfn, old, r.flags.difference(VmFlags::WRITE));
        }
        if old.contains(LeafFlags::WRITABLE) {
            return Ok(());
        }
        flags |= LeafFlags::DIRTY;
        if pfn != self.zero_page() && self.exclusive(a.frames, pfn) {
            let (_, flush) = self
                .pt
                .protect(page, flags | (old & LeafFlags::DIRTY))
                .map_err(|_| Errno::EFAULT)?;
            flush.flush(self.tlb);
            return Ok(());
        }
        self.regions.anon_of(index);
        self.replace_page(page, pfn, flags, a)
    }

    /// Whether this mapping alone holds `pfn`: it may be written in place.
    fn exclusive(&self, frames: &FrameAllocator<'_>, pfn: Pfn) -> bool {
        frames
            .desc(pfn)
            .is_some_and(|d| d.mapcount() == 1 && d.refcount() == 1)
    }

    /// Maps a frame of its own at `page` in place of `old` (the zero
    /// page, or a frame others hold, whose bytes it gets): the old
    /// translation is flushed before the old frame's reference goes.
    fn replace_page(
        &mut self,
        page: u64,
        old: Pfn,
        flags: LeafFlags,
        a: Alloc<'_>,
    ) -> Result<(), Errno> {
        let new = a.frames.alloc_frame().map_err(|_| Errno::ENOMEM)?;
        if old == self.zero_page() {
            self.mem.zero_frame(new);
        } else {
            self.mem.copy_frame(new, old);
        }
        let leaf = crate::mm::pte::Pte::Leaf { pfn: new, flags };
        match self.pt.set_entry(page, 0, leaf, a.tables) {
            Ok((_, flush)) => {
                flush.flush(self.tlb);
                self.count_mapped(a.frames, new);
                let r = release(a.frames, self.shared, old, PageSize::Size4K);
                self.rss -= r.anon_pages.min(self.rss);
                Ok(())
            }
            Err(_) => {
                if let Err(e) = a.frames.free(new, 0) {
                    log::error!("aspace: freeing unused frame {new:?}: {e}");
                }
                Err(Errno::ENOMEM)
            }
        }
    }

    /// Gives the page at `page` (frame `pfn`, flags `old`) the leaf flags
    /// of `rights`, keeping its accessed and dirty bits; the zero page,
    /// and a frame others hold too, stay read-only.
    fn refresh(
        &mut self,
        page: u64,
        pfn: Pfn,
        old: LeafFlags,
        rights: VmFlags,
    ) -> Result<(), Errno> {
        let new = self.leaf_flags_for(pfn, old, rights, None);
        if new == old {
            return Ok(());
        }
        let (_, flush) = self.pt.protect(page, new).map_err(|_| Errno::EFAULT)?;
        flush.flush(self.tlb);
        Ok(())
    }

    /// The flags a present page of frame `pfn` gets in a region with
    /// `rights`: its accessed and dirty bits stay; writable only when
    /// the frame is this mapping's alone (`frames` says; None: the caller
    /// knows it is not the zero page and nothing is shared yet).
    fn leaf_flags_for(
        &self,
        pfn: Pfn,
        old: LeafFlags,
        rights: VmFlags,
        frames: Option<&FrameAllocator<'_>>,
    ) -> LeafFlags {
        let mut new = rights.leaf_flags() | (old & (LeafFlags::ACCESSED | LeafFlags::DIRTY));
        let shared = frames.is_some_and(|f| !self.exclusive(f, pfn));
        if pfn == self.zero_page() || shared {
            new.remove(LeafFlags::WRITABLE);
        }
        new
    }

    /// Up to `BATCH` leaves starting in `[from, end)`, in address order.
    fn leaves(&self, from: u64, end: u64) -> ([(u64, Pfn, LeafFlags); BATCH], usize) {
        let mut found = [(0, Pfn(0), LeafFlags::empty()); BATCH];
        let mut n = 0;
        self.pt.for_each_leaf(from, end, &mut |va, pfn, _, flags| {
            if n < BATCH && va >= from {
                found[n] = (va, pfn, flags);
                n += 1;
            }
        });
        (found, n)
    }

    /// Gives every present page in `[start, end)` the rights of `rights`
    /// (`mprotect`'s page work), flushing each batch of changes.
    fn reprotect(&mut self, start: u64, end: u64, rights: VmFlags, frames: &FrameAllocator<'_>) {
        let mut cursor = start;
        loop {
            let (found, n) = self.leaves(cursor, end);
            if n == 0 {
                return;
            }
            let mut batch = FlushBatch::new();
            for &(va, pfn, old) in &found[..n] {
                let new = self.leaf_flags_for(pfn, old, rights, Some(frames));
                if new != old
                    && let Ok((_, flush)) = self.pt.protect(va, new)
                {
                    batch.add(flush);
                }
                cursor = va + PAGE_SIZE;
            }
            batch.flush(self.tlb);
        }
    }

    /// Drops every page in `[start, end)`: `munmap`'s, `MADV_DONTNEED`'s
    /// and a shrink's page work (flushed, then freed).
    fn zap(&mut self, start: u64, end: u64, a: Alloc<'_>) {
        self.unmap_checked(start, end, a.frames, a.tables);
    }

    /// Makes every page of `[start, end)` (inside region `index`) present,
    /// as faults would: `MAP_POPULATE`, `MAP_LOCKED`, `MADV_POPULATE_*`.
    /// Stops at the first page memory is short for (`ENOMEM`).
    fn populate_range(
        &mut self,
        a: Alloc<'_>,
        start: u64,
        end: u64,
        write: bool,
    ) -> Result<(), Errno> {
        let mut va = start;
        while va < end {
            let index = self.regions.index_from(va);
            let Some(r) = self.regions.get(index).filter(|r| r.contains(va)) else {
                return Ok(());
            };
            // Linux's populate skips memory without rights.
            if !r.flags.accessible() {
                va = r.end;
                continue;
            }
            let present = self.user_present(va);
            let needed = match present {
                None => true,
                Some(flags) => write && !flags.contains(LeafFlags::WRITABLE),
            };
            if needed {
                self.populate_page(a, index, va, write)?;
            }
            va += PAGE_SIZE;
        }
        Ok(())
    }

    /// Moves the pages of `[from, from + len)` to `to` (`mremap`'s page
    /// work): each frame keeps its counts, the old translations are
    /// flushed once all are moved. All or nothing: without a table at the
    /// new place, what moved goes back (its tables are still there).
    fn move_pages(&mut self, from: u64, len: u64, to: u64, a: Alloc<'_>) -> Result<(), Errno> {
        let mut batch = FlushBatch::new();
        let mut cursor = from;
        let result = loop {
            let (found, n) = self.leaves(cursor, from + len);
            if n == 0 {
                break Ok(());
            }
            let mut failed = false;
            for &(va, _, _) in &found[..n] {
                let Ok((pfn, size, flags, flush)) = self.pt.unmap(va) else {
                    continue;
                };
                batch.add(flush);
                let dest = to + (va - from);
                if self.pt.map(dest, pfn, size, flags, a.tables).is_err() {
                    // Back where it was: its table is still there.
                    let _ = self.pt.map(va, pfn, size, flags, a.tables);
                    failed = true;
                    break;
                }
                cursor = va + size.bytes();
            }
            if failed {
                break Err(Errno::ENOMEM);
            }
        };
        batch.flush(self.tlb);
        if result.is_err() {
            self.move_back(from, cursor - from, to, a);
        }
        result
    }

    /// Undoes the first `len` bytes of a failed `move_pages`.
    fn move_back(&mut self, from: u64, len: u64, to: u64, a: Alloc<'_>) {
        let mut batch = FlushBatch::new();
        let mut cursor = to;
        loop {
            let (found, n) = self.leaves(cursor, to + len);
            if n == 0 {
                break;
            }
            for &(va, _, _) in &found[..n] {
                if let Ok((pfn, size, flags, flush)) = self.pt.unmap(va) {
                    batch.add(flush);
                    let _ = self.pt.map(from + (va - to), pfn, size, flags, a.tables);
                }
                cursor = va + PAGE_SIZE;
            }
        }
        batch.flush(self.tlb);
    }

    // ---- the commit heuristic ----

    /// Linux's `OVERCOMMIT_GUESS`: a charge larger than all of memory is
    /// refused, anything else is allowed.
    fn enough_memory(frames: &FrameAllocator<'_>, pages: u64) -> Result<(), Errno> {
        if pages > frames.stats().total {
            Err(Errno::ENOMEM)
        } else {
            Ok(())
        }
    }

    /// Whether a new mapping with `flags` is charged (`accountable_mapping`).
    fn accountable(flags: VmFlags) -> bool {
        flags & (VmFlags::NORESERVE | VmFlags::SHARED | VmFlags::WRITE) == VmFlags::WRITE
    }

    // ---- addresses ----

    /// Linux's `get_unmapped_area` for anonymous memory on x86-64: a
    /// `MAP_FIXED` address as given, else the hint if it is free, else
    /// the highest free space below `MMAP_BASE`, else the lowest above
    /// `TASK_UNMAPPED_BASE`; `MAP_32BIT` looks between 1 and 2 GiB,
    /// bottom-up. Then Linux's final checks.
    fn unmapped_area(&self, addr: u64, len: u64, flags: u64) -> Result<u64, Errno> {
        if len > TASK_SIZE {
            return Err(Errno::ENOMEM);
        }
        let found = if flags & MAP_FIXED != 0 {
            addr
        } else if flags & MAP_32BIT != 0 {
            self.bottom_up(addr, len, 0x4000_0000, 0x8000_0000)?
        } else {
            self.top_down(addr, len)?
        };
        if found > TASK_SIZE - len {
            return Err(Errno::ENOMEM);
        }
        if !found.is_multiple_of(PAGE_SIZE) {
            return Err(Errno::EINVAL);
        }
        if found < MMAP_MIN_ADDR {
            // Linux lets only a privileged program map so low.
            return Err(Errno::EPERM);
        }
        Ok(found)
    }

    fn top_down(&self, hint: u64, len: u64) -> Result<u64, Errno> {
        let hint = hint & !(PAGE_SIZE - 1);
        if hint != 0 && TASK_SIZE - len >= hint && self.regions.is_free_for(hint, len) {
            return Ok(hint);
        }
        if let Some(at) = self.regions.gap_topdown(len, PAGE_SIZE, MMAP_BASE) {
            return Ok(at);
        }
        self.bottom_up(hint, len, TASK_UNMAPPED_BASE, TASK_SIZE)
    }

    fn bottom_up(&self, hint: u64, len: u64, low: u64, high: u64) -> Result<u64, Errno> {
        let hint = page_align(hint);
        if hint != 0 && high - len >= hint && self.regions.is_free_for(hint, len) {
            return Ok(hint);
        }
        self.regions
            .gap_bottomup(len, low, high)
            .ok_or(Errno::ENOMEM)
    }

    // ---- mmap ----

    /// `mmap(addr, len, prot, flags, fd, off)` with `file` what `fd`
    /// names (None: `MAP_ANONYMOUS`, the descriptor ignored). See the
    /// module doc and docs/abi.md.
    pub fn mmap(
        &mut self,
        a: Alloc<'_>,
        args: MmapArgs,
        file: Option<MapFile>,
    ) -> Result<u64, Errno> {
        let MmapArgs {
            addr,
            len,
            prot,
            mut flags,
            off,
        } = args;
        if !off.is_multiple_of(PAGE_SIZE) {
            return Err(Errno::EINVAL);
        }
        let pgoff = off / PAGE_SIZE;
        if file == Some(MapFile::Closed) {
            return Err(Errno::EBADF);
        }
        if flags & MAP_HUGETLB != 0 {
            return match file {
                None => Self::huge_tlb(flags),
                // Only a hugetlbfs file may be mapped so.
                Some(_) => Err(Errno::EINVAL),
            };
        }
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        if flags & MAP_FIXED_NOREPLACE != 0 {
            flags |= MAP_FIXED;
        }
        let addr = if flags & MAP_FIXED == 0 {
            round_hint_to_min(addr)
        } else {
            addr
        };
        let len = page_align(len);
        if len == 0 {
            return Err(Errno::ENOMEM);
        }
        if pgoff.checked_add(len / PAGE_SIZE).is_none() {
            return Err(Errno::EOVERFLOW);
        }
        if self.regions.len() > self.regions.max() {
            return Err(Errno::ENOMEM);
        }
        let addr = self.unmapped_area(addr, len, flags)?;
        if flags & MAP_FIXED_NOREPLACE != 0 && self.regions.intersects(addr, addr + len) {
            return Err(Errno::EEXIST);
        }
        let mut vm = prot_flags(prot) | VmFlags::MAY;
        vm.set(VmFlags::GROWSDOWN, flags & MAP_GROWSDOWN != 0);
        vm.set(VmFlags::LOCKED, flags & MAP_LOCKED != 0);
        if let Some(MapFile::Open { read, write }) = file {
            return Self::file_checks(flags, prot, read, write);
        }
        let (backing, pgoff) = match flags & MAP_TYPE {
            MAP_SHARED => {
                if vm.contains(VmFlags::GROWSDOWN) {
                    return Err(Errno::EINVAL);
                }
                vm |= VmFlags::SHARED | VmFlags::MAYSHARE;
                (Backing::SharedAnon(self.regions.new_shared()), 0)
            }
            MAP_PRIVATE => (Backing::Anon, addr / PAGE_SIZE),
            _ => return Err(Errno::EINVAL),
        };
        vm.set(VmFlags::NORESERVE, flags & MAP_NORESERVE != 0);
        let region = Region {
            start: addr,
            end: addr + len,
            flags: vm,
            backing,
            pgoff,
            anon: 0,
        };
        self.map_region(a, region)?;
        let populate =
            vm.contains(VmFlags::LOCKED) || flags & (MAP_POPULATE | MAP_NONBLOCK) == MAP_POPULATE;
        if populate {
            // As Linux's mm_populate: what memory allows; errors ignored.
            let write = vm.contains(VmFlags::WRITE);
            let _ = self.populate_range(a, addr, addr + len, write);
        }
        Ok(addr)
    }

    /// Anonymous `MAP_HUGETLB`: Linux checks the page size asked for, then
    /// finds no huge page reserved (`nr_hugepages` is 0 by default).
    fn huge_tlb(flags: u64) -> Result<u64, Errno> {
        match (flags >> 26) & 0x3f {
            0 | 21 | 30 => Err(Errno::ENOMEM),
            _ => Err(Errno::EINVAL),
        }
    }

    /// `do_mmap`'s checks for a file, in its order; no file here can be
    /// mapped, so the end is `ENODEV`.
    fn file_checks(flags: u64, prot: u64, read: bool, write: bool) -> Result<u64, Errno> {
        const LEGACY: u64 = MAP_SHARED
            | MAP_PRIVATE
            | MAP_FIXED
            | MAP_ANONYMOUS
            | MAP_DENYWRITE
            | MAP_EXECUTABLE
            | MAP_UNINITIALIZED
            | MAP_GROWSDOWN
            | MAP_LOCKED
            | MAP_NORESERVE
            | MAP_POPULATE
            | MAP_NONBLOCK
            | MAP_STACK
            | MAP_HUGETLB;
        match flags & MAP_TYPE {
            MAP_SHARED | MAP_SHARED_VALIDATE => {
                if flags & MAP_TYPE == MAP_SHARED_VALIDATE && flags & !LEGACY != 0 {
                    return Err(Errno::EOPNOTSUPP);
                }
                if prot & PROT_WRITE != 0 && !write {
                    return Err(Errno::EACCES);
                }
            }
            MAP_PRIVATE => {}
            _ => return Err(Errno::EINVAL),
        }
        if !read {
            return Err(Errno::EACCES);
        }
        Err(Errno::ENODEV)
    }

    /// Linux's `mmap_region`: what was at the place goes, the charge is
    /// judged, the region goes in (merged with its neighbours).
    fn map_region(&mut self, a: Alloc<'_>, mut region: Region) -> Result<(), Errno> {
        let (start, end) = (region.start, region.end);
        // Both entries a replacement may need, before anything changes.
        self.regions.reserve_for_map()?;
        if self.regions.intersects(start, end) {
            self.regions.remove(start, end)?;
            self.zap(start, end, a);
        }
        if Self::accountable(region.flags) {
            Self::enough_memory(a.frames, region.pages())?;
            region.flags |= VmFlags::ACCOUNT;
        }
        self.regions.insert(region)?;
        Ok(())
    }

    // ---- munmap ----

    /// `munmap(addr, len)`.
    pub fn munmap(&mut self, a: Alloc<'_>, addr: u64, len: u64) -> Result<(), Errno> {
        if !addr.is_multiple_of(PAGE_SIZE) || addr > TASK_SIZE || len > TASK_SIZE - addr {
            return Err(Errno::EINVAL);
        }
        let end = addr + page_align(len);
        if end == addr {
            return Err(Errno::EINVAL);
        }
        self.unmap_regions(a, addr, end)
    }

    /// Removes `[start, end)` from the regions and drops its pages.
    fn unmap_regions(&mut self, a: Alloc<'_>, start: u64, end: u64) -> Result<(), Errno> {
        if !self.regions.intersects(start, end) {
            return Ok(());
        }
        self.regions.remove(start, end)?;
        self.zap(start, end, a);
        Ok(())
    }

    // ---- mprotect ----

    /// `mprotect(addr, len, prot)`: region by region from `addr`; a hole
    /// is `ENOMEM` once the regions before it changed, as on Linux.
    pub fn mprotect(&mut self, a: Alloc<'_>, start: u64, len: u64, prot: u64) -> Result<(), Errno> {
        let grows = prot & (PROT_GROWSDOWN | PROT_GROWSUP);
        let prot = prot & !grows;
        if grows == PROT_GROWSDOWN | PROT_GROWSUP {
            return Err(Errno::EINVAL);
        }
        if !start.is_multiple_of(PAGE_SIZE) {
            return Err(Errno::EINVAL);
        }
        if len == 0 {
            return Ok(());
        }
        let end = start.wrapping_add(page_align(len));
        if end <= start {
            return Err(Errno::ENOMEM);
        }
        if prot & !(PROT_READ | PROT_WRITE | PROT_EXEC | PROT_SEM) != 0 {
            return Err(Errno::EINVAL);
        }
        let Some((mut index, &first)) = self.regions.find_from(start) else {
            return Err(Errno::ENOMEM);
        };
        let mut at = start;
        if grows & PROT_GROWSDOWN != 0 {
            if first.start >= end {
                return Err(Errno::ENOMEM);
            }
            at = first.start;
            if !first.flags.contains(VmFlags::GROWSDOWN) {
                return Err(Errno::EINVAL);
            }
        } else {
            if first.start > start {
                return Err(Errno::ENOMEM);
            }
            if grows & PROT_GROWSUP != 0 {
                // No region grows up on x86.
                return Err(Errno::EINVAL);
            }
        }
        loop {
            let r = self.regions.get(index).copied().ok_or(Errno::ENOMEM)?;
            let new = prot_flags(prot) | r.flags.difference(VmFlags::ACCESS);
            // A right the region may not get (VM_MAY* shifted onto VM_*).
            let may = VmFlags::from_bits_truncate(new.bits() >> 4);
            if !new.difference(may).intersection(VmFlags::ACCESS).is_empty() {
                return Err(Errno::EACCES);
            }
            let piece_end = r.end.min(end);
            let holder = self.protect_piece(a, index, at, piece_end, new)?;
            let holder_end = self.regions.get(holder).map_or(piece_end, |h| h.end);
            at = piece_end.max(holder_end);
            if at >= end {
                return Ok(());
            }
            match self.regions.find_from(holder_end) {
                Some((next, n)) if n.start == at => index = next,
                _ => return Err(Errno::ENOMEM),
            }
        }
    }

    /// Linux's `mprotect_fixup` for `[start, end)` inside region `index`:
    /// the charge for memory made writable, the split and merge, the
    /// pages. Returns the index of the region holding the piece.
    fn protect_piece(
        &mut self,
        a: Alloc<'_>,
        index: usize,
        start: u64,
        end: u64,
        mut new: VmFlags,
    ) -> Result<usize, Errno> {
        let old = self.regions.get(index).map_or(new, |r| r.flags);
        if new == old {
            return Ok(index);
        }
        let uncharged = VmFlags::ACCOUNT | VmFlags::WRITE | VmFlags::SHARED | VmFlags::NORESERVE;
        if new.contains(VmFlags::WRITE) && !old.intersects(uncharged) {
            Self::enough_memory(a.frames, (end - start) / PAGE_SIZE)?;
            new |= VmFlags::ACCOUNT;
        }
        let holder = self.regions.set_flags(index, start, end, new)?;
        self.reprotect(start, end, new, a.frames);
        Ok(holder)
    }

    // ---- brk ----

    /// `brk(addr)`: the new break, or the old one when it cannot move
    /// (below the heap's start, into another region or its guard, out of
    /// memory), as Linux returns it.
    pub fn brk(&mut self, a: Alloc<'_>, addr: u64) -> u64 {
        let old = self.heap.brk;
        if addr < self.heap.start {
            return old;
        }
        let (new_end, old_end) = (page_align(addr), page_align(old));
        if new_end == 0 {
            return old;
        }
        if new_end == old_end {
            self.heap.brk = addr;
            return addr;
        }
        if addr <= old {
            if !self.regions.intersects(new_end, old_end) {
                return old;
            }
            if self.unmap_regions(a, new_end, old_end).is_err() {
                return old;
            }
            self.heap.brk = addr;
            return addr;
        }
        if self.grow_heap(a, old_end, new_end).is_err() {
            return old;
        }
        self.heap.brk = addr;
        addr
    }

    /// Linux's `do_brk_flags` after `brk`'s check of the space above:
    /// one page and any stack's guard gap must stay free past the new
    /// end.
    fn grow_heap(&mut self, a: Alloc<'_>, old_end: u64, new_end: u64) -> Result<(), Errno> {
        if new_end > TASK_SIZE {
            return Err(Errno::ENOMEM);
        }
        if let Some((_, next)) = self.regions.find_from(old_end)
            && new_end + PAGE_SIZE > next.start_gap()
        {
            return Err(Errno::ENOMEM);
        }
        if self.regions.len() > self.regions.max() {
            return Err(Errno::ENOMEM);
        }
        Self::enough_memory(a.frames, (new_end - old_end) / PAGE_SIZE)?;
        let flags = VmFlags::READ | VmFlags::WRITE | VmFlags::MAY | VmFlags::ACCOUNT;
        self.regions.insert(Region::anon(old_end, new_end, flags))?;
        Ok(())
    }

    // ---- madvise ----

    /// `madvise(addr, len, advice)`: over every region of the range, a
    /// hole making it `ENOMEM` at the end, as Linux's
    /// `madvise_walk_vmas`. `MADV_FREE` drops the pages at once, as
    /// `MADV_DONTNEED` (Linux frees them only under memory pressure, and
    /// until then a read sees the old bytes).
    pub fn madvise(
        &mut self,
        a: Alloc<'_>,
        start: u64,
        len: u64,
        advice: i32,
    ) -> Result<(), Errno> {
        if !advice_known(advice) {
            return Err(Errno::EINVAL);
        }
        if !start.is_multiple_of(PAGE_SIZE) {
            return Err(Errno::EINVAL);
        }
        let len_pages = page_align(len);
        if len != 0 && len_pages == 0 {
            return Err(Errno::EINVAL);
        }
        let Some(end) = start.checked_add(len_pages) else {
            return Err(Errno::EINVAL);
        };
        if end == start {
            return Ok(());
        }
        if advice == MADV_HWPOISON || advice == MADV_SOFT_OFFLINE {
            // Needs CAP_SYS_ADMIN on Linux; no program here has it.
            return Err(Errno::EPERM);
        }
        let mut at = start;
        let mut hole = false;
        loop {
            let Some((index, &r)) = self.regions.find_from(at) else {
                return Err(Errno::ENOMEM);
            };
            if at < r.start {
                hole = true;
                at = r.start;
                if at >= end {
                    break;
                }
            }
            let piece_end = r.end.min(end);
            let holder_end = self.advise_piece(a, index, at, piece_end, advice)?;
            at = piece_end.max(holder_end);
            if at >= end {
                break;
            }
        }
        if hole { Err(Errno::ENOMEM) } else { Ok(()) }
    }

    /// One region's part of `madvise`; returns where the region holding
    /// the piece ends afterwards.
    fn advise_piece(
        &mut self,
        a: Alloc<'_>,
        index: usize,
        start: u64,
        end: u64,
        advice: i32,
    ) -> Result<u64, Errno> {
        let Some(&r) = self.regions.get(index) else {
            return Err(Errno::ENOMEM);
        };
        let shared = matches!(r.backing, Backing::SharedAnon(_));
        let anonymous = r.backing == Backing::Anon;
        let mut flags = r.flags;
        match advice {
            MADV_WILLNEED | MADV_COLD | MADV_PAGEOUT if r.flags.contains(VmFlags::LOCKED) => {
                return if advice == MADV_WILLNEED {
                    Ok(r.end)
                } else {
                    Err(Errno::EINVAL)
                };
            }
            MADV_WILLNEED | MADV_COLD | MADV_PAGEOUT => return Ok(r.end),
            MADV_REMOVE => {
                // Only shared memory has a hole to punch.
                if r.flags.contains(VmFlags::LOCKED) || !shared {
                    return Err(Errno::EINVAL);
                }
                return Ok(r.end);
            }
            MADV_DONTNEED | MADV_DONTNEED_LOCKED | MADV_FREE => {
                if advice != MADV_DONTNEED_LOCKED && r.flags.contains(VmFlags::LOCKED) {
                    return Err(Errno::EINVAL);
                }
                if advice == MADV_FREE && !anonymous {
                    return Err(Errno::EINVAL);
                }
                // Shared memory keeps its bytes in its object: the next
                // access finds them again, so they stay mapped here.
                if !shared {
                    self.zap(start, end, a);
                }
                return Ok(r.end);
            }
            MADV_POPULATE_READ | MADV_POPULATE_WRITE => {
                let write = advice == MADV_POPULATE_WRITE;
                let allowed = if write {
                    r.flags.contains(VmFlags::WRITE)
                } else {
                    r.flags.contains(VmFlags::READ)
                };
                if !allowed {
                    return Err(Errno::EINVAL);
                }
                self.populate_range(a, start, end, write)?;
                return Ok(r.end);
            }
            MADV_COLLAPSE => {
                return if r.flags.contains(VmFlags::NOHUGEPAGE) || !anonymous {
                    Err(Errno::EINVAL)
                } else {
                    Ok(r.end)
                };
            }
            MADV_NORMAL => flags.remove(VmFlags::SEQ_READ | VmFlags::RAND_READ),
            MADV_SEQUENTIAL => {
                flags.remove(VmFlags::RAND_READ);
                flags.insert(VmFlags::SEQ_READ);
            }
            MADV_RANDOM => {
                flags.remove(VmFlags::SEQ_READ);
                flags.insert(VmFlags::RAND_READ);
            }
            MADV_DONTFORK => flags.insert(VmFlags::DONTCOPY),
            MADV_DOFORK => flags.remove(VmFlags::DONTCOPY),
            MADV_WIPEONFORK => {
                if shared || r.backing == Backing::Image {
                    return Err(Errno::EINVAL);
                }
                flags.insert(VmFlags::WIPEONFORK);
            }
            MADV_KEEPONFORK => flags.remove(VmFlags::WIPEONFORK),
            MADV_DONTDUMP => flags.insert(VmFlags::DONTDUMP),
            MADV_DODUMP => flags.remove(VmFlags::DONTDUMP),
            MADV_MERGEABLE if !shared => flags.insert(VmFlags::MERGEABLE),
            MADV_UNMERGEABLE => flags.remove(VmFlags::MERGEABLE),
            MADV_HUGEPAGE => {
                flags.remove(VmFlags::NOHUGEPAGE);
                flags.insert(VmFlags::HUGEPAGE);
            }
            MADV_NOHUGEPAGE => {
                flags.remove(VmFlags::HUGEPAGE);
                flags.insert(VmFlags::NOHUGEPAGE);
            }
            _ => return Ok(r.end),
        }
        // A split Linux cannot make is EAGAIN from madvise.
        let holder = self
            .regions
            .set_flags(index, start, end, flags)
            .map_err(|_| Errno::EAGAIN)?;
        Ok(self.regions.get(holder).map_or(end, |h| h.end))
    }

    // ---- mremap ----

    /// `mremap(addr, old_len, new_len, flags, new_addr)`, in Linux's
    /// order of checks (docs/abi.md).
    pub fn mremap(
        &mut self,
        a: Alloc<'_>,
        addr: u64,
        old_len: u64,
        new_len: u64,
        flags: u64,
        new_addr: u64,
    ) -> Result<u64, Errno> {
        if flags & !(MREMAP_FIXED | MREMAP_MAYMOVE | MREMAP_DONTUNMAP) != 0 {
            return Err(Errno::EINVAL);
        }
        if flags & MREMAP_FIXED != 0 && flags & MREMAP_MAYMOVE == 0 {
            return Err(Errno::EINVAL);
        }
        if flags & MREMAP_DONTUNMAP != 0 && (flags & MREMAP_MAYMOVE == 0 || old_len != new_len) {
            return Err(Errno::EINVAL);
        }
        if !addr.is_multiple_of(PAGE_SIZE) {
            return Err(Errno::EINVAL);
        }
        let (old_len, new_len) = (page_align(old_len), page_align(new_len));
        if new_len == 0 {
            return Err(Errno::EINVAL);
        }
        if self.regions.find(addr).is_none() {
            return Err(Errno::EFAULT);
        }
        if flags & (MREMAP_FIXED | MREMAP_DONTUNMAP) != 0 {
            return self.mremap_to(a, addr, old_len, new_len, flags, new_addr);
        }
        if old_len >= new_len {
            // A shrink always works: the tail is unmapped (an error of
            // that unmap counts only when the size changes).
            let shrunk = addr
                .checked_add(new_len)
                .map(|tail| self.munmap(a, tail, old_len - new_len));
            if let Some(Err(e)) = shrunk
                && old_len != new_len
            {
                return Err(e);
            }
            return Ok(addr);
        }
        let index = self.resizable(addr, old_len, new_len)?;
        let r = self.regions.get(index).copied().ok_or(Errno::EFAULT)?;
        if old_len == r.end - addr && self.expandable(index, new_len - old_len) {
            if r.flags.contains(VmFlags::ACCOUNT) {
                Self::enough_memory(a.frames, (new_len - old_len) / PAGE_SIZE)?;
            }
            self.regions.grow_up(index, addr + new_len);
            return Ok(addr);
        }
        if flags & MREMAP_MAYMOVE == 0 {
            return Err(Errno::ENOMEM);
        }
        let to = self.unmapped_area(0, new_len, 0)?;
        self.move_region(a, index, addr, old_len, new_len, to, flags)
    }

    /// `mremap_to`: a move to `new_addr` (`MREMAP_FIXED`), or for
    /// `MREMAP_DONTUNMAP` anywhere free.
    fn mremap_to(
        &mut self,
        a: Alloc<'_>,
        addr: u64,
        old_len: u64,
        new_len: u64,
        flags: u64,
        new_addr: u64,
    ) -> Result<u64, Errno> {
        if !new_addr.is_multiple_of(PAGE_SIZE) {
            return Err(Errno::EINVAL);
        }
        if new_len > TASK_SIZE || new_addr > TASK_SIZE - new_len {
            return Err(Errno::EINVAL);
        }
        if addr.saturating_add(old_len) > new_addr && new_addr + new_len > addr {
            return Err(Errno::EINVAL);
        }
        if self.regions.len() + 2 >= self.regions.max().saturating_sub(3) {
            return Err(Errno::ENOMEM);
        }
        let fixed = flags & MREMAP_FIXED != 0;
        if fixed {
            self.munmap(a, new_addr, new_len)?;
        }
        let mut old_len = old_len;
        if old_len > new_len {
            self.munmap(a, addr + new_len, old_len - new_len)?;
            old_len = new_len;
        }
        let index = self.resizable(addr, old_len, new_len)?;
        let map_flags = if fixed { MAP_FIXED } else { 0 };
        let found = self.unmapped_area(new_addr, new_len, map_flags)?;
        let to = if fixed { new_addr } else { found };
        self.move_region(a, index, addr, old_len, new_len, to, flags)
    }

    /// Linux's `vma_to_resize`: the region at `addr` must hold all of
    /// `old_len` (`EFAULT`), a private one may not be duplicated by an
    /// old length of 0 (`EINVAL`). Returns its index.
    fn resizable(&self, addr: u64, old_len: u64, new_len: u64) -> Result<usize, Errno> {
        let (index, r) = self
            .regions
            .find_from(addr)
            .filter(|(_, r)| r.start <= addr)
            .ok_or(Errno::EFAULT)?;
        // Linux refuses to duplicate private memory with an old length of
        // 0; duplicating shared memory needs its object (phase B).
        if old_len == 0 {
            return Err(Errno::EINVAL);
        }
        if old_len > r.end - addr {
            return Err(Errno::EFAULT);
        }
        if new_len == old_len {
            return Ok(index);
        }
        if r.pgoff_at(addr).checked_add(new_len / PAGE_SIZE).is_none() {
            return Err(Errno::EINVAL);
        }
        Ok(index)
    }

    /// Whether region `index` can grow by `delta` in place (`vma_expandable`).
    fn expandable(&self, index: usize, delta: u64) -> bool {
        let Some(r) = self.regions.get(index) else {
            return false;
        };
        let Some(end) = r.end.checked_add(delta) else {
            return false;
        };
        let next_ok = self.regions.get(index + 1).is_none_or(|n| n.start >= end);
        next_ok && end <= TASK_SIZE
    }

    /// Linux's `move_vma`: the part `[addr, addr + old_len)` of region
    /// `index` becomes a region of `new_len` at `to` with the same pages;
    /// the old range is unmapped, or with `MREMAP_DONTUNMAP` left mapped
    /// and empty.
    #[allow(clippy::too_many_arguments)]
    fn move_region(
        &mut self,
        a: Alloc<'_>,
        index: usize,
        addr: u64,
        old_len: u64,
        new_len: u64,
        to: u64,
        flags: u64,
    ) -> Result<u64, Errno> {
        if self.regions.len() >= self.regions.max().saturating_sub(3) {
            return Err(Errno::ENOMEM);
        }
        let r = self.regions.get(index).copied().ok_or(Errno::EFAULT)?;
        let dont_unmap = flags & MREMAP_DONTUNMAP != 0;
        let charge = if dont_unmap {
            new_len
        } else {
            new_len - old_len.min(new_len)
        };
        if r.flags.contains(VmFlags::ACCOUNT) {
            Self::enough_memory(a.frames, charge / PAGE_SIZE)?;
        }
        // An anonymous region never faulted takes the offset of its new
        // place, as Linux's copy_vma does without an anon_vma.
        let pgoff = if r.backing == Backing::Anon && r.anon == 0 {
            to / PAGE_SIZE
        } else {
            r.pgoff_at(addr)
        };
        let moved = Region {
            start: to,
            end: to + new_len,
            pgoff,
            ..r
        };
        self.regions.reserve_for_map()?;
        self.regions.insert(moved)?;
        if let Err(e) = self.move_pages(addr, old_len, to, a) {
            // Two entries were reserved: the one left covers a split.
            let _ = self.regions.remove(to, to + new_len);
            return Err(e);
        }
        if dont_unmap {
            // Its pages went; the region stays, empty, and unlocked.
            if let Some((i, &old)) = self.regions.find_from(addr)
                && old.flags.contains(VmFlags::LOCKED)
            {
                let f = old.flags.difference(VmFlags::LOCKED);
                let _ = self.regions.set_flags(i, old.start, old.end, f);
            }
            return Ok(to);
        }
        // The pages moved already; only the old regions go.
        let _ = self.regions.remove(addr, addr + old_len);
        Ok(to)
    }

    // ---- faults ----

    /// The region a fault at `addr` falls in, after growing a stack down
    /// to it when Linux would (`expand_downwards`); None: no region.
    pub(crate) fn region_for_fault(&mut self, addr: u64) -> Option<usize> {
        let (index, grow) = self.region_for(addr)?;
        if let Some(start) = grow {
            self.regions.grow_down(index, start);
        }
        Some(index)
    }

    /// The region `addr` falls in, and the start a stack must grow down
    /// to for it, without changing anything.
    pub(crate) fn region_for(&self, addr: u64) -> Option<(usize, Option<u64>)> {
        let (index, r) = self.regions.find_from(addr)?;
        if r.start <= addr {
            return Some((index, None));
        }
        if !r.flags.contains(VmFlags::GROWSDOWN) {
            return None;
        }
        let start = addr & !(PAGE_SIZE - 1);
        if start < MMAP_MIN_ADDR || r.end - start > abi::USER_STACK_MAX {
            return None;
        }
        if let Some(prev) = index.checked_sub(1).and_then(|i| self.regions.get(i))
            && !prev.flags.contains(VmFlags::GROWSDOWN)
            && prev.flags.accessible()
            && start - prev.end < STACK_GUARD_GAP
        {
            return None;
        }
        Some((index, Some(start)))
    }
}

/// Linux's `round_hint_to_min`: a hint below `mmap_min_addr` is raised
/// to it.
fn round_hint_to_min(hint: u64) -> u64 {
    let hint = hint & !(PAGE_SIZE - 1);
    if hint != 0 && hint < MMAP_MIN_ADDR {
        MMAP_MIN_ADDR
    } else {
        hint
    }
}

/// Linux's `madvise_behavior_valid` (x86-64 with KSM, THP, memory
/// failure and swap, as Debian builds it).
fn advice_known(advice: i32) -> bool {
    matches!(
        advice,
        MADV_DOFORK
            | MADV_DONTFORK
            | MADV_NORMAL
            | MADV_SEQUENTIAL
            | MADV_RANDOM
            | MADV_REMOVE
            | MADV_WILLNEED
            | MADV_DONTNEED
            | MADV_DONTNEED_LOCKED
            | MADV_FREE
            | MADV_COLD
            | MADV_PAGEOUT
            | MADV_POPULATE_READ
            | MADV_POPULATE_WRITE
            | MADV_MERGEABLE
            | MADV_UNMERGEABLE
            | MADV_HUGEPAGE
            | MADV_NOHUGEPAGE
            | MADV_COLLAPSE
            | MADV_DONTDUMP
            | MADV_DODUMP
            | MADV_WIPEONFORK
            | MADV_KEEPONFORK
            | MADV_HWPOISON
            | MADV_SOFT_OFFLINE
    )
}
