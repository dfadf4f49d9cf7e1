//! Physical memory through the direct map: the booted kernel's
//! implementation of the portable [`PhysMem`] trait.

use core::sync::atomic::{AtomicU64, Ordering};

use kernel::mm::phys::PhysMem;
use kernel::mm::{PAGE_SIZE, Pfn};

use crate::layout::phys_to_virt;

/// Reads and writes physical memory at `DIRECT_MAP_BASE + pa`.
///
/// Boot maps the first 4 GiB there before Rust code runs and all RAM once
/// the kernel's own tables are loaded, so every address the frame allocator
/// hands out is reachable.
///
/// Words are accessed as atomics, and the read-modify-writes are single
/// locked instructions (`xchg`, `lock cmpxchg`): the MMU of every CPU sets
/// accessed and dirty bits in page-table entries with locked updates of its
/// own, and a plain read followed by a write would overwrite a bit set in
/// between. Loads acquire and stores release (plain `mov`s on x86), so a
/// table filled before the store that links it is seen filled by anyone who
/// loads the link.
pub struct DirectMap;

impl DirectMap {
    /// The word at `pa`, which must be 8-byte aligned.
    #[inline]
    fn word(&self, pa: u64) -> &'static AtomicU64 {
        debug_assert!(pa.is_multiple_of(8), "unaligned u64 access at {pa:#x}");
        let ptr = phys_to_virt(pa & !7) as *mut u64;
        // SAFETY: the pointer is 8-byte aligned (masked above), which is
        // AtomicU64's alignment; the direct map covers all RAM (see the
        // type's docs), is never unmapped, and no one deallocates physical
        // memory, so the word is valid for 'static. Every software access
        // to words shared with other CPUs (page-table entries) goes through
        // these atomics, so no non-atomic access races with them; the MMU's
        // own updates are locked read-modify-writes, atomic as well.
        unsafe { AtomicU64::from_ptr(ptr) }
    }
}

// Inline across crates: each walk level reads one word, and a call per
// word cost more than the load itself (`./run.sh bench`).
impl PhysMem for DirectMap {
    #[inline]
    fn read_u64(&self, pa: u64) -> u64 {
        self.word(pa).load(Ordering::Acquire)
    }

    #[inline]
    fn write_u64(&self, pa: u64, value: u64) {
        self.word(pa).store(value, Ordering::Release)
    }

    #[inline]
    fn swap_u64(&self, pa: u64, value: u64) -> u64 {
        self.word(pa).swap(value, Ordering::AcqRel)
    }

    #[inline]
    fn compare_exchange_u64(&self, pa: u64, current: u64, new: u64) -> Result<u64, u64> {
        self.word(pa)
            .compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire)
    }

    /// One copy through the direct map rather than the trait's default,
    /// word by word (a 16-byte `timespec` took ~60 instructions that way,
    /// ~20 so). Byte ranges are user data and pipe contents, never page
    /// tables (the trait's rule), so no word needs to be a single access.
    #[inline]
    fn read_bytes(&self, pa: u64, buf: &mut [u8]) {
        let src = phys_to_virt(pa) as *const u8;
        // SAFETY: the direct map covers all RAM contiguously (see the
        // type's docs), so `[pa, pa + len)` is mapped at `src`; `buf` is
        // valid for writes of its length. `copy`, not the non-overlapping
        // kind: `buf` is RAM too, and nothing stops a caller naming it.
        unsafe { core::ptr::copy(src, buf.as_mut_ptr(), buf.len()) }
    }

    /// One copy, as `read_bytes`.
    #[inline]
    fn write_bytes(&self, pa: u64, data: &[u8]) {
        let dst = phys_to_virt(pa) as *mut u8;
        // SAFETY: as in `read_bytes`: `[pa, pa + len)` is mapped RAM at
        // `dst`, and `data` is valid for reads of its length.
        unsafe { core::ptr::copy(data.as_ptr(), dst, data.len()) }
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
