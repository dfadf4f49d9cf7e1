//! The in-kernel half of the test harness.
//!
//! A test kernel lists its tests with [`tests!`] and hands them to [`run`].
//! Each test prints `test NAME ...` when it starts and `test NAME ... ok`
//! when it passes; a test fails by panicking, and the panic hook prints
//! `test NAME ... FAILED` before the kernel powers off. run.sh then boots
//! the kernel again with `start=K` on the command line to go on with the
//! next test, and kills a hung test by its timeout. So one failure never
//! hides the results of the tests after it.
#![no_std]

use core::panic::PanicInfo;

use boot::Booted;

/// One named test.
pub struct Test {
    pub name: &'static str,
    pub run: fn(&'static Booted),
}

/// Builds the test table from function paths: `tests![a, b, c]`.
#[macro_export]
macro_rules! tests {
    ($($f:path),* $(,)?) => {
        &[$($crate::Test { name: stringify!($f), run: $f }),*]
    };
}

/// The test running now, for the panic hook's report.
static CURRENT: spin::Mutex<&'static str> = spin::Mutex::new("");

fn on_panic(info: &PanicInfo) {
    arch::println!("    {info}");
    arch::println!("test {} ... FAILED", CURRENT.lock());
}

/// Runs `tests` from the index given by `start=` on the command line,
/// then powers off with success.
pub fn run(booted: &'static Booted, tests: &[Test]) -> ! {
    boot::set_panic_hook(on_panic);
    let start = booted
        .info
        .cmdline_value("start")
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(0);
    arch::println!(
        "running {} tests from #{start}",
        tests.len().saturating_sub(start)
    );
    let mut passed = 0;
    for test in tests.iter().skip(start) {
        // Start and result are separate lines, each naming the test, so the
        // test's own output in between cannot hide the result.
        *CURRENT.lock() = test.name;
        arch::println!("test {} ...", test.name);
        (test.run)(booted);
        arch::println!("test {} ... ok", test.name);
        passed += 1;
    }
    arch::println!("test-kernel done passed={passed}");
    boot::power_off(true)
}

/// Spins (halting between interrupts) until `cond` holds or `ticks` timer
/// ticks have passed; returns whether it held.
pub fn wait_until(ticks: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = arch::timer::ticks() + ticks;
    while arch::timer::ticks() < deadline {
        if cond() {
            return true;
        }
        arch::cpu::wait_for_interrupt();
    }
    cond()
}

/// Recurses until the stack overflows; never returns normally. Each frame
/// holds an array behind `black_box`, so the recursion is neither optimised
/// away nor turned into a loop.
#[allow(unconditional_recursion)]
pub fn overflow_stack(depth: u64) -> u64 {
    let frame = [depth; 32];
    let sum = core::hint::black_box(&frame).iter().sum::<u64>();
    overflow_stack(depth + 1) + core::hint::black_box(sum)
}
