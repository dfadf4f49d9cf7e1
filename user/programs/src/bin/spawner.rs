//! Threads that make threads: each thread keeps creating more while the
//! main thread yields a few times and exits. The end of the program must
//! be a single point after which none of them exists, however many were
//! being created at that moment. `spawner N` yields N times before exiting.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicUsize, Ordering};

use rt::{Args, println};

rt::entry!(main);

const THREADS: usize = 96;
const STACK: usize = 2048;

#[repr(C, align(16))]
struct Pool([[u8; STACK]; THREADS]);

static mut POOL: Pool = Pool([[0; STACK]; THREADS]);
static NEXT: AtomicUsize = AtomicUsize::new(0);

fn stack() -> Option<&'static mut [u8]> {
    let i = NEXT.fetch_add(1, Ordering::Relaxed);
    if i >= THREADS {
        return None;
    }
    // SAFETY: index `i` is handed out once (the atomic counter), so this is
    // the only reference to that stack.
    Some(unsafe { &mut (*core::ptr::addr_of_mut!(POOL)).0[i] })
}

/// Spawns as long as stacks last, then spins yielding: killed only by the
/// program's end.
fn multiply(_: u64) -> i64 {
    loop {
        if let Some(stack) = stack() {
            let _ = rt::spawn(multiply, 0, stack);
        }
        rt::yield_now();
    }
}

fn main(args: Args) -> i64 {
    let yields = args.get(0).and_then(|a| a.parse::<u32>().ok()).unwrap_or(0);
    for _ in 0..3 {
        if let Some(stack) = stack()
            && rt::spawn(multiply, 0, stack).is_err()
        {
            println!("spawner: no first threads");
            return 1;
        }
    }
    for _ in 0..yields {
        rt::yield_now();
    }
    0
}
