//! The process model on the host: a [`Machine`] whose tasks are threads,
//! of which exactly one runs at a time (a baton passed at every switch),
//! over simulated memory. User programs are closures that make system
//! calls through [`User`]; everything else is the real code.

use super::*;
use crate::mm::Pfn;
use crate::mm::frame::{FrameAllocator, FrameDesc};
use crate::mm::mmu::SimMmu;
use crate::mm::paging::{MapError, TableAlloc};
use crate::mm::phys::SimMemory;
use crate::mm::pte::SimPte;
use abi::nr;
use std::boxed::Box;
use std::string::String;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::vec;

/// Where the test program's text starts; thread entries are slots in it.
const TEXT: u64 = 0x40_0000;
/// A writable data area for buffers.
const DATA: u64 = 0x40_1000;
const DATA_LEN: u64 = 0x4000;
const FRAMES: u64 = 2048;
const TICK_NS: u64 = 10_000_000;

type Prog = Arc<dyn Fn(&User) -> i64 + Send + Sync>;

/// Which context may run: one gate per context, opened by the switch
/// that hands it the CPU. (One condition variable for all would wake every
/// parked thread at every switch.)
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    turn: Condvar,
}

#[derive(Default)]
struct Baton {
    gates: Mutex<Vec<Arc<Gate>>>,
    poisoned: std::sync::atomic::AtomicBool,
}

impl Baton {
    fn gate(&self, id: usize) -> Arc<Gate> {
        let mut gates = self.gates.lock().unwrap();
        while gates.len() <= id {
            gates.push(Arc::default());
        }
        gates[id].clone()
    }

    fn hand_to(&self, to: usize) {
        let gate = self.gate(to);
        *gate.open.lock().unwrap() = true;
        gate.turn.notify_one();
    }

    fn wait_for(&self, me: usize) {
        let gate = self.gate(me);
        let mut open = gate.open.lock().unwrap();
        while !*open {
            assert!(
                !self.poisoned.load(Ordering::SeqCst),
                "every task is blocked for good"
            );
            open = gate.turn.wait(open).unwrap();
        }
        *open = false;
    }

    fn poison(&self) {
        self.poisoned.store(true, Ordering::SeqCst);
        for gate in self.gates.lock().unwrap().iter() {
            gate.turn.notify_all();
        }
    }
}

struct HostMachine {
    mem: &'static SimMemory,
    frames: &'static FrameAllocator<'static>,
    tables: Tables,
    /// The simulated MMU's TLB takes every flush.
    mmu: &'static SimMmu<'static, SimPte, SimMemory>,
    kernel_root: Pfn,
    clock: AtomicU64,
    console: Mutex<Vec<u8>>,
    baton: Arc<Baton>,
    next_id: AtomicUsize,
    live_contexts: Arc<AtomicUsize>,
    /// The program the next main thread runs.
    next_main: Mutex<Option<Prog>>,
    /// Thread entry `TEXT + 16 * (i + 1)` runs `threads[i]`.
    threads: Mutex<Vec<Prog>>,
    sys: OnceLock<&'static System<HostMachine>>,
    /// Panics of program threads, reported by the test's own thread.
    panics: Mutex<Vec<String>>,
}

struct HostCtx {
    id: usize,
    live: Arc<AtomicUsize>,
    /// The FS base, as the machine keeps it per task.
    fs_base: AtomicU64,
}

impl Drop for HostCtx {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Tables(&'static FrameAllocator<'static>);

impl TableAlloc for Tables {
    fn alloc_table(&self) -> Result<Pfn, MapError> {
        self.0.alloc_frame().map_err(|_| MapError::NoMemory)
    }

    fn free_table(&self, pfn: Pfn) {
        assert_eq!(self.0.free(pfn, 0), Ok(()), "free of table {pfn:?}");
    }
}

impl HostMachine {
    fn context(&self) -> HostCtx {
        self.live_contexts.fetch_add(1, Ordering::SeqCst);
        HostCtx {
            id: self.next_id.fetch_add(1, Ordering::SeqCst),
            live: self.live_contexts.clone(),
            fs_base: AtomicU64::new(0),
        }
    }

    /// The thread behind a context: it waits for its first turn, runs,
    /// and ends its task.
    fn start_thread(&self, id: usize, start: Start) {
        let baton = self.baton.clone();
        let program = match start {
            // The ELF entry is the main thread's; threads (spawn_thread's
            // entries, and where clone children resume) start in slots.
            Start::User { rip: TEXT, .. } => self.next_main.lock().unwrap().take(),
            Start::User { rip, .. }
            | Start::Clone {
                regs: UserRegs { rip, .. },
                ..
            } => {
                let slot = (rip.wrapping_sub(TEXT) / 16).wrapping_sub(1) as usize;
                self.threads.lock().unwrap().get(slot).cloned()
            }
            _ => None,
        };
        let sys_cell = self.sys.get().copied();
        std::thread::spawn(move || {
            baton.wait_for(id);
            let sys = sys_cell.expect("system");
            // A task that panics holds the CPU for good: poison the baton,
            // so that the test's thread fails instead of waiting forever.
            let _guard = PoisonOnPanic(baton.clone());
            match (start, program) {
                (Start::Kernel { entry, arg }, _) => {
                    let status = entry(arg);
                    sys.exit_current(status)
                }
                (Start::Clone { regs, .. }, Some(program)) => {
                    let user = User {
                        sys,
                        arg: regs.rdi,
                        rsp: regs.rsp,
                        start: Some(regs),
                    };
                    let status = run_program(sys, &*program, &user);
                    user.call(nr::EXIT, &[status as u64]);
                    unreachable!("exit returned")
                }
                (Start::User { arg0, rsp, rip, .. }, Some(program)) => {
                    let user = User {
                        sys,
                        arg: arg0,
                        rsp,
                        start: None,
                    };
                    let status = run_program(sys, &*program, &user);
                    // As rt does: the main function's end ends the program,
                    // a thread's end only the thread.
                    let end = if rip == TEXT {
                        nr::EXIT_GROUP
                    } else {
                        nr::EXIT
                    };
                    user.call(end, &[status as u64]);
                    unreachable!("exit returned")
                }
                (Start::None, _) => idle(sys, &baton),
                (Start::User { .. } | Start::Clone { .. }, None) => {
                    panic!("no program for this thread")
                }
            }
        });
    }
}

/// Runs a program body; a failed assertion in it becomes a recorded
/// panic the test's own thread reports, and the thread exits with -1
/// instead of dying with the baton in hand.
fn run_program(
    sys: &System<HostMachine>,
    program: &(dyn Fn(&User) -> i64 + Send + Sync),
    user: &User,
) -> i64 {
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| program(user)));
    match run {
        Ok(status) => status,
        Err(why) => {
            let text = why
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| why.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            sys.m.panics.lock().unwrap().push(text);
            -1
        }
    }
}

struct PoisonOnPanic(Arc<Baton>);

impl Drop for PoisonOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.poison();
        }
    }
}

/// The idle task: time passes only here, as on a machine whose CPU halts
/// until the next timer interrupt.
fn idle(sys: &'static System<HostMachine>, baton: &Baton) -> ! {
    for _ in 0..100_000 {
        sys.m.clock.fetch_add(TICK_NS, Ordering::SeqCst);
        sys.tick();
    }
    baton.poison();
    panic!("idle for 1000 simulated seconds: a task waits for nothing");
}

impl Machine for HostMachine {
    type Pte = SimPte;
    type Mem = SimMemory;
    type Context = HostCtx;
    type SwitchPoint = usize;

    fn mem(&self) -> &'static SimMemory {
        self.mem
    }

    fn frames(&self) -> &'static FrameAllocator<'static> {
        self.frames
    }

    fn tables(&self) -> &dyn TableAlloc {
        &self.tables
    }

    fn tlb(&self) -> &'static dyn crate::mm::tlb::TlbFlush {
        self.mmu
    }

    fn kernel_root(&self) -> Pfn {
        self.kernel_root
    }

    fn now_ns(&self) -> u64 {
        self.clock.load(Ordering::SeqCst)
    }

    fn tick_ns(&self) -> u64 {
        TICK_NS
    }

    fn console_write(&self, bytes: &[u8]) {
        let console = &self.console;
        crate::testutil::alloc::normal(|| console.lock().unwrap().extend_from_slice(bytes));
    }

    fn new_context(&self, start: Start, _root: Option<Pfn>) -> Result<HostCtx, Errno> {
        // A host thread stands for a kernel stack: its allocations are
        // the machine's, not the kernel's.
        crate::testutil::alloc::normal(|| {
            let ctx = self.context();
            if let Start::Clone { fs_base, .. } = start {
                ctx.fs_base.store(fs_base, Ordering::SeqCst);
            }
            self.start_thread(ctx.id, start);
            Ok(ctx)
        })
    }

    fn switch_point(ctx: &HostCtx) -> usize {
        ctx.id
    }

    fn fs_base(&self, ctx: &HostCtx) -> u64 {
        ctx.fs_base.load(Ordering::SeqCst)
    }

    fn set_fs_base(&self, ctx: &HostCtx, base: u64) {
        ctx.fs_base.store(base, Ordering::SeqCst);
    }

    fn switch(&self, from: usize, to: usize) {
        // The baton stands for the CPU: its allocations are not the kernel's.
        crate::testutil::alloc::normal(|| {
            self.baton.hand_to(to);
            self.baton.wait_for(from);
        });
    }
}

/// A user program's view: system calls, and its own memory as the CPU
/// would let it touch it.
struct User {
    sys: &'static System<HostMachine>,
    arg: u64,
    /// The stack pointer the thread started with.
    rsp: u64,
    /// A clone child's registers as the machine was told to start it.
    start: Option<UserRegs>,
}

/// The registers a test program makes its calls with, besides the call's
/// own: distinct values, so that a copy that mixed them up shows.
fn caller_regs(number: u64, a: [u64; 6]) -> UserRegs {
    UserRegs {
        rax: number,
        rbx: 0xb0b0,
        rcx: TEXT + 2,
        rdx: a[2],
        rsi: a[1],
        rdi: a[0],
        rbp: 0xb9b9,
        rsp: DATA + DATA_LEN - 0x800,
        r8: a[4],
        r9: a[5],
        r10: a[3],
        r11: 0x246,
        r12: 0x1212,
        r13: 0x1313,
        r14: 0x1414,
        r15: 0x1515,
        rip: TEXT + 2,
        rflags: 0x246,
    }
}

impl User {
    /// One system call and the return to user mode after it.
    fn call(&self, number: u64, args: &[u64]) -> i64 {
        self.call_from(number, args, TEXT + 2)
    }

    /// A system call made by the instruction before `rip` (what a clone
    /// child resumes at: its entry, see `World::thread`).
    fn call_from(&self, number: u64, args: &[u64], rip: u64) -> i64 {
        let rax = self.raw_call(number, args, rip);
        self.sys.return_to_user();
        // The lock-free current tid agrees with the scheduler's.
        let sched = self.sys.with_sched(|s| s.current());
        assert_eq!(self.sys.current(), sched, "current() is stale");
        rax
    }

    /// The call without the return to user mode: a kill's EINTR shows.
    fn raw_call(&self, number: u64, args: &[u64], rip: u64) -> i64 {
        let mut a = [0; 6];
        a[..args.len()].copy_from_slice(args);
        let regs = || UserRegs {
            rip,
            rcx: rip,
            ..caller_regs(number, a)
        };
        self.sys.syscall(number, a, &regs) as i64
    }

    /// The program's own store, through the simulated MMU as the CPU
    /// would do it (accessed and dirty bits, the TLB).
    fn poke(&self, va: u64, data: &[u8]) {
        let root = self.root();
        // The MMU's TLB is hardware: its allocations are not the kernel's.
        crate::testutil::alloc::normal(|| self.sys.m.mmu.write(root, va, data)).expect("poke");
    }

    fn peek(&self, va: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0; len];
        let root = self.root();
        crate::testutil::alloc::normal(|| self.sys.m.mmu.read(root, va, &mut buf)).expect("peek");
        buf
    }

    fn root(&self) -> Pfn {
        self.sys
            .with_current_process(|p| Ok(p.space.root()))
            .expect("a user task")
    }

    /// nanosleep for `ns`, with the timespec in the data area.
    fn sleep(&self, ns: u64) -> i64 {
        let at = DATA + DATA_LEN - 0x100;
        self.poke(at, &abi::Timespec::from_ns(ns).to_bytes());
        self.call(nr::NANOSLEEP, &[at, 0])
    }

    /// A pipe: (read fd, write fd).
    fn pipe(&self) -> (u64, u64) {
        assert_eq!(self.call(nr::PIPE, &[DATA]), 0);
        let fds = self.peek(DATA, 8);
        let r = u32::from_le_bytes(fds[..4].try_into().unwrap());
        let w = u32::from_le_bytes(fds[4..].try_into().unwrap());
        (r.into(), w.into())
    }

    fn spawn_thread(&self, entry: u64, arg: u64) -> i64 {
        self.call(nr::SPAWN_THREAD, &[entry, DATA + DATA_LEN, arg])
    }
}

mod threads;

const EFAULT: i64 = -(Errno::EFAULT as i64);
const EBADF: i64 = -(Errno::EBADF as i64);
const EPIPE: i64 = -(Errno::EPIPE as i64);
const ESRCH: i64 = -(Errno::ESRCH as i64);

/// A booted system on the test's thread, which is its boot thread.
struct World {
    sys: &'static System<HostMachine>,
}

impl World {
    fn new() -> World {
        let end = (0x100 + FRAMES) as usize;
        let descs: Vec<FrameDesc> = (0..end).map(|_| FrameDesc::new()).collect();
        let descs: &'static [FrameDesc] = Box::leak(descs.into_boxed_slice());
        let frames: &'static FrameAllocator<'static> = Box::leak(Box::new(FrameAllocator::new(
            descs,
            &[Pfn(0x100)..Pfn(end as u64)],
        )));
        let mem: &'static SimMemory = Box::leak(Box::new(SimMemory::new()));
        let kernel_root =
            crate::mm::paging::PageTable::<SimPte, SimMemory>::new(mem, &Tables(frames))
                .expect("kernel root")
                .root();
        let machine = HostMachine {
            mem,
            frames,
            tables: Tables(frames),
            mmu: Box::leak(Box::new(SimMmu::new(mem))),
            kernel_root,
            clock: AtomicU64::new(0),
            console: Mutex::new(Vec::new()),
            baton: Arc::new(Baton::default()),
            next_id: AtomicUsize::new(0),
            live_contexts: Arc::new(AtomicUsize::new(0)),
            next_main: Mutex::new(None),
            threads: Mutex::new(Vec::new()),
            sys: OnceLock::new(),
            panics: Mutex::new(Vec::new()),
        };
        let idle = machine.context();
        let boot = machine.context();
        let idle_id = idle.id;
        let sys: &'static System<HostMachine> =
            Box::leak(Box::new(System::new(machine, idle, boot)));
        let _ = sys.m.sys.set(sys);
        sys.m.start_thread(idle_id, Start::None);
        World { sys }
    }

    /// Registers a thread body; returns its entry address.
    fn thread(&self, f: impl Fn(&User) -> i64 + Send + Sync + 'static) -> u64 {
        let mut threads = self.sys.m.threads.lock().unwrap();
        threads.push(Arc::new(f));
        TEXT + 16 * threads.len() as u64
    }

    /// Starts a process running `main` as `test a bb`; returns its pid.
    fn run(&self, main: impl Fn(&User) -> i64 + Send + Sync + 'static) -> Pid {
        *self.sys.m.next_main.lock().unwrap() = Some(Arc::new(main));
        self.sys
            .spawn_program("test", &program_image(), "a bb")
            .expect("spawn")
    }

    /// Runs `main` to its end and collects the process.
    fn run_to_end(&self, main: impl Fn(&User) -> i64 + Send + Sync + 'static) -> i64 {
        let pid = self.run(main);
        let status = self.sys.join_process(pid, TICK_NS).expect("join");
        self.check_panics();
        status
    }

    /// Fails the test with the first panic of a program thread.
    fn check_panics(&self) {
        if let Some(why) = self.sys.m.panics.lock().unwrap().first() {
            panic!("a program thread panicked: {why}");
        }
    }

    fn console(&self) -> String {
        String::from_utf8_lossy(&self.sys.m.console.lock().unwrap()).into_owned()
    }

    fn free_frames(&self) -> u64 {
        self.sys.m.frames.stats().free
    }

    /// Nothing of any process is left: no task but idle and boot, no
    /// process, no pipe, no context, no kill in flight.
    fn assert_quiet(&self) {
        self.check_panics();
        let tasks: Vec<_> = self.sys.with_sched(|s| s.tasks().map(|t| t.tid).collect());
        assert_eq!(tasks, [0, 1], "tasks left");
        assert_eq!(self.sys.process_count(), 0);
        assert_eq!(self.sys.pipe_count(), 0);
        assert_eq!(self.sys.m.live_contexts.load(Ordering::SeqCst), 2);
        assert_eq!(self.sys.kills_in_flight(), 0);
    }
}

/// A minimal static executable: text at TEXT, data at DATA.
fn program_image() -> Vec<u8> {
    const EHDR: usize = 64;
    const PHDR: usize = 56;
    let text_at = EHDR + 2 * PHDR;
    let mut img = vec![0u8; text_at + 16];
    img[..4].copy_from_slice(b"\x7fELF");
    img[4] = 2; // 64-bit
    img[5] = 1; // little-endian
    img[6] = 1;
    img[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    img[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86_64
    img[20..24].copy_from_slice(&1u32.to_le_bytes());
    img[24..32].copy_from_slice(&TEXT.to_le_bytes());
    img[32..40].copy_from_slice(&(EHDR as u64).to_le_bytes());
    img[52..54].copy_from_slice(&(EHDR as u16).to_le_bytes());
    img[54..56].copy_from_slice(&(PHDR as u16).to_le_bytes());
    img[56..58].copy_from_slice(&2u16.to_le_bytes());
    // (flags, vaddr, file offset, file size, memory size)
    let segs = [
        (5u32, TEXT, text_at as u64, 16u64, 0x1000u64),
        (6u32, DATA, 0, 0, DATA_LEN),
    ];
    for (i, (flags, vaddr, offset, file, memsz)) in segs.into_iter().enumerate() {
        let ph = EHDR + i * PHDR;
        img[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        img[ph + 4..ph + 8].copy_from_slice(&flags.to_le_bytes());
        img[ph + 8..ph + 16].copy_from_slice(&offset.to_le_bytes());
        img[ph + 16..ph + 24].copy_from_slice(&vaddr.to_le_bytes());
        img[ph + 24..ph + 32].copy_from_slice(&vaddr.to_le_bytes());
        img[ph + 32..ph + 40].copy_from_slice(&file.to_le_bytes());
        img[ph + 40..ph + 48].copy_from_slice(&memsz.to_le_bytes());
        img[ph + 48..ph + 56].copy_from_slice(&0x1000u64.to_le_bytes());
    }
    img
}

#[test]
fn a_program_writes_to_the_console_and_its_status_comes_back() {
    let w = World::new();
    let frames = w.free_frames();
    let status = w.run_to_end(|u| {
        u.poke(DATA, b"hello\n");
        assert_eq!(u.call(nr::WRITE, &[1, DATA, 6]), 6);
        let me = u.sys.with_sched(|s| s.current());
        assert_eq!(u.call(nr::GETTID, &[]), me as i64);
        42
    });
    assert_eq!(status, 42);
    assert_eq!(w.console(), "hello\n");
    assert_eq!(w.free_frames(), frames, "frames leaked");
    w.assert_quiet();
}

#[test]
fn console_output_keeps_characters_whole_and_marks_bad_bytes() {
    let w = World::new();
    w.run_to_end(|u| {
        // A 3-byte character across the 256-byte piece boundary, then a
        // stray continuation byte.
        let mut text = vec![b'a'; 255];
        text.extend_from_slice("€".as_bytes());
        text.push(0x80);
        u.poke(DATA, &text);
        u.call(nr::WRITE, &[1, DATA, text.len() as u64]);
        0
    });
    let out = w.console();
    assert!(out.ends_with("a€\u{FFFD}"), "{out:?}");
}

#[test]
fn pointers_are_checked_before_anything_else() {
    let w = World::new();
    let status = w.run_to_end(|u| {
        assert_eq!(u.call(nr::WRITE, &[99, 0, 1]), EFAULT);
        assert_eq!(u.call(nr::READ, &[0, 0xffff_8000_0000_0000, 1]), EFAULT);
        assert_eq!(u.call(nr::PIPE, &[TEXT]), EFAULT, "read-only page");
        // The status pointer before the tid, however bad the tid.
        assert_eq!(
            u.call(nr::WAIT_THREAD, &[1 << 32, 0xffff_8000_0000_0000]),
            EFAULT
        );
        assert_eq!(u.call(nr::WAIT_THREAD, &[1 << 32, 0]), ESRCH);
        assert_eq!(u.call(nr::CLOSE, &[7]), EBADF);
        assert_eq!(u.call(999, &[]), -(Errno::ENOSYS as i64));
        0
    });
    assert_eq!(status, 0);
    w.assert_quiet();
}

#[test]
fn pipe_between_threads_blocks_and_wakes() {
    let w = World::new();
    let reader = w.thread(|u| {
        // The read blocks until the main thread writes.
        let n = u.call(nr::READ, &[u.arg, DATA + 0x100, 64]);
        assert_eq!(u.peek(DATA + 0x100, n as usize), b"ping");
        n
    });
    let status = w.run_to_end(move |u| {
        let (r, wr) = u.pipe();
        let t = u.spawn_thread(reader, r);
        assert!(t > 0, "spawn_thread: {t}");
        // Let the reader block first.
        u.sleep(5 * TICK_NS);
        u.poke(DATA + 0x200, b"ping");
        assert_eq!(u.call(nr::WRITE, &[wr, DATA + 0x200, 4]), 4);
        assert_eq!(u.call(nr::WAIT_THREAD, &[t as u64, DATA + 0x300]), t);
        let status = i64::from_le_bytes(u.peek(DATA + 0x300, 8).try_into().unwrap());
        assert_eq!(status, 4);
        assert_eq!(u.call(nr::CLOSE, &[wr]), 0);
        assert_eq!(
            u.call(nr::READ, &[r, DATA, 1]),
            0,
            "EOF once writers are gone"
        );
        assert_eq!(u.call(nr::CLOSE, &[r]), 0);
        0
    });
    assert_eq!(status, 0);
    w.assert_quiet();
}

#[test]
fn write_with_no_reader_is_epipe_and_descriptors_are_lowest_free() {
    let w = World::new();
    w.run_to_end(|u| {
        let (r, wr) = u.pipe();
        assert_eq!((r, wr), (0, 3), "0 is free, 1 and 2 are the console");
        assert_eq!(u.call(nr::CLOSE, &[r]), 0);
        u.poke(DATA, b"x");
        assert_eq!(u.call(nr::WRITE, &[wr, DATA, 1]), EPIPE);
        assert_eq!(u.call(nr::READ, &[wr, DATA, 1]), EBADF);
        let (r2, w2) = u.pipe();
        assert_eq!((r2, w2), (0, 4));
        0
    });
    // Descriptors left open are closed at the end: no pipe survives.
    w.assert_quiet();
}

#[test]
fn a_failed_copy_to_the_reader_leaves_the_bytes_in_the_pipe() {
    let w = World::new();
    w.run_to_end(|u| {
        let (r, wr) = u.pipe();
        u.poke(DATA, b"precious");
        assert_eq!(u.call(nr::WRITE, &[wr, DATA, 8]), 8);
        let id = match u.sys.file(r) {
            Ok(File::PipeRead(id)) => id,
            other => panic!("{other:?}"),
        };
        // As if the buffer were unmapped after the call checked it: the
        // copy fails, and nothing may be consumed.
        assert_eq!(
            u.sys.pipe_read(id, DATA + DATA_LEN - 4, 8),
            Err(Errno::EFAULT)
        );
        assert_eq!(u.call(nr::READ, &[r, DATA + 0x100, 8]), 8);
        assert_eq!(u.peek(DATA + 0x100, 8), b"precious");
        0
    });
    w.assert_quiet();
}

#[test]
fn threads_spawned_while_the_program_ends_never_outlive_it() {
    let w = World::new();
    let frames = w.free_frames();
    // Each thread makes more threads as fast as it can, then spins.
    let spawner: Arc<OnceLock<u64>> = Arc::new(OnceLock::new());
    let me = spawner.clone();
    let entry = w.thread(move |u| {
        let entry = *me.get().expect("entry");
        loop {
            u.spawn_thread(entry, 0);
            u.call(nr::SCHED_YIELD, &[]);
        }
    });
    spawner.set(entry).unwrap();
    for round in 0..20 {
        let status = w.run_to_end(move |u| {
            for _ in 0..3 {
                u.spawn_thread(entry, 0);
            }
            // Let the threads multiply, then end the program under them.
            for _ in 0..round {
                u.call(nr::SCHED_YIELD, &[]);
            }
            7
        });
        assert_eq!(status, 7, "round {round}");
        w.assert_quiet();
    }
    assert_eq!(w.free_frames(), frames, "frames leaked");
}

#[test]
fn killing_a_program_blocked_in_a_pipe_read_collects_everything() {
    let w = World::new();
    let frames = w.free_frames();
    let blocked = w.thread(|u| u.call(nr::READ, &[u.arg, DATA, 1]));
    let pid = w.run(move |u| {
        let (r, _w) = u.pipe();
        for _ in 0..5 {
            u.spawn_thread(blocked, r);
        }
        u.call(nr::READ, &[r, DATA, 1])
    });
    w.sys.sleep_ns(10 * TICK_NS);
    w.sys.kill_process(pid, 137).expect("kill");
    assert_eq!(w.sys.join_process(pid, TICK_NS), Ok(137));
    w.assert_quiet();
    assert_eq!(w.free_frames(), frames);
}

#[test]
fn out_of_memory_is_an_error_code_never_a_panic() {
    let w = World::new();
    let frames = w.free_frames();
    let entry = w.thread(|u| {
        u.sleep(u64::MAX);
        0
    });
    let status = w.run_to_end(move |u| {
        // Frames: take all but a few, then open pipes until refused.
        let mut held = Vec::new();
        while u.sys.m.frames.stats().free > 3 {
            held.push(u.sys.m.frames.alloc_frame().unwrap());
        }
        let mut refused = 0;
        for _ in 0..10 {
            match u.call(nr::PIPE, &[DATA]) {
                0 => {}
                e => {
                    assert_eq!(e, -(Errno::ENOMEM as i64));
                    refused += 1;
                }
            }
        }
        assert!(refused > 0, "pipes never ran out of frames");
        for pfn in held {
            u.sys.m.frames.free(pfn, 0).unwrap();
        }
        // The heap: every call with allocation failing on this thread.
        crate::testutil::alloc::failing(|| {
            let r = u.call(nr::PIPE, &[DATA]);
            assert!(r == 0 || r == -(Errno::ENOMEM as i64), "pipe: {r}");
            let t = u.spawn_thread(entry, 0);
            assert!(t > 0 || t == -(Errno::EAGAIN as i64), "spawn_thread: {t}");
            u.poke(DATA, b"ok");
            assert_eq!(u.call(nr::WRITE, &[1, DATA, 2]), 2);
        });
        0
    });
    assert_eq!(status, 0);
    w.assert_quiet();
    assert_eq!(w.free_frames(), frames);
}

#[test]
fn a_reader_whose_pipe_is_closed_under_it_never_reads_the_next_pipe_in_its_slot() {
    let w = World::new();
    let reader = w.thread(|u| u.call(nr::READ, &[u.arg, DATA + 0x100, 16]));
    let status = w.run_to_end(move |u| {
        let (r, wr) = u.pipe();
        let t = u.spawn_thread(reader, r);
        u.sleep(5 * TICK_NS);
        // Both ends closed while the reader is blocked: the pipe is freed
        // and the reader woken, but it runs only after a new pipe has
        // taken the same slot and holds data.
        assert_eq!(u.call(nr::CLOSE, &[r]), 0);
        assert_eq!(u.call(nr::CLOSE, &[wr]), 0);
        let (_r2, w2) = u.pipe();
        u.poke(DATA, b"not yours");
        assert_eq!(u.call(nr::WRITE, &[w2, DATA, 9]), 9);
        assert_eq!(u.call(nr::WAIT_THREAD, &[t as u64, DATA + 0x200]), t);
        i64::from_le_bytes(u.peek(DATA + 0x200, 8).try_into().unwrap())
    });
    assert_eq!(status, EBADF);
    w.assert_quiet();
}

#[test]
fn exit_ends_only_the_thread_and_the_process_ends_with_its_last() {
    let w = World::new();
    let late = w.thread(|u| {
        // Runs on after the main thread's exit.
        u.sleep(5 * TICK_NS);
        u.poke(DATA + 0x400, b"late\n");
        u.call(nr::WRITE, &[1, DATA + 0x400, 5]);
        // Its own status is not the process's: the leader's is.
        99
    });
    let pid = w.run(move |u| {
        assert!(u.spawn_thread(late, 0) > 0);
        u.call(nr::EXIT, &[3]);
        unreachable!("exit returned")
    });
    w.sys.sleep_ns(2 * TICK_NS);
    assert!(
        !w.sys.process_ended(pid),
        "the main thread's exit ended the process"
    );
    assert_eq!(w.sys.join_process(pid, TICK_NS), Ok(3));
    assert_eq!(w.console(), "late\n");
    w.assert_quiet();
}

#[test]
fn exit_group_from_any_thread_ends_them_all_with_its_status() {
    let w = World::new();
    let ender = w.thread(|u| {
        u.call(nr::EXIT_GROUP, &[0x1_0000_0005]);
        unreachable!("exit_group returned")
    });
    let status = w.run_to_end(move |u| {
        assert!(u.spawn_thread(ender, 0) > 0);
        loop {
            u.sleep(TICK_NS);
        }
    });
    // An int: the register's low 32 bits.
    assert_eq!(status, 5);
    w.assert_quiet();
}

#[test]
fn ids_clocks_and_sleeps_follow_linux() {
    let w = World::new();
    let peer = w.thread(|u| u.call(nr::GETPID, &[]));
    let pid = w.run(move |u| {
        let pid = u.call(nr::GETPID, &[]);
        assert_eq!(pid, u.call(nr::GETTID, &[]), "the leader's tid is the pid");
        assert_eq!(
            u.call(nr::GETPPID, &[]),
            1,
            "started by the console's thread"
        );
        let t = u.spawn_thread(peer, 0);
        assert_eq!(u.call(nr::WAIT_THREAD, &[t as u64, DATA]), t);
        assert_eq!(i64::from_le_bytes(u.peek(DATA, 8).try_into().unwrap()), pid);
        let einval = -(Errno::EINVAL as i64);
        // The clock before the pointer.
        assert_eq!(u.call(nr::CLOCK_GETTIME, &[10, 0]), einval);
        assert_eq!(u.call(nr::CLOCK_GETTIME, &[1, 0]), EFAULT);
        // clock ids are ints: the high half of the register is ignored.
        assert_eq!(u.call(nr::CLOCK_GETTIME, &[1 << 32 | 1, DATA]), 0);
        let ts = abi::Timespec::from_bytes(u.peek(DATA, 16).try_into().unwrap());
        assert!(ts.nsec < 1_000_000_000 && ts.sec >= 0);
        // Sleeps: bad ranges are EINVAL, unsleepable clocks EOPNOTSUPP.
        u.poke(
            DATA,
            &abi::Timespec {
                sec: 0,
                nsec: 1_000_000_000,
            }
            .to_bytes(),
        );
        assert_eq!(u.call(nr::NANOSLEEP, &[DATA, 0]), einval);
        u.poke(DATA, &abi::Timespec { sec: -1, nsec: 0 }.to_bytes());
        assert_eq!(u.call(nr::NANOSLEEP, &[DATA, 0]), einval);
        assert_eq!(u.call(nr::NANOSLEEP, &[0, 0]), EFAULT);
        let eopnotsupp = -(Errno::EOPNOTSUPP as i64);
        assert_eq!(u.call(nr::CLOCK_NANOSLEEP, &[4, 0, DATA, 0]), eopnotsupp);
        assert_eq!(u.call(nr::CLOCK_NANOSLEEP, &[10, 0, DATA, 0]), einval);
        // An absolute time already past returns at once.
        u.poke(DATA, &abi::Timespec { sec: 0, nsec: 1 }.to_bytes());
        assert_eq!(u.call(nr::CLOCK_NANOSLEEP, &[1, 1, DATA, 0]), 0);
        // Descriptors are unsigned ints: the high half is ignored.
        let (r, _w) = u.pipe();
        assert_eq!(u.call(nr::CLOSE, &[1 << 32 | r]), 0);
        assert_eq!(u.call(nr::CLOSE, &[r]), EBADF);
        0
    });
    assert_eq!(w.sys.join_process(pid, TICK_NS), Ok(0));
    w.assert_quiet();
}

#[test]
fn a_program_starts_with_argv_envp_and_auxv_on_its_stack() {
    let w = World::new();
    let pid = w.run(|u| {
        let word = |va: u64| u64::from_le_bytes(u.peek(va, 8).try_into().unwrap());
        // Byte by byte: the last string ends just below the stack's top.
        let string = |va: u64| {
            let bytes: Vec<u8> = (va..)
                .map(|at| u.peek(at, 1)[0])
                .take_while(|&b| b != 0)
                .collect();
            String::from_utf8(bytes).unwrap()
        };
        assert_eq!(u.rsp % 16, 0, "rsp at argc is 16-byte aligned");
        assert_eq!(word(u.rsp), 3, "argc");
        let argv: Vec<String> = (0..3).map(|i| string(word(u.rsp + 8 + i * 8))).collect();
        assert_eq!(argv, ["test", "a", "bb"]);
        assert_eq!(word(u.rsp + 32), 0, "argv ends");
        assert_eq!(word(u.rsp + 40), 0, "no environment");
        let mut auxv = Vec::new();
        let mut at = u.rsp + 48;
        while word(at) != 0 {
            auxv.push((word(at), word(at + 8)));
            at += 16;
        }
        let get = |k| auxv.iter().find(|(key, _)| *key == k).map(|&(_, v)| v);
        assert_eq!(get(entry::at::PAGESZ), Some(4096));
        assert_eq!(get(entry::at::ENTRY), Some(TEXT));
        assert_eq!(get(entry::at::PHNUM), Some(2));
        assert_eq!(get(entry::at::CLKTCK), Some(100));
        let random = get(entry::at::RANDOM).unwrap();
        assert_eq!(u.peek(random, 16).len(), 16);
        0
    });
    assert_eq!(w.sys.join_process(pid, TICK_NS), Ok(0));
    w.assert_quiet();
}
