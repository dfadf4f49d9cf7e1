//! The Faultline kernel: boots, then runs the console. With a boot module it
//! runs that module as a console script and powers off with a status that
//! says whether every command and `expect` held; without one it is an
//! interactive shell on the serial port.
#![no_std]
#![no_main]

use boot::Booted;
use boot::commands;
use kernel::console::{LineEditor, PROMPT, Shell};

boot::entry!(kernel_main);

fn kernel_main(booted: &'static Booted) -> ! {
    let mut shell = Shell::new();
    commands::register(&mut shell);
    let mut serial = arch::serial::Serial;
    match booted.info.modules().len() {
        0 => interactive(&mut shell, &mut serial),
        _ => run_script(&mut shell, &mut serial, booted.module(0)),
    }
}

fn run_script(shell: &mut Shell, serial: &mut arch::serial::Serial, module: Option<&[u8]>) -> ! {
    let text = match module.map(core::str::from_utf8) {
        Some(Ok(text)) => text,
        Some(Err(e)) => {
            arch::println!(
                "error: boot module 0 is not a text script (invalid UTF-8 at byte {})",
                e.valid_up_to()
            );
            boot::power_off(false)
        }
        None => {
            arch::println!("error: boot module 0 lies outside the direct map");
            boot::power_off(false)
        }
    };
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
