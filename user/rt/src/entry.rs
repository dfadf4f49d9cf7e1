//! `_start` and `entry!`.
//!
//! The kernel enters `_start` as Linux does (the SysV x86_64 ABI): `rsp`
//! points at `argc`, followed by `argv`, a null, `envp`, a null and the
//! auxiliary vector (docs/abi.md, "Program entry").

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
        // The initial stack, for start_rust to read argc and argv from.
        "mov rdi, rsp",
        // The ABI gives rsp 16-byte aligned here; the call then leaves it
        // 8 (mod 16) in `start_rust`, as a call should.
        "and rsp, -16",
        "call {start}",
        "ud2",
        start = sym start_rust,
    )
}

extern "C" fn start_rust(sp: *const u64) -> ! {
    // SAFETY: the kernel put argc at sp and argv's pointers right above it,
    // in stack memory no one frees or reuses while the program runs (rt
    // never returns into this frame's callers); docs/abi.md.
    let args = unsafe { Args::from_raw(*sp as usize, sp.add(1).cast()) };
    // SAFETY: `entry!` defines this symbol with exactly this signature.
    let status = unsafe { __faultline_main(args) };
    crate::exit(status)
}
