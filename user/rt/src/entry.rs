//! `_start` and `entry!`.
//!
//! The kernel enters `_start` with `rdi` = pointer to the argument string,
//! `rsi` = its length and `rsp` = a 16-byte aligned stack top (docs/abi.md).

use core::arch::naked_asm;

use crate::args::Args;

unsafe extern "Rust" {
    /// The program's main function, defined by [`entry!`](crate::entry).
    fn __faultline_main(args: Args) -> i64;
}

/// Names the program's `fn main(args: rt::Args) -> i64`; its result becomes
/// the exit status. A program without `entry!` fails to link with an
/// undefined `__faultline_main`.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[unsafe(no_mangle)]
        fn __faultline_main(args: $crate::Args) -> i64 {
            // The coercion checks `main`'s signature at compile time.
            let main: fn($crate::Args) -> i64 = $main;
            main(args)
        }
    };
}

/// The ELF entry point (user.ld: `ENTRY(_start)`).
#[unsafe(naked)]
#[unsafe(no_mangle)]
unsafe extern "C" fn _start() -> ! {
    naked_asm!(
        // A zero frame pointer ends the chain for anyone walking frames.
        "xor ebp, ebp",
        // Do not trust the alignment we were given; the call then leaves
        // rsp = 8 (mod 16) in `start_rust`, as the SysV ABI wants.
        "and rsp, -16",
        // rdi and rsi still hold the argument string: start_rust's parameters.
        "call {start}",
        "ud2",
        start = sym start_rust,
    )
}

extern "C" fn start_rust(args: *const u8, len: usize) -> ! {
    // SAFETY: the kernel maps the argument string read-only for the life of
    // the program and never changes it (docs/abi.md, "Program entry").
    let args = unsafe { Args::from_raw(args, len) };
    // SAFETY: `entry!` defines this symbol with exactly this signature.
    let status = unsafe { __faultline_main(args) };
    crate::exit(status)
}
