//! Threads that make threads: each thread keeps creating more while the
//! main thread yields a few times and exits. The end of the program must
//! be a single point after which none of them exists, however many were
//! being created at that moment. `spawner N` yields N times before exiting.
#![no_std]
#![no_main]

use rt::{Args, println};

rt::entry!(main);

static POOL: rt::StackPool<96, 2048> = rt::StackPool::new();

/// Spawns as long as stacks last, then spins yielding: killed only by the
/// program's end.
fn multiply(_: u64) -> i64 {
    loop {
        if let Some(stack) = POOL.take() {
            let _ = rt::spawn(multiply, 0, stack);
        }
        rt::yield_now();
    }
}

fn main(args: Args) -> i64 {
    let yields = args.get(0).and_then(|a| a.parse::<u32>().ok()).unwrap_or(0);
    // With several CPUs the first thread's children may fill the
    // program's 64 threads before the second is made (EAGAIN): only a
    // program that could make none at all fails.
    let mut made = 0;
    for _ in 0..3 {
        if let Some(stack) = POOL.take()
            && rt::spawn(multiply, 0, stack).is_ok()
        {
            made += 1;
        }
    }
    if made == 0 {
        println!("spawner: no first threads");
        return 1;
    }
    for _ in 0..yields {
        rt::yield_now();
    }
    0
}
