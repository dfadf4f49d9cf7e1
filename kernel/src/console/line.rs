//! Line editing for a serial terminal.
//!
//! The UART delivers one byte at a time; the editor keeps the line being
//! typed, echoes what the user should see, and hands back the finished line.
//! It is deliberately minimal (append, erase, discard) because a serial
//! console is mostly fed by scripts and by people typing short commands.
//!
//! Terminals send cursor keys and function keys as escape sequences
//! (`ESC [ A`, `ESC O P`, ...). Editing within the line is not supported,
//! so those are swallowed whole rather than leaving `[A` in the line.

use alloc::string::String;
use core::fmt::Write;

/// Longest line accepted, in bytes. Bytes beyond it are refused with a bell
/// so a stuck key or a pasted blob cannot grow the heap.
pub const MAX_LINE: usize = 256;

const CTRL_C: u8 = 0x03;
const BACKSPACE: u8 = 0x08;
const ESC: u8 = 0x1b;
const DELETE: u8 = 0x7f;

/// Where we are inside an escape sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Escape {
    /// Not in one.
    None,
    /// Just saw ESC.
    Start,
    /// In `ESC [` ... : parameters until a final byte 0x40..=0x7e.
    Csi,
    /// In `ESC O`: exactly one more byte (F1-F4 on many terminals).
    Ss3,
}

/// Assembles lines from a byte stream; see the module comment.
#[derive(Debug)]
pub struct LineEditor {
    line: String,
    escape: Escape,
    /// The previous byte was CR, so an LF now is the second half of CR LF
    /// and must not end a second, empty line.
    after_cr: bool,
}

impl LineEditor {
    /// An editor with an empty line.
    pub const fn new() -> Self {
        LineEditor {
            line: String::new(),
            escape: Escape::None,
            after_cr: false,
        }
    }

    /// The line typed so far (for redrawing it after asynchronous output).
    pub fn line(&self) -> &str {
        &self.line
    }

    /// Takes one byte from the terminal, writing any echo to `echo`.
    /// Returns the finished line when the byte completes one.
    ///
    /// Ctrl-C returns an empty line: the typed text is discarded, and the
    /// caller's usual "run it, then prompt" path prints a fresh prompt.
    /// Echo is best effort; a terminal that cannot be written to must not
    /// stop the console from reading commands.
    pub fn feed(&mut self, byte: u8, echo: &mut dyn Write) -> Option<String> {
        if self.swallow_escape(byte) {
            return None;
        }
        let after_cr = core::mem::replace(&mut self.after_cr, false);
        match byte {
            b'\r' => {
                self.after_cr = true;
                Some(self.finish(echo))
            }
            b'\n' if after_cr => None,
            b'\n' => Some(self.finish(echo)),
            BACKSPACE | DELETE => {
                self.erase(echo);
                None
            }
            CTRL_C => {
                self.line.clear();
                let _ = echo.write_str("^C\r\n");
                Some(String::new())
            }
            ESC => {
                self.escape = Escape::Start;
                None
            }
            0x20..=0x7e => {
                self.append(byte, echo);
                None
            }
            // Other control bytes and non-ASCII have no meaning here.
            _ => None,
        }
    }

    /// Advances the escape-sequence state; true if `byte` was part of a
    /// sequence. A control byte aborts the sequence and is handled normally,
    /// so a garbled sequence cannot swallow the Enter that follows it.
    fn swallow_escape(&mut self, byte: u8) -> bool {
        let printable = (0x20..=0x7e).contains(&byte);
        let (next, swallowed) = match self.escape {
            Escape::None => return false,
            _ if !printable => (Escape::None, false),
            Escape::Start => match byte {
                b'[' => (Escape::Csi, true),
                b'O' => (Escape::Ss3, true),
                // ESC + key (Alt-key on many terminals): drop both.
                _ => (Escape::None, true),
            },
            Escape::Csi if byte >= 0x40 => (Escape::None, true),
            Escape::Csi => (Escape::Csi, true),
            Escape::Ss3 => (Escape::None, true),
        };
        self.escape = next;
        swallowed
    }

    fn finish(&mut self, echo: &mut dyn Write) -> String {
        let _ = echo.write_str("\r\n");
        core::mem::take(&mut self.line)
    }

    fn erase(&mut self, echo: &mut dyn Write) {
        if self.line.pop().is_some() {
            // Back up, blank the character, back up again.
            let _ = echo.write_str("\x08 \x08");
        }
    }

    fn append(&mut self, byte: u8, echo: &mut dyn Write) {
        if self.line.len() < MAX_LINE {
            self.line.push(char::from(byte));
            let _ = echo.write_char(char::from(byte));
        } else {
            let _ = echo.write_str("\x07");
        }
    }
}

impl Default for LineEditor {
    fn default() -> Self {
        LineEditor::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// Feeds `bytes`, returning the completed lines and the echo.
    fn feed_all(editor: &mut LineEditor, bytes: &[u8]) -> (Vec<String>, String) {
        let mut echo = String::new();
        let lines = bytes
            .iter()
            .filter_map(|&b| editor.feed(b, &mut echo))
            .collect();
        (lines, echo)
    }

    fn lines_of(bytes: &[u8]) -> Vec<String> {
        feed_all(&mut LineEditor::new(), bytes).0
    }

    #[test]
    fn printable_bytes_echo_and_complete_on_cr() {
        let mut editor = LineEditor::new();
        let (lines, echo) = feed_all(&mut editor, b"help me\r");
        assert_eq!(lines, ["help me"]);
        assert_eq!(echo, "help me\r\n");
        assert_eq!(editor.line(), "");
    }

    #[test]
    fn lf_alone_completes() {
        assert_eq!(lines_of(b"a\nb\n"), ["a", "b"]);
    }

    #[test]
    fn crlf_gives_one_line() {
        let mut editor = LineEditor::new();
        let (lines, echo) = feed_all(&mut editor, b"a\r\nb\r\n");
        assert_eq!(lines, ["a", "b"]);
        assert_eq!(echo, "a\r\nb\r\n");
    }

    #[test]
    fn repeated_enter_gives_empty_lines() {
        // CR CR and LF LF are two presses of Enter, unlike CR LF.
        assert_eq!(lines_of(b"\r\r"), ["", ""]);
        assert_eq!(lines_of(b"\n\n"), ["", ""]);
        assert_eq!(lines_of(b"\r\n\r\n"), ["", ""]);
        assert_eq!(lines_of(b"\n\r"), ["", ""]);
    }

    #[test]
    fn lf_after_cr_then_text_is_not_swallowed_later() {
        // Only the LF immediately after CR is ignored.
        assert_eq!(lines_of(b"a\rb\n"), ["a", "b"]);
    }

    #[test]
    fn backspace_and_delete_erase_one_char() {
        let mut editor = LineEditor::new();
        let (lines, echo) = feed_all(&mut editor, b"abc\x08d\x7fe\r");
        assert_eq!(lines, ["abe"]);
        assert_eq!(echo, "abc\x08 \x08d\x08 \x08e\r\n");
    }

    #[test]
    fn backspace_on_empty_line_is_silent() {
        let mut editor = LineEditor::new();
        let (lines, echo) = feed_all(&mut editor, b"\x08\x7fa\x08\x08x\r");
        assert_eq!(lines, ["x"]);
        assert_eq!(echo, "a\x08 \x08x\r\n");
    }

    #[test]
    fn ctrl_c_discards_line() {
        let mut editor = LineEditor::new();
        let (lines, echo) = feed_all(&mut editor, b"halt\x03ok\r");
        assert_eq!(lines, ["", "ok"]);
        assert_eq!(echo, "halt^C\r\nok\r\n");
    }

    #[test]
    fn escape_sequences_are_swallowed() {
        // Up arrow, Ctrl-Right with parameters, F1 (SS3), Alt-x.
        let mut editor = LineEditor::new();
        let (lines, echo) = feed_all(&mut editor, b"a\x1b[Ab\x1b[1;5Cc\x1bOPd\x1bxe\r");
        assert_eq!(lines, ["abcde"]);
        assert_eq!(echo, "abcde\r\n");
    }

    #[test]
    fn escape_interrupted_by_control_byte_is_dropped() {
        // Enter in the middle of a sequence still ends the line...
        assert_eq!(lines_of(b"ab\x1b[1;\r"), ["ab"]);
        assert_eq!(lines_of(b"ab\x1b\r"), ["ab"]);
        // ...and the bytes after it are ordinary text again.
        assert_eq!(lines_of(b"\x1b[\rAB\r"), ["", "AB"]);
        // ESC ESC [ A: the second ESC restarts the sequence.
        assert_eq!(lines_of(b"x\x1b\x1b[Ay\r"), ["xy"]);
    }

    #[test]
    fn other_control_bytes_ignored() {
        let mut editor = LineEditor::new();
        let (lines, echo) = feed_all(&mut editor, b"a\x00\t\x07\x15\x80\xffb\r");
        assert_eq!(lines, ["ab"]);
        assert_eq!(echo, "ab\r\n");
    }

    #[test]
    fn overlong_line_is_capped_with_bell() {
        let mut editor = LineEditor::new();
        let mut input = alloc::vec![b'x'; MAX_LINE + 3];
        input.push(b'\r');
        let (lines, echo) = feed_all(&mut editor, &input);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].len(), MAX_LINE);
        assert_eq!(echo.matches('\x07').count(), 3);
        // Erasing makes room again.
        let (lines, _) = feed_all(&mut editor, b"y\x08z\r");
        assert_eq!(lines, ["z"]);
    }

    /// `new` must stay `const` so the boot crate can keep an editor in a
    /// static; this only has to compile.
    #[test]
    fn const_new_is_usable_in_a_static() {
        static EDITOR: LineEditor = LineEditor::new();
        assert_eq!(EDITOR.line(), "");
    }
}
