//! The parts of tasks that stand alone: the scheduler's policy, pipe
//! buffers, user address spaces, checked user-memory access and program
//! loading. `crate::proc` puts them together into processes and system
//! calls; `boot/src/task.rs` supplies the context switch and the way into
//! user mode.

pub mod aspace;
pub mod elf;
pub mod pipe;
pub mod sched;
pub mod uaccess;
