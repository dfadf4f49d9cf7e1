//! A kernel built to fault: it reads an unmapped address. The run must end
//! with the fault report (vector 14, CR2 = the address) and QEMU's failure
//! status; run.sh expects exactly that.
#![no_std]
#![no_main]

boot::entry!(main);

const UNMAPPED: u64 = 0x0dea_dbee_f000;

fn main(_: &'static boot::Booted) -> ! {
    arch::println!("reading unmapped address {UNMAPPED:#x}");
    let ptr = UNMAPPED as *const u64;
    // SAFETY: none; the point is the fault. The page-fault handler reports it
    // and powers off, so this read never returns.
    let value = unsafe { ptr.read_volatile() };
    arch::println!("read {value:#x}: the fault was not taken");
    boot::power_off(true)
}
