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

/// The panic handler has stopped the other CPUs, one of which may hold the
/// serial port's lock or `CURRENT`'s: neither is waited for.
fn on_panic(info: &PanicInfo) {
    use core::fmt::Write;
    let mut out = arch::serial::emergency_writer();
    let name = CURRENT.try_lock().map_or("(unknown)", |n| *n);
    let _ = writeln!(out, "    {info}");
    let _ = writeln!(out, "test {name} ... FAILED");
}

/// Runs `tests` from the index given by `start=` on the command line,
/// then powers off with success.
pub fn run(booted: &'static Booted, tests: &[Test]) -> ! {
    run_then_return(booted, tests);
    boot::power_off(true)
}

/// [`run`] up to and including its closing `test-kernel done` line, then
/// returns the number of passes instead of powering off: the harness
/// self-test uses it to end badly after a good run, which run.sh must count
/// as a failure.
pub fn run_then_return(booted: &'static Booted, tests: &[Test]) -> usize {
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
        // Taken before the call, so the lock is not held if it never returns.
        let after = AFTER_THIS_TEST.lock().take();
        if let Some(action) = after {
            action();
        }
    }
    arch::println!("test-kernel done passed={passed}");
    passed
}

static AFTER_THIS_TEST: spin::Mutex<Option<fn()>> = spin::Mutex::new(None);

/// Makes the runner call `action` once, after it has printed the current
/// test's `ok` line and before the next test starts: the one moment no test
/// is running, where the harness self-test dies to prove run.sh notices.
pub fn after_this_test(action: fn()) {
    *AFTER_THIS_TEST.lock() = Some(action);
}

/// Spins (halting between interrupts) until `cond` holds or `ticks` timer
/// ticks have passed; returns whether it held.
pub fn wait_until(ticks: u64, mut cond: impl FnMut() -> bool) -> bool {
    // Saturating: a deadline past the end of time means "wait for ever",
    // not an overflow panic.
    let deadline = arch::timer::ticks().saturating_add(ticks);
    while arch::timer::ticks() < deadline {
        if cond() {
            return true;
        }
        arch::cpu::wait_for_interrupt();
    }
    cond()
}

/// Spins until `cond` holds or `cycles` TSC cycles have passed; returns
/// whether it held. For waits that must end even if the timer is dead,
/// which [`wait_until`] (counting timer ticks, halting between them) cannot.
pub fn spin_until(cycles: u64, mut cond: impl FnMut() -> bool) -> bool {
    let start = arch::cpu::rdtsc();
    while arch::cpu::rdtsc().wrapping_sub(start) < cycles {
        if cond() {
            return true;
        }
        core::hint::spin_loop();
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
