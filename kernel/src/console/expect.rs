//! `expect KEY OP VALUE`: the assertion that makes console scripts tests.
//!
//! Values are compared as numbers whenever both sides are numbers, so
//! `expect base == 0x1000` holds after `base=4096` was printed. Otherwise
//! only equality makes sense: ordering strings would say "9" > "10", which
//! is never what a script means, so it is refused outright.

use alloc::format;
use alloc::string::String;
use core::cmp::Ordering;
use core::fmt::{self, Write};

use super::parse::parse_signed;
use super::{CmdError, CmdResult, Command, Output};

/// The registry entry for `expect`.
pub(crate) const EXPECT: Command = Command {
    name: "expect",
    usage: "KEY OP VALUE",
    help: "check the last value printed for KEY (OP: == != < <= > >=)",
    min_args: 3,
    max_args: 3,
    run: run_expect,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn parse(text: &str) -> Option<Op> {
        Some(match text {
            "==" => Op::Eq,
            "!=" => Op::Ne,
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            _ => return None,
        })
    }

    /// Whether `actual.cmp(wanted) == ordering` satisfies this operator.
    fn accepts(self, ordering: Ordering) -> bool {
        match self {
            Op::Eq => ordering.is_eq(),
            Op::Ne => ordering.is_ne(),
            Op::Lt => ordering.is_lt(),
            Op::Le => ordering.is_le(),
            Op::Gt => ordering.is_gt(),
            Op::Ge => ordering.is_ge(),
        }
    }
}

/// Does `actual OP wanted` hold? Err if it cannot be decided.
fn holds(op: Op, actual: &str, wanted: &str) -> Result<bool, CmdError> {
    match (parse_signed(actual), parse_signed(wanted)) {
        (Ok(a), Ok(w)) => Ok(op.accepts(a.cmp(&w))),
        _ => holds_for_text(op, actual, wanted),
    }
}

fn holds_for_text(op: Op, actual: &str, wanted: &str) -> Result<bool, CmdError> {
    match op {
        Op::Eq => Ok(actual == wanted),
        Op::Ne => Ok(actual != wanted),
        _ => {
            // Blame what the user typed if that is the non-number.
            let culprit = if parse_signed(wanted).is_err() {
                wanted
            } else {
                actual
            };
            Err(CmdError::BadNumber(String::from(culprit)))
        }
    }
}

fn run_expect(out: &mut Output<'_>, args: &[&str]) -> CmdResult {
    let &[key, op_text, wanted] = args else {
        return Err(CmdError::Usage);
    };
    let op = Op::parse(op_text).ok_or_else(|| {
        CmdError::Failed(format!(
            "unknown operator '{op_text}' (use == != < <= > >=)"
        ))
    })?;
    // Copied out so the report below can borrow `out` mutably.
    let Some(actual) = out.values().get(key).map(String::from) else {
        writeln!(
            out.uncaptured(),
            "expect FAILED: no value printed for {key}"
        )?;
        return Err(CmdError::ExpectFailed);
    };
    if holds(op, &actual, wanted)? {
        report_ok(out, args, key, &actual)?;
        Ok(())
    } else {
        writeln!(
            out.uncaptured(),
            "expect FAILED: {key}={actual}, wanted {op_text} {wanted}"
        )?;
        Err(CmdError::ExpectFailed)
    }
}

/// Uncaptured: the report repeats `KEY=actual`, and a report must never
/// count as a fresh value (a failure report's trailing comma would).
fn report_ok(out: &mut Output<'_>, args: &[&str], key: &str, actual: &str) -> fmt::Result {
    let mut w = out.uncaptured();
    write!(w, "expect")?;
    for arg in args {
        write!(w, " {arg}")?;
    }
    writeln!(w, ": ok ({key}={actual})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_on_every_ordering() {
        use Ordering::{Equal, Greater, Less};
        // (op, holds for Less, Equal, Greater)
        let table = [
            ("==", [false, true, false]),
            ("!=", [true, false, true]),
            ("<", [true, false, false]),
            ("<=", [true, true, false]),
            (">", [false, false, true]),
            (">=", [false, true, true]),
        ];
        for (text, want) in table {
            let op = Op::parse(text).unwrap();
            let got = [Less, Equal, Greater].map(|o| op.accepts(o));
            assert_eq!(got, want, "{text}");
        }
    }

    #[test]
    fn unknown_ops_are_not_parsed() {
        for text in ["=", "===", "<>", "=<", "lt", "", " =="] {
            assert_eq!(Op::parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn numbers_compare_numerically() {
        assert_eq!(holds(Op::Lt, "9", "10"), Ok(true));
        assert_eq!(holds(Op::Eq, "0x10", "16"), Ok(true));
        assert_eq!(holds(Op::Eq, "4096", "4K"), Ok(true));
        assert_eq!(holds(Op::Lt, "-1", "0"), Ok(true));
        assert_eq!(holds(Op::Gt, "18446744073709551615", "-1"), Ok(true));
    }

    #[test]
    fn text_only_supports_equality() {
        assert_eq!(holds(Op::Eq, "ok", "ok"), Ok(true));
        assert_eq!(holds(Op::Ne, "ok", "bad"), Ok(true));
        assert_eq!(holds(Op::Eq, "16", "sixteen"), Ok(false));
        assert_eq!(
            holds(Op::Lt, "ok", "5"),
            Err(CmdError::BadNumber(String::from("ok")))
        );
        assert_eq!(
            holds(Op::Ge, "5", "many"),
            Err(CmdError::BadNumber(String::from("many")))
        );
    }
}
