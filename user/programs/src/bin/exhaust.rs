//! Takes everything the kernel will give it: pipes until one is refused,
//! then threads until one is refused. Each refusal must be an error code a
//! program can handle (`EMFILE` or `ENOMEM` for a pipe, `EAGAIN` or
//! `ENOMEM` for a thread); the kernel must never panic instead. Exits 0 if every refusal
//! was one of those, 1 otherwise. The threads sleep until the program ends.
#![no_std]
#![no_main]

use rt::{Args, Errno, println};

rt::entry!(main);

/// One stack for each thread a program may have (the kernel's bound).
static POOL: rt::StackPool<64, 2048> = rt::StackPool::new();

fn sleeper(_: u64) -> i64 {
    rt::sleep(u64::MAX);
    0
}

fn main(_args: Args) -> i64 {
    let mut pipes = 0;
    let pipe_error = loop {
        match rt::pipe() {
            Ok(_) => pipes += 1,
            Err(e) => break e,
        }
    };
    let mut threads = 0;
    let thread_error = loop {
        let Some(stack) = POOL.take() else {
            break Errno::EAGAIN;
        };
        match rt::spawn(sleeper, 0, stack) {
            Ok(_) => threads += 1,
            Err(e) => break e,
        }
    };
    // clone says EAGAIN at the limit of threads, ENOMEM when memory for one
    // ran out, as Linux does.
    let ok = matches!(pipe_error, Errno::EMFILE | Errno::ENOMEM)
        && matches!(thread_error, Errno::EAGAIN | Errno::ENOMEM);
    println!(
        "exhaust pipes={pipes} pipe_error={} threads={threads} thread_error={} ok={ok}",
        pipe_error.name(),
        thread_error.name()
    );
    if ok { 0 } else { 1 }
}
