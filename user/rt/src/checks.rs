//! A tally of a test program's checks: one `key=value` line each (with
//! ` FAILED` after a failed one), and the counts for the exit status.

use core::fmt::Display;

use crate::println;

#[derive(Debug, Default)]
pub struct Checks {
    pub run: u32,
    pub failed: u32,
}

impl Checks {
    pub const fn new() -> Checks {
        Checks { run: 0, failed: 0 }
    }

    /// Prints `key=value`, marked FAILED unless `ok`, and counts it.
    pub fn report(&mut self, key: &str, value: impl Display, ok: bool) {
        self.run += 1;
        if ok {
            println!("{key}={value}");
        } else {
            self.failed += 1;
            println!("{key}={value} FAILED");
        }
    }
}
