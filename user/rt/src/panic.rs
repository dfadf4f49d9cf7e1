//! A panic prints where and why, then ends the thread with status 101
//! (Rust's own exit code for a panic), so tests tell it from a fault kill.

use core::panic::PanicInfo;

/// The status of a thread that panicked.
pub const PANIC_STATUS: i64 = 101;

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    crate::_print_to(abi::STDERR, format_args!("panic: {info}\n"));
    crate::exit(PANIC_STATUS)
}
