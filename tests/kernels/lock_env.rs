//! Built to panic: the console's environment (`env`, a plain spin lock
//! taken with interrupts on) used with interrupts off, as code under an
//! interrupt-safe lock would. Its check must stop it; run.sh expects the
//! report.
#![no_std]
#![no_main]

use kernel::console::Shell;

boot::entry!(main);

fn main(_: &'static boot::Booted) -> ! {
    let mut shell = Shell::new();
    boot::commands::register(&mut shell);
    let mut out = arch::serial::Serial;
    // Allowed with interrupts on.
    let _ = shell.run_line(&mut out, "env A=1");
    arch::cpu::without_interrupts(|| {
        let _ = shell.run_line(&mut out, "env");
    });
    arch::println!("env ran with interrupts off: not caught");
    boot::power_off(true)
}
