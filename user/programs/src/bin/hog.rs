//! Takes memory until the kernel has none left: maps 16 GiB without a
//! charge (`MAP_NORESERVE`, so the commit heuristic lets it) and writes one
//! byte into every page. The kernel must end it (`oom: killed pid=...
//! rss_pages=...`, SIGKILL), give every frame back and go on;
//! `tests/scripts/oom.fl` checks that. Prints `hog: survived` (exit 0)
//! should it ever get all of it.
#![no_std]
#![no_main]

use rt::abi::mman::{MAP_ANONYMOUS, MAP_NORESERVE, MAP_PRIVATE, PROT_READ, PROT_WRITE};
use rt::abi::{decode, nr};
use rt::{Args, println};

rt::entry!(main);

const LEN: u64 = 16 << 30;
const PAGE: u64 = 4096;

fn main(_: Args) -> i64 {
    let flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
    // SAFETY: an anonymous mapping the kernel places: no Rust object is
    // there, and nothing else of the program uses it.
    let raw =
        unsafe { rt::raw::syscall6(nr::MMAP, 0, LEN, PROT_READ | PROT_WRITE, flags, u64::MAX, 0) };
    let Ok(base) = decode(raw) else {
        println!("hog: mmap refused");
        return 1;
    };
    println!("hog: mapped");
    let mut at = base;
    while at < base + LEN {
        // SAFETY: inside the mapping just made, writable.
        unsafe { core::ptr::write_volatile(at as *mut u8, 1) };
        at += PAGE;
    }
    println!("hog: survived");
    0
}
