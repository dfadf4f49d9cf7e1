//! Splitting command lines into words, and reading typed numbers.

use alloc::string::String;
use alloc::vec::Vec;
use core::iter::Peekable;
use core::str::Chars;

use super::CmdError;

/// Splits `line` into words.
///
/// Words are separated by whitespace. A double-quoted part keeps its
/// spaces and may be glued to unquoted text (`a"b c"` is the one word
/// `ab c`); `""` is an empty word. Inside quotes `\"` and `\\` stand for
/// `"` and `\`; every other character, backslash included, is literal so
/// that ordinary text needs no escaping. An unquoted `#` at the start of a
/// word begins a comment that runs to the end of the line, which lets
/// scripts annotate an `expect`. A line with no words is blank.
pub fn tokenize(line: &str) -> Result<Vec<String>, CmdError> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        match chars.peek() {
            None | Some('#') => return Ok(words),
            Some(_) => words.push(read_word(&mut chars)?),
        }
    }
}

/// Reads one word, stopping before the whitespace that ends it.
fn read_word(chars: &mut Peekable<Chars<'_>>) -> Result<String, CmdError> {
    let mut word = String::new();
    while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
        if c == '"' {
            read_quoted(chars, &mut word)?;
        } else {
            word.push(c);
        }
    }
    Ok(word)
}

/// Appends the rest of a quoted part (the opening quote already consumed).
fn read_quoted(chars: &mut Peekable<Chars<'_>>, word: &mut String) -> Result<(), CmdError> {
    while let Some(c) = chars.next() {
        match c {
            '"' => return Ok(()),
            '\\' => match chars.next_if(|&n| n == '"' || n == '\\') {
                Some(escaped) => word.push(escaped),
                None => word.push('\\'),
            },
            _ => word.push(c),
        }
    }
    Err(CmdError::Failed(String::from("unterminated quote")))
}

/// Parses an unsigned number as a person types it.
///
/// Accepts decimal (`4096`), hex (`0x1000`), binary (`0b1010`), `_`
/// between digits (`1_000_000`), and a K/M/G suffix meaning ×2^10/2^20/2^30
/// (`4K`, `0x10M`). The text must start with a digit, so `_1`, `-1`, `+1`
/// and ` 1` are rejected rather than guessed at. Overflow and junk give
/// [`CmdError::BadNumber`] holding the whole text.
pub fn parse_u64(text: &str) -> Result<u64, CmdError> {
    let bad = || CmdError::BadNumber(String::from(text));
    if !text.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(bad());
    }
    let (body, multiplier) = split_suffix(text);
    let (radix, digits) = split_radix(body);
    let value = parse_digits(digits, radix).ok_or_else(bad)?;
    value.checked_mul(multiplier).ok_or_else(bad)
}

/// Parses a number that may be negative, for comparisons. `i128` holds
/// every `u64` and its negation, so mixed signs compare without overflow.
pub(crate) fn parse_signed(text: &str) -> Result<i128, CmdError> {
    match text.strip_prefix('-') {
        Some(magnitude) => parse_u64(magnitude)
            .map(|m| -i128::from(m))
            .map_err(|_| CmdError::BadNumber(String::from(text))),
        None => parse_u64(text).map(i128::from),
    }
}

/// Strips a size suffix. K, M and G are not hex digits, so there is no
/// ambiguity with `0x...`.
fn split_suffix(text: &str) -> (&str, u64) {
    let mut chars = text.chars();
    let shift = match chars.next_back() {
        Some('K' | 'k') => 10,
        Some('M' | 'm') => 20,
        Some('G' | 'g') => 30,
        _ => return (text, 1),
    };
    (chars.as_str(), 1 << shift)
}

fn split_radix(text: &str) -> (u32, &str) {
    for (prefixes, radix) in [(["0x", "0X"], 16), (["0b", "0B"], 2)] {
        for prefix in prefixes {
            if let Some(rest) = text.strip_prefix(prefix) {
                return (radix, rest);
            }
        }
    }
    (10, text)
}

/// Accumulates digits in `radix`, skipping `_`; None on overflow, a bad
/// digit, or no digits at all.
fn parse_digits(digits: &str, radix: u32) -> Option<u64> {
    let mut value: u64 = 0;
    let mut seen_digit = false;
    for c in digits.chars().filter(|&c| c != '_') {
        let digit = c.to_digit(radix)?;
        value = value
            .checked_mul(u64::from(radix))?
            .checked_add(u64::from(digit))?;
        seen_digit = true;
    }
    seen_digit.then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        tokenize(line).unwrap()
    }

    #[test]
    fn tokenize_splits_on_any_whitespace() {
        assert_eq!(words("  echo\ta   b\r\n c "), ["echo", "a", "b", "c"]);
        assert_eq!(words("one"), ["one"]);
    }

    #[test]
    fn tokenize_blank_and_comment_lines_are_empty() {
        for line in ["", "   ", "\t\r\n", "#", "# comment", "   # indented"] {
            assert!(words(line).is_empty(), "{line:?}");
        }
    }

    #[test]
    fn tokenize_hash_starts_comment_only_at_word_start() {
        assert_eq!(words("expect a == 1 # why"), ["expect", "a", "==", "1"]);
        assert_eq!(words("echo a#b #c"), ["echo", "a#b"]);
        assert_eq!(words("echo \"#not comment\""), ["echo", "#not comment"]);
    }

    #[test]
    fn tokenize_quotes_group_words() {
        assert_eq!(words("echo \"a b  c\" d"), ["echo", "a b  c", "d"]);
    }

    #[test]
    fn tokenize_quote_glues_to_adjacent_text() {
        assert_eq!(words("x\"y z\"w v"), ["xy zw", "v"]);
        assert_eq!(words("\"a\"\"b\""), ["ab"]);
    }

    #[test]
    fn tokenize_empty_quotes_make_empty_word() {
        assert_eq!(words("echo \"\" x"), ["echo", "", "x"]);
        assert_eq!(words("\"\""), [""]);
    }

    #[test]
    fn tokenize_escapes_inside_quotes() {
        assert_eq!(words(r#""say \"hi\"""#), [r#"say "hi""#]);
        assert_eq!(words(r#""back\\slash""#), [r"back\slash"]);
        // Only \" and \\ are escapes; other backslashes stay.
        assert_eq!(words(r#""c:\dir""#), [r"c:\dir"]);
        assert_eq!(words(r"a\b"), [r"a\b"]);
    }

    #[test]
    fn tokenize_unterminated_quote_is_error() {
        for line in ["echo \"abc", "\"", "x \"a\\\""] {
            assert_eq!(
                tokenize(line),
                Err(CmdError::Failed(String::from("unterminated quote"))),
                "{line:?}"
            );
        }
    }

    #[test]
    fn tokenize_keeps_unicode() {
        assert_eq!(words("echo é ü=1"), ["echo", "é", "ü=1"]);
        // A non-breaking space is whitespace too.
        assert_eq!(words("a\u{a0}b"), ["a", "b"]);
    }

    #[test]
    fn parse_decimal_hex_binary() {
        assert_eq!(parse_u64("0"), Ok(0));
        assert_eq!(parse_u64("4096"), Ok(4096));
        assert_eq!(parse_u64("007"), Ok(7));
        assert_eq!(parse_u64("0x10"), Ok(16));
        assert_eq!(parse_u64("0XfF"), Ok(255));
        assert_eq!(parse_u64("0b1010"), Ok(10));
        assert_eq!(parse_u64("0B1"), Ok(1));
    }

    #[test]
    fn parse_underscores() {
        assert_eq!(parse_u64("1_000_000"), Ok(1_000_000));
        assert_eq!(parse_u64("0xffff_ffff"), Ok(0xffff_ffff));
        assert_eq!(parse_u64("0x_10"), Ok(16));
        assert_eq!(parse_u64("0b1_0"), Ok(2));
    }

    #[test]
    fn parse_suffixes() {
        assert_eq!(parse_u64("4K"), Ok(4096));
        assert_eq!(parse_u64("4k"), Ok(4096));
        assert_eq!(parse_u64("2M"), Ok(2 << 20));
        assert_eq!(parse_u64("1g"), Ok(1 << 30));
        assert_eq!(parse_u64("0x10M"), Ok(16 << 20));
        assert_eq!(parse_u64("0K"), Ok(0));
    }

    #[test]
    fn parse_max_and_overflow() {
        assert_eq!(parse_u64("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(parse_u64("0xffffffffffffffff"), Ok(u64::MAX));
        let long = "1".repeat(64);
        assert_eq!(parse_u64(&long), Err(bad(&long)));
        for text in [
            "18446744073709551616",
            "0x1_0000_0000_0000_0000",
            "0b1_0000000000000000000000000000000000000000000000000000000000000000",
            "17179869184G",
            "0xffffffffffffffffK",
        ] {
            assert_eq!(parse_u64(text), Err(bad(text)));
        }
        // Just fits: 2^34 G = 2^64 overflows, 2^34 - 1 G does not.
        assert_eq!(parse_u64("17179869183G"), Ok(17179869183 << 30));
    }

    fn bad(text: &str) -> CmdError {
        CmdError::BadNumber(String::from(text))
    }

    #[test]
    fn parse_rejects_junk() {
        for text in [
            "", " 1", "1 ", "-1", "+1", "_1", "x", "0x", "0b", "0x_", "K", "1KK", "1.5", "12a",
            "0b2", "0xg", "1e3", "٣", "1K ", "0o7",
        ] {
            assert_eq!(parse_u64(text), Err(bad(text)), "{text:?}");
        }
    }

    #[test]
    fn parse_signed_handles_negative() {
        assert_eq!(parse_signed("-5"), Ok(-5));
        assert_eq!(parse_signed("-0x10"), Ok(-16));
        assert_eq!(parse_signed("-0"), Ok(0));
        assert_eq!(parse_signed("7"), Ok(7));
        assert_eq!(
            parse_signed("-18446744073709551615"),
            Ok(-i128::from(u64::MAX))
        );
        assert_eq!(parse_signed("--5"), Err(bad("--5")));
        assert_eq!(parse_signed("-"), Err(bad("-")));
    }
}
