//! Small CPU primitives: time stamp counter, halting, interrupt flag.

/// Reads the time stamp counter. Under QEMU's `-icount shift=0` it counts
/// guest instructions, which is what makes `./run.sh bench` repeatable.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects; CR4.TSD is never set, so it is
    // allowed at every privilege level we run at.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Sleeps until the next interrupt, with interrupts enabled; a timer tick
/// that wakes it counts as this CPU's idle tick.
pub fn wait_for_interrupt() {
    crate::percpu::idle_halt();
}

/// Stops this CPU for good: interrupts off, halt forever.
pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

pub use x86_64::instructions::interrupts::{
    are_enabled as interrupts_enabled, disable as disable_interrupts, enable as enable_interrupts,
    without_interrupts,
};

/// Disables interrupts and says whether they were enabled.
pub fn save_and_disable_interrupts() -> bool {
    let was = interrupts_enabled();
    disable_interrupts();
    was
}

/// Re-enables interrupts if `was_enabled`.
pub fn restore_interrupts(was_enabled: bool) {
    if was_enabled {
        enable_interrupts();
    }
}

/// Executes `int3`; the breakpoint handler logs it and returns here.
pub fn breakpoint() {
    x86_64::instructions::interrupts::int3();
}

/// The FS base (MSR `IA32_FS_BASE`): a user thread's, the kernel never
/// uses FS.
pub fn fs_base() -> u64 {
    x86_64::registers::model_specific::FsBase::read().as_u64()
}

/// Sets the FS base. A non-canonical value would make `wrmsr` fault in
/// the kernel, so it is not written; the process model never asks for one
/// (it refuses them with EPERM).
pub fn set_fs_base(base: u64) {
    if let Ok(addr) = x86_64::VirtAddr::try_new(base) {
        x86_64::registers::model_specific::FsBase::write(addr);
    }
}
