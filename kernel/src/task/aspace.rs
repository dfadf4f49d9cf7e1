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
//! # Regions
//!
//! A space also holds its [`Regions`]: which addresses may be used, with
//! which rights (`vm.rs` has the calls that change them, `mm::fault` the
//! faults they resolve). Every present user page lies in a region; pages
//! appear when first touched (demand paging), except the program's own
//! segments, which the loader fills at once.
//!
//! # Frames
//!
//! User pages are frames from the [`FrameAllocator`]. Each mapping holds one
//! reference on its frame (`refcount`) and counts in its `mapcount`; tearing
//! a mapping down drops both and frees the frame when no reference is left.
//! A frame someone else also holds (a later shared or copy-on-write page)
//! therefore survives the address space. The zero page (`mm::vm`) is the
//! exception: mapped read-only anywhere, and counted nowhere.
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
use crate::mm::region::Regions;
use crate::mm::tlb::{FlushBatch, TlbFlush};
use crate::mm::vm::{Shared, VmStats};
use crate::mm::{PAGE_SHIFT, PAGE_SIZE, Pfn};
use abi::{Errno, USER_END};

mod vm;
pub use vm::{MapFile, MmapArgs};

/// Where a change of an address space takes memory from: frames for
/// pages, and frames for page tables.
#[derive(Clone, Copy)]
pub struct Alloc<'a> {
    pub frames: &'a FrameAllocator<'a>,
    pub tables: &'a dyn TableAlloc,
}

/// The program break (`brk`): the heap runs from `start` to `brk`
/// (rounded up to a page), as a region of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Heap {
    pub start: u64,
    pub brk: u64,
}

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
    /// The zero page and the counters.
    shared: &'m Shared,
    regions: Regions,
    heap: Heap,
    /// Anonymous pages this space maps (Linux's `MM_ANONPAGES`): what
    /// the out-of-memory report names.
    rss: u64,
    /// A fault on a user's behalf found no memory: the process model
    /// ends the process (`take_oom`).
    oom: bool,
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
    /// whose translations `tlb` flushes, sharing the zero page and the
    /// counters of `shared`. `ENOMEM` if no frame is left for the root.
    pub fn new(
        mem: &'m M,
        kernel_root: Pfn,
        tables: &dyn TableAlloc,
        tlb: &'m dyn TlbFlush,
        shared: &'m Shared,
    ) -> Result<Self, Errno> {
        let () = Self::SHAPE;
        // PageTable::new hands back a zeroed root: the user half is empty.
        let pt = PageTable::new(mem, tables).map_err(|_| Errno::ENOMEM)?;
        for index in Self::ROOT_ENTRIES / 2..Self::ROOT_ENTRIES {
            // A raw copy: sharing the entry is the point, whatever it holds.
            let entry = mem.read_u64(kernel_root.addr() + index * 8);
            mem.write_u64(pt.root().addr() + index * 8, entry);
        }
        Ok(UserSpace {
            pt,
            mem,
            tlb,
            shared,
            regions: Regions::new(),
            heap: Heap::default(),
            rss: 0,
            oom: false,
        })
    }

    /// The root table's frame, for loading into the MMU.
    pub fn root(&self) -> Pfn {
        self.pt.root()
    }

    /// The memory the space's tables and pages live in.
    pub fn phys(&self) -> &'m M {
        self.mem
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
        // In batches of a fixed size, so that tearing a range down (also on
        // the failure path of a map, when memory is short) never needs the
        // heap. Each batch is found by a walk that borrows the tables, then
        // unmapped, flushed once, and its frames given back.
        const BATCH: usize = 32;
        let mut freed = 0;
        let mut cursor = va;
        loop {
            let mut found = [0u64; BATCH];
            let mut n = 0;
            self.pt
                .for_each_leaf(cursor, end, &mut |start, _, size, _| {
                    if n < BATCH && start >= cursor && start + size.bytes() <= end {
                        found[n] = start;
                        n += 1;
                    }
                });
            if n == 0 {
                break;
            }
            let mut batch = FlushBatch::new();
            let mut gone = [(Pfn(0), PageSize::Size4K); BATCH];
            let mut unmapped = 0;
            for &start in &found[..n] {
                if let Ok((pfn, size, _, flush)) = self.pt.unmap(start) {
                    batch.add(flush);
                    gone[unmapped] = (pfn, size);
                    unmapped += 1;
                    cursor = start + size.bytes();
                }
            }
            batch.flush(self.tlb);
            for &(pfn, size) in &gone[..unmapped] {
                let r = release(frames, self.shared, pfn, size);
                freed += r.freed;
                self.rss -= r.anon_pages.min(self.rss);
            }
            if unmapped == 0 {
                break;
            }
        }
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
        let shared = self.shared;
        self.pt
            .for_each_leaf(0, Self::LOWER_HALF_END, &mut |_, pfn, size, _| {
                freed += release(frames, shared, pfn, size).freed;
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
                self.count_mapped(frames, pfn);
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

/// What dropping one mapping did.
struct Released {
    /// Frames given back to the allocator.
    freed: u64,
    /// Anonymous pages the space no longer maps (its rss).
    anon_pages: u64,
}

/// Drops a mapping's claim on the frames of a page: one map count and one
/// reference. Frees them when that was the last reference. The zero page
/// is mapped without either, and stays.
fn release(frames: &FrameAllocator<'_>, shared: &Shared, pfn: Pfn, size: PageSize) -> Released {
    let none = Released {
        freed: 0,
        anon_pages: 0,
    };
    if pfn == shared.zero_page() {
        return none;
    }
    let Some(desc) = frames.desc(pfn) else {
        log::error!("aspace: user page at {pfn:?} is not a managed frame");
        return none;
    };
    let count = size.bytes() / PAGE_SIZE;
    if desc.dec_mapcount() == 0 {
        VmStats::sub(&shared.stats.nr_anon_pages, count);
    }
    let anon_pages = count;
    if desc.put() != 0 {
        return Released {
            freed: 0,
            anon_pages,
        };
    }
    match frames.free(pfn, count.trailing_zeros()) {
        Ok(()) => Released {
            freed: count,
            anon_pages,
        },
        Err(e) => {
            log::error!("aspace: freeing user frame {pfn:?}: {e}");
            Released {
                freed: 0,
                anon_pages,
            }
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
        /// The zero page and the counters, taken from `frames` first.
        pub shared: &'static Shared,
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
            let shared = Shared::new(&frames, mem).expect("zero page");
            World {
                mem,
                shared: Box::leak(Box::new(shared)),
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
            Space::new(
                self.mem,
                self.kernel_root,
                &self.tables(),
                &self.mmu,
                self.shared,
            )
            .expect("new space")
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
mod tests;
