//! The program's arguments, as the kernel left them on the initial stack
//! (docs/abi.md, "Program entry"): `argc`, then `argv[0..argc]` and a
//! null, each a NUL-terminated string.

use core::ffi::CStr;
use core::fmt;

/// The arguments a program was started with, without its name.
#[derive(Clone, Copy, Debug)]
pub struct Args {
    argc: usize,
    argv: *const *const u8,
}

// SAFETY: the argument strings and pointers are written once by the
// kernel before the program starts and never changed by rt.
unsafe impl Sync for Args {}
// SAFETY: as above: read-only memory for the life of the program.
unsafe impl Send for Args {}

impl Args {
    /// Wraps the `argc` and `argv` the kernel passed to `_start`.
    ///
    /// # Safety
    ///
    /// `argv` must point at `argc` pointers to NUL-terminated strings that
    /// stay readable and unchanged for the rest of the program.
    pub(crate) unsafe fn from_raw(argc: usize, argv: *const *const u8) -> Args {
        Args { argc, argv }
    }

    /// `argv[i]` as text; a string that is not UTF-8 is cut at the first
    /// bad byte (arguments are advisory).
    fn arg(&self, i: usize) -> Option<&'static str> {
        if i >= self.argc {
            return None;
        }
        // SAFETY: i < argc, and from_raw's contract makes argv[i] a valid
        // NUL-terminated string for the life of the program.
        let bytes = unsafe { CStr::from_ptr((*self.argv.add(i)).cast()) }.to_bytes();
        Some(match core::str::from_utf8(bytes) {
            Ok(s) => s,
            // valid_up_to() marks a prefix that is valid by definition.
            Err(e) => core::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default(),
        })
    }

    /// The name the program was started under (`argv[0]`).
    pub fn program(&self) -> &'static str {
        self.arg(0).unwrap_or("")
    }

    /// How many arguments follow the name.
    pub fn len(&self) -> usize {
        self.argc.saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The arguments after the name.
    pub fn iter(&self) -> impl Iterator<Item = &'static str> + '_ {
        (1..self.argc).filter_map(|i| self.arg(i))
    }

    /// Argument `n` after the name, counting from 0.
    pub fn get(&self, n: usize) -> Option<&'static str> {
        self.arg(n + 1)
    }
}

impl fmt::Display for Args {
    /// The arguments after the name, separated by spaces.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, arg) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(arg)?;
        }
        Ok(())
    }
}
