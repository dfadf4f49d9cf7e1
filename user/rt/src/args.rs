//! The program's argument string.

use core::fmt;
use core::str::SplitAsciiWhitespace;

/// The most the kernel passes: the arguments live in one page at `USER_ARGS`.
const MAX_LEN: usize = 4096;

/// The arguments a program was started with: one string, words separated by
/// spaces, without the program's name.
#[derive(Clone, Copy, Debug)]
pub struct Args {
    raw: &'static str,
}

impl Args {
    /// Wraps the string the kernel passed to `_start`. Invalid UTF-8 is cut
    /// off at the first bad byte rather than rejected: arguments are advisory.
    ///
    /// # Safety
    ///
    /// `len` bytes at `ptr` must stay readable and unchanged for the rest of
    /// the program (or `ptr` is null / `len` is 0).
    pub(crate) unsafe fn from_raw(ptr: *const u8, len: usize) -> Args {
        if ptr.is_null() || len == 0 {
            return Args { raw: "" };
        }
        // SAFETY: the caller promises `len` readable bytes; clamping to one
        // page only shortens that.
        let bytes = unsafe { core::slice::from_raw_parts(ptr, len.min(MAX_LEN)) };
        let raw = match core::str::from_utf8(bytes) {
            Ok(s) => s,
            // valid_up_to() marks a prefix that is valid by definition.
            Err(e) => core::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default(),
        };
        Args { raw }
    }

    /// The whole string, as passed.
    pub fn as_str(&self) -> &'static str {
        self.raw
    }

    /// The words, split at ASCII whitespace.
    pub fn iter(&self) -> SplitAsciiWhitespace<'static> {
        self.raw.split_ascii_whitespace()
    }

    /// Word `n`, counting from 0.
    pub fn get(&self, n: usize) -> Option<&'static str> {
        self.iter().nth(n)
    }
}

impl fmt::Display for Args {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.raw)
    }
}
