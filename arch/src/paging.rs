//! Address-space switching and TLB invalidation.

use kernel::mm::Pfn;
use x86_64::PhysAddr;
use x86_64::VirtAddr;
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::structures::paging::PhysFrame;

/// The root table currently in CR3.
pub fn current_root() -> Pfn {
    Pfn::containing(Cr3::read().0.start_address().as_u64())
}

/// Switches to the page tables rooted at `root`, which flushes every
/// non-global TLB entry.
///
/// # Safety
/// `root` must be a complete top-level table that maps the running code,
/// its stack, and everything the caller touches afterwards.
pub unsafe fn load_root(root: Pfn) {
    let frame = PhysFrame::containing_address(PhysAddr::new(root.addr()));
    // SAFETY: the caller guarantees the new tables map what runs next.
    unsafe { Cr3::write(frame, Cr3Flags::empty()) };
}

/// Drops any cached translation for one page.
pub fn flush_page(va: u64) {
    x86_64::instructions::tlb::flush(VirtAddr::new_truncate(va));
}

/// Drops every cached translation, global ones included.
pub fn flush_all() {
    x86_64::instructions::tlb::flush_all();
}

/// The faulting address of the last page fault.
pub fn fault_address() -> u64 {
    x86_64::registers::control::Cr2::read_raw()
}
