//! Built to die: a kernel page fault on CPU 1 (run through a call IPI
//! while the bootstrap CPU waits). The faulting CPU must stop the others
//! and report itself by index and APIC id; run.sh expects the report.
#![no_std]
#![no_main]

use boot::Booted;

boot::entry!(main);

fn read_unmapped() {
    let ptr = 0x0dea_dbee_f000 as *const u64;
    // SAFETY: deliberately unsound: the address is unmapped and the page
    // fault is the point; the report powers the machine off.
    let _ = unsafe { core::ptr::read_volatile(ptr) };
}

fn main(_: &'static Booted) -> ! {
    let Some(cpu1) = arch::percpu::cpu(1) else {
        panic!("ap_fault needs a second CPU");
    };
    let r = arch::smp::call_on(cpu1, read_unmapped, 5_000_000);
    panic!("cpu 1 survived a fault in the kernel: {r:?}");
}
