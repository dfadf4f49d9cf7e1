//! User address spaces.
//!
//! A [`UserSpace`] is one page-table tree: a user half that belongs to it
//! alone, and a kernel half shared with every other address space.
//!
//! # The shared kernel half
//!
//! The kernel must stay mapped while a user's tables are loaded (system
//! calls and interrupts run on them), so every user root carries the kernel
//! mappings too. Rather than copying them, a new root copies the kernel
//! root's *top-level entries* for the upper half (entries 256..512 of an
//! x86 PML4). Those entries point at the kernel's own lower-level tables,
//! so the tables below are shared: a kernel mapping added later anywhere
//! inside an existing top-level entry is at once visible through every user
//! root.
//!
//! That relies on one invariant: **the kernel's top-level entries never
//! change after boot.** A top-level entry added later (a first mapping in a
//! fresh 512 GiB region of the kernel half) would exist only in the kernel
//! root, not in the copies already made. Boot must therefore create every
//! top-level kernel table it will ever need before the first user space
//! exists, and never free one. For the same reason [`UserSpace::destroy`]
//! frees only the user half: the kernel-half tables belong to everyone.
//!
//! # Frames
//!
//! User pages are frames from the [`FrameAllocator`]. Each mapping holds one
//! reference on its frame (`refcount`) and counts in its `mapcount`; tearing
//! a mapping down drops both and frees the frame when no reference is left.
//! A frame someone else also holds (a later shared or copy-on-write page)
//! therefore survives the address space.
//!
//! # Flushes
//!
//! A space knows the [`TlbFlush`] of the machine it runs on. Whatever
//! removes a mapping flushes it there before the frame goes back to the
//! allocator, and unlinked tables are freed only after a flush too: until
//! then a CPU may still reach them through a cached translation. A space
//! being destroyed must not be loaded on any CPU; it is flushed as a whole
//! first, since a TLB may tag translations by space (PCID) and its root
//! frame will be reused.

use crate::mm::frame::FrameAllocator;
use crate::mm::paging::{MapError, PageSize, PageTable, TableAlloc};
use crate::mm::phys::PhysMem;
use crate::mm::pte::{LEVEL_BITS, LeafFlags, PteFormat};
use crate::mm::tlb::{FlushBatch, TlbFlush};
use crate::mm::{PAGE_SHIFT, PAGE_SIZE, Pfn};
use abi::{Errno, USER_END};
use alloc::vec::Vec;

/// The flags a caller may ask for; `USER` is always added. `GLOBAL` in
/// particular is refused: a global user page would survive the switch to
/// another address space and leak into it.
const ALLOWED_FLAGS: LeafFlags = LeafFlags::WRITABLE
    .union(LeafFlags::EXECUTABLE)
    .union(LeafFlags::USER);

/// A user address space: a root table whose upper half is the kernel's.
///
/// The handle owns the user half's tables and frames. Dropping it frees
/// nothing; call [`UserSpace::destroy`].
pub struct UserSpace<'m, F: PteFormat, M: PhysMem> {
    pt: PageTable<'m, F, M>,
    mem: &'m M,
    tlb: &'m dyn TlbFlush,
}

impl<'m, F: PteFormat, M: PhysMem> UserSpace<'m, F, M> {
    /// Root entries: the first `ROOT_ENTRIES / 2` are the user half.
    const ROOT_ENTRIES: u64 = 512;
    /// First address of the upper (kernel) half, before sign extension: 2^47
    /// with 4 levels.
    const LOWER_HALF_END: u64 = 1 << (PAGE_SHIFT + LEVEL_BITS * F::LEVELS as u32 - 1);
    /// The user half must fit in the lower half of the root; this needs at
    /// least 4 levels. Evaluated (at compile time) by `new`.
    const SHAPE: () = assert!(
        F::LEVELS >= 4 && USER_END <= Self::LOWER_HALF_END,
        "USER_END must lie in the lower half of the root"
    );

    /// A new address space with an empty user half and the kernel half of
    /// `kernel_root` (see the module doc for the invariant this relies on),
    /// whose translations `tlb` flushes. `ENOMEM` if no frame is left for
    /// the root.
    pub fn new(
        mem: &'m M,
        kernel_root: Pfn,
        tables: &dyn TableAlloc,
        tlb: &'m dyn TlbFlush,
    ) -> Result<Self, Errno> {
        let () = Self::SHAPE;
        // PageTable::new hands back a zeroed root: the user half is empty.
        let pt = PageTable::new(mem, tables).map_err(|_| Errno::ENOMEM)?;
        for index in Self::ROOT_ENTRIES / 2..Self::ROOT_ENTRIES {
            // A raw copy: sharing the entry is the point, whatever it holds.
            let entry = mem.read_u64(kernel_root.addr() + index * 8);
            mem.write_u64(pt.root().addr() + index * 8, entry);
        }
        Ok(UserSpace { pt, mem, tlb })
    }

    /// The root table's frame, for loading into the MMU.
    pub fn root(&self) -> Pfn {
        self.pt.root()
    }

    /// Read access to the tables, for [`crate::task::uaccess`] and lookups.
    pub fn page_table(&self) -> &PageTable<'m, F, M> {
        &self.pt
    }

    /// Maps fresh zeroed frames over `[va, va + len)` with `USER | flags`,
    /// in 4 KiB pages. All or nothing: on failure whatever was mapped is
    /// unmapped, its frames and new tables freed.
    ///
    /// `EINVAL`: `va` or `len` not page-aligned, or flags other than
    /// `WRITABLE`/`EXECUTABLE`. `EFAULT`: outside the user half. `EEXIST`:
    /// something is mapped in the range. `ENOMEM`: out of frames or tables.
    /// An empty range maps nothing and succeeds.
    pub fn map_zeroed(
        &mut self,
        va: u64,
        len: u64,
        flags: LeafFlags,
        frames: &FrameAllocator<'_>,
        tables: &dyn TableAlloc,
    ) -> Result<(), Errno> {
        check_request(va, len)?;
        if !ALLOWED_FLAGS.contains(flags) {
            return Err(Errno::EINVAL);
        }
        // Looking first turns the common EEXIST into a failure that costs
        // nothing; map() below still catches what is not a leaf.
        if self.count_pages(va, va + len) != 0 {
            return Err(Errno::EEXIST);
        }
        let flags = flags | LeafFlags::USER;
        let mut done = 0;
        while done < len {
            if let Err(e) = self.map_fresh_page(va + done, flags, frames, tables) {
                // Over the whole range: the failed page may have left
                // tables of its own that are empty now.
                self.unmap_checked(va, va + len, frames, tables);
                return Err(e);
            }
            done += PAGE_SIZE;
        }
        Ok(())
    }

    /// Unmaps every page in `[va, va + len)`, flushes them, and drops each
    /// frame's reference, freeing the frame when it was the last; then
    /// frees the tables the range left empty, after another flush. Returns
    /// the number of frames freed. Huge pages
    /// that stick out of the range are left alone (`map_zeroed` never
    /// makes any). Errors as for `map_zeroed`: `EINVAL`, `EFAULT`.
    pub fn unmap_range(
        &mut self,
        va: u64,
        len: u64,
        frames: &FrameAllocator<'_>,
        tables: &dyn TableAlloc,
    ) -> Result<u64, Errno> {
        check_request(va, len)?;
        Ok(self.unmap_checked(va, va + len, frames, tables))
    }

    /// `unmap_range` for a range already checked, as `[va, end)`.
    fn unmap_checked(
        &mut self,
        va: u64,
        end: u64,
        frames: &FrameAllocator<'_>,
        tables: &dyn TableAlloc,
    ) -> u64 {
        if va == end {
            return 0;
        }
        // Collected first: the walk borrows the tables that unmap edits.
        let mut inside = Vec::new();
        self.pt.for_each_leaf(va, end, &mut |start, _, size, _| {
            if start >= va && start + size.bytes() <= end {
                inside.push(start);
            }
        });
        let (mut batch, mut gone) = (FlushBatch::new(), Vec::with_capacity(inside.len()));
        for start in inside {
            if let Ok((pfn, size, _, flush)) = self.pt.unmap(start) {
                batch.add(flush);
                gone.push((pfn, size));
            }
        }
        batch.flush(self.tlb);
        let freed = gone
            .iter()
            .map(|&(pfn, size)| release(frames, pfn, size))
            .sum();
        self.pt.prune(va, end).flush_and_free(self.tlb, tables);
        freed
    }

    /// Tears the space down: its translations are flushed, every user page
    /// drops its frame reference (frames whose count reaches 0 are freed),
    /// then every user-half table and the root are freed. The kernel-half
    /// tables are shared and left untouched. Returns the number of user
    /// frames freed (tables are not counted). The space must not be loaded
    /// on any CPU.
    pub fn destroy(self, frames: &FrameAllocator<'_>, tables: &dyn TableAlloc) -> u64 {
        self.tlb.flush_space(self.root());
        let mut freed = 0;
        self.pt
            .for_each_leaf(0, Self::LOWER_HALF_END, &mut |_, pfn, size, _| {
                freed += release(frames, pfn, size);
            });
        // Cut the kernel half off this root, so that freeing the tree below
        // cannot reach the shared tables.
        for index in Self::ROOT_ENTRIES / 2..Self::ROOT_ENTRIES {
            self.mem.write_u64(self.root().addr() + index * 8, 0);
        }
        self.pt.destroy(tables);
        freed
    }

    /// Pages mapped in the user half, in 4 KiB units (a 2 MiB page counts
    /// 512).
    pub fn mapped_pages(&self) -> u64 {
        self.count_pages(0, Self::LOWER_HALF_END)
    }

    /// 4 KiB pages mapped by leaves overlapping `[start, end)`.
    fn count_pages(&self, start: u64, end: u64) -> u64 {
        let mut pages = 0;
        self.pt.for_each_leaf(start, end, &mut |_, _, size, _| {
            pages += size.bytes() / PAGE_SIZE;
        });
        pages
    }

    /// Maps one new zeroed frame at `va`. On failure nothing is mapped and
    /// the frame is back in the allocator.
    fn map_fresh_page(
        &mut self,
        va: u64,
        flags: LeafFlags,
        frames: &FrameAllocator<'_>,
        tables: &dyn TableAlloc,
    ) -> Result<(), Errno> {
        let pfn = frames.alloc_frame().map_err(|_| Errno::ENOMEM)?;
        // Fresh frames hold whatever their last owner left: never let a
        // user see it.
        self.mem.zero_frame(pfn);
        match self.pt.map(va, pfn, PageSize::Size4K, flags, tables) {
            Ok(()) => {
                if let Some(desc) = frames.desc(pfn) {
                    desc.inc_mapcount();
                }
                Ok(())
            }
            Err(e) => {
                // Ours alone (refcount 1, unmapped): straight back.
                if let Err(fe) = frames.free(pfn, 0) {
                    log::error!("aspace: freeing unused frame {pfn:?}: {fe}");
                }
                Err(map_errno(e))
            }
        }
    }
}

/// Alignment and range checks shared by map and unmap.
fn check_request(va: u64, len: u64) -> Result<(), Errno> {
    if !va.is_multiple_of(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) {
        return Err(Errno::EINVAL);
    }
    match va.checked_add(len) {
        Some(end) if end <= USER_END => Ok(()),
        _ => Err(Errno::EFAULT),
    }
}

/// What a failed map means to the caller. Alignment and range were checked
/// before, so the rest means the tables cannot express the request.
fn map_errno(e: MapError) -> Errno {
    match e {
        MapError::NoMemory => Errno::ENOMEM,
        MapError::AlreadyMapped | MapError::HugeInTheWay => Errno::EEXIST,
        _ => Errno::EINVAL,
    }
}

/// Drops a mapping's claim on the frames of a page: one map count and one
/// reference. Frees them when that was the last reference and returns how
/// many frames were freed.
fn release(frames: &FrameAllocator<'_>, pfn: Pfn, size: PageSize) -> u64 {
    let Some(desc) = frames.desc(pfn) else {
        log::error!("aspace: user page at {pfn:?} is not a managed frame");
        return 0;
    };
    desc.dec_mapcount();
    if desc.put() != 0 {
        return 0;
    }
    let count = size.bytes() / PAGE_SIZE;
    match frames.free(pfn, count.trailing_zeros()) {
        Ok(()) => count,
        Err(e) => {
            log::error!("aspace: freeing user frame {pfn:?}: {e}");
            0
        }
    }
}

/// A small world for the tests of the task modules: simulated memory, a
/// frame allocator that also supplies the page-table frames (so its
/// statistics account for everything), and a kernel root with one mapping.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::mm::frame::{FrameDesc, FrameStats};
    use crate::mm::mmu::SimMmu;
    use crate::mm::phys::SimMemory;
    use crate::mm::pte::SimPte;
    use alloc::boxed::Box;
    use alloc::vec::Vec;

    pub(crate) type Space<'m> = UserSpace<'m, SimPte, SimMemory>;
    pub(crate) type Table<'m> = PageTable<'m, SimPte, SimMemory>;
    pub(crate) type Mmu = SimMmu<'static, SimPte, SimMemory>;

    /// A kernel page made by `World::new`, and the frame behind it.
    pub(crate) const KERNEL_VA: u64 = 0xffff_8000_0010_0000;
    /// Frames below this are holes: nothing is ever allocated there.
    pub(crate) const FIRST_PFN: u64 = 0x100;

    /// Page-table frames from the frame allocator, as in the booted kernel.
    /// A bad free panics, to catch double frees.
    pub(crate) struct FrameTables<'a>(pub &'a FrameAllocator<'static>);

    impl TableAlloc for FrameTables<'_> {
        fn alloc_table(&self) -> Result<Pfn, MapError> {
            self.0.alloc_frame().map_err(|_| MapError::NoMemory)
        }

        fn free_table(&self, pfn: Pfn) {
            assert_eq!(self.0.free(pfn, 0), Ok(()), "free of table {pfn:?}");
        }
    }

    pub(crate) struct World {
        /// Leaked, so that the MMU can live next to it.
        pub mem: &'static SimMemory,
        /// The machine's MMU: spaces flush their translations here.
        pub mmu: Mmu,
        pub frames: FrameAllocator<'static>,
        pub kernel_root: Pfn,
        pub kernel_frame: Pfn,
    }

    impl World {
        /// `frames` usable frames from `FIRST_PFN` on.
        pub fn new(frames: u64) -> World {
            let end = (FIRST_PFN + frames) as usize;
            let descs: Vec<FrameDesc> = (0..end).map(|_| FrameDesc::new()).collect();
            // Leaked so that the allocator can live next to its array.
            let descs: &'static [FrameDesc] = Box::leak(descs.into_boxed_slice());
            let frames = FrameAllocator::new(descs, &[Pfn(FIRST_PFN)..Pfn(end as u64)]);
            let mem: &'static SimMemory = Box::leak(Box::new(SimMemory::new()));
            let (kernel_root, kernel_frame) = {
                let tables = FrameTables(&frames);
                let mut pt = Table::new(mem, &tables).expect("kernel root");
                let frame = frames.alloc_frame().expect("kernel frame");
                let flags = LeafFlags::WRITABLE | LeafFlags::GLOBAL;
                pt.map(KERNEL_VA, frame, PageSize::Size4K, flags, &tables)
                    .expect("kernel map");
                (pt.root(), frame)
            };
            World {
                mem,
                mmu: SimMmu::new(mem),
                frames,
                kernel_root,
                kernel_frame,
            }
        }

        pub fn tables(&self) -> FrameTables<'_> {
            FrameTables(&self.frames)
        }

        pub fn kernel_pt(&self) -> Table<'_> {
            Table::from_root(self.mem, self.kernel_root)
        }

        pub fn space(&self) -> Space<'_> {
            Space::new(self.mem, self.kernel_root, &self.tables(), &self.mmu).expect("new space")
        }

        pub fn stats(&self) -> FrameStats {
            self.frames.stats()
        }

        /// Allocates frames until only `keep` are free; give them back
        /// with `unhog`.
        pub fn hog(&self, keep: u64) -> Vec<Pfn> {
            let mut held = Vec::new();
            while self.stats().free > keep {
                held.push(self.frames.alloc_frame().expect("hog"));
            }
            held
        }

        pub fn unhog(&self, held: Vec<Pfn>) {
            for pfn in held {
                assert_eq!(self.frames.free(pfn, 0), Ok(()));
            }
        }

        /// Writes junk into every free frame, so that a missing zeroing
        /// shows.
        pub fn dirty_free_frames(&self) {
            let held = self.hog(0);
            for &pfn in &held {
                self.mem.write_bytes(pfn.addr() + 0x7f8, &[0xa5; 16]);
            }
            self.unhog(held);
        }
    }
}

#[cfg(test)]
mod tests {
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
        let got = Space::new(w.mem, w.kernel_root, &w.tables(), &w.mmu);
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
        let mut space = Space::new(w.mem, w.kernel_root, &t, &noting).unwrap();
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
}
