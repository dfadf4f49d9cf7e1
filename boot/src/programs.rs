//! The user programs `run` and `spawn` can start: those built from user/
//! and embedded in the kernel image (boot/build.rs), and those that came in
//! the boot archive (`bin/NAME`, see `kernel::initrd`), found by name.
//!
//! A module program never has a built-in's name (`kernel::initrd::read`
//! refuses it), so a name means one program whatever the archive holds.

use alloc::vec::Vec;
use kernel::initrd::ModuleProgram;
use spin::Once;

include!(concat!(env!("OUT_DIR"), "/programs.rs"));

/// Where a program came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Builtin,
    Module,
}

impl Origin {
    pub fn name(self) -> &'static str {
        match self {
            Origin::Builtin => "builtin",
            Origin::Module => "module",
        }
    }
}

/// One program `run` can start.
#[derive(Debug, Clone, Copy)]
pub struct Program {
    pub name: &'static str,
    pub image: &'static [u8],
    pub origin: Origin,
}

/// Set once at boot, before the console runs, and never changed: the
/// images live in the boot module, which stays reserved for good.
static MODULE_PROGRAMS: Once<Vec<ModuleProgram<'static>>> = Once::new();

/// Makes the boot archive's programs available. Only the first call has
/// an effect, so a name found once keeps meaning the same image; returns
/// whether this call was that one.
pub fn install_modules(programs: Vec<ModuleProgram<'static>>) -> bool {
    let mut installed = false;
    MODULE_PROGRAMS.call_once(|| {
        installed = true;
        programs
    });
    installed
}

fn modules() -> &'static [ModuleProgram<'static>] {
    MODULE_PROGRAMS.get().map_or(&[], Vec::as_slice)
}

/// Whether `name` is a program built into the kernel.
pub fn is_builtin(name: &str) -> bool {
    PROGRAMS.iter().any(|(n, _)| *n == name)
}

/// Every program: the built-in ones, then the boot archive's.
pub fn all() -> impl Iterator<Item = Program> {
    let builtin = PROGRAMS.iter().map(|&(name, image)| Program {
        name,
        image,
        origin: Origin::Builtin,
    });
    let module = modules().iter().map(|p| Program {
        name: p.name,
        image: p.image,
        origin: Origin::Module,
    });
    builtin.chain(module)
}

/// The program called `name`.
pub fn lookup(name: &str) -> Option<Program> {
    all().find(|p| p.name == name)
}

/// The ELF image of program `name`.
pub fn find(name: &str) -> Option<&'static [u8]> {
    lookup(name).map(|p| p.image)
}

/// Every program's name, for `help`-like listings.
pub fn names() -> impl Iterator<Item = &'static str> {
    all().map(|p| p.name)
}
