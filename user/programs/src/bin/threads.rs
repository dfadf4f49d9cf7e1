//! Linux threads from ring 3: `clone` with the flag sets musl's and
//! glibc's `pthread_create` pass, set_tid_address, the FS base
//! (arch_prctl, and FS-relative loads that prove the CPU switches it),
//! futexes, and rt's threads. One `key=value` line per check, then
//! `checks=N failed=M`; exits 0 only if all passed.
//!
//! `threads badsp-kernel` and `threads badsp-noncanonical` clone a thread
//! whose stack pointer is a kernel-half or a non-canonical address: the
//! child's first push faults in ring 3 (a page fault, a stack fault) and
//! ends the program with 128 + vector, while the kernel goes on.
//!
//! The register checks are in assembly: only there is every register
//! the program's own.
#![no_std]
#![no_main]

use core::arch::{asm, naked_asm};
use core::cell::UnsafeCell;
use core::fmt::Display;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use rt::abi::{Errno, TASK_SIZE_MAX, Timespec, arch_prctl, clone, decode, futex, nr};
use rt::{Args, Checks, println, raw};

rt::entry!(main);

/// A result as the lines show it.
struct Shown(Result<u64, Errno>);

impl Display for Shown {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Ok(v) => write!(f, "ok({v})"),
            Err(e) => f.write_str(e.name()),
        }
    }
}

fn main(args: Args) -> i64 {
    match args.get(0) {
        Some("badsp-kernel") => return bad_stack(0xffff_8000_0000_1000),
        Some("badsp-noncanonical") => return bad_stack(0x1234_5678_9abc_d000),
        Some(other) => {
            println!("threads: unknown mode '{other}'");
            return 2;
        }
        None => {}
    }
    let mut c = Checks::new();
    for (name, flags) in [
        ("musl", clone::MUSL_PTHREAD),
        ("glibc", clone::GLIBC_PTHREAD),
    ] {
        clone_registers(&mut c, name, flags);
    }
    clone_refusals(&mut c);
    tid_address(&mut c);
    futex_results(&mut c);
    fs_bases_follow_their_threads(&mut c);
    many_threads_joined(&mut c);
    token_ring(&mut c);
    requeue(&mut c);
    println!("checks={} failed={}", c.run, c.failed);
    if c.failed == 0 { 0 } else { 1 }
}

// ---- clone: every register --------------------------------------------

/// A static the kernel and other threads may write: no Rust reference to
/// its contents is ever held across a call.
#[repr(C, align(16))]
struct Shared<T>(UnsafeCell<T>);

// SAFETY: every access goes through raw pointers, ordered by the system
// calls between the threads (clone, the futex wait for the child's exit).
unsafe impl<T> Sync for Shared<T> {}

impl<T: Copy> Shared<T> {
    fn get(&self) -> T {
        // SAFETY: see the Sync impl.
        unsafe { self.0.get().read_volatile() }
    }

    fn set(&self, v: T) {
        // SAFETY: see the Sync impl.
        unsafe { self.0.get().write_volatile(v) }
    }
}

/// Registers in encoding order: rax rcx rdx rbx rsp rbp rsi rdi r8..r15.
static CHILD_REGS: Shared<[u64; 16]> = Shared(UnsafeCell::new([0; 16]));
static PARENT_REGS: Shared<[u64; 16]> = Shared(UnsafeCell::new([0; 16]));
const NAMES: [&str; 16] = [
    "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13",
    "r14", "r15",
];
/// What the parent loads into the registers clone does not take.
const RBX: u64 = 0x1111_2222_3333_4444;
const RBP: u64 = 0x5555_6666_7777_8888;
const R9: u64 = 0x9999_aaaa_bbbb_cccc;
const R12: u64 = 0x0123_4567_89ab_cdef;
const R13: u64 = 0x1357_9bdf_0246_8ace;
const R14: u64 = 0xfedc_ba98_7654_3210;
const R15: u64 = 0x0f0f_f0f0_0f0f_f0f0;

const STACK_BYTES: usize = 16 * 1024;
static CHILD_STACK: Shared<[u8; STACK_BYTES]> = Shared(UnsafeCell::new([0; STACK_BYTES]));

/// The TLS block the child's FS base points at: its first word is its own
/// address, as x86_64's TLS ABI has it, so `mov rax, fs:[0]` proves the
/// CPU's FS base.
static TLS_BLOCK: Shared<[u64; 4]> = Shared(UnsafeCell::new([0; 4]));
/// What the child saw: its FS base (arch_prctl), fs:[0], its tid.
static CHILD_SAW: Shared<[u64; 3]> = Shared(UnsafeCell::new([0; 3]));
static TID_WORD: AtomicU32 = AtomicU32::new(0);

/// clone(flags, newsp, ptid, ctid, tls) with the other registers set to
/// the constants above; both sides store every register. The child then
/// calls `child_main` on its new stack. Returns clone's raw result.
///
/// # Safety
/// `newsp` is the child's stack (or a bad one, on purpose).
#[unsafe(naked)]
unsafe extern "C" fn clone_with_registers(
    flags: u64,
    newsp: u64,
    ptid: u64,
    ctid: u64,
    tls: u64,
) -> u64 {
    naked_asm!(
        "push rbx",
        "push rbp",
        "push r12",
        "push r13",
        "push r14",
        "push r15",
        "mov r10, rcx",
        "movabs rbx, {rbx}",
        "movabs rbp, {rbp}",
        "movabs r9, {r9}",
        "movabs r12, {r12}",
        "movabs r13, {r13}",
        "movabs r14, {r14}",
        "movabs r15, {r15}",
        "mov eax, {clone}",
        "syscall",
        "test rax, rax",
        "jz 2f",
        "mov [rip + {parent}], rax",
        "mov [rip + {parent} + 8], rcx",
        "mov [rip + {parent} + 16], rdx",
        "mov [rip + {parent} + 24], rbx",
        "mov [rip + {parent} + 32], rsp",
        "mov [rip + {parent} + 40], rbp",
        "mov [rip + {parent} + 48], rsi",
        "mov [rip + {parent} + 56], rdi",
        "mov [rip + {parent} + 64], r8",
        "mov [rip + {parent} + 72], r9",
        "mov [rip + {parent} + 80], r10",
        "mov [rip + {parent} + 88], r11",
        "mov [rip + {parent} + 96], r12",
        "mov [rip + {parent} + 104], r13",
        "mov [rip + {parent} + 112], r14",
        "mov [rip + {parent} + 120], r15",
        "pop r15",
        "pop r14",
        "pop r13",
        "pop r12",
        "pop rbp",
        "pop rbx",
        "ret",
        // The child: nothing here may touch the stack before the stores.
        "2:",
        "mov [rip + {child}], rax",
        "mov [rip + {child} + 8], rcx",
        "mov [rip + {child} + 16], rdx",
        "mov [rip + {child} + 24], rbx",
        "mov [rip + {child} + 32], rsp",
        "mov [rip + {child} + 40], rbp",
        "mov [rip + {child} + 48], rsi",
        "mov [rip + {child} + 56], rdi",
        "mov [rip + {child} + 64], r8",
        "mov [rip + {child} + 72], r9",
        "mov [rip + {child} + 80], r10",
        "mov [rip + {child} + 88], r11",
        "mov [rip + {child} + 96], r12",
        "mov [rip + {child} + 104], r13",
        "mov [rip + {child} + 112], r14",
        "mov [rip + {child} + 120], r15",
        "xor ebp, ebp",
        "and rsp, -16",
        "call {main}",
        "ud2",
        rbx = const RBX,
        rbp = const RBP,
        r9 = const R9,
        r12 = const R12,
        r13 = const R13,
        r14 = const R14,
        r15 = const R15,
        clone = const nr::CLONE,
        parent = sym PARENT_REGS,
        child = sym CHILD_REGS,
        main = sym child_main,
    )
}

/// What `child_main` does: 0 the register and TLS checks, 1 announce
/// itself with set_tid_address.
static CHILD_MODE: AtomicU32 = AtomicU32::new(0);
static ANNOUNCED: AtomicU32 = AtomicU32::new(0);

extern "C" fn child_main() -> ! {
    if CHILD_MODE.load(Ordering::Acquire) == 1 {
        // SAFETY: ANNOUNCED is a static, valid for the store at exit.
        let tid = unsafe { rt::set_tid_address(ANNOUNCED.as_ptr()) };
        CHILD_SAW.set([tid.into(), 0, rt::gettid().into()]);
        ANNOUNCED.store(tid, Ordering::Release);
        rt::exit_thread(0)
    }
    let fs: u64;
    // SAFETY: reads 8 bytes at the FS base, which the parent set to
    // TLS_BLOCK (or the kernel gave the child its parent's, 0, which
    // CLONE_SETTLS in every flag set used here rules out).
    unsafe { asm!("mov {}, fs:[0]", out(reg) fs, options(nostack, readonly)) };
    CHILD_SAW.set([rt::fs_base(), fs, rt::gettid().into()]);
    rt::exit_thread(0)
}

/// pthread_join's wait: until the kernel clears the word at the exit.
fn join_word(word: &AtomicU32) {
    loop {
        let v = word.load(Ordering::Acquire);
        if v == 0 {
            return;
        }
        let _ = rt::futex_wait(word, v, None, false);
    }
}

fn clone_registers(c: &mut Checks, name: &str, flags: u32) {
    let tls = TLS_BLOCK.0.get() as u64;
    TLS_BLOCK.set([tls, 0, 0, 0]);
    CHILD_SAW.set([0; 3]);
    TID_WORD.store(u32::MAX, Ordering::Relaxed);
    let top = CHILD_STACK.0.get() as u64 + STACK_BYTES as u64;
    let word = TID_WORD.as_ptr() as u64;
    let parent_fs = rt::fs_base();
    // SAFETY: the child runs on CHILD_STACK, which nothing else uses while
    // it lives (the parent waits for its exit before the next clone).
    let ret = unsafe { clone_with_registers(flags.into(), top, word, word, tls) };
    let tid = match decode(ret) {
        Ok(tid) => tid,
        Err(e) => {
            c.report(&alloc_key(name, "clone"), e.name(), false);
            return;
        }
    };
    let settid = u64::from(TID_WORD.load(Ordering::Acquire));
    c.report(
        &alloc_key(name, "parent_settid"),
        settid,
        settid == tid || settid == 0,
    );
    join_word(&TID_WORD);
    c.report(&alloc_key(name, "cleartid"), "ok", true);
    let child = CHILD_REGS.get();
    let parent = PARENT_REGS.get();
    // What each register must hold: the parent's at the call, rax 0 and
    // the new stack in the child; rcx and r11 are syscall's (the return
    // address and the flags) on both sides.
    let args = [flags.into(), top, word, word, tls];
    let mut want = [0u64; 16];
    want[3] = RBX;
    want[5] = RBP;
    want[7] = args[0];
    want[6] = args[1];
    want[2] = args[2];
    want[10] = args[3];
    want[8] = args[4];
    want[9] = R9;
    want[12] = R12;
    want[13] = R13;
    want[14] = R14;
    want[15] = R15;
    let mut bad = None;
    for i in 0..16 {
        let expect = match i {
            0 => 0,
            4 => top,
            1 | 11 => parent[i],
            _ => want[i],
        };
        if child[i] != expect && bad.is_none() {
            bad = Some((NAMES[i], child[i], expect));
        }
        // The parent's own registers came back unchanged too.
        let expect_parent = match i {
            0 => tid,
            1 | 4 | 11 => parent[i],
            _ => want[i],
        };
        if parent[i] != expect_parent && bad.is_none() {
            bad = Some((NAMES[i], parent[i], expect_parent));
        }
    }
    match bad {
        None => c.report(&alloc_key(name, "child_registers"), "parent's", true),
        Some((reg, got, want)) => {
            println!("threads: {name} {reg}={got:#x}, expected {want:#x}");
            c.report(&alloc_key(name, "child_registers"), reg, false);
        }
    }
    let saw = CHILD_SAW.get();
    c.report(&alloc_key(name, "child_fs_base"), "tls", saw[0] == tls);
    c.report(&alloc_key(name, "child_fs0"), "tls", saw[1] == tls);
    c.report(&alloc_key(name, "child_tid"), "clone's", saw[2] == tid);
    c.report(
        &alloc_key(name, "parent_fs_base"),
        "kept",
        rt::fs_base() == parent_fs,
    );
}

/// A key like `musl_clone`, without a heap.
fn alloc_key(prefix: &str, what: &str) -> Key {
    let mut k = Key {
        buf: [0; 48],
        len: 0,
    };
    for part in [prefix.as_bytes(), b"_", what.as_bytes()] {
        for &b in part {
            if k.len < k.buf.len() {
                k.buf[k.len] = b;
                k.len += 1;
            }
        }
    }
    k
}

struct Key {
    buf: [u8; 48],
    len: usize,
}

impl core::ops::Deref for Key {
    type Target = str;
    fn deref(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("?")
    }
}

// ---- clone: what is refused --------------------------------------------

/// A stack no thread may use: a child wrongly made on it faults at once
/// and the whole program fails.
const NO_STACK: u64 = 0x1000;

fn clone_refusals(c: &mut Checks) {
    let glibc = clone::GLIBC_PTHREAD;
    let bad = [
        ("fork", 0),
        ("vm_only", clone::VM),
        ("no_thread", clone::VM | clone::SIGHAND | clone::FILES),
        (
            "thread_without_sighand",
            clone::VM | clone::THREAD | clone::FILES,
        ),
        (
            "sighand_without_vm",
            clone::SIGHAND | clone::THREAD | clone::FILES,
        ),
        ("no_files", glibc & !clone::FILES),
        ("vfork", glibc | clone::VFORK),
        ("newns", glibc | clone::NEWNS),
        ("child_settid", glibc | clone::CHILD_SETTID),
    ];
    for (name, flags) in bad {
        // SAFETY: refused, so no thread starts (and one wrongly started
        // faults on NO_STACK); the tid pointers are never written.
        let r = decode(unsafe { raw::syscall5(nr::CLONE, flags.into(), NO_STACK, 0, 0, 0) });
        let key = alloc_key("clone_einval", name);
        c.report(&key, Shown(r), r == Err(Errno::EINVAL));
    }
    for tls in [TASK_SIZE_MAX, 0x0000_8000_0000_0000, 0xffff_8000_0000_0000] {
        // SAFETY: as above (EPERM).
        let r = decode(unsafe { raw::syscall5(nr::CLONE, glibc.into(), NO_STACK, 0, 0, tls) });
        c.report("clone_bad_tls", Shown(r), r == Err(Errno::EPERM));
    }
}

// ---- set_tid_address ----------------------------------------------------

/// A thread made without CLONE_CHILD_CLEARTID names its own word with
/// set_tid_address, which returns its tid; its exit clears and wakes it.
fn tid_address(c: &mut Checks) {
    CHILD_MODE.store(1, Ordering::Release);
    ANNOUNCED.store(u32::MAX, Ordering::Release);
    let top = CHILD_STACK.0.get() as u64 + STACK_BYTES as u64;
    let flags = clone::GLIBC_PTHREAD & !clone::CHILD_CLEARTID;
    let word = TID_WORD.as_ptr() as u64;
    // SAFETY: as in clone_registers: CHILD_STACK is free (that child is
    // gone: its exit cleared TID_WORD).
    let r = decode(unsafe { clone_with_registers(flags.into(), top, word, 0, 0) });
    join_word(&ANNOUNCED);
    CHILD_MODE.store(0, Ordering::Release);
    let saw = CHILD_SAW.get();
    let ok = r.is_ok_and(|tid| saw[0] == tid && saw[2] == tid);
    c.report("set_tid_address", Shown(r), ok);
}

// ---- futexes --------------------------------------------------------------

static WORD: AtomicU32 = AtomicU32::new(5);

fn futex_call(uaddr: u64, op: i32, val: u32, timeout: u64, val3: u32) -> Result<u64, Errno> {
    // SAFETY: the kernel reads the word and the timespec, writes nothing.
    decode(unsafe {
        raw::syscall6(
            nr::FUTEX,
            uaddr,
            op as u32 as u64,
            val.into(),
            timeout,
            0,
            val3.into(),
        )
    })
}

fn futex_results(c: &mut Checks) {
    let w = WORD.as_ptr() as u64;
    let p = futex::PRIVATE_FLAG;
    let r = futex_call(w, futex::WAIT | p, 6, 0, 0);
    c.report("futex_mismatch", Shown(r), r == Err(Errno::EAGAIN));
    let r = futex_call(w + 2, futex::WAIT | p, 5, 0, 0);
    c.report("futex_unaligned", Shown(r), r == Err(Errno::EINVAL));
    let r = futex_call(0x1000, futex::WAIT | p, 0, 0, 0);
    c.report("futex_unmapped", Shown(r), r == Err(Errno::EFAULT));
    let r = futex_call(w, futex::WAKE, 1, 0, 0);
    c.report("futex_wake_nobody", Shown(r), r == Ok(0));
    let r = futex_call(w, futex::WAIT_BITSET | p, 5, 0, 0);
    c.report("futex_bitset_zero", Shown(r), r == Err(Errno::EINVAL));
    let r = futex_call(w, 14, 0, 0, 0);
    c.report("futex_unknown_op", Shown(r), r == Err(Errno::ENOSYS));
    // A relative timeout really waits that long.
    const WAIT_NS: u64 = 20_000_000;
    let ts = Timespec::from_ns(WAIT_NS).to_bytes();
    let before = rt::time_ns();
    let r = futex_call(w, futex::WAIT | p, 5, ts.as_ptr() as u64, 0);
    let waited = rt::time_ns() - before;
    c.report("futex_timeout", Shown(r), r == Err(Errno::ETIMEDOUT));
    c.report("futex_timeout_waited", waited >= WAIT_NS, waited >= WAIT_NS);
    // An absolute one, on CLOCK_MONOTONIC, ends at its time.
    let until = rt::time_ns() + WAIT_NS;
    let ts = Timespec::from_ns(until).to_bytes();
    let r = futex_call(w, futex::WAIT_BITSET | p, 5, ts.as_ptr() as u64, u32::MAX);
    let late = rt::time_ns() >= until;
    c.report(
        "futex_absolute",
        Shown(r),
        r == Err(Errno::ETIMEDOUT) && late,
    );
}

// ---- FS bases per thread ---------------------------------------------------

/// Each thread's TLS block: first word its own address.
static BLOCKS: Shared<[[u64; 2]; 3]> = Shared(UnsafeCell::new([[0; 2]; 3]));
static FS_BAD: AtomicU64 = AtomicU64::new(0);
static FS_STACKS: rt::StackPool<3, 8192> = rt::StackPool::new();

fn fs_worker(i: u64) -> i64 {
    let block = (BLOCKS.0.get() as u64) + 16 * i;
    if rt::set_fs_base(block).is_err() {
        FS_BAD.fetch_add(1, Ordering::Relaxed);
        return 1;
    }
    for round in 0..300u64 {
        let fs0: u64;
        // SAFETY: the FS base is this thread's block, two words it owns.
        unsafe { asm!("mov {}, fs:[0]", out(reg) fs0, options(nostack, readonly)) };
        if fs0 != block || rt::fs_base() != block {
            FS_BAD.fetch_add(1, Ordering::Relaxed);
        }
        // Switches by the timer and by yields, in the middle of it.
        for _ in 0..(round % 7) * 2000 {
            core::hint::spin_loop();
        }
        rt::yield_now();
    }
    0
}

fn fs_bases_follow_their_threads(c: &mut Checks) {
    let base = BLOCKS.0.get() as u64;
    BLOCKS.set([[base, 0], [base + 16, 0], [base + 32, 0]]);
    let mut threads = [None, None, None];
    for (i, slot) in threads.iter_mut().enumerate() {
        if let Some(stack) = FS_STACKS.take() {
            *slot = rt::spawn(fs_worker, i as u64, stack).ok();
        }
    }
    let all = threads.iter().all(Option::is_some);
    for t in threads.into_iter().flatten() {
        rt::join(t);
    }
    let bad = FS_BAD.load(Ordering::Relaxed);
    c.report("fs_base_per_thread", bad, all && bad == 0);
    let r = rt::set_fs_base(TASK_SIZE_MAX);
    c.report(
        "fs_base_eperm",
        Shown(r.map(|()| 0)),
        r == Err(Errno::EPERM),
    );
    // SAFETY: the kernel refuses the code before it looks at the pointer.
    let r = decode(unsafe { raw::syscall2(nr::ARCH_PRCTL, arch_prctl::SET_GS as u64, 0) });
    c.report("arch_prctl_set_gs", Shown(r), r == Err(Errno::EINVAL));
}

// ---- many threads, joined -----------------------------------------------

static POOL: rt::StackPool<200, 2048> = rt::StackPool::new();

fn square(n: u64) -> i64 {
    (n * n) as i64
}

/// Far more threads than a program may have at once, 8 at a time: each
/// exited one must be gone (reaped without a wait) before the limit.
fn many_threads_joined(c: &mut Checks) {
    let mut wrong = 0;
    let mut made = 0;
    for batch in 0..25 {
        let mut threads: [Option<rt::Thread>; 8] = Default::default();
        for (i, slot) in threads.iter_mut().enumerate() {
            let n = (batch * 8 + i) as u64;
            if let Some(stack) = POOL.take() {
                match rt::spawn(square, n, stack) {
                    Ok(t) => {
                        *slot = Some(t);
                        made += 1;
                    }
                    Err(_) => wrong += 1,
                }
            }
        }
        for (i, t) in threads.into_iter().enumerate() {
            let n = (batch * 8 + i) as i64;
            if let Some(t) = t
                && rt::join(t) != n * n
            {
                wrong += 1;
            }
        }
    }
    c.report("threads_joined", made, made == 200 && wrong == 0);
}

// ---- a token ring: no lost wake-up under preemption -------------------------

const RING: u64 = 4;
const LAPS: u32 = 400;
static TURN: AtomicU32 = AtomicU32::new(0);
static RING_STACKS: rt::StackPool<{ RING as usize }, 8192> = rt::StackPool::new();
static RING_DONE: AtomicBool = AtomicBool::new(false);

/// Passes the token (TURN counts up; thread i moves on TURN % RING == i)
/// and wakes everyone waiting: a wake-up lost between a waiter's check and
/// its sleep leaves the ring stuck, which the main thread's deadline sees.
fn ring_member(me: u64) -> i64 {
    loop {
        let turn = TURN.load(Ordering::Acquire);
        if turn >= LAPS * RING as u32 || RING_DONE.load(Ordering::Relaxed) {
            return 0;
        }
        if u64::from(turn) % RING != me {
            let _ = rt::futex_wait(&TURN, turn, None, true);
            continue;
        }
        // Some work between, so the timer lands anywhere.
        for _ in 0..(turn % 13) * 300 {
            core::hint::spin_loop();
        }
        TURN.store(turn + 1, Ordering::Release);
        let _ = rt::futex_wake(&TURN, i32::MAX, true);
    }
}

fn token_ring(c: &mut Checks) {
    let mut threads: [Option<rt::Thread>; RING as usize] = Default::default();
    for (i, slot) in threads.iter_mut().enumerate() {
        if let Some(stack) = RING_STACKS.take() {
            *slot = rt::spawn(ring_member, i as u64, stack).ok();
        }
    }
    // Ten seconds is hundreds of times what the ring needs.
    let deadline = rt::time_ns() + 10_000_000_000;
    while TURN.load(Ordering::Acquire) < LAPS * RING as u32 && rt::time_ns() < deadline {
        rt::sleep(5_000_000);
    }
    let turns = TURN.load(Ordering::Acquire);
    // A stuck ring: release everyone so the joins end.
    RING_DONE.store(true, Ordering::Relaxed);
    let _ = rt::futex_wake(&TURN, i32::MAX, true);
    for t in threads.into_iter().flatten() {
        rt::join(t);
    }
    c.report("token_ring_turns", turns, turns == LAPS * RING as u32);
}

// ---- requeue, as musl's condition variables use it ------------------------

static COND: AtomicU32 = AtomicU32::new(0);
static MUTEX: AtomicU32 = AtomicU32::new(0);
static WOKEN: AtomicU32 = AtomicU32::new(0);
static REQ_STACKS: rt::StackPool<2, 8192> = rt::StackPool::new();

fn cond_waiter(_: u64) -> i64 {
    // Waits on COND; a requeue moves it to MUTEX, where the wake comes.
    let r = rt::futex_wait(&COND, 0, Some(5_000_000_000), true);
    WOKEN.fetch_add(1, Ordering::AcqRel);
    match r {
        Ok(()) => 0,
        Err(e) => -(e as i64),
    }
}

fn requeue(c: &mut Checks) {
    let mut threads: [Option<rt::Thread>; 2] = Default::default();
    for slot in threads.iter_mut() {
        if let Some(stack) = REQ_STACKS.take() {
            *slot = rt::spawn(cond_waiter, 0, stack).ok();
        }
    }
    // Let both reach their wait.
    rt::sleep(30_000_000);
    let cond = COND.as_ptr() as u64;
    let mutex = MUTEX.as_ptr() as u64;
    let p = futex::PRIVATE_FLAG;
    // SAFETY: the kernel reads COND; it writes nothing.
    let moved = decode(unsafe {
        raw::syscall6(
            nr::FUTEX,
            cond,
            (futex::CMP_REQUEUE | p) as u64,
            0,
            2,
            mutex,
            0,
        )
    });
    let after_move = WOKEN.load(Ordering::Acquire);
    let woken = rt::futex_wake(&MUTEX, 2, true);
    let mut results = 0;
    for t in threads.into_iter().flatten() {
        results += rt::join(t).abs();
    }
    c.report(
        "requeue_moved",
        Shown(moved),
        moved == Ok(2) && after_move == 0,
    );
    c.report(
        "requeue_woken",
        Shown(woken.map(u64::from)),
        woken == Ok(2) && results == 0,
    );
}

// ---- bad stacks -------------------------------------------------------------

/// A thread on a stack ring 3 cannot use: its first push faults there,
/// which ends the whole program (the test expects 128 + the vector).
fn bad_stack(sp: u64) -> i64 {
    println!("threads: clone with rsp={sp:#x}");
    // SAFETY: the child faults before it touches anything of ours; the
    // tid words are statics.
    let word = TID_WORD.as_ptr() as u64;
    let r = unsafe { clone_with_registers(clone::GLIBC_PTHREAD.into(), sp, word, word, 0) };
    if decode(r).is_err() {
        println!("threads: clone refused: {}", Shown(decode(r)));
        return 1;
    }
    // The child's fault kills us here.
    rt::sleep(5_000_000_000);
    println!("threads: survived a child on a bad stack");
    0
}
