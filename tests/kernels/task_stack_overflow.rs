//! A kernel thread that overflows its stack. Task stacks sit in their own
//! region with an unmapped guard below each, so the overflow must end in a
//! reported double fault (on its IST stack), not in silently overwritten
//! memory. run.sh expects exactly that report.
#![no_std]
#![no_main]

boot::entry!(main);

fn overflow(_: u64) -> i64 {
    ktest::overflow_stack(0) as i64
}

fn main(_: &'static boot::Booted) -> ! {
    arch::println!(
        "task stacks from {:#x}; overflowing one",
        arch::layout::KSTACK_BASE
    );
    let tid = boot::task::spawn_kernel("overflow", overflow, 0).expect("spawn");
    let status = boot::task::join(tid);
    arch::println!("joined {status:?}: the overflow was not caught");
    boot::power_off(true)
}
