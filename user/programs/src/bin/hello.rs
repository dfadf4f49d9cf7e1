//! The first ring-3 program: proves it runs in user mode and that every
//! system call works, one `key=value` line per check. Exits 42 if all
//! checks pass (a status no accident produces), 1 otherwise.
#![no_std]
#![no_main]

use core::arch::asm;
use core::fmt::Display;
use core::sync::atomic::{AtomicU32, Ordering};

use rt::abi::{Errno, STDOUT, decode, nr};
use rt::{Args, Stack, println};

rt::entry!(main);

fn main(args: Args) -> i64 {
    println!("hello from ring 3");
    println!("args={args}");
    let mut checks = rt::Checks::new();
    // argv[0] is the name the console ran us under (docs/abi.md).
    checks.report("argv0", args.program(), args.program() == "hello");

    // The low two bits of CS are the privilege level we actually run at.
    let cs: u16;
    // SAFETY: reading a segment register has no side effects.
    unsafe { asm!("mov {0:x}, cs", out(reg) cs, options(nomem, nostack, preserves_flags)) };
    checks.report("cpl", cs & 3, cs & 3 == 3);

    // gettid is judged by another call that returns the tid: Linux's
    // set_tid_address (null: no word to clear at exit, as before).
    let tid = rt::gettid();
    // SAFETY: a null pointer asks for no store at exit.
    let again = unsafe { rt::set_tid_address(core::ptr::null_mut()) };
    checks.report("gettid", tid, again == tid);

    let line = b"write_console=ok\n";
    match rt::write(STDOUT, line) {
        // The line printed itself; count the check without printing twice.
        Ok(n) if n == line.len() => checks.run += 1,
        other => checks.report("write_console", Wrote(other), false),
    }

    // The raw call, to check the documented result 0 (the wrapper hides it).
    // SAFETY: sched_yield takes no pointers.
    let ret = unsafe { rt::raw::syscall0(nr::SCHED_YIELD) };
    checks.report(
        "yield",
        if ret == 0 { "ok" } else { "bad_result" },
        ret == 0,
    );

    const TEN_MS: u64 = 10_000_000;
    let before = rt::time_ns();
    rt::sleep(TEN_MS);
    // None if time went backwards, which is a failure too.
    let slept = rt::time_ns().checked_sub(before);
    let advanced = slept.is_some_and(|ns| ns >= TEN_MS);
    checks.report("time_advanced", u8::from(advanced), advanced);
    println!("slept_ns={}", slept.unwrap_or(0));

    match pipe_thread(tid) {
        Ok(()) => checks.report("pipe_thread", "ok", true),
        Err(step) => checks.report("pipe_thread", step, false),
    }

    // A closed descriptor must be refused, not crash anything.
    let ret = rt::close(1000);
    checks.report(
        "close_badfd",
        Wrote(ret.map(|()| 0)),
        ret == Err(Errno::EBADF),
    );

    // An unknown call number is ENOSYS: one no kernel uses (Linux's own
    // numbers grow, and a small unused one may be a real call tomorrow).
    // SAFETY: no such call, so nothing is read or written.
    let ret = decode(unsafe { rt::raw::syscall0(100_000) });
    checks.report(
        "enosys",
        Wrote(ret.map(|n| n as usize)),
        ret == Err(Errno::ENOSYS),
    );

    println!("checks={} failed={}", checks.run, checks.failed);
    if checks.failed == 0 { 42 } else { 1 }
}

/// Shows a call's result: the value, or the errno's name.
struct Wrote<T>(Result<T, Errno>);

impl<T: Display> Display for Wrote<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match &self.0 {
            Ok(v) => write!(f, "ok({v})"),
            Err(e) => f.write_str(e.name()),
        }
    }
}

static PINGER_STACK: Stack<16384> = Stack::new();

/// What gettid said in the second thread, for the main thread to compare
/// with the tid spawn returned.
static PINGER_TID: AtomicU32 = AtomicU32::new(0);

/// Runs in the second thread: notes its tid, says "ping" down the pipe,
/// exits with 7.
fn pinger(write_fd: u64) -> i64 {
    PINGER_TID.store(rt::gettid(), Ordering::Relaxed);
    match rt::write(write_fd as u32, b"ping") {
        Ok(4) => 7,
        _ => 1,
    }
}

/// pipe(), a thread that writes to it, a blocking read here, join(), the
/// thread's own gettid against spawn's result, close(). On failure, names
/// the step that failed.
fn pipe_thread(main_tid: u32) -> Result<(), &'static str> {
    let (rfd, wfd) = rt::pipe().map_err(|_| "pipe")?;
    let stack = PINGER_STACK.take().ok_or("stack")?;
    let thread = rt::spawn(pinger, wfd.into(), stack).map_err(|_| "spawn")?;
    let tid = thread.tid();
    if tid == main_tid {
        return Err("same_tid");
    }

    // The pipe may deliver "ping" in pieces; read blocks until some arrives.
    let mut got = [0u8; 4];
    let mut len = 0;
    while len < got.len() {
        match rt::read(rfd, &mut got[len..]) {
            Ok(0) => return Err("read_eof"),
            Ok(n) => len += n,
            Err(_) => return Err("read"),
        }
    }
    if &got != b"ping" {
        return Err("read_data");
    }

    if rt::join(thread) != 7 {
        return Err("join_result");
    }
    // The thread has ended, so its store is done; both numbers come from
    // the kernel, by different calls in different threads.
    if PINGER_TID.load(Ordering::Relaxed) != tid {
        return Err("thread_gettid");
    }
    rt::close(wfd).map_err(|_| "close_write")?;
    rt::close(rfd).map_err(|_| "close_read")?;
    Ok(())
}
