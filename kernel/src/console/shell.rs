//! The command registry and the code that runs lines and scripts.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Write};

use super::builtins::{ECHO, HELP, LET, VALUES};
use super::expect::EXPECT;
use super::parse::tokenize;
use super::{CmdError, CmdResult, Command, Output, Values, unknown_command};

/// A command interpreter: registered commands, the values their output
/// recorded, and how many lines have failed since it was created.
pub struct Shell {
    /// Sorted by name: `help` lists them in order and lookup can bisect.
    commands: Vec<Command>,
    values: Values,
    failures: u64,
}

/// The outcome of [`Shell::run_script`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScriptSummary {
    /// Lines that named a command (blank and comment lines excluded).
    pub commands: u64,
    /// How many of those failed, `expect`s included.
    pub failures: u64,
}

impl ScriptSummary {
    /// True if every command ran and every `expect` held.
    pub fn ok(&self) -> bool {
        self.failures == 0
    }
}

/// `script: commands=N failures=M PASS|FAIL`, for the runner's last line.
impl fmt::Display for ScriptSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.ok() { "PASS" } else { "FAIL" };
        write!(
            f,
            "script: commands={} failures={} {verdict}",
            self.commands, self.failures
        )
    }
}

impl Shell {
    /// A shell with the portable built-ins: `echo`, `expect`, `help`, `let`
    /// and `values`.
    pub fn new() -> Self {
        let mut shell = Shell {
            commands: Vec::new(),
            values: Values::default(),
            failures: 0,
        };
        for cmd in [ECHO, EXPECT, HELP, LET, VALUES] {
            // The built-in names are distinct, so this cannot fail.
            let _ = shell.register(cmd);
        }
        shell
    }

    /// Adds `cmd`. Refused if the name is taken (silently replacing a
    /// command would make scripts mean something else) or could never be
    /// typed, or if its argument range is empty.
    pub fn register(&mut self, cmd: Command) -> CmdResult {
        if !is_typeable(cmd.name) {
            return Err(CmdError::Failed(format!("bad command name '{}'", cmd.name)));
        }
        if cmd.min_args > cmd.max_args {
            return Err(CmdError::Failed(format!(
                "command '{}' has min_args > max_args",
                cmd.name
            )));
        }
        match self.position(cmd.name) {
            Ok(_) => Err(CmdError::Failed(format!(
                "command '{}' already registered",
                cmd.name
            ))),
            Err(at) => {
                self.commands.insert(at, cmd);
                Ok(())
            }
        }
    }

    /// Runs one line of input. Blank and comment lines do nothing. Errors
    /// are printed to `sink` and counted before being returned, so callers
    /// that only care about the total may ignore the result.
    pub fn run_line(&mut self, sink: &mut dyn Write, line: &str) -> CmdResult {
        let words = match tokenize(line) {
            Ok(words) => words,
            Err(err) => return self.fail(sink, None, err),
        };
        let Some((name, rest)) = words.split_first() else {
            return Ok(());
        };
        let Some(cmd) = self.find(name) else {
            return self.fail(sink, None, unknown_command(name));
        };
        let rest = match self.expand(rest) {
            Ok(rest) => rest,
            Err(err) => return self.fail(sink, Some(&cmd), err),
        };
        let args: Vec<&str> = rest.iter().map(String::as_str).collect();
        let result = if (cmd.min_args..=cmd.max_args).contains(&args.len()) {
            self.invoke(sink, &cmd, &args)
        } else {
            Err(CmdError::Usage)
        };
        match result {
            Ok(()) => Ok(()),
            Err(err) => self.fail(sink, Some(&cmd), err),
        }
    }

    /// Replaces each argument `$KEY` by the last value printed for KEY, so
    /// a script can use what an earlier command reported (`spawn` prints
    /// `tid=5`, then `kill $tid`). A key never printed is an error rather
    /// than an empty argument that would change the command's meaning.
    fn expand(&self, words: &[String]) -> Result<Vec<String>, CmdError> {
        words
            .iter()
            .map(|word| match word.strip_prefix('$') {
                Some(key) if !key.is_empty() => {
                    self.values.get(key).map(String::from).ok_or_else(|| {
                        CmdError::Failed(alloc::format!("no value printed for ${key}"))
                    })
                }
                _ => Ok(word.clone()),
            })
            .collect()
    }

    /// Runs every line of `text`, echoing each command as `> LINE` so a log
    /// shows which output belongs to which command. Carries on after
    /// failures: one broken check should not hide the results of the rest.
    pub fn run_script(&mut self, sink: &mut dyn Write, text: &str) -> ScriptSummary {
        let failures_before = self.failures;
        let mut commands = 0u64;
        for line in text.lines() {
            let line = line.trim();
            if is_blank(line) {
                continue;
            }
            commands = commands.saturating_add(1);
            // A sink that cannot be written loses the echo, not the run.
            let _ = writeln!(sink, "> {line}");
            let _ = self.run_line(sink, line);
        }
        ScriptSummary {
            commands,
            failures: self.failures.saturating_sub(failures_before),
        }
    }

    /// Lines that failed since this shell was created.
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// The values recorded from all output so far.
    pub fn values(&self) -> &Values {
        &self.values
    }

    /// The registry, sorted by name.
    pub fn commands(&self) -> &[Command] {
        &self.commands
    }

    fn position(&self, name: &str) -> Result<usize, usize> {
        self.commands.binary_search_by(|cmd| cmd.name.cmp(name))
    }

    fn find(&self, name: &str) -> Option<Command> {
        let at = self.position(name).ok()?;
        self.commands.get(at).copied()
    }

    fn invoke(&mut self, sink: &mut dyn Write, cmd: &Command, args: &[&str]) -> CmdResult {
        let mut out = Output::new(sink, &mut self.values).with_commands(&self.commands);
        let result = (cmd.run)(&mut out, args);
        // Whatever the command did, the shell's next words start a line.
        let finished = out.finish_line();
        result.and(finished.map_err(CmdError::from))
    }

    fn fail(&mut self, sink: &mut dyn Write, cmd: Option<&Command>, err: CmdError) -> CmdResult {
        self.failures = self.failures.saturating_add(1);
        // The error is returned either way; losing its message to a broken
        // sink is the best that can be done.
        let _ = report(sink, cmd, &err);
        Err(err)
    }
}

impl Default for Shell {
    fn default() -> Self {
        Shell::new()
    }
}

/// A name the tokenizer can produce without quotes.
fn is_typeable(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('#')
        && !name.contains(|c: char| c.is_whitespace() || c == '"')
}

/// True for lines with nothing to run. Uses the tokenizer so that scripts
/// and the shell agree on what a comment is; a line that does not tokenize
/// is not blank, so its error gets reported.
fn is_blank(line: &str) -> bool {
    matches!(tokenize(line), Ok(words) if words.is_empty())
}

/// Prints the one-line message for `err`.
fn report(sink: &mut dyn Write, cmd: Option<&Command>, err: &CmdError) -> fmt::Result {
    match (err, cmd) {
        // `expect` has printed a better message than we could.
        (CmdError::ExpectFailed, _) => Ok(()),
        (CmdError::Usage, Some(cmd)) if cmd.usage.is_empty() => {
            writeln!(sink, "usage: {}", cmd.name)
        }
        (CmdError::Usage, Some(cmd)) => writeln!(sink, "usage: {} {}", cmd.name, cmd.usage),
        _ => writeln!(sink, "error: {err}"),
    }
}
