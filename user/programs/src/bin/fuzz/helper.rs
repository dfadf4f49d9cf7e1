//! Helper threads: each runs on a slot of static memory (its stack, what
//! it was started with, its job and its report) and does a sequence fixed
//! by the main thread when it was spawned, then exits with a status the
//! main thread predicted. Only the main thread spawns; a helper waits only
//! for the one helper its job names, which the main thread leaves alone.
//!
//! A slot belongs to the main thread until it spawns a thread on it, then
//! to that thread until a `wait` has reaped it (the main thread's, or the
//! waiting helper's, which the main thread reaps in turn); the system
//! calls order the accesses, so neither side sees the other's half-written
//! data.

use core::arch::naked_asm;
use core::cell::UnsafeCell;
use core::mem::{MaybeUninit, size_of};

use rt::abi::{Errno, nr};

use crate::check::NAMES;
use crate::rng::Rng;
use crate::space::Region;
use crate::thread::{Checked, Expect, Failure, Spawner, Switches, Thread, Why};

/// Threads a program may have, the main one included
/// (boot/src/syscall.rs MAX_THREADS_PER_GROUP).
pub const MAX_THREADS: usize = 64;
/// One slot per helper the kernel allows, plus a spare whose stack top is
/// offered to spawns the kernel must refuse: a kernel that started them
/// anyway would not trample a running helper.
pub const SLOTS: usize = MAX_THREADS;
pub const SPARE: usize = SLOTS - 1;
const STACK_BYTES: usize = 8192;
/// Painted at the bottom of every stack and checked when its thread is
/// reaped: the stacks sit side by side, so an overflow would otherwise
/// silently corrupt the neighbour.
const CANARY: [u8; 64] = [0xa5; 64];
pub const DATA_BYTES: usize = 4096;
/// Status of a helper that found a failure (its report says which): one
/// no job is ever given, and one an `int` status keeps as it is.
pub const FAILED: i64 = i32::MIN as i64 + 0xbad;

/// The status a thread's `exit(status)` leaves for `wait_thread`: an
/// `int`, so the low 32 bits, sign-extended, as Linux reads it.
pub fn exit_status(status: i64) -> i64 {
    i64::from(status as i32)
}

#[derive(Clone, Copy)]
pub enum Job {
    /// `calls` calls that depend on nothing shared, then exit(status).
    Plain { calls: u32, status: i64 },
    /// write(fd, data, len) into an empty pipe the main thread is about
    /// to read from, then exit with the count written.
    Write { calls: u32, fd: u32, len: u32 },
    /// read(fd, scratch, len) from a full pipe the main thread is about to
    /// write to; the bytes must equal data[..len]; exit with the count.
    Read { calls: u32, fd: u32, len: u32 },
    /// Calls until killed: left running when the main thread exits.
    Linger,
    /// read(fd, scratch, len) from an empty pipe whose write end the main
    /// thread closes right after the spawn: 0 (end of file), whether the
    /// read started before the close (and was woken by it) or after.
    EofRead { calls: u32, fd: u32, len: u32 },
    /// write(fd, data, len) into a full pipe whose read end the main thread
    /// closes right after the spawn: EPIPE, before or after the close.
    EpipeWrite { calls: u32, fd: u32, len: u32 },
    /// wait(tid, scratch) for another helper (a plain one, which the main
    /// thread then leaves alone): its tid back and `status` in scratch.
    /// Exits with `exit`.
    Reap {
        calls: u32,
        tid: u64,
        status: i64,
        exit: i64,
    },
    /// Left blocked when the main thread exits, so the kernel must kill
    /// threads inside a call: a read of a pipe nobody writes...
    BlockRead { fd: u32 },
    /// ... and a sleep that would outlast the machine (the deadline
    /// saturates in the kernel).
    SleepForever,
}

#[derive(Clone, Copy)]
pub struct Report {
    /// What the thread's own gettid said.
    pub tid: u64,
    pub calls: u64,
    /// Rounds of signals.rs and cpus.rs, for the summary.
    pub signal_calls: u64,
    pub cpu_calls: u64,
    pub failure: Option<Failure>,
    /// TID_MARK until the kernel clears it at the thread's exit, which it
    /// must do exactly when `tid_armed` (the thread's last set_tid_address
    /// named it).
    pub tid_word: u32,
    pub tid_armed: bool,
}

/// What a helper's tid word holds until its exit clears it.
const TID_MARK: u32 = 0x7e7e_7e7e;

/// After a helper is reaped: its tid word was cleared iff it asked.
pub fn check_tid_word(r: &Report) -> Result<(), Why> {
    let want = if r.tid_armed { 0 } else { TID_MARK };
    if r.tid_word == want {
        return Ok(());
    }
    Err(Why::Note(if r.tid_armed {
        "the exit did not clear the word set_tid_address named"
    } else {
        "the kernel wrote a tid word the thread never named"
    }))
}

#[repr(C, align(16))]
pub struct Slot {
    stack: [u8; STACK_BYTES],
    /// The thread starts with rsp here; the trampoline stores the 16
    /// registers and rflags it was started with just above.
    entry: [u64; 18],
    pub job: Job,
    pub seed: u64,
    /// What rdi must hold at entry.
    pub arg: u64,
    origin: Origin,
    pub data: [u8; DATA_BYTES],
    scratch: [u8; DATA_BYTES],
    pub report: Report,
}

struct Slots(UnsafeCell<MaybeUninit<[Slot; SLOTS]>>);

// SAFETY: see the module documentation: every slot has one owner at a time.
unsafe impl Sync for Slots {}

/// Zeroed, so it lands in .bss rather than a megabyte of .data in the
/// image. Zero is a valid `Slot` but for `report`, which `prepare` writes
/// before anyone reads it.
static SLOT_MEM: Slots = Slots(UnsafeCell::new(MaybeUninit::zeroed()));

/// The whole slot array, as a region the kernel may write in.
pub fn region() -> Region {
    let start = SLOT_MEM.0.get() as u64;
    Region::new(start, start + size_of::<[Slot; SLOTS]>() as u64)
}

/// Slot `i`. The caller must own it (module documentation).
pub fn slot(i: usize) -> *mut Slot {
    // SAFETY: in bounds of the array; no reference is made.
    unsafe { (SLOT_MEM.0.get() as *mut Slot).add(i) }
}

pub fn stack_top(i: usize) -> u64 {
    // SAFETY: a field address of a slot in bounds; nothing is read.
    unsafe { (&raw const (*slot(i)).entry) as u64 }
}

pub fn data_region(i: usize) -> Region {
    // SAFETY: as for stack_top.
    let start = unsafe { (&raw const (*slot(i)).data) as u64 };
    Region::new(start, start + DATA_BYTES as u64)
}

pub fn spawner() -> Spawner {
    Spawner {
        entry: helper_entry as *const () as u64,
        stack_top: stack_top(SPARE),
    }
}

/// Prepares slot `i` (owned by the caller) for a new thread.
/// Where a helper comes from, for its report: the run's seed and the
/// index of the main thread's spawn_thread call; and the run's switches.
#[derive(Clone, Copy)]
pub struct Origin {
    pub seed: u64,
    pub call: u64,
    pub switches: Switches,
}

pub fn prepare(i: usize, job: Job, seed: u64, arg: u64, origin: Origin) {
    let s = slot(i);
    // SAFETY: the caller owns the slot, and no thread runs on it.
    unsafe {
        (&mut (*s).stack)[..CANARY.len()].copy_from_slice(&CANARY);
        (&raw mut (*s).entry).write([0; 18]);
        (&raw mut (*s).job).write(job);
        (&raw mut (*s).seed).write(seed);
        (&raw mut (*s).arg).write(arg);
        (&raw mut (*s).origin).write(origin);
        (&raw mut (*s).report).write(Report {
            tid: 0,
            calls: 0,
            signal_calls: 0,
            cpu_calls: 0,
            failure: None,
            tid_word: TID_MARK,
            tid_armed: false,
        });
    }
}

/// After the reap: whether the thread kept to its stack.
pub fn stack_intact(i: usize) -> bool {
    // SAFETY: the thread on slot `i` was reaped, so the slot is ours.
    unsafe { (&(*slot(i)).stack)[..CANARY.len()] == CANARY }
}

/// Where every helper starts: saves the registers it was started with
/// above its stack top, then calls `helper_main` with their address.
#[unsafe(naked)]
extern "C" fn helper_entry() -> ! {
    naked_asm!(
        "mov [rsp], rax",
        "mov [rsp + 8], rbx",
        "mov [rsp + 16], rcx",
        "mov [rsp + 24], rdx",
        "mov [rsp + 32], rsi",
        "mov [rsp + 40], rdi",
        "mov [rsp + 48], rbp",
        "mov [rsp + 56], rsp",
        "mov [rsp + 64], r8",
        "mov [rsp + 72], r9",
        "mov [rsp + 80], r10",
        "mov [rsp + 88], r11",
        "mov [rsp + 96], r12",
        "mov [rsp + 104], r13",
        "mov [rsp + 112], r14",
        "mov [rsp + 120], r15",
        "pushfq",
        "pop rax",
        "mov [rsp + 128], rax",
        "mov rdi, rsp",
        "xor ebp, ebp",
        // The stack top is 16-byte aligned (spawn_thread refuses others),
        // so after the call helper_main sees the SysV alignment.
        "and rsp, -16",
        "call {main}",
        "ud2",
        main = sym helper_main,
    )
}

extern "C" fn helper_main(entry: *const [u64; 18]) -> ! {
    let base = SLOT_MEM.0.get() as usize;
    let i = (entry as usize).wrapping_sub(base) / size_of::<Slot>();
    let status = if i < SLOTS {
        // SAFETY: the main thread spawned us on slot i, which is ours
        // until it reaps us.
        let s = unsafe { &mut *slot(i) };
        run(s)
    } else {
        // Only a kernel that started a thread on a stack it should have
        // refused could get here; the main thread's prediction failed.
        FAILED
    };
    rt::exit_thread(status)
}

fn run(s: &mut Slot) -> i64 {
    let mut t = Thread::new(
        Rng::new(s.seed),
        crate::space(),
        data_scratch(s),
        false,
        s.origin.switches,
    );
    let spawn = spawner();
    let index = (s as *const Slot as usize - SLOT_MEM.0.get() as usize) / size_of::<Slot>();
    t.sig_own = crate::signals::owned_signal(index + 1);
    let tid_word = (&raw mut s.report.tid_word) as u64;
    t.tid_word = Some(tid_word);
    let outcome = (|| {
        check_entry(s, &t)?;
        t.learn_tid()?;
        match s.job {
            Job::Plain { calls, status } => {
                for _ in 0..calls {
                    t.stateless(&spawn)?;
                }
                Ok(status)
            }
            // The transfer comes first: the main thread is blocked until
            // it happens.
            Job::Write { calls, fd, len } => {
                let ptr = s.data.as_ptr() as u64;
                // SAFETY: the kernel reads `len` bytes of our data.
                let n = unsafe {
                    t.call(
                        nr::WRITE,
                        &[fd.into(), ptr, len.into()],
                        Expect::Ret(len.into()),
                    )?
                };
                for _ in 0..calls {
                    t.stateless(&spawn)?;
                }
                Ok(n as i64)
            }
            Job::Read { calls, fd, len } => {
                let ptr = s.scratch.as_mut_ptr() as u64;
                // SAFETY: the kernel writes at most `len` bytes into our
                // scratch buffer, which nothing borrows.
                let n = unsafe {
                    t.call(
                        nr::READ,
                        &[fd.into(), ptr, len.into()],
                        Expect::Ret(len.into()),
                    )?
                };
                let len = len as usize;
                if let Some(at) = (0..len).find(|&k| s.scratch[k] != s.data[k]) {
                    return Err(t.fail(Why::Memory {
                        addr: ptr + at as u64,
                        want: s.data[at],
                        got: s.scratch[at],
                    }));
                }
                for _ in 0..calls {
                    t.stateless(&spawn)?;
                }
                Ok(n as i64)
            }
            Job::EofRead { calls, fd, len } => {
                for _ in 0..calls {
                    t.stateless(&spawn)?;
                }
                let ptr = s.scratch.as_mut_ptr() as u64;
                // SAFETY: at most `len` bytes into our scratch buffer.
                unsafe { t.call(nr::READ, &[fd.into(), ptr, len.into()], Expect::Ret(0))? };
                Ok(0)
            }
            Job::EpipeWrite { calls, fd, len } => {
                for _ in 0..calls {
                    t.stateless(&spawn)?;
                }
                let ptr = s.data.as_ptr() as u64;
                let epipe = Expect::Err(Errno::EPIPE);
                // SAFETY: the kernel reads at most `len` bytes of our data.
                let ret = unsafe { t.call(nr::WRITE, &[fd.into(), ptr, len.into()], epipe)? };
                Ok(ret as i64)
            }
            Job::Reap {
                calls,
                tid,
                status,
                exit,
            } => {
                for _ in 0..calls {
                    t.stateless(&spawn)?;
                }
                let ptr = s.scratch.as_mut_ptr() as u64;
                // SAFETY: eight bytes into our scratch buffer.
                unsafe { t.call(nr::WAIT_THREAD, &[tid, ptr], Expect::Ret(tid))? };
                let want = status.to_le_bytes();
                if s.scratch[..8] == FAILED.to_le_bytes() {
                    return Err(t.fail(Why::Note(
                        "the helper it waited for failed (its report is above)",
                    )));
                }
                if let Some(at) = (0..8).find(|&k| s.scratch[k] != want[k]) {
                    return Err(t.fail(Why::Memory {
                        addr: ptr + at as u64,
                        want: want[at],
                        got: s.scratch[at],
                    }));
                }
                Ok(exit)
            }
            Job::Linger => loop {
                t.stateless(&spawn)?;
            },
            Job::BlockRead { fd } => {
                let ptr = s.scratch.as_mut_ptr() as u64;
                // SAFETY: at most one byte into our scratch buffer.
                unsafe { t.call(nr::READ, &[fd.into(), ptr, 1], Expect::Ret(0))? };
                Err(t.fail(Why::Note("a read of an empty pipe returned")))
            }
            Job::SleepForever => {
                let forever = rt::abi::Timespec {
                    sec: i64::MAX,
                    nsec: 0,
                }
                .to_bytes();
                // SAFETY: the kernel reads the 16 bytes of `forever`.
                let req = forever.as_ptr() as u64;
                unsafe { t.call(nr::NANOSLEEP, &[req, 0], Expect::Ret(0))? };
                Err(t.fail(Why::Note("a sleep of i64::MAX seconds returned")))
            }
        }
    })();
    s.report.tid = t.tid;
    s.report.calls = t.calls;
    s.report.signal_calls = t.signal_calls;
    s.report.cpu_calls = t.cpu_calls;
    s.report.tid_armed = t.tid_addr == tid_word;
    match outcome {
        Ok(status) => status,
        Err(f) => {
            // Printed now, not only when the main thread reaps us: it may
            // be blocked forever waiting for the transfer we failed.
            let slot = (s as *const Slot as usize - SLOT_MEM.0.get() as usize) / size_of::<Slot>();
            rt::println!(
                "fuzz FAIL seed={} helper slot={slot} spawned by main call={} (its own calls count from 0)",
                s.origin.seed,
                s.origin.call
            );
            t.report(s.origin.seed, "helper", &f, Some(s.origin.call + 1));
            s.report.failure = Some(f);
            FAILED
        }
    }
}

/// A helper's own writable memory for valid pointers: its scratch buffer
/// (data holds what a Write job sends or a Read job expects).
fn data_scratch(s: &Slot) -> Region {
    let start = s.scratch.as_ptr() as u64;
    Region::new(start, start + DATA_BYTES as u64)
}

/// docs/abi.md: a new thread starts with rsp = stack_top, rdi = arg,
/// rflags = 0x202 and every other register 0.
fn check_entry(s: &Slot, t: &Thread) -> Checked<()> {
    let top = (&raw const s.entry) as u64;
    for (reg, &got) in s.entry.iter().enumerate().take(NAMES.len() + 1) {
        let want = match reg {
            5 => s.arg,
            7 => top,
            16 => 0x202,
            _ => 0,
        };
        if got != want {
            return Err(t.fail(Why::Entry { reg, want, got }));
        }
    }
    Ok(())
}

/// The spawn_thread arguments for slot `i`.
pub fn spawn_args(i: usize, arg: u64) -> [u64; 3] {
    [helper_entry as *const () as u64, stack_top(i), arg]
}

/// What `wait` on a helper should see: its tid back, and the status its
/// job ends with.
pub fn expected_status(job: Job) -> i64 {
    match job {
        Job::Plain { status, .. } => exit_status(status),
        Job::Write { len, .. } | Job::Read { len, .. } => len.into(),
        Job::EofRead { .. } => 0,
        Job::EpipeWrite { .. } => -(Errno::EPIPE as i64),
        Job::Reap { exit, .. } => exit_status(exit),
        // Never reaped: they run until the program ends.
        Job::Linger | Job::BlockRead { .. } | Job::SleepForever => FAILED,
    }
}
