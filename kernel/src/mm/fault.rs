//! The page-fault hook: every fault a user program takes comes here, and
//! so does every fault the kernel meets on a user's behalf (`uaccess`).
//!
//! A fault is resolved from the region it falls in, as Linux's x86
//! `do_user_addr_fault` and `handle_mm_fault` resolve it:
//!
//! 1. no region holds the address (and no stack grows down to it):
//!    `SIGSEGV` with `SEGV_MAPERR`;
//! 2. the region's rights refuse the access (Linux's `access_error`: a
//!    write needs `PROT_WRITE`; a read or fetch of a present page that
//!    still faults is refused; one of a page not there needs any right
//!    at all): `SEGV_ACCERR`;
//! 3. otherwise the page is made present (`UserSpace::populate_page`): a
//!    read of untouched private memory maps the zero page, a write a
//!    frame of zeros (replacing the zero page if it was there), and the
//!    access is retried. A fetch from a readable, non-executable region
//!    maps the page first and faults again, refused, as on Linux.
//!
//! The path allocates nothing from the heap: the region lookup is a
//! binary search, and only the frame it maps (and any page table it
//! needs) is allocated. Out of frames, the outcome says so and the caller
//! ends the process.

use crate::mm::phys::PhysMem;
use crate::mm::pte::{LeafFlags, PteFormat};
use crate::mm::vm::VmStats;
use crate::task::aspace::{Alloc, UserSpace};
use abi::sig::{SEGV_ACCERR, SEGV_MAPERR};

/// What the faulting access was, decoded by the architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    pub write: bool,
    pub exec: bool,
    /// The page was present: a protection fault, not a missing page.
    pub present: bool,
}

/// One page fault from user mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub addr: u64,
    pub access: Access,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The entry now allows the access: retry the instruction.
    Resolved,
    /// The program's fault: `SIGSEGV` with `code` (`SEGV_MAPERR` or
    /// `SEGV_ACCERR`). `present` is whether the page was present as Linux
    /// sees it (a `PROT_NONE` page is not), for the error code the signal
    /// frame reports.
    Signal { code: i32, present: bool },
    /// No frame (or table) was left to map: the process ends.
    OutOfMemory,
}

/// Resolves `fault` in `space`, taking frames and tables from `alloc`.
pub fn handle<F: PteFormat, M: PhysMem>(
    space: &mut UserSpace<'_, F, M>,
    alloc: Alloc<'_>,
    fault: Fault,
) -> Outcome {
    VmStats::add(&space.stats().pgfault, 1);
    let Fault { addr, access } = fault;
    let present = space.user_present(addr);
    let refused = |code| Outcome::Signal {
        code,
        present: present.is_some(),
    };
    let Some(index) = space.region_for_fault(addr) else {
        return refused(SEGV_MAPERR);
    };
    let Some(rights) = space.regions().get(index).map(|r| r.flags) else {
        return refused(SEGV_MAPERR);
    };
    if access.write {
        if !rights.contains(crate::mm::region::VmFlags::WRITE) {
            return refused(SEGV_ACCERR);
        }
    } else if let Some(flags) = present {
        // Present, and it faulted anyway: a fetch of a page without
        // execute, or a fault another thread resolved first.
        return if access.exec && !flags.contains(LeafFlags::EXECUTABLE) {
            refused(SEGV_ACCERR)
        } else {
            Outcome::Resolved
        };
    } else if !rights.accessible() {
        return refused(SEGV_ACCERR);
    }
    match space.populate_page(alloc, index, addr, access.write) {
        Ok(()) => Outcome::Resolved,
        Err(_) => Outcome::OutOfMemory,
    }
}
