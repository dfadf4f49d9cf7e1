//! Tasks: scheduling, wait queues, pipes, user memory access, program
//! loading and the system calls, all portable; `boot/src/task.rs` supplies
//! the context switch and the user-mode entry.

pub mod aspace;
pub mod elf;
pub mod pipe;
pub mod sched;
pub mod uaccess;
