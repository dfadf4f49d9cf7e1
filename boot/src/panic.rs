//! The panic handler: a report on the console, then QEMU exits with the
//! failure status. There is no unwinding and no backtrace.

use core::fmt::Write;
use core::panic::PanicInfo;
use spin::Once;

static HOOK: Once<fn(&PanicInfo)> = Once::new();

/// Lets a test kernel say which test panicked before the report.
pub fn set_panic_hook(hook: fn(&PanicInfo)) {
    HOOK.call_once(|| hook);
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    arch::cpu::disable_interrupts();
    if let Some(hook) = HOOK.get() {
        hook(info);
    }
    let mut out = arch::serial::emergency_writer();
    let _ = writeln!(out, "KERNEL PANIC: {info}");
    let _ = writeln!(out, "powering off with failure status");
    arch::exit::exit_qemu(arch::exit::ExitCode::Failure)
}
