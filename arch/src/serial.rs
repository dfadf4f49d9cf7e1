//! The COM1 serial port: console output, console input, and the `print!`
//! family of macros used by boot and test kernels.

use core::fmt::{self, Write};
use kernel::sync::IrqMutex;
use uart_16550::{Config, Uart16550, backend::PioBackend};

const COM1: u16 = 0x3f8;

static PORT: IrqMutex<Option<Uart16550<PioBackend>>> =
    IrqMutex::ranked(kernel::sync::rank::SERIAL, None);

/// Programs COM1 (115200 8N1, FIFOs on). Output before this call is dropped.
pub fn init() {
    // SAFETY: 0x3f8 is COM1 on every PC and QEMU machine; this module owns
    // it exclusively through `PORT`.
    let Ok(mut uart) = (unsafe { Uart16550::new_port(COM1) }) else {
        return;
    };
    if uart.init(Config::default()).is_ok() {
        *PORT.lock() = Some(uart);
    }
}

/// A `fmt::Write` handle on the serial port; `\n` becomes `\r\n` for terminals.
pub struct Serial;

impl Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if let Some(uart) = PORT.lock().as_mut() {
            write_bytes(uart, s.as_bytes());
        }
        Ok(())
    }

    /// One lock for the whole formatted text, so lines that two CPUs print
    /// at once do not interleave piece by piece.
    fn write_fmt(&mut self, args: fmt::Arguments<'_>) -> fmt::Result {
        struct Locked<'a>(&'a mut Uart16550<PioBackend>);
        impl Write for Locked<'_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                write_bytes(self.0, s.as_bytes());
                Ok(())
            }
        }
        match PORT.lock().as_mut() {
            Some(uart) => Locked(uart).write_fmt(args),
            None => Ok(()),
        }
    }
}

fn write_bytes(uart: &mut Uart16550<PioBackend>, bytes: &[u8]) {
    for &b in bytes {
        if b == b'\n' {
            uart.send_bytes_exact(b"\r");
        }
        uart.send_bytes_exact(&[b]);
    }
}

/// Writes raw bytes (a user program's output, already valid UTF-8).
pub fn write_raw(bytes: &[u8]) {
    if let Some(uart) = PORT.lock().as_mut() {
        write_bytes(uart, bytes);
    }
}

/// One byte from the console, if one has arrived.
pub fn try_read_byte() -> Option<u8> {
    PORT.lock().as_mut()?.try_receive_byte().ok()
}

/// For the fatal paths (panic, kernel fault): the lock may be held by the
/// very code that failed, and waiting for it would hang instead of
/// reporting. So this writer goes to the port without the lock.
pub fn emergency_writer() -> EmergencySerial {
    EmergencySerial
}

/// Writes to COM1 directly, bypassing `PORT`'s lock.
pub struct EmergencySerial;

impl Write for EmergencySerial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // SAFETY: used only on the way to powering off: the lock's holder
        // never runs again, so a second handle on the port can only
        // interleave bytes. The port was programmed by `init` (or, before
        // it, writes go to an unprogrammed UART and are lost).
        if let Ok(mut uart) = unsafe { Uart16550::new_port(COM1) } {
            write_bytes(&mut uart, s.as_bytes());
        }
        Ok(())
    }
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments) {
    let _ = Serial.write_fmt(args);
}

/// Prints to the serial console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => ($crate::serial::_print(format_args!($($arg)*)));
}

/// Prints a line to the serial console.
#[macro_export]
macro_rules! println {
    () => ($crate::print!("\n"));
    ($($arg:tt)*) => ($crate::serial::_print(format_args!("{}\n", format_args!($($arg)*))));
}
