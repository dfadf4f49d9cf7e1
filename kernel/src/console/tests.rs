//! Host tests for the shell as a whole: built-ins, registry, scripts, and
//! random input. Parsing, capture and line editing are tested next to
//! their code.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Write};

use super::*;
use crate::testutil::Rng;

/// Runs `line` on `shell`, returning the result and everything printed.
fn run(shell: &mut Shell, line: &str) -> (CmdResult, String) {
    let mut sink = String::new();
    let result = shell.run_line(&mut sink, line);
    (result, sink)
}

/// Runs `line` and asserts it succeeded, returning what it printed.
fn ok(shell: &mut Shell, line: &str) -> String {
    let (result, printed) = run(shell, line);
    assert_eq!(result, Ok(()), "{line:?} printed {printed:?}");
    printed
}

/// `double N`: prints `double=2N`, exercising parse_u64 in a command.
fn run_double(out: &mut Output<'_>, args: &[&str]) -> CmdResult {
    let n = parse_u64(args.first().copied().unwrap_or(""))?;
    let doubled = n
        .checked_mul(2)
        .ok_or_else(|| CmdError::Failed(String::from("too big")))?;
    writeln!(out, "double={doubled}")?;
    Ok(())
}

const DOUBLE: Command = Command {
    name: "double",
    usage: "N",
    help: "print double=2N",
    min_args: 1,
    max_args: 1,
    run: run_double,
};

fn run_boom(_: &mut Output<'_>, _: &[&str]) -> CmdResult {
    Err(CmdError::Failed(String::from("boom")))
}

const BOOM: Command = Command {
    name: "boom",
    usage: "",
    help: "always fails",
    min_args: 0,
    max_args: 0,
    run: run_boom,
};

/// Prints a value without a trailing newline.
fn run_partial(out: &mut Output<'_>, _: &[&str]) -> CmdResult {
    write!(out, "partial=1")?;
    Ok(())
}

const PARTIAL: Command = Command {
    name: "partial",
    usage: "",
    help: "prints without newline",
    min_args: 0,
    max_args: 0,
    run: run_partial,
};

fn test_shell() -> Shell {
    let mut shell = Shell::new();
    for cmd in [DOUBLE, BOOM, PARTIAL] {
        shell.register(cmd).unwrap();
    }
    shell
}

// ---- help and echo ----

#[test]
fn help_lists_commands_sorted() {
    let mut shell = test_shell();
    let printed = ok(&mut shell, "help");
    let names: Vec<&str> = printed
        .lines()
        .filter_map(|l| l.split(' ').next())
        .collect();
    assert_eq!(
        names,
        [
            "boom", "double", "echo", "expect", "help", "let", "partial", "values"
        ]
    );
    assert!(printed.contains("expect KEY OP VALUE - check the last value"));
    assert!(printed.contains("double N - print double=2N\n"));
    // Empty usage gives no double space.
    assert!(printed.contains("boom - always fails\n"));
}

#[test]
fn help_output_is_not_captured() {
    let mut shell = test_shell();
    ok(&mut shell, "help");
    // DOUBLE's help text says "double=2N"; that is not a result.
    assert_eq!(shell.values().get("double"), None);
}

#[test]
fn help_for_one_command() {
    let mut shell = test_shell();
    assert_eq!(
        ok(&mut shell, "help double"),
        "double N - print double=2N\n"
    );
    let (result, printed) = run(&mut shell, "help nope");
    assert!(result.is_err());
    assert_eq!(printed, "error: unknown command 'nope' (try help)\n");
}

#[test]
fn echo_joins_args() {
    let mut shell = Shell::new();
    assert_eq!(ok(&mut shell, "echo  a   b\tc"), "a b c\n");
    assert_eq!(ok(&mut shell, "echo"), "\n");
    assert_eq!(ok(&mut shell, "echo \"x  y\" z"), "x  y z\n");
}

#[test]
fn echo_records_values() {
    let mut shell = Shell::new();
    ok(&mut shell, "echo a=1 b=two");
    assert_eq!(shell.values().get("a"), Some("1"));
    assert_eq!(shell.values().get("b"), Some("two"));
    ok(&mut shell, "echo \"c=3 d=4\"");
    assert_eq!(shell.values().get("d"), Some("4"));
}

#[test]
fn values_lists_recorded_pairs() {
    let mut shell = Shell::new();
    ok(&mut shell, "echo mem.free=3 mem.total=9 cpu=1");
    assert_eq!(ok(&mut shell, "values"), "cpu=1\nmem.free=3\nmem.total=9\n");
    assert_eq!(ok(&mut shell, "values mem."), "mem.free=3\nmem.total=9\n");
    assert_eq!(ok(&mut shell, "values zzz"), "");
}

#[test]
fn let_names_a_value_for_later() {
    let mut shell = Shell::new();
    ok(&mut shell, "echo tid=5");
    assert_eq!(ok(&mut shell, "let first $tid"), "first=5\n");
    ok(&mut shell, "echo tid=6");
    assert_eq!(shell.values().get("first"), Some("5"));
    assert_eq!(shell.values().get("tid"), Some("6"));
    ok(&mut shell, "expect first == 5");
}

#[test]
fn let_computes() {
    let mut shell = Shell::new();
    ok(&mut shell, "echo free=100 heap=0x2000");
    assert_eq!(ok(&mut shell, "let pages $heap / 4K"), "pages=2\n");
    assert_eq!(ok(&mut shell, "let sum $free + $pages"), "sum=102\n");
    assert_eq!(ok(&mut shell, "let d 3 - 10"), "d=-7\n");
    assert_eq!(ok(&mut shell, "let p -3 * 4"), "p=-12\n");
    assert_eq!(ok(&mut shell, "let q 7 / 2"), "q=3\n");
    // Beyond u64, as numbers compare in expect.
    assert_eq!(ok(&mut shell, "let m 4G * 4G"), "m=18446744073709551616\n");
}

#[test]
fn let_refuses_what_it_cannot_record() {
    let mut shell = Shell::new();
    for (line, message) in [
        ("let a 1 / 0", "error: division by zero\n"),
        (
            "let a 18446744073709551615 * 18446744073709551615",
            "error: overflow\n",
        ),
        ("let a 1 % 2", "error: unknown operator '%' (use + - * /)\n"),
        ("let a x + 1", "error: malformed number 'x'\n"),
        ("let (a) 1", "error: '(a)' cannot be a key\n"),
        ("let a \"x y\"", "error: 'x y' is not a single word\n"),
        ("let a 1 +", "usage: let KEY VALUE [OP VALUE]\n"),
    ] {
        let (result, printed) = run(&mut shell, line);
        assert!(result.is_err(), "{line}");
        assert_eq!(printed, message, "{line}");
    }
    assert_eq!(shell.values().get("a"), None);
}

// ---- expect ----

/// Plants KEY=actual with echo, then runs `expect KEY OP wanted`.
fn check(actual: &str, op: &str, wanted: &str) -> (CmdResult, String) {
    let mut shell = Shell::new();
    ok(&mut shell, &format!("echo k={actual}"));
    run(&mut shell, &format!("expect k {op} {wanted}"))
}

#[test]
fn expect_every_op_numeric() {
    // (actual, op, wanted, holds)
    let cases = [
        ("5", "==", "5", true),
        ("5", "==", "6", false),
        ("5", "!=", "6", true),
        ("5", "!=", "5", false),
        ("5", "<", "6", true),
        ("5", "<", "5", false),
        ("6", "<", "5", false),
        ("5", "<=", "5", true),
        ("5", "<=", "6", true),
        ("6", "<=", "5", false),
        ("6", ">", "5", true),
        ("5", ">", "5", false),
        ("5", ">", "6", false),
        ("5", ">=", "5", true),
        ("6", ">=", "5", true),
        ("5", ">=", "6", false),
        // Numeric, not lexicographic.
        ("9", "<", "10", true),
        ("100", ">", "20", true),
    ];
    for (actual, op, wanted, holds) in cases {
        let (result, printed) = check(actual, op, wanted);
        if holds {
            assert_eq!(result, Ok(()), "{actual} {op} {wanted}");
            assert_eq!(
                printed,
                format!("expect k {op} {wanted}: ok (k={actual})\n")
            );
        } else {
            assert_eq!(
                result,
                Err(CmdError::ExpectFailed),
                "{actual} {op} {wanted}"
            );
            assert_eq!(
                printed,
                format!("expect FAILED: k={actual}, wanted {op} {wanted}\n")
            );
        }
    }
}

#[test]
fn expect_hex_equals_decimal() {
    assert_eq!(check("0x10", "==", "16").0, Ok(()));
    assert_eq!(check("16", "==", "0x10").0, Ok(()));
    assert_eq!(check("4096", "==", "4K").0, Ok(()));
    assert_eq!(check("0b101", "==", "5").0, Ok(()));
    assert_eq!(check("32_000", "==", "32000").0, Ok(()));
    assert_eq!(check("0x10", "!=", "16").0, Err(CmdError::ExpectFailed));
    assert_eq!(check("0xff", ">", "254").0, Ok(()));
}

#[test]
fn expect_negative_numbers() {
    assert_eq!(check("-5", "<", "0").0, Ok(()));
    assert_eq!(check("-5", "<", "-4").0, Ok(()));
    assert_eq!(check("-5", ">", "-6").0, Ok(()));
    assert_eq!(check("-0x10", "==", "-16").0, Ok(()));
    assert_eq!(check("0", ">", "-1").0, Ok(()));
    assert_eq!(check("-1", ">", "0").0, Err(CmdError::ExpectFailed));
    assert_eq!(check("18446744073709551615", ">", "-1").0, Ok(()));
}

#[test]
fn expect_string_equality() {
    assert_eq!(check("ok", "==", "ok").0, Ok(()));
    assert_eq!(check("ok", "!=", "bad").0, Ok(()));
    assert_eq!(check("ok", "==", "bad").0, Err(CmdError::ExpectFailed));
    assert_eq!(check("ok", "!=", "ok").0, Err(CmdError::ExpectFailed));
    // A number and a non-number are simply different.
    assert_eq!(check("16", "==", "sixteen").0, Err(CmdError::ExpectFailed));
    assert_eq!(check("16", "!=", "sixteen").0, Ok(()));
    // Case matters.
    assert_eq!(check("OK", "==", "ok").0, Err(CmdError::ExpectFailed));
}

#[test]
fn expect_ordering_on_text_is_an_error() {
    let (result, printed) = check("ok", "<", "5");
    assert_eq!(result, Err(CmdError::BadNumber(String::from("ok"))));
    assert_eq!(printed, "error: malformed number 'ok'\n");
    for op in ["<", "<=", ">", ">="] {
        let (result, _) = check("5", op, "many");
        assert_eq!(
            result,
            Err(CmdError::BadNumber(String::from("many"))),
            "{op}"
        );
    }
}

#[test]
fn expect_missing_key_fails() {
    let mut shell = Shell::new();
    for op in ["==", "!=", "<", ">="] {
        let (result, printed) = run(&mut shell, &format!("expect nope {op} 1"));
        assert_eq!(result, Err(CmdError::ExpectFailed));
        assert_eq!(printed, "expect FAILED: no value printed for nope\n");
    }
    assert_eq!(shell.failures(), 4);
}

#[test]
fn expect_unknown_op_is_error() {
    let (result, printed) = check("1", "=", "1");
    assert!(matches!(result, Err(CmdError::Failed(_))), "{result:?}");
    assert_eq!(
        printed,
        "error: unknown operator '=' (use == != < <= > >=)\n"
    );
    // Even with no value recorded, the operator is checked first.
    let mut shell = Shell::new();
    let (_, printed) = run(&mut shell, "expect nope ~ 1");
    assert!(
        printed.starts_with("error: unknown operator '~'"),
        "{printed}"
    );
}

#[test]
fn expect_report_does_not_overwrite_value() {
    let mut shell = Shell::new();
    ok(&mut shell, "echo k=1");
    // The failure report prints "k=1," which must not become the value.
    assert!(run(&mut shell, "expect k == 2").0.is_err());
    ok(&mut shell, "expect k == 1");
    assert_eq!(shell.values().get("k"), Some("1"));
}

#[test]
fn expect_sees_values_from_registered_commands() {
    let mut shell = test_shell();
    ok(&mut shell, "double 0x20");
    ok(&mut shell, "expect double == 64");
    ok(&mut shell, "double 1");
    // Last value wins across commands.
    ok(&mut shell, "expect double == 2");
}

// ---- errors and argument checking ----

#[test]
fn unknown_command_reported() {
    let mut shell = Shell::new();
    let (result, printed) = run(&mut shell, "foo bar");
    assert_eq!(
        result,
        Err(CmdError::Failed(String::from(
            "unknown command 'foo' (try help)"
        )))
    );
    assert_eq!(printed, "error: unknown command 'foo' (try help)\n");
    assert_eq!(shell.failures(), 1);
    // Names are case-sensitive.
    assert!(run(&mut shell, "HELP").0.is_err());
}

#[test]
fn too_few_and_too_many_args() {
    let mut shell = test_shell();
    for line in ["expect", "expect a", "expect a ==", "expect a == 1 2"] {
        let (result, printed) = run(&mut shell, line);
        assert_eq!(result, Err(CmdError::Usage), "{line}");
        assert_eq!(printed, "usage: expect KEY OP VALUE\n", "{line}");
    }
    let (_, printed) = run(&mut shell, "boom extra");
    assert_eq!(printed, "usage: boom\n");
    let (_, printed) = run(&mut shell, "help a b");
    assert_eq!(printed, "usage: help [NAME]\n");
    assert_eq!(shell.failures(), 6);
}

#[test]
fn malformed_number_reported() {
    let mut shell = test_shell();
    for text in ["xyz", "0x", "12q", "-3", "99999999999999999999"] {
        let (result, printed) = run(&mut shell, &format!("double {text}"));
        assert_eq!(result, Err(CmdError::BadNumber(String::from(text))));
        assert_eq!(printed, format!("error: malformed number '{text}'\n"));
    }
    assert_eq!(shell.failures(), 5);
}

#[test]
fn command_failure_reported() {
    let mut shell = test_shell();
    let (result, printed) = run(&mut shell, "boom");
    assert_eq!(result, Err(CmdError::Failed(String::from("boom"))));
    assert_eq!(printed, "error: boom\n");
    let (_, printed) = run(&mut shell, "double 0xffffffffffffffff");
    assert_eq!(printed, "error: too big\n");
}

#[test]
fn unterminated_quote_reported() {
    let mut shell = Shell::new();
    let (result, printed) = run(&mut shell, "echo \"oops");
    assert!(result.is_err());
    assert_eq!(printed, "error: unterminated quote\n");
    assert_eq!(shell.failures(), 1);
}

#[test]
fn blank_and_comment_lines_do_nothing() {
    let mut shell = Shell::new();
    for line in ["", "   ", "# note", "  # note", "\t"] {
        assert_eq!(ok(&mut shell, line), "");
    }
    assert_eq!(shell.failures(), 0);
    // A trailing comment is not an argument.
    assert_eq!(ok(&mut shell, "echo a # b"), "a\n");
}

#[test]
fn missing_newline_is_added() {
    let mut shell = test_shell();
    assert_eq!(ok(&mut shell, "partial"), "partial=1\n");
    assert_eq!(shell.values().get("partial"), Some("1"));
}

#[test]
fn failures_accumulate_and_successes_do_not_count() {
    let mut shell = test_shell();
    ok(&mut shell, "echo x=1");
    let _ = run(&mut shell, "boom");
    ok(&mut shell, "expect x == 1");
    let _ = run(&mut shell, "expect x == 2");
    let _ = run(&mut shell, "nope");
    assert_eq!(shell.failures(), 3);
}

// ---- registration ----

#[test]
fn duplicate_registration_refused() {
    let mut shell = test_shell();
    let again = Command {
        help: "another",
        ..DOUBLE
    };
    assert_eq!(
        shell.register(again),
        Err(CmdError::Failed(String::from(
            "command 'double' already registered"
        )))
    );
    assert!(
        shell
            .register(Command {
                name: "echo",
                ..BOOM
            })
            .is_err()
    );
    // The original is untouched.
    assert_eq!(
        ok(&mut shell, "help double"),
        "double N - print double=2N\n"
    );
    assert_eq!(shell.commands().len(), 8);
}

#[test]
fn register_rejects_untypeable_names_and_bad_ranges() {
    let mut shell = Shell::new();
    for name in ["", "two words", "tab\there", "#hash", "q\"uote"] {
        assert!(
            shell.register(Command { name, ..BOOM }).is_err(),
            "{name:?}"
        );
    }
    let backwards = Command {
        name: "backwards",
        min_args: 2,
        max_args: 1,
        ..BOOM
    };
    assert!(shell.register(backwards).is_err());
    assert_eq!(shell.commands().len(), 5);
}

#[test]
fn registry_stays_sorted() {
    let mut shell = Shell::new();
    for name in ["zz", "aa", "mm", "ee"] {
        shell.register(Command { name, ..BOOM }).unwrap();
    }
    let names: Vec<&str> = shell.commands().iter().map(|c| c.name).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted);
    // Lookup works for each, first and last included.
    for name in ["aa", "zz", "echo"] {
        let (_, printed) = run(&mut shell, name);
        assert!(!printed.contains("unknown command"), "{name}: {printed}");
    }
}

// ---- scripts ----

const SCRIPT: &str = "\
# Boot smoke test.

echo frames_total=32000 frames_free=30000
expect frames_total == 32000   # exact
expect frames_free <= frames_total_is_not_a_number
expect frames_free > 0x7000
   # indented comment
nope
expect frames_free < 100
";

#[test]
fn script_summary_counts() {
    let mut shell = Shell::new();
    let mut sink = String::new();
    let summary = shell.run_script(&mut sink, SCRIPT);
    // echo, 4 x expect, nope.
    assert_eq!(
        summary,
        ScriptSummary {
            commands: 6,
            failures: 3
        }
    );
    assert!(!summary.ok());
    assert_eq!(shell.failures(), 3);
    assert_eq!(format!("{summary}"), "script: commands=6 failures=3 FAIL");
}

#[test]
fn script_echoes_commands_and_skips_comments() {
    let mut shell = Shell::new();
    let mut sink = String::new();
    shell.run_script(&mut sink, SCRIPT);
    let expected = "\
> echo frames_total=32000 frames_free=30000
frames_total=32000 frames_free=30000
> expect frames_total == 32000   # exact
expect frames_total == 32000: ok (frames_total=32000)
> expect frames_free <= frames_total_is_not_a_number
error: malformed number 'frames_total_is_not_a_number'
> expect frames_free > 0x7000
expect frames_free > 0x7000: ok (frames_free=30000)
> nope
error: unknown command 'nope' (try help)
> expect frames_free < 100
expect FAILED: frames_free=30000, wanted < 100
";
    assert_eq!(sink, expected);
}

#[test]
fn script_summary_counts_only_its_own_failures() {
    let mut shell = Shell::new();
    let _ = run(&mut shell, "nope");
    let mut sink = String::new();
    let summary = shell.run_script(&mut sink, "echo a=1\r\nexpect a == 1\r\n\r\n");
    assert_eq!(
        summary,
        ScriptSummary {
            commands: 2,
            failures: 0
        }
    );
    assert!(summary.ok());
    assert_eq!(format!("{summary}"), "script: commands=2 failures=0 PASS");
    assert_eq!(shell.failures(), 1);
}

#[test]
fn empty_script_is_ok() {
    let mut shell = Shell::new();
    let mut sink = String::new();
    let summary = shell.run_script(&mut sink, "\n# only comments\n\n");
    assert_eq!(summary.commands, 0);
    assert!(summary.ok());
    assert_eq!(sink, "");
}

#[test]
fn script_values_persist_into_later_lines() {
    let mut shell = Shell::new();
    let mut sink = String::new();
    let summary = shell.run_script(&mut sink, "echo n=1\necho n=2\nexpect n == 2\n");
    assert!(summary.ok(), "{sink}");
}

// ---- a sink that refuses everything ----

struct BrokenSink;

impl Write for BrokenSink {
    fn write_str(&mut self, _: &str) -> fmt::Result {
        Err(fmt::Error)
    }
}

#[test]
fn broken_sink_fails_commands_without_panicking() {
    let mut shell = Shell::new();
    let result = shell.run_line(&mut BrokenSink, "echo hi");
    assert_eq!(
        result,
        Err(CmdError::Failed(String::from("console write failed")))
    );
    let summary = shell.run_script(&mut BrokenSink, "help\nnope\n");
    assert_eq!(summary.failures, 2);
}

// ---- random input ----

/// Fragments biased towards what the parser and expect care about.
const PIECES: &[&str] = &[
    "echo",
    "expect",
    "help",
    "values",
    "double",
    "boom",
    "partial",
    " ",
    " ",
    "\t",
    "\"",
    "\\",
    "#",
    "=",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "a",
    "k",
    "k=",
    "=1",
    "0x",
    "0b",
    "_",
    "-",
    "1",
    "9",
    "ff",
    "K",
    "G",
    "18446744073709551616",
    "é",
    "\u{a0}",
    "\r",
    "\0",
    "\x1b[A",
];

fn random_line(rng: &mut Rng) -> String {
    let mut line = String::new();
    for _ in 0..rng.index(12) {
        if rng.index(8) == 0 {
            // An arbitrary char, surrogates excluded by from_u32.
            let c = char::from_u32(rng.next() as u32 % 0x11_0000).unwrap_or('?');
            line.push(c);
        } else {
            line.push_str(PIECES[rng.index(PIECES.len())]);
        }
    }
    line
}

#[test]
fn fuzz_run_line_never_panics() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut shell = test_shell();
    let mut lines_run = 0u64;
    for _ in 0..20_000 {
        let line = random_line(&mut rng);
        let mut sink = String::new();
        let before = shell.failures();
        let result = shell.run_line(&mut sink, &line);
        lines_run += 1;
        // The failure count moves exactly when an error is returned, and
        // every error except a failed expect says something.
        match &result {
            Ok(()) => assert_eq!(shell.failures(), before, "{line:?}"),
            Err(err) => {
                assert_eq!(shell.failures(), before + 1, "{line:?}");
                if *err != CmdError::ExpectFailed {
                    assert!(
                        sink.starts_with("error: ") || sink.contains("usage: "),
                        "{line:?} -> {sink:?}"
                    );
                }
            }
        }
        assert!(
            sink.is_empty() || sink.ends_with('\n'),
            "{line:?} -> {sink:?}"
        );
    }
    assert_eq!(lines_run, 20_000);
    assert!(shell.values().len() <= MAX_KEYS);
}

#[test]
fn fuzz_scripts_never_panic() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut shell = test_shell();
    for _ in 0..500 {
        let script: Vec<String> = (0..rng.index(20)).map(|_| random_line(&mut rng)).collect();
        let text = script.join("\n");
        let mut sink = String::new();
        let before = shell.failures();
        let summary = shell.run_script(&mut sink, &text);
        assert_eq!(shell.failures() - before, summary.failures);
        assert!(summary.failures <= summary.commands);
        assert!(summary.commands <= script.len() as u64);
    }
}

#[test]
fn fuzz_line_editor_never_panics() {
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    let mut editor = LineEditor::new();
    let mut shell = test_shell();
    let mut lines = 0;
    for i in 0..200_000 {
        // Mostly printable, with a good share of control bytes so that
        // escapes, erases and line ends all happen often.
        let byte = match rng.index(10) {
            0 => b"\r\n\x08\x7f\x03\x1b["[rng.index(7)],
            1 => rng.next() as u8,
            _ => b' ' + rng.index(95) as u8,
        };
        let mut echo = String::new();
        if let Some(line) = editor.feed(byte, &mut echo) {
            lines += 1;
            assert!(line.len() <= MAX_LINE);
            assert!(line.bytes().all(|b| (0x20..=0x7e).contains(&b)), "{line:?}");
            // Every tenth line goes to the shell, as the console would.
            if i % 10 == 0 {
                let _ = shell.run_line(&mut String::new(), &line);
            }
        }
        assert!(editor.line().len() <= MAX_LINE);
    }
    assert!(lines > 1000, "only {lines} lines completed");
}

#[test]
fn dollar_arguments_expand_to_recorded_values() {
    let mut shell = Shell::new();
    let mut out = String::new();
    shell.run_line(&mut out, "echo tid=7").expect("echo");
    out.clear();
    shell.run_line(&mut out, "echo $tid").expect("expanded");
    assert_eq!(out, "7\n");
    // Only whole words expand.
    out.clear();
    shell
        .run_line(&mut out, "echo got=$tid")
        .expect("not expanded");
    assert_eq!(out, "got=$tid\n");
    shell.run_line(&mut out, "echo other=7").expect("echo");
    shell
        .run_line(&mut out, "expect other == $tid")
        .expect("expect with $");
    // A lone '$' is an ordinary argument.
    out.clear();
    shell.run_line(&mut out, "echo $").expect("lone dollar");
    assert_eq!(out, "$\n");
}

#[test]
fn dollar_argument_without_value_fails() {
    let mut shell = Shell::new();
    let mut out = String::new();
    let before = shell.failures();
    assert!(shell.run_line(&mut out, "echo $never").is_err());
    assert_eq!(shell.failures(), before + 1);
    assert!(out.contains("no value printed for $never"), "{out}");
}
