//! Physical memory through the direct map: the booted kernel's
//! implementation of the portable [`PhysMem`] trait.

use kernel::mm::phys::PhysMem;
use kernel::mm::{PAGE_SIZE, Pfn};

use crate::layout::phys_to_virt;

/// Reads and writes physical memory at `DIRECT_MAP_BASE + pa`.
///
/// Boot maps the first 4 GiB there before Rust code runs and all RAM once
/// the kernel's own tables are loaded, so every address the frame allocator
/// hands out is reachable.
pub struct DirectMap;

impl PhysMem for DirectMap {
    fn read_u64(&self, pa: u64) -> u64 {
        let ptr = phys_to_virt(pa & !7) as *const u64;
        // SAFETY: the direct map covers all RAM (see the type's docs) and the
        // address is aligned; a volatile read keeps page-table walks from
        // being cached in registers across writes by other code.
        unsafe { ptr.read_volatile() }
    }

    fn write_u64(&self, pa: u64, value: u64) {
        let ptr = phys_to_virt(pa & !7) as *mut u64;
        // SAFETY: as for read_u64; callers only write memory they own
        // (frames from the allocator, tables they edit under their lock).
        unsafe { ptr.write_volatile(value) }
    }

    fn zero_frame(&self, pfn: Pfn) {
        let ptr = phys_to_virt(pfn.addr()) as *mut u8;
        // SAFETY: a whole frame of mapped RAM that the caller owns.
        unsafe { core::ptr::write_bytes(ptr, 0, PAGE_SIZE as usize) }
    }

    fn copy_frame(&self, dst: Pfn, src: Pfn) {
        let d = phys_to_virt(dst.addr()) as *mut u8;
        let s = phys_to_virt(src.addr()) as *const u8;
        if dst != src {
            // SAFETY: two whole mapped frames, and distinct frames never
            // overlap (copying a frame onto itself is excluded above).
            unsafe { core::ptr::copy_nonoverlapping(s, d, PAGE_SIZE as usize) }
        }
    }
}

/// The one direct map: every user of physical memory in the booted kernel
/// names this, so there is one place that says how it is reached.
pub static DIRECT_MAP: DirectMap = DirectMap;
