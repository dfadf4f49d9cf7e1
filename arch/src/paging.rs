//! Address-space switching and TLB invalidation.

use kernel::mm::Pfn;
use kernel::mm::tlb::{FlushPage, TlbFlush};
use x86_64::PhysAddr;
use x86_64::VirtAddr;
use x86_64::registers::control::{Cr3, Cr3Flags, Cr4, Cr4Flags};
use x86_64::structures::paging::PhysFrame;

use crate::layout::KERNEL_HALF;

/// The root table currently in CR3.
pub fn current_root() -> Pfn {
    Pfn::containing(Cr3::read().0.start_address().as_u64())
}

/// Switches to the page tables rooted at `root`, which flushes every
/// non-global TLB entry. The root is recorded first, for shootdowns
/// (`crate::tlb`): a CPU is sent a space's flushes from the moment it may
/// cache its translations.
///
/// # Safety
/// `root` must be a complete top-level table that maps the running code,
/// its stack, and everything the caller touches afterwards.
pub unsafe fn load_root(root: Pfn) {
    crate::tlb::note_loaded(root);
    let frame = PhysFrame::containing_address(PhysAddr::new(root.addr()));
    // SAFETY: the caller guarantees the new tables map what runs next.
    unsafe { Cr3::write(frame, Cr3Flags::empty()) };
}

/// Drops any cached translation for one page, global or not, and every
/// cached paging-structure entry (Intel SDM vol. 3 §4.10.4.1, INVLPG).
pub fn flush_page(va: u64) {
    x86_64::instructions::tlb::flush(VirtAddr::new_truncate(va));
}

/// Drops every cached translation of this CPU, global ones included.
pub fn flush_all() {
    let cr4 = Cr4::read();
    if cr4.contains(Cr4Flags::PAGE_GLOBAL) {
        // SAFETY: turning PGE off and on again changes nothing but the TLB,
        // which it flushes entirely (SDM §4.10.4.1); a CR3 reload alone
        // would keep global translations.
        unsafe {
            Cr4::write(cr4 - Cr4Flags::PAGE_GLOBAL);
            Cr4::write(cr4);
        }
    } else {
        // Without PGE no translation is global, and a reload drops them all.
        x86_64::instructions::tlb::flush_all();
    }
}

/// This CPU's TLB alone, as a [`TlbFlush`]: what each CPU does for its
/// part of a shootdown. The kernel flushes through
/// [`crate::tlb::Shootdown`], which reaches the other CPUs too.
///
/// Without PCIDs the TLB holds translations of the loaded root only (a CR3
/// write drops the rest) plus the kernel half, whose tables every root
/// shares. So a page of another space is not cached here, while a
/// kernel-half page is, whichever root names it.
pub struct Tlb;

impl TlbFlush for Tlb {
    fn flush_pages(&self, root: Pfn, pages: &[FlushPage]) {
        let loaded = root == current_root();
        for page in pages {
            if loaded || page.va >= KERNEL_HALF {
                // One INVLPG drops a huge page's translation whole.
                flush_page(page.va);
            }
        }
    }

    fn flush_space(&self, _root: Pfn) {
        // Even when `root` is not loaded it may be the kernel's, whose
        // tables every loaded root shares, so reload whatever is loaded.
        x86_64::instructions::tlb::flush_all();
    }

    fn flush_all(&self) {
        flush_all();
    }
}

/// The faulting address of the last page fault.
pub fn fault_address() -> u64 {
    x86_64::registers::control::Cr2::read_raw()
}
