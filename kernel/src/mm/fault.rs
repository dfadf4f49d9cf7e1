//! The page-fault hook: every fault a user program takes comes here.
//!
//! The memory manager resolves what it can (demand paging, copy-on-write,
//! swap-in and userfaults arrive with the memory-manager issues); a fault
//! it cannot resolve is the program's bug, and the caller ends the
//! process. Today no fault is resolvable: user memory is mapped eagerly
//! and never changes behind a program's back.

use crate::mm::phys::PhysMem;
use crate::mm::pte::PteFormat;
use crate::task::aspace::UserSpace;

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
    /// Nothing to resolve: the process ends (a signal, once there are
    /// signals).
    Kill,
}

/// Resolves `fault` in `space` if the memory manager can.
pub fn handle<F: PteFormat, M: PhysMem>(
    _space: &mut UserSpace<'_, F, M>,
    _fault: Fault,
) -> Outcome {
    Outcome::Kill
}
