//! The Faultline kernel: boots, then runs the console. Boot module 0 is a
//! console script, or a cpio archive holding one (`script.fl`) and user
//! programs (`bin/NAME`), see `kernel::initrd`. With a script it runs it and
//! powers off with a status that says whether every command and `expect`
//! held; without one it is an interactive shell on the serial port.
#![no_std]
#![no_main]

use boot::Booted;
use boot::commands;
use kernel::console::{LineEditor, PROMPT, Shell};
use kernel::initrd;

boot::entry!(kernel_main);

fn kernel_main(booted: &'static Booted) -> ! {
    let mut shell = Shell::new();
    commands::register(&mut shell);
    let mut serial = arch::serial::Serial;
    if booted.info.modules().is_empty() {
        interactive(&mut shell, &mut serial);
    }
    match read_module(booted) {
        Some(text) => run_script(&mut shell, &mut serial, text),
        None => interactive(&mut shell, &mut serial),
    }
}

/// Reads boot module 0, installs its programs and returns its script, if
/// it has one. A module that cannot be used at all ends the run with a
/// failure, since what it meant to test cannot be tested.
fn read_module(booted: &'static Booted) -> Option<&'static str> {
    let Some(bytes) = booted.module(0) else {
        arch::println!("error: boot module 0 lies outside the direct map");
        boot::power_off(false)
    };
    let module = match initrd::read(bytes, &boot::programs::is_builtin) {
        Ok(module) => module,
        Err(e) => {
            arch::println!("error: {e}");
            boot::power_off(false)
        }
    };
    for skipped in &module.skipped {
        arch::println!("warning: boot archive: {skipped}");
    }
    if module.archive {
        arch::println!(
            "boot archive: script={} programs={} skipped={}",
            if module.script.is_some() { "yes" } else { "no" },
            module.programs.len(),
            module.skipped.len()
        );
    }
    boot::programs::install_modules(module.programs);
    module.script
}

fn run_script(shell: &mut Shell, serial: &mut arch::serial::Serial, text: &str) -> ! {
    commands::mark_console_ready();
    let summary = shell.run_script(serial, text);
    arch::println!(
        "script commands={} failures={} result={}",
        summary.commands,
        summary.failures,
        if summary.ok() { "ok" } else { "FAILED" }
    );
    boot::power_off(summary.ok())
}

fn interactive(shell: &mut Shell, serial: &mut arch::serial::Serial) -> ! {
    arch::println!("Faultline console. Type 'help' for commands.");
    arch::print!("{PROMPT}");
    commands::mark_console_ready();
    let mut editor = LineEditor::new();
    loop {
        let Some(byte) = arch::serial::try_read_byte() else {
            // Other tasks run meanwhile; input is polled once per tick.
            boot::task::sleep_ns(1_000_000_000 / arch::timer::HZ);
            continue;
        };
        if let Some(line) = editor.feed(byte, serial) {
            let _ = shell.run_line(serial, &line);
            if commands::halt_requested() {
                boot::power_off(shell.failures() == 0);
            }
            arch::print!("{PROMPT}");
        }
    }
}
