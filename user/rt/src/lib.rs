//! The runtime every Faultline user program links: the `_start` entry point,
//! typed system-call wrappers, `print!`/`println!`, a panic handler and
//! threads (`spawn` and `join`, over `clone` and futexes). docs/abi.md
//! describes the calls themselves.
//!
//! A program is `#![no_std] #![no_main]` and names its main function with
//! [`entry!`]:
//!
//! ```ignore
//! #![no_std]
//! #![no_main]
//! rt::entry!(main);
//! fn main(args: rt::Args) -> i64 {
//!     rt::println!("hello {args}");
//!     0
//! }
//! ```
#![no_std]

mod args;
mod checks;
mod entry;
mod panic;
mod print;
pub mod raw;
mod sys;
mod thread;

pub use abi::{self, Errno};
pub use args::Args;
pub use checks::Checks;
pub use panic::PANIC_STATUS;
#[doc(hidden)]
pub use print::{_print, _print_to};
pub use sys::{
    IoVec, bytes_ready, close, dup, dup2, dup3, exit, exit_thread, fcntl, fs_base, fstat,
    futex_wait, futex_wake, getpid, gettid, ignore_signal, pipe, pipe2, read, set_fs_base,
    set_tid_address, sleep, spawn_thread, time_ns, wait_thread, window_size, write, writev,
    yield_now,
};
pub use thread::{Stack, StackPool, Thread, join, spawn};
