//! The portable built-in commands (besides `expect`, which has its own
//! module): `help`, `echo`, `let` and `values`.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Write};

use super::output::is_key;
use super::parse::parse_signed;
use super::{CmdError, CmdResult, Command, Output, unknown_command};

pub(crate) const HELP: Command = Command {
    name: "help",
    usage: "[NAME]",
    help: "list commands, or describe one",
    min_args: 0,
    max_args: 1,
    run: run_help,
};

pub(crate) const ECHO: Command = Command {
    name: "echo",
    usage: "ARGS...",
    help: "print the arguments separated by spaces (key=value pairs are recorded)",
    min_args: 0,
    max_args: usize::MAX,
    run: run_echo,
};

pub(crate) const LET: Command = Command {
    name: "let",
    usage: "KEY VALUE [OP VALUE]",
    help: "record KEY=VALUE, or the result of VALUE OP VALUE (OP: + - * /)",
    min_args: 2,
    max_args: 4,
    run: run_let,
};

pub(crate) const VALUES: Command = Command {
    name: "values",
    usage: "[PREFIX]",
    help: "list the recorded key=value pairs (whose key starts with PREFIX)",
    min_args: 0,
    max_args: 1,
    run: run_values,
};

fn run_help(out: &mut Output<'_>, args: &[&str]) -> CmdResult {
    let commands = out.commands();
    match args {
        [] => {
            for cmd in commands {
                describe(out, cmd)?;
            }
        }
        [name] => {
            let cmd = commands
                .iter()
                .find(|cmd| cmd.name == *name)
                .ok_or_else(|| unknown_command(name))?;
            describe(out, cmd)?;
        }
        _ => return Err(CmdError::Usage),
    }
    Ok(())
}

/// One `NAME USAGE - HELP` line. Uncaptured because help texts may show
/// example `key=value` output, which is not a result.
fn describe(out: &mut Output<'_>, cmd: &Command) -> fmt::Result {
    let mut w = out.uncaptured();
    w.write_str(cmd.name)?;
    if !cmd.usage.is_empty() {
        write!(w, " {}", cmd.usage)?;
    }
    writeln!(w, " - {}", cmd.help)
}

/// Captured on purpose: `echo a=1` is how scripts and tests plant values.
fn run_echo(out: &mut Output<'_>, args: &[&str]) -> CmdResult {
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            out.write_str(" ")?;
        }
        out.write_str(arg)?;
    }
    out.write_str("\n")?;
    Ok(())
}

/// Gives a value a name of its own, so a later `$KEY` still finds it after
/// the command that printed it has printed a newer one (`spawn` prints
/// `tid=` each time): `let first $tid`. With an operator it computes, for
/// comparisons `expect` cannot make alone: `let pages $heap_bytes / 4096`.
fn run_let(out: &mut Output<'_>, args: &[&str]) -> CmdResult {
    let (key, value) = match *args {
        [key, value] => (key, String::from(value)),
        [key, a, op, b] => (key, format!("{}", arith(a, op, b)?)),
        _ => return Err(CmdError::Usage),
    };
    if !is_key(key) {
        return Err(CmdError::Failed(format!("'{key}' cannot be a key")));
    }
    // Printed as one token, so the value is recorded exactly as given.
    if value.is_empty() || value.contains(char::is_whitespace) {
        return Err(CmdError::Failed(format!("'{value}' is not a single word")));
    }
    writeln!(out, "{key}={value}")?;
    Ok(())
}

fn arith(a: &str, op: &str, b: &str) -> Result<i128, CmdError> {
    let (a, b) = (parse_signed(a)?, parse_signed(b)?);
    let result = match op {
        "+" => a.checked_add(b),
        "-" => a.checked_sub(b),
        "*" => a.checked_mul(b),
        "/" if b == 0 => return Err(CmdError::Failed(String::from("division by zero"))),
        "/" => a.checked_div(b),
        _ => {
            return Err(CmdError::Failed(format!(
                "unknown operator '{op}' (use + - * /)"
            )));
        }
    };
    result.ok_or_else(|| CmdError::Failed(String::from("overflow")))
}

fn run_values(out: &mut Output<'_>, args: &[&str]) -> CmdResult {
    let prefix = args.first().copied().unwrap_or("");
    // Collected first: the values cannot be borrowed while writing.
    let lines: Vec<String> = out
        .values()
        .iter()
        .filter(|(key, _)| key.starts_with(prefix))
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    let mut w = out.uncaptured();
    for line in &lines {
        writeln!(w, "{line}")?;
    }
    Ok(())
}
