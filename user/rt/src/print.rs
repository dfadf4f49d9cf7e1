//! `print!` and `println!`: formatted output to the console (fd 1).
//!
//! Output is gathered in a small stack buffer and written with as few
//! `write` calls as possible, so a line from one thread is not split by
//! another thread's output unless it is longer than the buffer.

use core::fmt::{self, Write};

use crate::sys::write;

const BUF_LEN: usize = 256;

struct Buffered {
    fd: u32,
    buf: [u8; BUF_LEN],
    len: usize,
}

impl Buffered {
    fn flush(&mut self) {
        let mut pending = &self.buf[..self.len];
        // A pipe may take part of the buffer; the console takes it all.
        while !pending.is_empty() {
            match write(self.fd, pending) {
                Ok(n) if n > 0 => pending = &pending[n.min(pending.len())..],
                // Nowhere to report a failed print: drop the output.
                _ => break,
            }
        }
        self.len = 0;
    }
}

impl Write for Buffered {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &byte in s.as_bytes() {
            if self.len == BUF_LEN {
                self.flush();
            }
            self.buf[self.len] = byte;
            self.len += 1;
        }
        Ok(())
    }
}

/// Formats `args` to `fd`. Used by the macros and the panic handler.
#[doc(hidden)]
pub fn _print_to(fd: u32, args: fmt::Arguments<'_>) {
    let mut out = Buffered {
        fd,
        buf: [0; BUF_LEN],
        len: 0,
    };
    // Our write_str never fails; a Display impl that does just ends the text.
    let _ = out.write_fmt(args);
    out.flush();
}

/// Formats `args` to the console.
#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    _print_to(abi::STDOUT, args);
}

/// Prints to the console (fd 1).
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::_print(format_args!($($arg)*))
    };
}

/// Prints a line to the console (fd 1).
#[macro_export]
macro_rules! println {
    () => {
        $crate::_print(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::_print(format_args!("{}\n", format_args!($($arg)*)))
    };
}
