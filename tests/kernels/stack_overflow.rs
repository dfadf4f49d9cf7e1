//! A kernel built to overflow its stack. The write into the guard page
//! faults, the CPU cannot push the page-fault frame on the same broken
//! stack, and escalates to a double fault, which runs on its own IST stack
//! and reports `double_fault_stack=yes`. run.sh expects exactly that.
#![no_std]
#![no_main]

boot::entry!(main);

#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let frame = [depth; 32];
    // Volatile so the recursion is neither optimised away nor turned into a loop.
    let sum = core::hint::black_box(&frame).iter().sum::<u64>();
    recurse(depth + 1) + core::hint::black_box(sum)
}

fn main(_: &'static boot::Booted) -> ! {
    arch::println!("recursing until the stack overflows");
    let n = recurse(0);
    arch::println!("returned {n}: the overflow was not caught");
    boot::power_off(true)
}
