//! Command output, and the capture of `key=value` results from it.
//!
//! Tokens never span whitespace and every line ends in whitespace, so
//! scanning token by token as text streams past gives exactly the same
//! result as buffering whole lines and splitting them, but needs only one
//! token's worth of memory and does not care how a command splits its
//! `write!` calls.

use alloc::collections::BTreeMap;
use alloc::string::String;
use core::fmt::{self, Write};

use super::Command;

/// Longest token (in bytes) considered for capture. Longer tokens are
/// printed as usual but never recorded: a runaway line must not grow the
/// kernel heap without bound.
pub const MAX_TOKEN: usize = 128;

/// Most distinct keys remembered; later new keys are dropped (known keys
/// still update). Bounds memory for a console that runs forever.
pub const MAX_KEYS: usize = 1024;

/// The last value printed for each key.
#[derive(Default, Debug)]
pub struct Values {
    map: BTreeMap<String, String>,
}

impl Values {
    /// The last value printed for `key`, if any.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(String::as_str)
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.map.clear();
    }

    /// Number of keys recorded.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True if nothing has been recorded.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// All recorded pairs in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.map.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Records `token` if it is a well-formed `key=value`; any other token
    /// is ordinary text and is ignored.
    pub(crate) fn record(&mut self, token: &str) {
        let Some((key, value)) = token.split_once('=') else {
            return;
        };
        if !is_key(key) || value.is_empty() {
            return;
        }
        if let Some(old) = self.map.get_mut(key) {
            // Reuse the old allocation; values change far more often than
            // keys appear.
            old.clear();
            old.push_str(value);
        } else if self.map.len() < MAX_KEYS {
            self.map.insert(String::from(key), String::from(value));
        }
    }
}

/// Keys are restricted so that prose like `'a=1'` or `(x=2)` in messages is
/// not mistaken for a result.
pub(crate) fn is_key(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The sink handed to a command: forwards to the real sink and records
/// `key=value` tokens on the way.
pub struct Output<'a> {
    sink: &'a mut dyn Write,
    values: &'a mut Values,
    /// The registry, for `help`; empty unless the shell supplied it.
    commands: &'a [Command],
    /// The token seen so far; it ends at the next whitespace.
    token: String,
    /// The current token exceeded [`MAX_TOKEN`] and will not be recorded.
    token_too_long: bool,
    /// Nothing, or a newline, was the last thing written; lets the shell
    /// finish a command's dangling line before printing anything else.
    at_line_start: bool,
}

impl<'a> Output<'a> {
    /// Wraps `sink`, recording into `values`.
    pub fn new(sink: &'a mut dyn Write, values: &'a mut Values) -> Self {
        Output {
            sink,
            values,
            commands: &[],
            token: String::new(),
            token_too_long: false,
            at_line_start: true,
        }
    }

    /// Gives commands (well, `help`) a view of the registry.
    pub(crate) fn with_commands(mut self, commands: &'a [Command]) -> Self {
        self.commands = commands;
        self
    }

    /// Values recorded so far, including any from this command.
    pub fn values(&self) -> &Values {
        self.values
    }

    /// The shell's registry, sorted by name (empty for a bare `Output`).
    /// Returned with the full lifetime so it can be used while writing.
    pub fn commands(&self) -> &'a [Command] {
        self.commands
    }

    /// A writer whose text reaches the sink but is not scanned for values:
    /// for reports *about* values that must not overwrite them.
    pub fn uncaptured(&mut self) -> Uncaptured<'_, 'a> {
        Uncaptured { out: self }
    }

    /// Ends a line the command left unfinished, so the next prompt or error
    /// starts on a line of its own.
    pub(crate) fn finish_line(&mut self) -> fmt::Result {
        if self.at_line_start {
            Ok(())
        } else {
            self.emit("\n", false)
        }
    }

    fn emit(&mut self, text: &str, capture: bool) -> fmt::Result {
        // Text the sink refused was never printed, so it is not recorded.
        self.sink.write_str(text)?;
        if let Some(last) = text.chars().last() {
            self.at_line_start = last == '\n';
        }
        if capture {
            text.chars().for_each(|c| self.scan(c));
        } else if !text.is_empty() {
            // Uncaptured text separates what came before from what follows.
            self.end_token();
        }
        Ok(())
    }

    fn scan(&mut self, c: char) {
        if c.is_whitespace() {
            self.end_token();
        } else if self.token.len() + c.len_utf8() <= MAX_TOKEN {
            self.token.push(c);
        } else {
            self.token_too_long = true;
        }
    }

    fn end_token(&mut self) {
        if !self.token_too_long {
            self.values.record(&self.token);
        }
        self.token.clear();
        self.token_too_long = false;
    }
}

impl Write for Output<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.emit(text, true)
    }
}

/// A command that ends without a newline still finished its last line.
impl Drop for Output<'_> {
    fn drop(&mut self) {
        self.end_token();
    }
}

/// See [`Output::uncaptured`].
pub struct Uncaptured<'o, 'a> {
    out: &'o mut Output<'a>,
}

impl Write for Uncaptured<'_, '_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.out.emit(text, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    /// Writes each piece through a fresh `Output` and returns what reached
    /// the sink.
    fn capture(values: &mut Values, pieces: &[&str]) -> String {
        let mut sink = String::new();
        let mut out = Output::new(&mut sink, values);
        for piece in pieces {
            out.write_str(piece).unwrap();
        }
        drop(out);
        sink
    }

    #[test]
    fn captures_key_value_tokens() {
        let mut values = Values::default();
        capture(&mut values, &["frames_total=32000 frames_free=30000\n"]);
        assert_eq!(values.get("frames_total"), Some("32000"));
        assert_eq!(values.get("frames_free"), Some("30000"));
        assert_eq!(values.len(), 2);
    }

    #[test]
    fn capture_survives_writes_split_mid_token() {
        let mut values = Values::default();
        let mut sink = String::new();
        let mut out = Output::new(&mut sink, &mut values);
        write!(out, "fra").unwrap();
        write!(out, "mes_total={}", 3).unwrap();
        write!(out, "2000 frames").unwrap();
        write!(out, "_free=").unwrap();
        write!(out, "5\nx=").unwrap();
        // Not yet ended: `x=` alone must not be recorded.
        assert_eq!(out.values().get("x"), None);
        writeln!(out, "7").unwrap();
        drop(out);
        assert_eq!(sink, "frames_total=32000 frames_free=5\nx=7\n");
        assert_eq!(values.get("frames_total"), Some("32000"));
        assert_eq!(values.get("frames_free"), Some("5"));
        assert_eq!(values.get("x"), Some("7"));
    }

    #[test]
    fn tabs_and_crlf_separate_tokens() {
        let mut values = Values::default();
        capture(&mut values, &["a=1\tb=2\r\nc=3"]);
        assert_eq!(values.get("a"), Some("1"));
        assert_eq!(values.get("b"), Some("2"));
        assert_eq!(values.get("c"), Some("3"));
    }

    #[test]
    fn last_value_wins() {
        let mut values = Values::default();
        capture(&mut values, &["n=1 n=2\n", "n=3\n"]);
        assert_eq!(values.get("n"), Some("3"));
        capture(&mut values, &["n=4\n"]);
        assert_eq!(values.get("n"), Some("4"));
    }

    #[test]
    fn rejects_bad_keys_and_empty_values() {
        let mut values = Values::default();
        capture(
            &mut values,
            &["=1 a= 'q=1' (r=2) s/t=3 ok.key-1_x=v plain text\n"],
        );
        assert_eq!(values.get("ok.key-1_x"), Some("v"));
        assert_eq!(values.len(), 1, "{values:?}");
    }

    #[test]
    fn value_is_rest_of_token() {
        let mut values = Values::default();
        capture(&mut values, &["a==b c=d=e\n"]);
        assert_eq!(values.get("a"), Some("=b"));
        assert_eq!(values.get("c"), Some("d=e"));
    }

    #[test]
    fn text_is_forwarded_unchanged() {
        let mut values = Values::default();
        let text = "héllo a=1\n\tmore \u{7f} ";
        assert_eq!(capture(&mut values, &[text]), text);
    }

    #[test]
    fn uncaptured_text_is_not_recorded() {
        let mut values = Values::default();
        let mut sink = String::new();
        let mut out = Output::new(&mut sink, &mut values);
        write!(out, "a=1 ").unwrap();
        writeln!(out.uncaptured(), "a=2 b=3").unwrap();
        drop(out);
        assert_eq!(sink, "a=1 a=2 b=3\n");
        assert_eq!(values.get("a"), Some("1"));
        assert_eq!(values.get("b"), None);
    }

    #[test]
    fn uncaptured_text_ends_a_pending_token() {
        let mut values = Values::default();
        let mut sink = String::new();
        let mut out = Output::new(&mut sink, &mut values);
        write!(out, "a=").unwrap();
        write!(out.uncaptured(), "x").unwrap();
        writeln!(out, "1").unwrap();
        drop(out);
        assert_eq!(values.get("a"), None);
    }

    #[test]
    fn unterminated_last_line_is_recorded_on_drop() {
        let mut values = Values::default();
        capture(&mut values, &["k=v"]);
        assert_eq!(values.get("k"), Some("v"));
    }

    #[test]
    fn overlong_token_is_ignored() {
        let mut values = Values::default();
        let long = format!("big={}", "9".repeat(MAX_TOKEN));
        let fits = format!("fit={}", "9".repeat(MAX_TOKEN - 4));
        capture(&mut values, &[&long, " ", &fits, "\nafter=1\n"]);
        assert_eq!(values.get("big"), None);
        assert_eq!(values.get("fit").map(str::len), Some(MAX_TOKEN - 4));
        assert_eq!(values.get("after"), Some("1"));
    }

    #[test]
    fn key_limit_bounds_memory_but_known_keys_update() {
        let mut values = Values::default();
        for i in 0..MAX_KEYS + 10 {
            capture(&mut values, &[&format!("k{i}=1\n")]);
        }
        assert_eq!(values.len(), MAX_KEYS);
        assert_eq!(values.get(&format!("k{}", MAX_KEYS)), None);
        capture(&mut values, &["k0=2\n"]);
        assert_eq!(values.get("k0"), Some("2"));
    }

    #[test]
    fn values_clear_and_iter() {
        let mut values = Values::default();
        capture(&mut values, &["b=2 a=1\n"]);
        let pairs: alloc::vec::Vec<_> = values.iter().collect();
        assert_eq!(pairs, [("a", "1"), ("b", "2")]);
        values.clear();
        assert!(values.is_empty());
        assert_eq!(values.get("a"), None);
    }

    #[test]
    fn failed_sink_write_is_not_recorded() {
        struct Broken;
        impl Write for Broken {
            fn write_str(&mut self, _: &str) -> fmt::Result {
                Err(fmt::Error)
            }
        }
        let mut values = Values::default();
        let mut sink = Broken;
        let mut out = Output::new(&mut sink, &mut values);
        assert!(out.write_str("a=1\n").is_err());
        drop(out);
        assert_eq!(values.get("a"), None);
    }
}
