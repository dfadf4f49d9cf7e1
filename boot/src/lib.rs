//! Faultline's entry path and early setup, shared by the kernel binary and
//! every test kernel.
//!
//! Order of `boot_rust_entry`: serial and logging first (so everything
//! after can report), descriptors and traps (so faults are reported, not
//! silent), the boot information, the frame allocator, the kernel's own page
//! tables, the heap, the timer, the x87/SSE/AVX registers for user mode (the
//! size of a user thread's save area must be known before the first task is
//! made), the tasks, the bootstrap CPU's local APIC (its timer replaces the
//! PIT), interrupts on, the other CPUs; then the binary's `faultline_main`.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

extern crate alloc;

pub mod commands;
mod entry;
pub mod heap;
mod logger;
pub mod memory;
mod panic;
pub mod programs;
pub mod smp;
pub mod task;

use kernel::bootinfo::BootInfo;
use spin::Once;

pub use panic::set_panic_hook;

/// What boot learned and hands to `faultline_main`.
pub struct Booted {
    pub info: BootInfo,
    /// TSC at the PVH entry (instructions under `-icount shift=0`).
    pub entry_tsc: u64,
}

impl Booted {
    /// The bytes of boot module `index` (module 0 is the console script or
    /// the boot archive, see `kernel::initrd`).
    pub fn module(&self, index: usize) -> Option<&'static [u8]> {
        let m = self.info.modules().get(index)?;
        memory::phys_slice(m.start, m.len)
    }
}

static BOOTED: Once<Booted> = Once::new();

/// The boot information, once `boot_rust_entry` has parsed it.
pub fn booted() -> Option<&'static Booted> {
    BOOTED.get()
}

/// Declares the function boot calls after setup. Every kernel binary (the
/// main kernel and each test kernel) names exactly one.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[unsafe(no_mangle)]
        pub extern "Rust" fn faultline_main(booted: &'static $crate::Booted) -> ! {
            let main: fn(&'static $crate::Booted) -> ! = $main;
            main(booted)
        }
    };
}

unsafe extern "Rust" {
    fn faultline_main(booted: &'static Booted) -> !;
}

extern "C" fn boot_rust_entry(start_info: u64, entry_tsc: u64) -> ! {
    // First: every lock asks which CPU it runs on, through GS.
    arch::percpu::init_bsp(
        arch::gdt::bsp_ist_tops(),
        arch::gdt::bsp_double_fault_stack(),
    );
    arch::serial::init();
    kernel::sync::install_irq_hooks(kernel::sync::IrqHooks {
        disable: arch::cpu::save_and_disable_interrupts,
        enable: arch::cpu::enable_interrupts,
        cpu_index: arch::percpu::index,
    });
    arch::gdt::init();
    arch::trap::init();
    let info = match BootInfo::parse(&arch::phys::DIRECT_MAP, start_info) {
        Ok(info) => info,
        Err(e) => fatal_boot_error(format_args!("{e}")),
    };
    logger::init(info.cmdline_value("loglevel"));
    log::info!("Faultline booting; command line '{}'", info.cmdline());
    if info.regions_dropped > 0 || info.modules_dropped > 0 {
        log::warn!(
            "boot map truncated: {} regions and {} modules ignored",
            info.regions_dropped,
            info.modules_dropped
        );
    }
    if let Err(e) = memory::init(&info) {
        fatal_boot_error(format_args!("memory setup failed: {e}"));
    }
    if let Err(e) = heap::init() {
        fatal_boot_error(format_args!("heap setup failed: {e:?}"));
    }
    arch::timer::init();
    let fpu = arch::fpu::init();
    log::info!(
        "user FPU state: {} xcr0={:#x} area={} bytes",
        if fpu.xsave { "xsave" } else { "fxsave" },
        fpu.xcr0,
        fpu.size
    );
    task::init();
    let calibration = smp::init_bsp();
    arch::cpu::enable_interrupts();
    smp::start_aps(&info, calibration);
    let booted = BOOTED.call_once(|| Booted { info, entry_tsc });
    // SAFETY: `faultline_main` is defined by the binary through `entry!`,
    // with exactly this signature.
    unsafe { faultline_main(booted) }
}

fn fatal_boot_error(msg: core::fmt::Arguments) -> ! {
    use core::fmt::Write;
    let mut out = arch::serial::emergency_writer();
    let _ = writeln!(out, "BOOT FAILED: {msg}");
    arch::exit::exit_qemu(arch::exit::ExitCode::Failure)
}

/// Ends the run: QEMU exits 33 on success and 35 on failure.
pub fn power_off(success: bool) -> ! {
    let code = if success {
        arch::exit::ExitCode::Success
    } else {
        arch::exit::ExitCode::Failure
    };
    arch::exit::exit_qemu(code)
}
