//! The panic handler: the other CPUs are stopped, a report names the CPU
//! that panicked, then QEMU exits with the failure status. There is no
//! unwinding and no backtrace.

use core::fmt::Write;
use core::panic::PanicInfo;
use spin::Once;

static HOOK: Once<fn(&PanicInfo)> = Once::new();

/// Lets a test kernel say which test panicked before the report. The
/// other CPUs are stopped by then, maybe holding the serial port's lock:
/// the hook must write through `arch::serial::emergency_writer`.
pub fn set_panic_hook(hook: fn(&PanicInfo)) {
    HOOK.call_once(|| hook);
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    arch::cpu::disable_interrupts();
    // Before the first CPU's area exists (the very first instructions of
    // boot) there is nobody to stop and no index to name.
    let cpu = arch::percpu::ready().then(|| {
        arch::percpu::repair_gs();
        match arch::smp::stop_others() {
            Some(cpu) => cpu,
            // Another CPU is reporting its own failure; this one stops.
            None => arch::smp::stopped(),
        }
    });
    if let Some(hook) = HOOK.get() {
        hook(info);
    }
    let mut out = arch::serial::emergency_writer();
    match cpu {
        Some(c) => {
            let _ = writeln!(
                out,
                "KERNEL PANIC on cpu={} apic_id={} others_stopped={}: {info}",
                c.index(),
                c.apic_id(),
                arch::smp::stopped_count()
            );
        }
        None => {
            let _ = writeln!(out, "KERNEL PANIC: {info}");
        }
    }
    let _ = writeln!(out, "powering off with failure status");
    arch::exit::exit_qemu(arch::exit::ExitCode::Failure)
}
