//! The x87/SSE/AVX registers are each thread's own: they start clean and
//! survive preemption.
//!
//! Two threads (the main thread and one it spawns) each first check that
//! they start with the state docs/abi.md promises a new thread (XMM/YMM
//! zero, MXCSR 0x1f80, x87 control word 0x37f), then load patterns of
//! their own into xmm0-xmm15 (all of ymm0-ymm15 when the kernel enabled
//! AVX), MXCSR, the x87 control word and st0, and spin without yielding
//! or calling the kernel until the two have seen the other run in between
//! `SWITCHES` times in all: since neither ever gives up the CPU, each of
//! those is a preemption by the timer that switched to the other thread
//! while every register held a pattern. Then each stores every register
//! and compares it with its pattern.
//!
//! `sse [avx]`: exits 0 only if every register held in both threads and
//! each thread saw at least `MIN_SEEN` preemptions; with `avx`, also only
//! if AVX is enabled (a kernel that enables it must not pass on SSE
//! alone). Prints what it saw: `sse: mode=... seen=... elapsed_ms=...`.
//!
//! `sse mf` divides by zero in x87 with the exception unmasked: the kernel
//! must end the program with status 128 + 16 (`#MF`, as CR0.NE makes it).
//! Should it live on, it prints `sse: survived` and exits 0. (The SSE
//! counterpart, `#XM`, is not here: QEMU 7.2's TCG sets MXCSR's flag but
//! never raises it.)
//!
//! The registers are used only from inline assembly: the target is
//! soft-float, so compiled code never allocates a vector register, which
//! is also why the assembly need not declare them clobbered.
#![no_std]
#![no_main]

use core::arch::asm;
use core::mem::offset_of;
use core::sync::atomic::{AtomicU64, Ordering};

use rt::{Args, println};

rt::entry!(main);

/// Preemptions both threads must see together before they stop.
const SWITCHES: u64 = 40;
/// Preemptions each must see: about half of `SWITCHES` each, as they
/// alternate; fewer means the loop measured something else.
const MIN_SEEN: u64 = 10;
/// Loop iterations before a thread gives up waiting to be preempted, so a
/// kernel that never preempts fails in seconds instead of hanging.
const SPIN_BUDGET: u64 = 1 << 29;

/// The thread that last ran the spin loop: 1 (main) or 2.
static LAST: AtomicU64 = AtomicU64::new(0);
/// Changes of `LAST` seen by either thread.
static SEEN: AtomicU64 = AtomicU64::new(0);

static STACK: rt::Stack<16384> = rt::Stack::new();

/// Every register checked, in the layout the assembly stores them in.
/// Without AVX only the low two words of each vector are the register.
#[repr(C, align(32))]
#[derive(Clone, Copy)]
struct Regs {
    vec: [[u64; 4]; 16],
    mxcsr: u32,
    fcw: u16,
    st0: i64,
}

const MX: usize = offset_of!(Regs, mxcsr);
const CW: usize = offset_of!(Regs, fcw);
const ST: usize = offset_of!(Regs, st0);

impl Regs {
    const fn zero() -> Regs {
        Regs {
            vec: [[0; 4]; 16],
            mxcsr: 0,
            fcw: 0,
            st0: 0,
        }
    }

    /// What a new thread must start with (st0 is not read: the x87
    /// stack is empty).
    fn clean() -> Regs {
        Regs {
            mxcsr: 0x1f80,
            fcw: 0x37f,
            ..Regs::zero()
        }
    }

    /// Thread `t`'s patterns: every word of every register different, and
    /// different between the threads, MXCSR and the control word too
    /// (other rounding modes, flush-to-zero, x87 precision).
    fn pattern(t: u64) -> Regs {
        let mut r = Regs::zero();
        for (i, reg) in r.vec.iter_mut().enumerate() {
            for (w, word) in reg.iter_mut().enumerate() {
                *word = 0x5eed_0000_9e37_79b9 ^ (t << 56) ^ ((i as u64) << 48) ^ ((w as u64) << 40);
            }
        }
        if t == 1 {
            (r.mxcsr, r.fcw, r.st0) = (0x7f80, 0x027f, 0x1234_5678_9abc_def0);
        } else {
            (r.mxcsr, r.fcw, r.st0) = (0xbf80, 0x0c7f, -0x0fed_cba9_8765_4321);
        }
        r
    }
}

/// Whether the kernel enabled AVX for us: CPUID says the CPU has it and
/// the OS set OSXSAVE, and XCR0 has the SSE and AVX state bits.
fn avx_enabled() -> bool {
    let ecx = core::arch::x86_64::__cpuid(1).ecx;
    if ecx & (1 << 27) == 0 || ecx & (1 << 28) == 0 {
        return false;
    }
    let (lo, _hi): (u32, u32);
    // SAFETY: XGETBV with ECX = 0 reads XCR0; it is allowed in ring 3
    // once CR4.OSXSAVE is set, which CPUID bit 27 just reported.
    unsafe {
        asm!("xgetbv", in("ecx") 0, out("eax") lo, out("edx") _hi,
             options(nomem, nostack, preserves_flags))
    };
    lo & 6 == 6
}

/// Stores the registers as a thread finds them.
fn read_state(avx: bool) -> Regs {
    let mut got = Regs::zero();
    let out = &raw mut got;
    if avx {
        // SAFETY: stores 16 * 32 bytes and MXCSR and FCW into `got`, at
        // the offsets of its fields; AVX is enabled (checked by the caller).
        unsafe {
            asm!(
                ".irp i, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15",
                "vmovdqu ymmword ptr [{out} + 32*\\i], ymm\\i",
                ".endr",
                "stmxcsr dword ptr [{out} + {mx}]",
                "fnstcw word ptr [{out} + {cw}]",
                out = in(reg) out, mx = const MX, cw = const CW,
                options(nostack, preserves_flags)
            )
        }
    } else {
        // SAFETY: as above, with the low 16 bytes of each vector slot.
        unsafe {
            asm!(
                ".irp i, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15",
                "movdqu xmmword ptr [{out} + 32*\\i], xmm\\i",
                ".endr",
                "stmxcsr dword ptr [{out} + {mx}]",
                "fnstcw word ptr [{out} + {cw}]",
                out = in(reg) out, mx = const MX, cw = const CW,
                options(nostack, preserves_flags)
            )
        }
    }
    got
}

/// Loads `want` into the registers, spins until preempted `SWITCHES`
/// times between both threads (or the budget runs out), stores the
/// registers into the result. Also returns the preemptions this thread saw.
fn hold(t: u64, want: &Regs, avx: bool) -> (Regs, u64) {
    let mut got = Regs::zero();
    let (inp, out) = (want as *const Regs, &raw mut got);
    let (last, seen) = (LAST.as_ptr(), SEEN.as_ptr());
    let mut mine: u64 = 0;
    // The loop: if LAST names the other thread, it ran since this one last
    // looked, so count a preemption and claim LAST. Plain loads and stores
    // of aligned words are atomic on x86, and the shared count is `lock`ed.
    macro_rules! hold_asm {
        ($load:literal, $store:literal) => {
            asm!(
                "ldmxcsr dword ptr [{inp} + {mx}]",
                "fldcw word ptr [{inp} + {cw}]",
                "fild qword ptr [{inp} + {st}]",
                ".irp i, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15",
                $load,
                ".endr",
                "2:",
                "mov {tmp}, qword ptr [{last}]",
                "cmp {tmp}, {t}",
                "je 3f",
                "mov qword ptr [{last}], {t}",
                "inc {mine}",
                "lock inc qword ptr [{seen}]",
                "3:",
                "cmp qword ptr [{seen}], {switches}",
                "jae 4f",
                "dec {budget}",
                "jnz 2b",
                "4:",
                ".irp i, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15",
                $store,
                ".endr",
                "stmxcsr dword ptr [{out} + {mx}]",
                "fnstcw word ptr [{out} + {cw}]",
                "fistp qword ptr [{out} + {st}]",
                inp = in(reg) inp,
                out = in(reg) out,
                last = in(reg) last,
                seen = in(reg) seen,
                t = in(reg) t,
                mine = inout(reg) mine,
                budget = inout(reg) SPIN_BUDGET => _,
                tmp = out(reg) _,
                switches = const SWITCHES,
                mx = const MX,
                cw = const CW,
                st = const ST,
                options(nostack)
            )
        };
    }
    if avx {
        // SAFETY: reads `want` and writes `got` at their fields' offsets
        // (16 * 32 bytes of vectors), touches the two atomics through
        // their own pointers, and pops the one x87 value it pushed. The
        // MXCSR pattern has no reserved bit set. AVX is enabled.
        unsafe {
            hold_asm!(
                "vmovdqu ymm\\i, ymmword ptr [{inp} + 32*\\i]",
                "vmovdqu ymmword ptr [{out} + 32*\\i], ymm\\i"
            )
        }
    } else {
        // SAFETY: as above, with the low 16 bytes of each vector slot.
        unsafe {
            hold_asm!(
                "movdqu xmm\\i, xmmword ptr [{inp} + 32*\\i]",
                "movdqu xmmword ptr [{out} + 32*\\i], xmm\\i"
            )
        }
    }
    (got, mine)
}

/// Prints every difference; true if there is none. `words` per vector;
/// `st0` is compared only if `with_st0`.
fn compare(t: u64, what: &str, got: &Regs, want: &Regs, words: usize, with_st0: bool) -> bool {
    let mut ok = true;
    let name = if words == 4 { "ymm" } else { "xmm" };
    for (i, (g, w)) in got.vec.iter().zip(&want.vec).enumerate() {
        if g[..words] != w[..words] {
            println!(
                "sse: thread {t} {what}: {name}{i} = {:x?}, want {:x?}",
                &g[..words],
                &w[..words]
            );
            ok = false;
        }
    }
    if got.mxcsr != want.mxcsr {
        println!(
            "sse: thread {t} {what}: mxcsr = {:#x}, want {:#x}",
            got.mxcsr, want.mxcsr
        );
        ok = false;
    }
    if got.fcw != want.fcw {
        println!(
            "sse: thread {t} {what}: x87 control word = {:#x}, want {:#x}",
            got.fcw, want.fcw
        );
        ok = false;
    }
    if with_st0 && got.st0 != want.st0 {
        println!(
            "sse: thread {t} {what}: st0 = {:#x}, want {:#x}",
            got.st0, want.st0
        );
        ok = false;
    }
    ok
}

/// One thread's whole check; 0 if everything held.
fn check(t: u64, avx: bool) -> i64 {
    let words = if avx { 4 } else { 2 };
    let start_ok = compare(
        t,
        "at start",
        &read_state(avx),
        &Regs::clean(),
        words,
        false,
    );
    let want = Regs::pattern(t);
    let (got, seen) = hold(t, &want, avx);
    let held = compare(t, "after preemption", &got, &want, words, true);
    println!("sse: thread {t} saw {seen} preemptions");
    if seen < MIN_SEEN {
        println!("sse: thread {t} was preempted {seen} times, fewer than {MIN_SEEN}");
    }
    if start_ok && held && seen >= MIN_SEEN {
        0
    } else {
        1
    }
}

fn worker(avx: u64) -> i64 {
    check(2, avx != 0)
}

/// x87 division by zero with the zero-divide exception unmasked; the
/// `fwait` after it reports the pending exception.
fn x87_exception() {
    let fcw: u16 = 0x37f & !(1 << 2);
    // SAFETY: raises #MF, which ends the program; should it not, the x87
    // stack is left balanced (fdivp pops what fldz pushed, fstp the rest).
    unsafe {
        asm!(
            "fldcw word ptr [{c}]",
            "fld1",
            "fldz",
            "fdivp st(1), st",
            "fwait",
            "fstp st(0)",
            c = in(reg) &fcw,
            options(nostack)
        )
    }
}

fn main(args: Args) -> i64 {
    if args.get(0) == Some("mf") {
        x87_exception();
        println!("sse: survived");
        return 0;
    }
    let avx = avx_enabled();
    if args.get(0) == Some("avx") && !avx {
        println!("sse: AVX was asked for, but the kernel has not enabled it");
        return 1;
    }
    let Some(stack) = STACK.take() else {
        return 1;
    };
    let begin = rt::time_ns();
    let thread = match rt::spawn(worker, avx as u64, stack) {
        Ok(thread) => thread,
        Err(e) => {
            println!("sse: spawn: {e:?}");
            return 1;
        }
    };
    let mine = check(1, avx);
    let theirs = rt::join(thread);
    let elapsed = rt::time_ns() - begin;
    println!(
        "sse: mode={} seen={} elapsed_ms={}",
        if avx { "avx" } else { "sse" },
        SEEN.load(Ordering::Relaxed),
        elapsed / 1_000_000
    );
    if mine == 0 && theirs == 0 { 0 } else { 1 }
}
