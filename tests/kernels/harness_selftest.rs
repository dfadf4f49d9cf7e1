//! Proves the test runner itself: after a panicking, a faulting and a
//! hanging test, the tests after them still run and are reported. run.sh
//! expects exactly this pattern of results from this kernel and counts the
//! match as one passing test; any other pattern fails the suite.
#![no_std]
#![no_main]

use boot::Booted;

boot::entry!(main);

fn main(booted: &'static Booted) -> ! {
    ktest::run(
        booted,
        ktest::tests![passes_first, panics, faults, hangs, passes_last],
    )
}

fn passes_first(_: &'static Booted) {}

fn panics(_: &'static Booted) {
    panic!("deliberate panic (harness self-test)");
}

fn faults(_: &'static Booted) {
    let ptr = 0x0dea_dbee_f000 as *const u64;
    // SAFETY: none; the page-fault report and power-off are the point.
    let _ = unsafe { ptr.read_volatile() };
}

fn hangs(_: &'static Booted) {
    loop {
        arch::cpu::wait_for_interrupt();
    }
}

fn passes_last(_: &'static Booted) {}
