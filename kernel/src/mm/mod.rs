//! Memory management: physical frames, page-table entries, page tables,
//! TLB flushes and shootdowns, and the simulated MMU the host tests run
//! accesses through.

pub mod fault;
pub mod frame;
pub mod mmu;
pub mod paging;
pub mod phys;
pub mod pte;
pub mod region;
pub mod shootdown;
pub mod tlb;
pub mod vm;

/// log2 of the base page size.
pub const PAGE_SHIFT: u32 = 12;
/// The base page (and frame) size: 4 KiB.
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;

/// A physical frame number: a physical address divided by [`PAGE_SIZE`].
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Pfn(pub u64);

impl Pfn {
    /// The frame that contains physical address `pa`.
    pub const fn containing(pa: u64) -> Pfn {
        Pfn(pa >> PAGE_SHIFT)
    }

    /// The physical address of the frame's first byte.
    pub const fn addr(self) -> u64 {
        self.0 << PAGE_SHIFT
    }
}
