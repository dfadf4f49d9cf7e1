//! The user programs built from user/ and embedded in the kernel image
//! (boot/build.rs), found by name for `run` and the tests.

include!(concat!(env!("OUT_DIR"), "/programs.rs"));

/// The ELF image of program `name`.
pub fn find(name: &str) -> Option<&'static [u8]> {
    PROGRAMS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, image)| *image)
}

/// Every program's name, for `help`-like listings.
pub fn names() -> impl Iterator<Item = &'static str> {
    PROGRAMS.iter().map(|(n, _)| *n)
}
