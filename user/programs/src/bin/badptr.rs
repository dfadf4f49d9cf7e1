//! Every system call that takes a pointer, given every kind of bad pointer,
//! must return exactly EFAULT: the kernel checks user memory before it uses
//! it and never faults on our behalf. One line per case:
//!
//! `badptr call=write ptr=null result=EFAULT ok` (or `... result=X FAILED`)
//!
//! then `badptr_checked=N badptr_failed=M`; exits 0 iff all passed.
//! (Not named `efault`: that is the oracle's `tests/linux/efault.c`, which
//! runs as a boot module of that name, and built-ins are never shadowed.)
#![no_std]
#![no_main]

use rt::abi::{Errno, STDOUT, USER_END, arch_prctl, clock, decode, futex, ioctl, nr};
use rt::{Args, Stack, println, raw};

rt::entry!(main);

/// Bytes asked of write and read: non-zero, because a transfer of nothing
/// touches no memory and so has no reason to fault.
const LEN: u64 = 16;

/// Addresses no user access may reach, and why.
const BAD_POINTERS: [(&str, u64); 6] = [
    ("null", 0),
    // Canonical user half, but nothing is mapped there (docs/abi.md layout).
    ("unmapped", 0x0000_1000_0000_0000),
    // The kernel's direct map: mapped, but supervisor-only.
    ("kernel", 0xffff_8000_0000_1000),
    // The first address past the user half: not canonical.
    ("noncanonical", 0x0000_8000_0000_0000),
    ("noncanonical_high", 0x1234_5678_9abc_d000),
    // Starts in the user half, ends past it: the whole range is checked.
    ("straddle", USER_END - 4),
];

/// What the calls need besides the pointer.
struct Ctx {
    pipe_read: u32,
    pipe_write: u32,
    thread: u32,
}

/// A call taking a pointer: its name, whether a null pointer is a valid
/// "none" for it, and how to make it with a given pointer.
type Call = (&'static str, bool, fn(&Ctx, u64) -> u64);

/// A futex word that is always good: the timeout's check comes first.
static WORD: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

const CALLS: [Call; 16] = [
    ("write", false, |_, ptr| {
        // SAFETY: the kernel only reads at `ptr`; nothing of ours lives at
        // any of the bad addresses.
        unsafe { raw::syscall3(nr::WRITE, STDOUT.into(), ptr, LEN) }
    }),
    ("read", false, |ctx, ptr| {
        // A byte in the pipe, so a kernel that forgot the check would copy
        // instead of blocking us forever. Refill each time, in case it did.
        let _ = rt::write(ctx.pipe_write, b"x");
        // SAFETY: none of the bad addresses holds anything of ours, so even
        // a wrong write there could not break Rust's invariants.
        unsafe { raw::syscall3(nr::READ, ctx.pipe_read.into(), ptr, LEN) }
    }),
    // A null status pointer means "status not wanted" and would reap the
    // thread; it is skipped, not tested.
    ("wait", true, |ctx, ptr| {
        // The kernel checks the status pointer before blocking and does not
        // reap the thread when it is bad, so the final wait still finds it.
        // SAFETY: as for read.
        unsafe { raw::syscall2(nr::WAIT_THREAD, ctx.thread.into(), ptr) }
    }),
    ("pipe", false, |_, ptr| {
        // SAFETY: as for read.
        unsafe { raw::syscall1(nr::PIPE, ptr) }
    }),
    ("nanosleep", false, |_, ptr| {
        // SAFETY: the kernel only reads the timespec at `ptr`.
        unsafe { raw::syscall2(nr::NANOSLEEP, ptr, 0) }
    }),
    ("clock_gettime", false, |_, ptr| {
        // SAFETY: as for read.
        unsafe { raw::syscall2(nr::CLOCK_GETTIME, clock::MONOTONIC as u64, ptr) }
    }),
    ("clock_nanosleep", false, |_, ptr| {
        // SAFETY: the kernel only reads the timespec at `ptr`.
        unsafe { raw::syscall4(nr::CLOCK_NANOSLEEP, clock::MONOTONIC as u64, 0, ptr, 0) }
    }),
    ("futex_wait", false, |_, ptr| {
        // SAFETY: the kernel only reads the word at `ptr`.
        unsafe { raw::syscall4(nr::FUTEX, ptr, futex::WAIT as u64, 0, 0) }
    }),
    // A null timeout means "none" (and would wait forever here).
    ("futex_timeout", true, |_, ptr| {
        let word = WORD.as_ptr() as u64;
        // SAFETY: the kernel reads the timespec at `ptr`, and our word.
        unsafe { raw::syscall4(nr::FUTEX, word, futex::WAIT as u64, 0, ptr) }
    }),
    ("arch_prctl_get_fs", false, |_, ptr| {
        // SAFETY: as for read.
        unsafe { raw::syscall2(nr::ARCH_PRCTL, arch_prctl::GET_FS as u64, ptr) }
    }),
    ("fstat", false, |ctx, ptr| {
        // SAFETY: as for read.
        unsafe { raw::syscall2(nr::FSTAT, ctx.pipe_read.into(), ptr) }
    }),
    ("pipe2", false, |_, ptr| {
        // SAFETY: as for read; valid flags, so only the pointer is wrong.
        unsafe { raw::syscall2(nr::PIPE2, ptr, rt::abi::o::CLOEXEC.into()) }
    }),
    ("writev_array", false, |_, ptr| {
        // SAFETY: the kernel only reads the array at `ptr`.
        unsafe { raw::syscall3(nr::WRITEV, STDOUT.into(), ptr, 1) }
    }),
    ("writev_buffer", false, |_, ptr| {
        // A good array whose one buffer is bad; were it accepted, a write
        // of LEN bytes from `ptr` to the console.
        let iov = [ptr, LEN];
        // SAFETY: the kernel reads our array and, it must refuse, nothing
        // at `ptr`.
        unsafe { raw::syscall3(nr::WRITEV, STDOUT.into(), iov.as_ptr() as u64, 1) }
    }),
    ("ioctl_fionread", false, |ctx, ptr| {
        // SAFETY: as for read.
        unsafe { raw::syscall3(nr::IOCTL, ctx.pipe_read.into(), ioctl::FIONREAD.into(), ptr) }
    }),
    ("ioctl_tiocgwinsz", false, |_, ptr| {
        // SAFETY: as for read.
        unsafe { raw::syscall3(nr::IOCTL, STDOUT.into(), ioctl::TIOCGWINSZ.into(), ptr) }
    }),
];

#[derive(Default)]
struct Tally {
    checked: u32,
    failed: u32,
}

impl Tally {
    fn row(&mut self, call: &str, ptr: &str, result: Result<u64, Errno>) {
        self.checked += 1;
        let shown = Shown(result);
        if result == Err(Errno::EFAULT) {
            println!("badptr call={call} ptr={ptr} result={shown} ok");
        } else {
            self.failed += 1;
            println!("badptr call={call} ptr={ptr} result={shown} FAILED");
        }
    }
}

/// A result as the lines show it: the errno's name or `ok(value)`.
struct Shown(Result<u64, Errno>);

impl core::fmt::Display for Shown {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Ok(v) => write!(f, "ok({v})"),
            Err(e) => f.write_str(e.name()),
        }
    }
}

static WAITEE_STACK: Stack<64> = Stack::new();

/// A `spawn_thread` thread (wait_thread's kind) that exits at once,
/// without touching its stack.
#[unsafe(naked)]
extern "C" fn exit_at_once(_: u64) -> ! {
    core::arch::naked_asm!(
        "mov eax, {exit}",
        "xor edi, edi",
        "syscall",
        "ud2",
        exit = const nr::EXIT,
    )
}

fn main(_args: Args) -> i64 {
    let Ok((pipe_read, pipe_write)) = rt::pipe() else {
        println!("badptr: pipe failed");
        return 1;
    };
    // A thread that exits at once, so `wait` has a real tid to be asked about.
    let stack = WAITEE_STACK.take().expect("first and only use");
    let top = stack.as_ptr() as u64 + stack.len() as u64;
    // SAFETY: the thread never touches its stack, which is ours for good.
    let Ok(thread) = (unsafe { rt::spawn_thread(exit_at_once, top, 0) }) else {
        println!("badptr: spawn failed");
        return 1;
    };
    let ctx = Ctx {
        pipe_read,
        pipe_write,
        thread,
    };
    let mut tally = Tally::default();

    for (call, null_ok, run) in CALLS {
        for (name, ptr) in BAD_POINTERS {
            if ptr == 0 && null_ok {
                println!("badptr call={call} ptr={name} skipped: null is valid here");
                continue;
            }
            tally.row(call, name, decode(run(&ctx, ptr)));
        }
    }

    // The failed waits must not have reaped the thread.
    tally.checked += 1;
    match rt::wait_thread(thread) {
        Ok(0) => println!("badptr call=wait ptr=valid result=ok(0) ok"),
        other => {
            tally.failed += 1;
            println!(
                "badptr call=wait ptr=valid result={} FAILED",
                Shown(other.map(|s| s as u64))
            );
        }
    }
    let _ = rt::close(pipe_read);
    let _ = rt::close(pipe_write);

    println!(
        "badptr_checked={} badptr_failed={}",
        tally.checked, tally.failed
    );
    if tally.failed == 0 && tally.checked > 0 {
        0
    } else {
        1
    }
}
