//! Leaving QEMU with a status through the `isa-debug-exit` device.
//!
//! QEMU is started with `-device isa-debug-exit,iobase=0xf4,iosize=0x04`;
//! writing `v` to the port ends QEMU with status `(v << 1) | 1`. Success is
//! therefore 33 and failure 35: never 0, which is what a triple fault under
//! `-no-reboot` produces, and never 1, which is QEMU's own error status.

use x86_64::instructions::port::Port;

const DEBUG_EXIT_PORT: u16 = 0xf4;

/// The statuses run.sh understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ExitCode {
    /// QEMU exits with 33.
    Success = 0x10,
    /// QEMU exits with 35.
    Failure = 0x11,
}

/// Ends the virtual machine. Without the debug-exit device (a run by hand
/// with other flags) the CPU halts instead.
pub fn exit_qemu(code: ExitCode) -> ! {
    let mut port = Port::<u32>::new(DEBUG_EXIT_PORT);
    // SAFETY: port 0xf4 is the debug-exit device or nothing at all; writing
    // it cannot corrupt memory.
    unsafe { port.write(code as u32) };
    crate::cpu::halt_forever()
}
