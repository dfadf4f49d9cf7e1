//! Proves the test runner itself. By default: after a panicking, a faulting
//! and a hanging test, and a death between two tests, the tests after them
//! still run and every failure is reported by name. With `after_done=HOW`
//! on the command line it passes one test, prints its closing line, and
//! then ends badly (HOW: `fail`, `triple` or `hang`), which must count as a
//! failure too. run.sh expects exactly these patterns of results from this
//! kernel and counts the match as one passing test; any other pattern fails
//! the suite.
#![no_std]
#![no_main]

use boot::Booted;

boot::entry!(main);

fn main(booted: &'static Booted) -> ! {
    let Some(how) = booted.info.cmdline_value("after_done") else {
        ktest::run(
            booted,
            ktest::tests![
                passes_first,
                panics,
                panics_on_another_cpu,
                faults,
                hangs,
                dies_after_its_ok_line,
                passes_last
            ],
        )
    };
    ktest::run_then_return(booted, ktest::tests![passes_first]);
    match how {
        "fail" => boot::power_off(false),
        "triple" => triple_fault(),
        "hang" => hang(),
        _ => panic!("after_done={how}: not fail, triple or hang"),
    }
}

fn passes_first(_: &'static Booted) {}

fn panics(_: &'static Booted) {
    panic!("deliberate panic (harness self-test)");
}

/// CPU 1 panics in a call the bootstrap CPU waits for: the panic must
/// stop the bootstrap CPU and name this test and CPU 1.
fn panics_on_another_cpu(_: &'static Booted) {
    fn deliberate() {
        panic!("deliberate panic on another CPU (harness self-test)");
    }
    let cpu1 = arch::percpu::cpu(1).expect("the self-test runs on two CPUs");
    let r = arch::smp::call_on(cpu1, deliberate, 5_000_000);
    panic!("cpu 1 did not panic: {r:?}");
}

fn read_unmapped() {
    let ptr = 0x0dea_dbee_f000 as *const u64;
    // SAFETY: none; the page-fault report and power-off are the point.
    let _ = unsafe { ptr.read_volatile() };
}

fn faults(_: &'static Booted) {
    read_unmapped();
}

fn hang() -> ! {
    loop {
        arch::cpu::wait_for_interrupt();
    }
}

fn hangs(_: &'static Booted) {
    hang();
}

/// Passes, then faults once the runner has printed its `ok`: no test is
/// running when the kernel dies.
fn dies_after_its_ok_line(_: &'static Booted) {
    ktest::after_this_test(read_unmapped);
}

fn passes_last(_: &'static Booted) {}

/// An IDT with no entries: the breakpoint cannot be delivered (#GP), nor
/// can that (#DF), so the CPU shuts down, and under `-no-reboot` QEMU exits
/// with status 0.
fn triple_fault() -> ! {
    #[repr(C, packed)]
    struct IdtPointer {
        limit: u16,
        base: u64,
    }
    let empty = IdtPointer { limit: 0, base: 0 };
    // SAFETY: none is needed; nothing runs after this, the machine resets.
    unsafe {
        core::arch::asm!("lidt [{}]", "int3", in(reg) &raw const empty, options(noreturn));
    }
}
