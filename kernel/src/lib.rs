//! Faultline's portable core.
//!
//! Nothing here touches hardware: physical memory, page-table entries and
//! the console are reached through traits that `arch/` implements for x86_64
//! and that the host tests implement over simulated memory. That is why the
//! crate can deny `unsafe` outright.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

extern crate alloc;

pub mod bootinfo;
pub mod console;
pub mod cpus;
pub mod initrd;
pub mod mm;
pub mod proc;
pub mod sync;
pub mod task;
#[cfg(test)]
mod testutil;
