//! Built to panic: two of the booted kernel's own locks taken in the
//! wrong order. The serial port's lock (8) is held while a line is
//! formatted, and a value whose formatting allocates takes the heap's (5)
//! under it. The lock-order check must stop it with a panic naming both,
//! before it spins; run.sh expects the report.
#![no_std]
#![no_main]

extern crate alloc;

use core::fmt;

boot::entry!(main);

/// Formats through a heap allocation, as many a `Display` does.
struct Allocates;

impl fmt::Display for Allocates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = alloc::string::String::from("allocated");
        f.write_str(&text)
    }
}

fn main(_: &'static boot::Booted) -> ! {
    arch::println!("printing a value that allocates: {}", Allocates);
    arch::println!("the heap's lock was taken under the serial port's: not caught");
    boot::power_off(true)
}
