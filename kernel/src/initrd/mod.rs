//! What boot module 0 holds.
//!
//! QEMU's PVH loader passes exactly one module (the `-initrd` file), so the
//! console script and any user programs from outside the image travel in
//! one cpio "newc" archive ([`cpio`]):
//!
//! * `script.fl`: the console script (optional; without it the console is
//!   interactive),
//! * `bin/NAME`: a program that `run NAME` and `spawn NAME` start,
//! * directories (`bin`, `.`) are skipped; a leading `./` on a name is
//!   dropped, as `find . | cpio -o -H newc` writes one.
//!
//! A module that does not start with a cpio magic number is a plain text
//! script, as before archives existed.
//!
//! What is refused, and how:
//!
//! * a malformed archive, or a `script.fl` that is not UTF-8, or two
//!   entries with one name (which one was meant?): the whole module, with
//!   [`ModuleError`];
//! * a program whose name is a built-in's, a name that could not be typed
//!   at the console, an entry under `bin/` that is not a regular file, any
//!   other file: that entry only, listed in [`BootModule::skipped`]; a
//!   built-in program is never shadowed, so `run hello` means the same
//!   whatever the archive holds;
//! * a program's *contents* are not judged here: a module that is not ELF
//!   (or is empty, truncated, dynamic, for another machine) is listed like
//!   any other and refused by the loader when it is run, with the loader's
//!   reason.

pub mod cpio;
#[cfg(test)]
mod tests;

use alloc::vec::Vec;
use core::fmt;

use cpio::{Archive, CpioError};

/// The archive entry that holds the console script.
pub const SCRIPT_NAME: &str = "script.fl";
/// Where programs live in the archive.
pub const PROGRAM_DIR: &str = "bin/";
/// Longest program name, in bytes.
pub const MAX_PROGRAM_NAME: usize = 32;

/// A user program from the boot module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleProgram<'a> {
    pub name: &'a str,
    pub image: &'a [u8],
}

/// An archive entry that is not used, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped<'a> {
    /// `bin/NAME` where NAME is a built-in program's.
    BuiltinName(&'a str),
    /// `bin/NAME` where NAME cannot be typed as one console word.
    BadName { path: &'a str, why: &'static str },
    /// Neither a regular file nor a directory (a link, a device, ...).
    NotRegular(&'a str),
    /// A file that is neither `script.fl` nor under `bin/`.
    Unknown(&'a str),
}

impl fmt::Display for Skipped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skipped::BuiltinName(name) => write!(
                f,
                "bin/{name}: refused, '{name}' is the name of a built-in program (rename the file)"
            ),
            Skipped::BadName { path, why } => write!(f, "{path}: refused, {why}"),
            Skipped::NotRegular(path) => write!(f, "{path}: refused, not a regular file"),
            Skipped::Unknown(path) => write!(
                f,
                "{path}: ignored, neither {SCRIPT_NAME} nor a program under {PROGRAM_DIR}"
            ),
        }
    }
}

/// Why boot module 0 cannot be used at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleError<'a> {
    /// A plain module that is not UTF-8 text.
    NotText { valid_up_to: usize },
    /// A malformed cpio archive.
    Archive(CpioError<'a>),
    /// The archive's `script.fl` is not UTF-8 text.
    ScriptNotText { valid_up_to: usize },
    /// Two entries have the same name (after dropping `./`).
    Duplicate(&'a str),
}

impl fmt::Display for ModuleError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModuleError::NotText { valid_up_to } => write!(
                f,
                "boot module 0 is not a text script (invalid UTF-8 at byte {valid_up_to}) nor a cpio archive"
            ),
            ModuleError::Archive(e) => {
                write!(f, "boot module 0 is a malformed cpio archive, refused: {e}")
            }
            ModuleError::ScriptNotText { valid_up_to } => write!(
                f,
                "boot archive: {SCRIPT_NAME} is not a text script (invalid UTF-8 at byte {valid_up_to})"
            ),
            ModuleError::Duplicate(name) => write!(
                f,
                "boot archive: two entries are named '{name}', refused (names must be unique)"
            ),
        }
    }
}

impl<'a> From<CpioError<'a>> for ModuleError<'a> {
    fn from(e: CpioError<'a>) -> Self {
        ModuleError::Archive(e)
    }
}

/// Boot module 0, understood.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BootModule<'a> {
    /// Whether it was an archive (rather than a plain script).
    pub archive: bool,
    /// The console script, if there is one.
    pub script: Option<&'a str>,
    /// The programs, in archive order, names unique and none a built-in's.
    pub programs: Vec<ModuleProgram<'a>>,
    /// Entries left out, each with its reason, for the boot log.
    pub skipped: Vec<Skipped<'a>>,
}

/// Reads boot module 0. `is_builtin` says whether a name is taken by a
/// program built into the kernel.
pub fn read<'a>(
    bytes: &'a [u8],
    is_builtin: &dyn Fn(&str) -> bool,
) -> Result<BootModule<'a>, ModuleError<'a>> {
    if !bytes.starts_with(cpio::MAGIC_FAMILY) {
        let text = core::str::from_utf8(bytes).map_err(|e| ModuleError::NotText {
            valid_up_to: e.valid_up_to(),
        })?;
        return Ok(BootModule {
            script: Some(text),
            ..BootModule::default()
        });
    }
    let archive = Archive::parse(bytes)?;
    check_unique(&archive)?;
    let mut module = BootModule {
        archive: true,
        ..BootModule::default()
    };
    for entry in archive.entries() {
        let path = normalise(entry.name);
        if path.is_empty() || entry.is_dir() {
            continue;
        }
        if path == SCRIPT_NAME && entry.is_regular() {
            let text =
                core::str::from_utf8(entry.data).map_err(|e| ModuleError::ScriptNotText {
                    valid_up_to: e.valid_up_to(),
                })?;
            module.script = Some(text);
            continue;
        }
        let skip = if !entry.is_regular() {
            Some(Skipped::NotRegular(path))
        } else if let Some(name) = path.strip_prefix(PROGRAM_DIR) {
            match check_program_name(name) {
                Err(why) => Some(Skipped::BadName { path, why }),
                Ok(()) if is_builtin(name) => Some(Skipped::BuiltinName(name)),
                Ok(()) => {
                    module.programs.push(ModuleProgram {
                        name,
                        image: entry.data,
                    });
                    None
                }
            }
        } else {
            Some(Skipped::Unknown(path))
        };
        module.skipped.extend(skip);
    }
    Ok(module)
}

/// The name without leading `./` (and without a lone `.`).
fn normalise(name: &str) -> &str {
    let mut name = name;
    while let Some(rest) = name.strip_prefix("./") {
        name = rest;
    }
    if name == "." { "" } else { name }
}

/// Refuses an archive in which two entries share a name. Quadratic, but
/// over at most `cpio::MAX_ENTRIES` entries and without a heap.
fn check_unique<'a>(archive: &Archive<'a>) -> Result<(), ModuleError<'a>> {
    for (i, a) in archive.entries().enumerate() {
        let name = normalise(a.name);
        if name.is_empty() {
            continue;
        }
        if archive
            .entries()
            .skip(i + 1)
            .any(|b| normalise(b.name) == name)
        {
            return Err(ModuleError::Duplicate(name));
        }
    }
    Ok(())
}

/// A program name must be one console word that the shell takes as it is:
/// no `/` (programs are not in directories), no `$` at the start (that
/// means a recorded value), nothing outside printable ASCII.
pub fn check_program_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("the program name after bin/ is empty");
    }
    if name.len() > MAX_PROGRAM_NAME {
        return Err("a program name has at most 32 bytes");
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+');
    if !name.chars().all(allowed) {
        return Err("a program name is made of A-Z a-z 0-9 . _ - + only");
    }
    Ok(())
}
