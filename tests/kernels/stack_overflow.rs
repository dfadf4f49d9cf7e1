//! A kernel built to overflow its stack. The write into the guard page
//! faults, the CPU cannot push the page-fault frame on the same broken
//! stack, and escalates to a double fault, which runs on its own IST stack
//! and reports `double_fault_stack=yes`. run.sh expects exactly that.
#![no_std]
#![no_main]

boot::entry!(main);

fn main(_: &'static boot::Booted) -> ! {
    arch::println!("recursing until the stack overflows");
    let n = ktest::overflow_stack(0);
    arch::println!("returned {n}: the overflow was not caught");
    boot::power_off(true)
}
