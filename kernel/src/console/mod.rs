//! The serial-console command shell.
//!
//! Design
//! ------
//! The console is a small command interpreter that is equally happy being
//! typed at over a serial line and being fed a test script. It is built from
//! four independent pieces so that each can be tested on the host:
//!
//! * [`LineEditor`] turns the raw byte stream from the UART into lines. It
//!   knows about echo, backspace, CR/LF and terminal escape sequences, and
//!   nothing about commands. The boot crate owns the receive loop and hands
//!   each finished line to the shell.
//! * [`tokenize`] and [`parse_u64`] split a line into words and read the
//!   numbers people type (`4096`, `0x1000`, `4K`).
//! * [`Output`] sits between every command and the real sink. It forwards
//!   all text untouched, and on the way past remembers the last value of
//!   every `key=value` token in [`Values`]. Commands therefore never report
//!   results to the shell explicitly: printing `frames_free=30000` *is* the
//!   report, for a human and for `expect` alike.
//! * [`Shell`] is the registry of [`Command`]s plus the failure counter.
//!   Commands are plain `fn` pointers so the boot crate can register
//!   hardware-backed ones without this crate knowing about hardware.
//!
//! `expect KEY OP VALUE` closes the loop: it checks the last recorded value
//! of KEY, so a script is simply "run something, then state what it must
//! have printed". A script passes when every line ran without error.
//!
//! Text written by the shell itself (errors, script echo, help, expect's own
//! report) bypasses the capture, so that it can never overwrite a value a
//! command printed.
//!
//! Output uses bare `\n`; translating to `\r\n` for a terminal is the
//! serial sink's job. The line editor's echo is the exception: it writes
//! `\r\n` itself because it is talking to the terminal directly.

mod builtins;
mod expect;
mod line;
mod output;
mod parse;
mod shell;
#[cfg(test)]
mod tests;

use alloc::format;
use alloc::string::String;
use core::fmt;

pub use line::{LineEditor, MAX_LINE};
pub use output::{MAX_KEYS, MAX_TOKEN, Output, Uncaptured, Values};
pub use parse::{parse_u64, tokenize};
pub use shell::{ScriptSummary, Shell};

/// Printed by the interactive loop before reading each line.
pub const PROMPT: &str = "faultline> ";

/// What every command returns.
pub type CmdResult = Result<(), CmdError>;

/// Why a command (or the line that named it) failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmdError {
    /// Wrong number or shape of arguments; the shell prints
    /// `usage: NAME USAGE`.
    Usage,
    /// An argument that should have been a number was not (the text).
    BadNumber(String),
    /// Anything else; the shell prints `error: MESSAGE`.
    Failed(String),
    /// `expect` did not hold. `expect` has already printed the details, so
    /// the shell prints nothing more.
    ExpectFailed,
}

impl fmt::Display for CmdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CmdError::Usage => f.write_str("wrong number of arguments"),
            CmdError::BadNumber(text) => write!(f, "malformed number '{text}'"),
            CmdError::Failed(message) => f.write_str(message),
            CmdError::ExpectFailed => f.write_str("expectation failed"),
        }
    }
}

/// Lets commands use `?` on `write!`: if the console itself cannot be
/// written, the command has failed.
impl From<fmt::Error> for CmdError {
    fn from(_: fmt::Error) -> Self {
        CmdError::Failed(String::from("console write failed"))
    }
}

/// A command body. `args` excludes the command name and has already been
/// checked against `min_args..=max_args`.
pub type CmdFn = fn(&mut Output<'_>, &[&str]) -> CmdResult;

/// One entry in the shell's registry.
#[derive(Clone, Copy, Debug)]
pub struct Command {
    /// What the user types; no whitespace.
    pub name: &'static str,
    /// Argument synopsis for `help` and usage errors, e.g. `KEY OP VALUE`.
    pub usage: &'static str,
    /// One-line description for `help`.
    pub help: &'static str,
    /// Fewest arguments accepted.
    pub min_args: usize,
    /// Most arguments accepted; `usize::MAX` for any number.
    pub max_args: usize,
    /// The body.
    pub run: CmdFn,
}

/// The error for a name that is not in the registry; shared by the shell
/// and `help NAME` so the wording stays the same.
fn unknown_command(name: &str) -> CmdError {
    CmdError::Failed(format!("unknown command '{name}' (try help)"))
}
