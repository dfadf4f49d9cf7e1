//! `./run.sh bench`'s system-call figure: the cost of the cheapest call
//! (`gettid`), from user mode and back, in TSC units (instructions under
//! `-icount shift=0`). Median of many batches, minus the loop's own cost
//! measured the same way without the call.
#![no_std]
#![no_main]

use core::hint::black_box;

use rt::{Args, println};

rt::entry!(main);

const BATCHES: usize = 31;
const CALLS_PER_BATCH: u64 = 64;

fn rdtsc() -> u64 {
    // SAFETY: RDTSC is allowed in ring 3 (the kernel leaves CR4.TSD clear)
    // and has no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Median per-iteration cost of `body` over BATCHES batches.
fn median_cost(mut body: impl FnMut()) -> u64 {
    let mut per_call = [0u64; BATCHES];
    for slot in per_call.iter_mut() {
        let start = rdtsc();
        for _ in 0..CALLS_PER_BATCH {
            body();
        }
        *slot = (rdtsc() - start) / CALLS_PER_BATCH;
    }
    per_call.sort_unstable();
    per_call[BATCHES / 2]
}

fn main(_args: Args) -> i64 {
    let with_call = median_cost(|| {
        black_box(rt::gettid());
    });
    let empty = median_cost(|| {
        black_box(0u32);
    });
    println!("syscall_null_cycles={}", with_call.saturating_sub(empty));
    0
}
