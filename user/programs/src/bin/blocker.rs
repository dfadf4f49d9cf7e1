//! Blocks forever: a second thread and the main thread both wait in `read`
//! on a pipe nobody writes. Tests kill it to check that a kill reaches
//! blocked threads and that everything their system calls held is freed.
#![no_std]
#![no_main]

use rt::{Args, println};

rt::entry!(main);

static STACK: rt::Stack<16384> = rt::Stack::new();

fn read_forever(fd: u64) -> i64 {
    let mut buf = [0u8; 64];
    match rt::read(fd as u32, &mut buf) {
        Ok(n) => n as i64,
        Err(e) => -(e as i64),
    }
}

fn main(_args: Args) -> i64 {
    let Ok((r, _w)) = rt::pipe() else {
        println!("blocker: no pipe");
        return 1;
    };
    let Some(stack) = STACK.take() else {
        return 1;
    };
    if rt::spawn(read_forever, r as u64, stack).is_err() {
        println!("blocker: no thread");
        return 1;
    }
    println!("blocker: blocking");
    read_forever(r as u64)
}
