//! Busy work for preemption demos: `spin <id> [iterations]` counts to
//! `iterations` (default 8M) without ever blocking or yielding, printing
//! `spin id=<id> i=<n>` every 1M, then `spin id=<id> done`. Several copies
//! interleave only if the kernel preempts them.
#![no_std]
#![no_main]

use core::hint::black_box;

use rt::{Args, println};

rt::entry!(main);

const PROGRESS_EVERY: u64 = 1 << 20;
const DEFAULT_ITERATIONS: u64 = 8 << 20;

fn main(args: Args) -> i64 {
    let id = args.get(0).unwrap_or("-");
    let iterations = match args.get(1).map(str::parse::<u64>) {
        None => DEFAULT_ITERATIONS,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            println!("spin: usage: spin <id> [iterations]");
            return 2;
        }
    };

    let mut i = 0;
    while i < iterations {
        // black_box keeps the loop from being folded into one addition.
        i = black_box(i) + 1;
        if i % PROGRESS_EVERY == 0 {
            println!("spin id={id} i={i}");
        }
    }
    println!("spin id={id} done");
    0
}
