//! The process model on the host: a [`Machine`] whose tasks are threads,
//! of which exactly one runs at a time (a baton passed at every switch),
//! over simulated memory. User programs are closures that make system
//! calls through [`User`]; everything else is the real code.

use super::*;
use crate::mm::Pfn;
use crate::mm::frame::{FrameAllocator, FrameDesc};
use crate::mm::mmu::{AccessKind, Fault as MmuFault, SimMmu};
use crate::mm::paging::{MapError, TableAlloc};
use crate::mm::phys::SimMemory;
use crate::mm::pte::SimPte;
use abi::nr;
use std::boxed::Box;
use std::cell::Cell;
use std::string::String;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::vec;

/// Where the test program's text starts; thread entries are slots in it.
const TEXT: u64 = 0x40_0000;
/// A writable data area for buffers, room for transfers of several
/// pipe capacities.
const DATA: u64 = 0x40_1000;
const DATA_LEN: u64 = 0x8_0000;
const FRAMES: u64 = 2048;
const TICK_NS: u64 = 10_000_000;

type Prog = Arc<dyn Fn(&User) -> i64 + Send + Sync>;
type Mmu = SimMmu<'static, SimPte, SimMemory>;

/// Which context may run: one gate per context, opened by the switch
/// that hands it the CPU. (One condition variable for all would wake every
/// parked thread at every switch.) It carries the context's on-CPU mark,
/// which the switch keeps as a machine with several CPUs must.
struct Gate {
    open: Mutex<bool>,
    turn: Condvar,
    on_cpu: OnCpu,
}

impl Default for Gate {
    fn default() -> Gate {
        Gate {
            open: Mutex::new(false),
            turn: Condvar::new(),
            on_cpu: OnCpu::new(false),
        }
    }
}

std::thread_local! {
    /// The CPU the calling thread runs on, as the machine reports it: 0,
    /// but for a test that has the boot thread act for another CPU (to
    /// make it join). The host runs every task on CPU 0.
    static AS_CPU: Cell<usize> = const { Cell::new(0) };
}

/// Runs `f` as if on CPU `cpu`.
fn as_cpu<R>(cpu: usize, f: impl FnOnce() -> R) -> R {
    let before = AS_CPU.with(|c| c.replace(cpu));
    let r = f();
    AS_CPU.with(|c| c.set(before));
    r
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
                "the system stopped: a program panicked (its message is above) or every task is blocked for good"
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
    /// The simulated CPU's x87/SSE/AVX registers, as an XSAVE image (one
    /// set: the host tests' signal frames check what is saved and
    /// restored, not a switch).
    fpu: Mutex<FpuImage>,
    /// What each thread's function returned, by tid (a main thread's tid
    /// is its pid): the tests' programs return their findings, wider than
    /// an exit status.
    results: Mutex<Vec<(Pid, i64)>>,
    /// The CPUs kicked, in order (no other CPU runs here: the tests read
    /// what would have been sent).
    kicks: Mutex<Vec<usize>>,
}

struct HostCtx {
    id: usize,
    live: Arc<AtomicUsize>,
    /// The FS base, as the machine keeps it per task.
    fs_base: AtomicU64,
    /// Its gate, for the on-CPU mark.
    gate: Arc<Gate>,
    /// The root `set_root` last gave it (0: as made).
    root: AtomicU64,
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
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        HostCtx {
            id,
            live: self.live_contexts.clone(),
            fs_base: AtomicU64::new(0),
            root: AtomicU64::new(0),
            gate: self.baton.gate(id),
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
                        last: Cell::new(regs),
                    };
                    let status = run_program(sys, &*program, &user);
                    sys.m.results.lock().unwrap().push((sys.current(), status));
                    user.call(nr::EXIT, &[status as u64]);
                    unreachable!("exit returned")
                }
                (Start::User { arg0, rsp, rip, .. }, Some(program)) => {
                    let user = User {
                        sys,
                        arg: arg0,
                        rsp,
                        start: None,
                        last: Cell::new(UserRegs::default()),
                    };
                    let status = run_program(sys, &*program, &user);
                    sys.m.results.lock().unwrap().push((sys.current(), status));
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

    fn on_cpu(ctx: &HostCtx) -> &OnCpu {
        &ctx.gate.on_cpu
    }

    fn set_root(&self, running: &HostCtx, root: Pfn) {
        running.root.store(root.0, Ordering::SeqCst);
    }

    fn program(&self, name: &str) -> Option<(&'static str, &'static [u8])> {
        static IMAGE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        match name {
            "test" => Some(("test", IMAGE.get_or_init(program_image))),
            "junk" => Some(("junk", b"not an ELF file")),
            _ => None,
        }
    }

    fn cpu_index(&self) -> usize {
        AS_CPU.with(Cell::get)
    }

    fn kick(&self, cpu: usize) {
        let kicks = &self.kicks;
        crate::testutil::alloc::normal(|| kicks.lock().unwrap().push(cpu));
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
            let (from_gate, to_gate) = (self.baton.gate(from), self.baton.gate(to));
            // As a machine with several CPUs: the incoming task's mark
            // first; the outgoing one's once this thread is done with it
            // (it only parks from here).
            to_gate.on_cpu.claim();
            self.baton.hand_to(to);
            from_gate.on_cpu.release();
            self.baton.wait_for(from);
        });
    }

    fn fpu_format(&self) -> FpuFormat {
        FpuFormat {
            size: HOST_FPU_SIZE,
            xfeatures: HOST_XFEATURES,
        }
    }

    fn fpu_save(&self, out: &mut FpuImage) {
        // XSAVE's standard form: every component marked in use.
        *out = FpuImage::zeroed();
        out.0[..HOST_FPU_SIZE].copy_from_slice(&self.fpu.lock().unwrap().0[..HOST_FPU_SIZE]);
        out.0[464..512].fill(0);
        out.0[512..576].fill(0);
        out.0[512] = HOST_XFEATURES as u8;
    }

    fn fpu_restore(&self, image: &FpuImage, features: Option<u64>) -> bool {
        // A CPU's refusals: reserved MXCSR bits; for XRSTOR, components
        // outside XCR0 or a non-zero XCOMP_BV or reserved word.
        let b = &image.0;
        let word = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
        if u32::from_le_bytes(b[24..28].try_into().unwrap()) & !0xffff != 0 {
            return false;
        }
        let present = match features {
            None => 0b11,
            Some(f) => {
                if word(512) & !HOST_XFEATURES != 0 || word(520) != 0 || word(528) != 0 {
                    return false;
                }
                word(512) & f
            }
        };
        let mut now = fpu_init();
        if present & 0b11 != 0 {
            now.0[..464].copy_from_slice(&b[..464]);
        }
        if present & 0b100 != 0 {
            now.0[576..HOST_FPU_SIZE].copy_from_slice(&b[576..HOST_FPU_SIZE]);
        }
        *self.fpu.lock().unwrap() = now;
        true
    }

    fn fpu_reset(&self) {
        *self.fpu.lock().unwrap() = fpu_init();
    }
}

/// The simulated CPU saves x87, SSE and AVX (the upper YMM halves at
/// 576..832), as XSAVE's standard form has them.
const HOST_FPU_SIZE: usize = 832;
const HOST_XFEATURES: u64 = 0b111;

/// The image of a CPU's initial x87/SSE/AVX state: control word 0x37f,
/// MXCSR 0x1f80, the rest zero.
fn fpu_init() -> FpuImage {
    let mut image = FpuImage::zeroed();
    image.0[0..2].copy_from_slice(&0x37fu16.to_le_bytes());
    image.0[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
    image
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
    /// The registers the last call returned to user mode with (a signal
    /// handler's, when one was set up).
    last: Cell<UserRegs>,
}

/// A host test's trap frame.
struct HostFrame(UserRegs);

impl UserFrame for HostFrame {
    fn regs(&self) -> UserRegs {
        self.0
    }

    fn set_regs(&mut self, regs: &UserRegs) {
        self.0 = *regs;
    }
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
    /// child resumes at: its entry, see `World::thread`). A call the
    /// return to user mode rewinds for a restart is made again, as the CPU
    /// would; a handler's frame is left in `last` for the test to read.
    fn call_from(&self, number: u64, args: &[u64], rip: u64) -> i64 {
        loop {
            let (mut f, a) = self.frame(number, args, rip);
            let rax = self.sys.syscall(number, a, &mut f);
            f.0.rax = rax;
            self.sys.return_to_user(&mut f, Some(number));
            self.last.set(f.0);
            // The lock-free current tid agrees with the scheduler's.
            let sched = self.sys.with_sched(|s| s.current());
            assert_eq!(self.sys.current(), sched, "current() is stale");
            if !(f.0.rip == rip - 2 && f.0.rax == number) {
                return f.0.rax as i64;
            }
        }
    }

    /// The trap frame of a call from `rip - 2`.
    fn frame(&self, number: u64, args: &[u64], rip: u64) -> (HostFrame, [u64; 6]) {
        let mut a = [0; 6];
        a[..args.len()].copy_from_slice(args);
        let f = HostFrame(UserRegs {
            rip,
            rcx: rip,
            ..caller_regs(number, a)
        });
        (f, a)
    }

    /// The call without the return to user mode: a kill's EINTR shows.
    fn raw_call(&self, number: u64, args: &[u64], rip: u64) -> i64 {
        let (mut f, a) = self.frame(number, args, rip);
        self.sys.syscall(number, a, &mut f) as i64
    }

    /// Waits for spawned thread `t` and returns what its function
    /// returned (wait_thread reports the low 32 bits of it).
    fn join_thread(&self, t: i64) -> i64 {
        assert_eq!(self.call(nr::WAIT_THREAD, &[t as u64, DATA + 0xff8]), t);
        let status = i64::from_le_bytes(self.peek(DATA + 0xff8, 8).try_into().unwrap());
        let results = self.sys.m.results.lock().unwrap();
        let result = results
            .iter()
            .rev()
            .find(|(tid, _)| i64::from(*tid) == t)
            .map(|&(_, r)| r)
            .expect("the thread returned");
        // wait_thread reports the whole int the thread's exit was given.
        assert_eq!(status, i64::from(result as i32), "thread {t}'s status");
        result
    }

    /// A return to user mode with nothing to say about a call.
    fn return_to_user(&self) {
        let mut f = HostFrame(self.last.get());
        self.sys.return_to_user(&mut f, None);
        self.last.set(f.0);
    }

    /// The program's own store, through the simulated MMU as the CPU
    /// would do it (accessed and dirty bits, the TLB), its page faults
    /// resolved as the machine's fault hook resolves them.
    fn poke(&self, va: u64, data: &[u8]) {
        self.touch(va, AccessKind::Write, &mut |mmu, root| {
            mmu.write(root, va, data)
        })
        .expect("poke");
    }

    fn peek(&self, va: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0; len];
        self.touch(va, AccessKind::Read, &mut |mmu, root| {
            mmu.read(root, va, &mut buf)
        })
        .expect("peek");
        buf
    }

    /// An access through the MMU, retried after each fault the memory
    /// manager resolves; the fault it cannot resolve comes back.
    fn touch(
        &self,
        va: u64,
        kind: AccessKind,
        access: &mut dyn FnMut(&Mmu, Pfn) -> Result<(), MmuFault>,
    ) -> Result<(), crate::mm::fault::Outcome> {
        let root = self.root();
        // The MMU's TLB is hardware: its allocations are not the kernel's.
        for _ in 0..64 {
            let Err(f) = crate::testutil::alloc::normal(|| access(self.sys.m.mmu, root)) else {
                return Ok(());
            };
            let fault = crate::mm::fault::Fault {
                addr: f.va,
                access: crate::mm::fault::Access {
                    write: f.access == AccessKind::Write,
                    exec: f.access == AccessKind::Execute,
                    present: f.kind == crate::mm::mmu::FaultKind::Protection,
                },
            };
            match self.sys.resolve_fault(fault) {
                crate::mm::fault::Outcome::Resolved => {}
                other => return Err(other),
            }
        }
        panic!("{kind:?} at {va:#x}: a fault resolved again and again");
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

    /// pipe2 with `flags`: (read fd, write fd).
    fn pipe2(&self, flags: u32) -> (u64, u64) {
        assert_eq!(self.call(nr::PIPE2, &[DATA, flags.into()]), 0);
        let fds = self.peek(DATA, 8);
        let r = u32::from_le_bytes(fds[..4].try_into().unwrap());
        let w = u32::from_le_bytes(fds[4..].try_into().unwrap());
        (r.into(), w.into())
    }

    fn fcntl(&self, fd: u64, cmd: u32, arg: u64) -> i64 {
        self.call(nr::FCNTL, &[fd, cmd.into(), arg])
    }

    /// fstat into a scratch area near the end of the data.
    fn fstat(&self, fd: u64) -> abi::Stat {
        let at = DATA + DATA_LEN - 0x400;
        assert_eq!(self.call(nr::FSTAT, &[fd, at]), 0, "fstat({fd})");
        abi::Stat::from_bytes(&self.peek(at, abi::Stat::SIZE).try_into().unwrap())
    }

    /// write of `data`, placed at `at` first.
    fn write_at(&self, fd: u64, at: u64, data: &[u8]) -> i64 {
        self.poke(at, data);
        self.call(nr::WRITE, &[fd, at, data.len() as u64])
    }

    /// read of up to `len` bytes at `at`: the result, and what arrived.
    fn read_at(&self, fd: u64, at: u64, len: usize) -> (i64, Vec<u8>) {
        let n = self.call(nr::READ, &[fd, at, len as u64]);
        let got = if n > 0 {
            self.peek(at, n as usize)
        } else {
            Vec::new()
        };
        (n, got)
    }

    /// An iovec array at `at` listing `(base, len)` pairs.
    fn iovecs(&self, at: u64, list: &[(u64, u64)]) {
        let mut bytes = Vec::new();
        for (base, len) in list {
            bytes.extend_from_slice(&base.to_le_bytes());
            bytes.extend_from_slice(&len.to_le_bytes());
        }
        self.poke(at, &bytes);
    }
}

/// A pattern that differs from one byte to the next and from one `seed`
/// to another, so a byte out of place is seen.
fn pattern(seed: u8, n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

mod cpus;
mod exec;
mod mm;
mod signals;
mod threads;

const EFAULT: i64 = -(Errno::EFAULT as i64);
const EBADF: i64 = -(Errno::EBADF as i64);
const EPIPE: i64 = -(Errno::EPIPE as i64);
const ESRCH: i64 = -(Errno::ESRCH as i64);
const EAGAIN: i64 = -(Errno::EAGAIN as i64);
const EINVAL: i64 = -(Errno::EINVAL as i64);
const EMFILE: i64 = -(Errno::EMFILE as i64);
const ENOTTY: i64 = -(Errno::ENOTTY as i64);
const EBUSY: i64 = -(Errno::EBUSY as i64);
const EPERM: i64 = -(Errno::EPERM as i64);
const ENOMEM: i64 = -(Errno::ENOMEM as i64);

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
            fpu: Mutex::new(fpu_init()),
            results: Mutex::new(Vec::new()),
            kicks: Mutex::new(Vec::new()),
        };
        let idle = machine.context();
        let boot = machine.context();
        // The test's thread is running: its context is on the CPU.
        boot.gate.on_cpu.claim();
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
        let results = self.sys.m.results.lock().unwrap();
        match results.iter().rev().find(|(p, _)| *p == pid) {
            // It returned from main: its wait status says so, and the
            // test wants what it returned.
            Some(&(_, result)) if status == abi::exited_status(result) => result,
            _ => status,
        }
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
fn descriptors_are_judged_before_pointers_as_on_linux() {
    let w = World::new();
    let status = w.run_to_end(|u| {
        let kernel = 0xffff_8000_0000_0000;
        assert_eq!(u.call(nr::WRITE, &[99, 0, 1]), EBADF);
        assert_eq!(u.call(nr::READ, &[99, kernel, 1]), EBADF);
        assert_eq!(u.call(nr::FSTAT, &[99, 0]), EBADF);
        // An open descriptor: now the pointer counts.
        assert_eq!(u.call(nr::READ, &[0, kernel, 1]), EFAULT);
        assert_eq!(u.call(nr::WRITE, &[2, 0, 1]), EFAULT);
        assert_eq!(u.call(nr::FSTAT, &[1, 0]), EFAULT);
        // An empty buffer needs no memory, only a user address.
        assert_eq!(u.call(nr::WRITE, &[1, 0, 0]), 0);
        assert_eq!(u.call(nr::WRITE, &[1, abi::TASK_SIZE_MAX, 0]), 0);
        assert_eq!(u.call(nr::WRITE, &[1, abi::TASK_SIZE_MAX + 1, 0]), EFAULT);
        assert_eq!(u.call(nr::READ, &[0, kernel, 0]), EFAULT);
        assert_eq!(u.call(nr::READ, &[0, 0, 0]), 0);
        assert_eq!(u.call(nr::PIPE, &[TEXT]), EFAULT, "read-only page");
        // The refused pipe left no descriptor behind.
        assert_eq!(u.pipe(), (3, 4));
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
fn stdin_is_the_console_and_reads_end_of_file() {
    let w = World::new();
    let status = w.run_to_end(|u| {
        u.poke(DATA, &[0xee; 16]);
        assert_eq!(u.call(nr::READ, &[0, DATA, 16]), 0);
        assert_eq!(u.peek(DATA, 16), [0xee; 16], "nothing stored");
        // Non-blocking changes nothing: end of file is not "try again".
        assert_eq!(u.fcntl(0, fc::F_SETFL, o::NONBLOCK.into()), 0);
        assert_eq!(u.call(nr::READ, &[0, DATA, 16]), 0);
        // The buffer is still checked, after the descriptor.
        assert_eq!(u.call(nr::READ, &[0, TEXT, 16]), EFAULT, "read-only");
        // A dup of it reads the same; closing 0 frees the number.
        assert_eq!(u.call(nr::DUP, &[0]), 3);
        assert_eq!(u.call(nr::READ, &[3, DATA, 1]), 0);
        assert_eq!(u.call(nr::CLOSE, &[0]), 0);
        assert_eq!(u.call(nr::READ, &[0, DATA, 1]), EBADF);
        assert_eq!(u.pipe(), (0, 4));
        0
    });
    assert_eq!(status, 0);
    assert_eq!(w.console(), "", "reads print nothing");
    w.assert_quiet();
}

#[test]
fn wait4_finds_no_child_after_linuxs_argument_checks() {
    let w = World::new();
    let status = w.run_to_end(|u| {
        let echild = -(Errno::ECHILD as i64);
        let all = abi::wait::OPTIONS as u32 as u64;
        u.poke(DATA, &[0xee; 8]);
        // No program has a child process: every pid, with or without
        // WNOHANG, whatever the pointers (never used).
        for pid in [u64::MAX, 0, 1, 2, 12345, (-7i64) as u64] {
            assert_eq!(u.call(nr::WAIT4, &[pid, DATA, 0, 0]), echild, "{pid}");
        }
        assert_eq!(
            u.call(nr::WAIT4, &[u64::MAX, 0xffff_8000_0000_0000, 1, 8]),
            echild
        );
        assert_eq!(u.call(nr::WAIT4, &[u64::MAX, 0, all, 0]), echild);
        assert_eq!(u.peek(DATA, 8), [0xee; 8], "no status stored");
        // The options first (WEXITED is waitid's alone), then INT_MIN.
        for bad in [4, 0x100, 0x0100_0000] {
            assert_eq!(u.call(nr::WAIT4, &[u64::MAX, 0, bad, 0]), EINVAL, "{bad}");
            assert_eq!(u.call(nr::WAIT4, &[i32::MIN as u64, 0, bad, 0]), EINVAL);
        }
        assert_eq!(u.call(nr::WAIT4, &[i32::MIN as u32 as u64, 0, 0, 0]), ESRCH);
        // Both are ints: the high halves are not read.
        assert_eq!(
            u.call(nr::WAIT4, &[1 << 32 | u64::from(i32::MIN as u32), 0, 0, 0]),
            ESRCH
        );
        assert_eq!(u.call(nr::WAIT4, &[u64::MAX, 0, 1 << 32 | 1, 0]), echild);
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
        let status = u.join_thread(t);
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
        assert_eq!((r, wr), (3, 4), "0, 1 and 2 are the console");
        assert_eq!(u.call(nr::CLOSE, &[r]), 0);
        u.poke(DATA, b"x");
        assert_eq!(u.call(nr::WRITE, &[wr, DATA, 1]), EPIPE);
        assert_eq!(u.call(nr::READ, &[wr, DATA, 1]), EBADF);
        assert_eq!(
            u.call(nr::READ, &[wr, 0, 1]),
            EBADF,
            "the end before the pointer"
        );
        assert_eq!(
            u.call(nr::WRITE, &[r, 0, 1]),
            EBADF,
            "closed before the pointer"
        );
        let (r2, w2) = u.pipe();
        assert_eq!((r2, w2), (3, 5));
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
        u.join_thread(t)
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
    assert_eq!(w.sys.join_process(pid, TICK_NS), Ok(abi::exited_status(3)));
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
    // An int: the register's low 32 bits, in a wait status.
    assert_eq!(status, abi::exited_status(5));
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
        assert_eq!(u.join_thread(t), pid);
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

// ---- Descriptors and pipes as Linux has them ----

use abi::{fcntl as fc, ioctl, o, pipe::PIPE_BUF, stat};

/// Where the tests below keep their bytes: a write's source (room for
/// three pipes' worth), a read's destination, and a private area per
/// helper thread.
const SRC: u64 = DATA + 0x1000;
const DST: u64 = DATA + 0x4_0000;
const fn private(k: u64) -> u64 {
    DATA + 0x6_0000 + k * 0x4000
}
const CAP: usize = abi::pipe::DEFAULT_SIZE;

#[test]
fn dup_family_shares_the_open_file_and_follows_linux_errors() {
    let w = World::new();
    w.run_to_end(|u| {
        let (r, wr) = u.pipe();
        assert_eq!((r, wr), (3, 4));
        assert_eq!(u.call(nr::DUP, &[wr]), 5, "the lowest free");
        assert_eq!(u.call(nr::DUP, &[1 << 32 | wr]), 6, "an unsigned int");
        assert_eq!(u.call(nr::DUP2, &[wr, 10]), 10);
        assert_eq!(
            u.call(nr::DUP2, &[wr, wr]),
            wr as i64,
            "itself: just checked"
        );
        assert_eq!(u.call(nr::DUP2, &[20, 20]), EBADF);
        assert_eq!(u.call(nr::DUP2, &[wr, 64]), EBADF, "past RLIMIT_NOFILE");
        assert_eq!(u.call(nr::DUP2, &[99, 5]), EBADF);
        assert_eq!(u.call(nr::DUP3, &[wr, wr, 0]), EINVAL);
        assert_eq!(u.call(nr::DUP3, &[99, 99, 0]), EINVAL, "before the lookup");
        assert_eq!(u.call(nr::DUP3, &[wr, 11, o::NONBLOCK.into()]), EINVAL);
        assert_eq!(u.call(nr::DUP3, &[99, 11, 0]), EBADF);
        assert_eq!(u.call(nr::DUP3, &[wr, 64, 0]), EBADF);
        assert_eq!(u.call(nr::DUP3, &[wr, 11, o::CLOEXEC.into()]), 11);
        assert_eq!(u.fcntl(11, fc::F_GETFD, 0), 1);
        assert_eq!(u.fcntl(10, fc::F_GETFD, 0), 0, "dup2 clears it");
        // Every write descriptor names one end: it stays open until the
        // last is closed.
        for fd in [wr, 5, 6, 10] {
            assert_eq!(u.call(nr::CLOSE, &[fd]), 0);
        }
        assert_eq!(u.fcntl(r, fc::F_SETFL, o::NONBLOCK.into()), 0);
        assert_eq!(u.read_at(r, DST, 10).0, EAGAIN, "a writer is left: no EOF");
        assert_eq!(u.fcntl(r, fc::F_SETFL, 0), 0);
        // Likewise a duplicated read end keeps writes going.
        let rd = u.call(nr::DUP, &[r]) as u64;
        assert_eq!(u.call(nr::CLOSE, &[rd]), 0);
        assert_eq!(u.write_at(11, SRC, b"x"), 1, "a reader is left: no EPIPE");
        assert_eq!(u.call(nr::CLOSE, &[11]), 0);
        assert_eq!(u.read_at(r, DST, 10), (1, b"x".to_vec()));
        assert_eq!(u.read_at(r, DST, 10).0, 0, "end of file: no writer left");
        // dup2 over an open descriptor closes what it named first: here
        // the only write end of a second pipe.
        let (r2, w2) = u.pipe();
        assert_eq!(u.write_at(w2, SRC, b"yz"), 2);
        assert_eq!(u.call(nr::DUP2, &[r2, w2]), w2 as i64);
        assert_eq!(u.read_at(w2, DST, 10), (2, b"yz".to_vec()));
        assert_eq!(u.read_at(r2, DST, 10).0, 0);
        // A full table: EMFILE, but dup2 onto an open descriptor works.
        let mut made = 0;
        loop {
            match u.call(nr::DUP, &[1]) {
                EMFILE => break,
                fd => {
                    assert!((0..64).contains(&fd));
                    made += 1;
                }
            }
        }
        assert!(made > 50);
        assert_eq!(u.fcntl(1, fc::F_DUPFD, 0), EMFILE);
        assert_eq!(u.call(nr::DUP2, &[r, 63]), 63);
        // pipe judges its descriptors before its pointer, as Linux does,
        // and a refused pointer leaves both descriptors free.
        assert_eq!(u.call(nr::PIPE, &[0]), EMFILE);
        assert_eq!(u.call(nr::CLOSE, &[40]), 0);
        assert_eq!(u.call(nr::PIPE, &[0]), EMFILE, "room for one end only");
        assert_eq!(u.call(nr::CLOSE, &[30]), 0);
        assert_eq!(u.call(nr::PIPE, &[0]), EFAULT);
        assert_eq!(u.call(nr::DUP, &[1]), 30);
        assert_eq!(u.call(nr::DUP, &[1]), 40);
        0
    });
    w.assert_quiet();
}

#[test]
fn fcntl_descriptor_and_status_flags_as_linux_has_them() {
    let w = World::new();
    w.run_to_end(|u| {
        let (r, wr) = u.pipe();
        assert_eq!(u.fcntl(r, fc::F_GETFL, 0), o::RDONLY.into());
        assert_eq!(u.fcntl(wr, fc::F_GETFL, 0), o::WRONLY.into());
        assert_eq!(u.fcntl(0, fc::F_GETFL, 0), o::RDWR.into(), "the console");
        // F_DUPFD: the lowest free at or above the argument.
        assert_eq!(u.fcntl(r, fc::F_DUPFD, 10), 10);
        assert_eq!(u.fcntl(r, fc::F_DUPFD, 10), 11);
        assert_eq!(u.fcntl(r, fc::F_DUPFD, 1 << 32 | 20), 20, "an int");
        assert_eq!(u.fcntl(r, fc::F_DUPFD, 64), EINVAL);
        assert_eq!(u.fcntl(r, fc::F_DUPFD, u64::MAX), EINVAL, "-1");
        assert_eq!(u.fcntl(r, fc::F_DUPFD_CLOEXEC, 5), 5);
        assert_eq!(u.fcntl(5, fc::F_GETFD, 0), 1);
        assert_eq!(u.fcntl(20, fc::F_GETFD, 0), 0);
        // F_SETFD keeps only FD_CLOEXEC, per descriptor.
        assert_eq!(u.fcntl(20, fc::F_SETFD, 0xff), 0);
        assert_eq!(u.fcntl(20, fc::F_GETFD, 0), 1);
        assert_eq!(u.fcntl(10, fc::F_GETFD, 0), 0, "a dup's own flag");
        assert_eq!(u.fcntl(20, fc::F_SETFD, 1 << 32), 0);
        assert_eq!(u.fcntl(20, fc::F_GETFD, 0), 0);
        // F_SETFL: the end's description, shared by its dups; other bits
        // ignored, O_DIRECT and O_ASYNC refused.
        let settable = o::NONBLOCK | o::APPEND | o::NOATIME;
        let junk = o::RDWR | 0o100 | 1 << 31;
        assert_eq!(u.fcntl(r, fc::F_SETFL, (settable | junk).into()), 0);
        assert_eq!(u.fcntl(10, fc::F_GETFL, 0), settable.into());
        assert_eq!(
            u.fcntl(wr, fc::F_GETFL, 0),
            o::WRONLY.into(),
            "the other end"
        );
        assert_eq!(u.fcntl(r, fc::F_SETFL, o::DIRECT.into()), EINVAL);
        assert_eq!(u.fcntl(r, fc::F_SETFL, o::ASYNC.into()), EINVAL);
        assert_eq!(u.fcntl(20, fc::F_GETFL, 0), settable.into(), "unchanged");
        assert_eq!(u.read_at(10, DST, 1).0, EAGAIN, "O_NONBLOCK set through r");
        assert_eq!(u.fcntl(11, fc::F_SETFL, 0), 0);
        assert_eq!(u.fcntl(r, fc::F_GETFL, 0), 0);
        // The console's description is shared by 0, 1 and 2.
        assert_eq!(u.fcntl(2, fc::F_SETFL, o::NONBLOCK.into()), 0);
        for fd in [0, 1] {
            assert_eq!(u.fcntl(fd, fc::F_GETFL, 0), (o::RDWR | o::NONBLOCK).into());
        }
        // The descriptor first, then the command.
        assert_eq!(u.fcntl(99, 9999, 0), EBADF);
        assert_eq!(u.fcntl(r, 9999, 0), EINVAL);
        assert_eq!(u.fcntl(r, 5, 0), EINVAL, "F_GETLK: no locks");
        assert_eq!(u.fcntl(r, 1 << 31 | fc::F_GETFD, 0), EINVAL);
        assert_eq!(
            u.call(nr::FCNTL, &[r, 1 << 32 | u64::from(fc::F_GETFD), 0]),
            0
        );
        assert_eq!(u.fcntl(99, fc::F_GETFD, 0), EBADF);
        assert_eq!(u.fcntl(1, fc::F_GETPIPE_SZ, 0), EBADF, "not a pipe");
        assert_eq!(u.fcntl(1, fc::F_SETPIPE_SZ, 4096), EBADF);
        0
    });
    w.assert_quiet();
}

#[test]
fn pipe_sizes_round_refuse_and_keep_the_bytes() {
    let w = World::new();
    w.run_to_end(|u| {
        let (r, wr) = u.pipe();
        assert_eq!(u.fcntl(r, fc::F_GETPIPE_SZ, 0), CAP as i64);
        assert_eq!(u.fcntl(wr, fc::F_SETPIPE_SZ, 0), 4096, "at least a page");
        assert_eq!(u.fcntl(r, fc::F_SETPIPE_SZ, 4097), 8192);
        assert_eq!(u.fcntl(r, fc::F_SETPIPE_SZ, 3 * 4096), 16384);
        assert_eq!(u.fcntl(r, fc::F_SETPIPE_SZ, 1 << 20), 1 << 20);
        assert_eq!(u.fcntl(r, fc::F_GETPIPE_SZ, 0), 1 << 20);
        assert_eq!(u.fcntl(r, fc::F_SETPIPE_SZ, (1 << 20) + 1), EPERM);
        assert_eq!(u.fcntl(r, fc::F_SETPIPE_SZ, 1 << 31), EPERM);
        assert_eq!(u.fcntl(r, fc::F_SETPIPE_SZ, (1 << 31) + 1), EINVAL);
        assert_eq!(u.fcntl(r, fc::F_SETPIPE_SZ, (1 << 32) + 4096), 4096);
        // What is buffered must fit, and survives the change.
        assert_eq!(u.fcntl(r, fc::F_SETPIPE_SZ, 32768), 32768);
        let data = pattern(3, 30_000);
        assert_eq!(u.write_at(wr, SRC, &data), 30_000);
        assert_eq!(u.read_at(r, DST, 10_000), (10_000, data[..10_000].to_vec()));
        assert_eq!(u.fcntl(r, fc::F_SETPIPE_SZ, 16384), EBUSY);
        assert_eq!(u.fcntl(r, fc::F_GETPIPE_SZ, 0), 32768);
        assert_eq!(u.fcntl(r, fc::F_SETPIPE_SZ, 1 << 17), 1 << 17);
        assert_eq!(u.write_at(wr, SRC, &data[..5]), 5);
        let (n, got) = u.read_at(r, DST, 30_000);
        assert_eq!(n, 20_005);
        assert_eq!(got[..20_000], data[10_000..]);
        assert_eq!(got[20_000..], data[..5]);
        // Out of frames: ENOMEM, and the pipe is as it was.
        assert_eq!(u.write_at(wr, SRC, b"kept"), 4);
        let mut held = Vec::new();
        while let Ok(pfn) = u.sys.m.frames.alloc_frame() {
            held.push(pfn);
        }
        assert_eq!(u.fcntl(r, fc::F_SETPIPE_SZ, 1 << 20), ENOMEM);
        assert_eq!(u.call(nr::PIPE2, &[DATA, 0]), ENOMEM);
        for pfn in held {
            u.sys.m.frames.free(pfn, 0).unwrap();
        }
        assert_eq!(u.fcntl(r, fc::F_GETPIPE_SZ, 0), 1 << 17);
        assert_eq!(u.read_at(r, DST, 100), (4, b"kept".to_vec()));
        0
    });
    w.assert_quiet();
}

#[test]
fn growing_a_full_pipe_lets_a_blocked_writer_on() {
    let w = World::new();
    let writer = w.thread(|u| u.write_at(u.arg, private(0), &[7; 10]));
    let status = w.run_to_end(move |u| {
        let (r, wr) = u.pipe();
        assert_eq!(u.write_at(wr, SRC, &pattern(1, CAP)), CAP as i64);
        let t = u.spawn_thread(writer, wr);
        u.sleep(5 * TICK_NS);
        assert_eq!(u.fcntl(r, fc::F_SETPIPE_SZ, 2 * CAP as u64), 2 * CAP as i64);
        assert_eq!(u.join_thread(t), 10);
        u.call(nr::IOCTL, &[r, ioctl::FIONREAD.into(), DATA]);
        i64::from(i32::from_le_bytes(u.peek(DATA, 4).try_into().unwrap()))
    });
    assert_eq!(status, CAP as i64 + 10);
    w.assert_quiet();
}

#[test]
fn fstat_reports_linuxs_struct_stat() {
    let w = World::new();
    w.run_to_end(|u| {
        let (r, wr) = u.pipe();
        let (r2, _w2) = u.pipe();
        let (a, b, c) = (u.fstat(r), u.fstat(wr), u.fstat(r2));
        assert_eq!(a, b, "both ends of one pipe are one inode");
        assert_eq!((a.dev, c.dev), (stat::PIPE_DEV, stat::PIPE_DEV));
        assert_ne!(a.ino, c.ino);
        assert_eq!((a.mode, a.nlink, a.blksize), (0o10600, 1, 4096));
        assert_eq!((a.size, a.blocks, a.rdev, a.uid, a.gid), (0, 0, 0, 0, 0));
        assert_eq!(a.atime, a.mtime);
        assert_eq!(a.ctime, a.mtime);
        assert!(a.mtime.nsec < 1_000_000_000);
        assert_eq!(u.write_at(wr, SRC, b"abc"), 3);
        assert_eq!(u.fstat(wr), a, "st_size stays 0, times stay");
        let dup = u.call(nr::DUP, &[r]) as u64;
        assert_eq!(u.fstat(dup), a);
        let con = u.fstat(2);
        assert_eq!(con.mode, 0o20620);
        assert_eq!((con.rdev, con.blksize, con.nlink), (0x440, 4096, 1));
        assert_eq!((con.dev, con.ino), (stat::CONSOLE_DEV, stat::CONSOLE_INO));
        assert_eq!(u.fstat(0), con, "stdin is the console too");
        // The raw 144 bytes: Linux's layout, padding zero.
        let at = DATA + 0x2000;
        u.poke(at, &[0xee; 150]);
        assert_eq!(u.call(nr::FSTAT, &[r, at]), 0);
        let raw = u.peek(at, 150);
        assert_eq!(raw[..144], a.to_bytes()[..]);
        assert_eq!(raw[144..], [0xee; 6], "nothing past the struct");
        // The descriptor before the pointer, as on Linux; a refused
        // buffer is left as it was.
        assert_eq!(u.call(nr::FSTAT, &[99, 0]), EBADF);
        assert_eq!(u.call(nr::FSTAT, &[r, TEXT]), EFAULT, "read-only");
        let end = DATA + DATA_LEN - 100;
        u.poke(end, &[0xee; 100]);
        assert_eq!(u.call(nr::FSTAT, &[r, end]), EFAULT);
        assert_eq!(u.peek(end, 100), [0xee; 100], "no byte stored");
        assert_eq!(u.call(nr::FSTAT, &[99, at]), EBADF);
        assert_eq!(u.call(nr::FSTAT, &[1 << 32 | r, at]), 0);
        0
    });
    w.assert_quiet();
}

#[test]
fn ioctl_answers_fionread_and_the_consoles_window_size() {
    let w = World::new();
    w.run_to_end(|u| {
        let (r, wr) = u.pipe();
        let int_at = |u: &User| i32::from_le_bytes(u.peek(DATA, 4).try_into().unwrap());
        let fionread = u64::from(ioctl::FIONREAD);
        let winsz = u64::from(ioctl::TIOCGWINSZ);
        assert_eq!(u.call(nr::IOCTL, &[r, fionread, DATA]), 0);
        assert_eq!(int_at(u), 0);
        assert_eq!(u.write_at(wr, SRC, &pattern(2, 5005)), 5005);
        for fd in [r, wr] {
            u.poke(DATA, &[0xff; 8]);
            assert_eq!(u.call(nr::IOCTL, &[fd, fionread, DATA]), 0);
            assert_eq!(int_at(u), 5005, "either end");
            assert_eq!(u.peek(DATA + 4, 4), [0xff; 4], "an int, not more");
        }
        assert_eq!(u.call(nr::IOCTL, &[1, winsz, DATA]), 0);
        assert_eq!(u.peek(DATA, 8), [24, 0, 80, 0, 0, 0, 0, 0]);
        for fd in [0, 2] {
            u.poke(DATA, &[0xff; 4]);
            assert_eq!(u.call(nr::IOCTL, &[fd, fionread, DATA]), 0);
            assert_eq!(int_at(u), 0, "no console input for programs");
        }
        // Not a terminal; unknown requests; the pointer only once the
        // request is known to use one.
        assert_eq!(u.call(nr::IOCTL, &[r, winsz, DATA]), ENOTTY);
        assert_eq!(u.call(nr::IOCTL, &[r, winsz, 0]), ENOTTY);
        assert_eq!(u.call(nr::IOCTL, &[1, 0x5401, DATA]), ENOTTY, "TCGETS");
        assert_eq!(u.call(nr::IOCTL, &[r, 0x1234, 0]), ENOTTY);
        assert_eq!(u.call(nr::IOCTL, &[r, fionread, 0]), EFAULT);
        assert_eq!(u.call(nr::IOCTL, &[1, winsz, TEXT]), EFAULT);
        assert_eq!(u.call(nr::IOCTL, &[99, fionread, DATA]), EBADF);
        assert_eq!(u.call(nr::IOCTL, &[99, 0x1234, 0]), EBADF);
        assert_eq!(u.call(nr::IOCTL, &[r, 1 << 32 | fionread, DATA]), 0);
        // The requests Linux answers for every file: O_NONBLOCK on the
        // open file (shared with dups), close-on-exec on the descriptor.
        let dup = u.call(nr::DUP, &[r]) as u64;
        u.poke(DATA, &7i32.to_le_bytes());
        assert_eq!(u.call(nr::IOCTL, &[r, ioctl::FIONBIO.into(), DATA]), 0);
        assert_eq!(u.fcntl(dup, fc::F_GETFL, 0), o::NONBLOCK.into());
        assert_eq!(u.call(nr::IOCTL, &[1, ioctl::FIONBIO.into(), DATA]), 0);
        assert_eq!(u.fcntl(2, fc::F_GETFL, 0), (o::RDWR | o::NONBLOCK).into());
        u.poke(DATA, &0i32.to_le_bytes());
        assert_eq!(u.call(nr::IOCTL, &[dup, ioctl::FIONBIO.into(), DATA]), 0);
        assert_eq!(u.fcntl(r, fc::F_GETFL, 0), 0);
        assert_eq!(u.call(nr::IOCTL, &[r, ioctl::FIONBIO.into(), 0]), EFAULT);
        assert_eq!(u.call(nr::IOCTL, &[r, ioctl::FIOCLEX.into(), 0]), 0);
        assert_eq!(u.fcntl(r, fc::F_GETFD, 0), 1);
        assert_eq!(u.fcntl(dup, fc::F_GETFD, 0), 0, "per descriptor");
        assert_eq!(u.call(nr::IOCTL, &[r, ioctl::FIONCLEX.into(), 0]), 0);
        assert_eq!(u.fcntl(r, fc::F_GETFD, 0), 0);
        assert_eq!(
            u.call(nr::IOCTL, &[wr, ioctl::FIOASYNC.into(), DATA]),
            0,
            "off"
        );
        u.poke(DATA, &1i32.to_le_bytes());
        assert_eq!(
            u.call(nr::IOCTL, &[wr, ioctl::FIOASYNC.into(), DATA]),
            EINVAL
        );
        assert_eq!(u.call(nr::IOCTL, &[99, ioctl::FIOCLEX.into(), 0]), EBADF);
        0
    });
    w.assert_quiet();
}

#[test]
fn writev_gathers_into_one_write_and_checks_iovecs_as_linux_does() {
    let w = World::new();
    w.run_to_end(|u| {
        let (r, wr) = u.pipe();
        let iov = DATA + 0x3000;
        let a = pattern(4, 3000);
        let b = pattern(5, 70_000);
        u.poke(SRC, &a);
        u.poke(SRC + 0x1_0000, &b);
        u.iovecs(iov, &[(SRC, 3000), (0, 0), (SRC + 0x1_0000, 70_000)]);
        // More than the pipe holds: the rest follows as a reader makes
        // room, so with O_NONBLOCK only what fits goes in.
        assert_eq!(u.fcntl(wr, fc::F_SETFL, o::NONBLOCK.into()), 0);
        assert_eq!(u.call(nr::WRITEV, &[wr, iov, 3]), CAP as i64);
        let (n, got) = u.read_at(r, DST, 100_000);
        assert_eq!(n, CAP as i64);
        assert_eq!(got[..3000], a[..]);
        assert_eq!(got[3000..], b[..CAP - 3000]);
        // Errors in Linux's order: a closed descriptor, the count, the
        // array, negative lengths, the buffers, then a descriptor not
        // open for writing; and an iovcnt is an unsigned int.
        assert_eq!(u.call(nr::WRITEV, &[wr, iov, 1025]), EINVAL);
        assert_eq!(u.call(nr::WRITEV, &[99, 0, 1025]), EBADF);
        assert_eq!(u.call(nr::WRITEV, &[r, iov, 1025]), EINVAL, "the read end");
        assert_eq!(u.call(nr::WRITEV, &[wr, 0, 2]), EFAULT);
        assert_eq!(u.call(nr::WRITEV, &[r, 0, 2]), EFAULT, "the read end");
        assert_eq!(u.call(nr::WRITEV, &[99, 0, 2]), EBADF);
        assert_eq!(u.call(nr::WRITEV, &[wr, DATA + DATA_LEN - 20, 2]), EFAULT);
        assert_eq!(u.call(nr::WRITEV, &[99, 0, 0]), EBADF);
        assert_eq!(u.call(nr::WRITEV, &[r, 0, 0]), EBADF, "no iovec, the end");
        assert_eq!(u.call(nr::WRITEV, &[wr, 0, 0]), 0, "no iovec, no pointer");
        assert_eq!(u.call(nr::WRITEV, &[wr, 0xffff_8000_0000_0000, 0]), 0);
        assert_eq!(u.call(nr::WRITEV, &[wr, 0, 1 << 32]), 0);
        u.iovecs(iov, &[(0, 5), (SRC, 1 << 63)]);
        assert_eq!(u.call(nr::WRITEV, &[wr, iov, 2]), EINVAL, "negative first");
        assert_eq!(u.call(nr::WRITEV, &[r, iov, 2]), EINVAL, "the read end");
        // A negative length before an entry that cannot be read: Linux
        // reads the array in order and stops at the first.
        let last = DATA + DATA_LEN - 16;
        u.iovecs(last, &[(SRC, 1 << 63)]);
        assert_eq!(u.call(nr::WRITEV, &[wr, last, 2]), EINVAL);
        u.iovecs(last, &[(SRC, 1)]);
        assert_eq!(u.call(nr::WRITEV, &[wr, last, 2]), EFAULT);
        u.iovecs(iov, &[(SRC, 2), (0x10, 5)]);
        assert_eq!(u.call(nr::WRITEV, &[wr, iov, 2]), EFAULT);
        u.iovecs(iov, &[(SRC, 2), (0, 0), (SRC, i64::MAX as u64)]);
        assert_eq!(u.call(nr::WRITEV, &[wr, iov, 2]), 2, "empty: no memory");
        assert_eq!(u.call(nr::WRITEV, &[wr, iov, 3]), EFAULT);
        u.iovecs(iov, &[(SRC, 2), (0xffff_8000_0000_0000, 0)]);
        assert_eq!(u.call(nr::WRITEV, &[wr, iov, 2]), EFAULT, "empty, not user");
        u.iovecs(iov, &[(SRC, 2), (abi::TASK_SIZE_MAX, 0)]);
        assert_eq!(u.call(nr::WRITEV, &[99, iov, 2]), EBADF);
        assert_eq!(u.call(nr::WRITEV, &[r, iov, 2]), EBADF, "the read end");
        assert_eq!(u.call(nr::WRITEV, &[1 << 32 | wr, iov, 1 << 32 | 1]), 2);
        assert_eq!(u.call(nr::IOCTL, &[r, ioctl::FIONREAD.into(), DATA]), 0);
        assert_eq!(
            u.peek(DATA, 4),
            4u32.to_le_bytes(),
            "nothing of the refused"
        );
        // The whole IOV_MAX, to the console, as one stream of text: a
        // character split between two buffers arrives whole.
        let euro = "€".as_bytes();
        u.poke(SRC, euro);
        let mut list = vec![(SRC, 1), (SRC + 1, 2)];
        list.resize(1024, (0, 0));
        u.iovecs(iov, &list);
        assert_eq!(u.call(nr::WRITEV, &[1, iov, 1024]), 3);
        assert!(u.sys.m.console.lock().unwrap().ends_with(euro));
        // A gathered write of at most PIPE_BUF is atomic.
        let (r2, w2) = u.pipe2(o::NONBLOCK);
        assert_eq!(
            u.write_at(w2, SRC, &pattern(6, CAP - 100)),
            CAP as i64 - 100
        );
        u.iovecs(iov, &[(SRC, 60), (SRC, 60)]);
        assert_eq!(u.call(nr::WRITEV, &[w2, iov, 2]), EAGAIN);
        u.iovecs(iov, &[(SRC, 60), (SRC, 40)]);
        assert_eq!(u.call(nr::WRITEV, &[w2, iov, 2]), 100);
        assert_eq!(u.call(nr::CLOSE, &[r2]), 0);
        0
    });
    w.assert_quiet();
}

#[test]
fn pipe2_flags_and_nonblocking_ends() {
    let w = World::new();
    w.run_to_end(|u| {
        // Flags first, then the pointer, as Linux.
        assert_eq!(u.call(nr::PIPE2, &[0, o::DIRECT.into()]), EINVAL);
        assert_eq!(u.call(nr::PIPE2, &[DATA, 1]), EINVAL);
        assert_eq!(u.call(nr::PIPE2, &[DATA, 1 << 31]), EINVAL);
        assert_eq!(u.call(nr::PIPE2, &[0, 0]), EFAULT);
        assert_eq!(u.call(nr::PIPE2, &[TEXT, o::NONBLOCK.into()]), EFAULT);
        let (r, wr) = u.pipe2(o::NONBLOCK | o::CLOEXEC);
        assert_eq!((r, wr), (3, 4), "nothing was made by the refused ones");
        for fd in [r, wr] {
            assert_eq!(u.fcntl(fd, fc::F_GETFD, 0), 1);
        }
        assert_eq!(u.fcntl(r, fc::F_GETFL, 0), o::NONBLOCK.into());
        assert_eq!(
            u.fcntl(wr, fc::F_GETFL, 0),
            (o::WRONLY | o::NONBLOCK).into()
        );
        // Empty with a writer: EAGAIN; a full pipe: EAGAIN; a large write
        // takes what fits, a small one all or nothing.
        assert_eq!(u.read_at(r, DST, 10).0, EAGAIN);
        let data = pattern(7, 2 * CAP);
        assert_eq!(u.write_at(wr, SRC, &data[..CAP - 100]), CAP as i64 - 100);
        assert_eq!(u.write_at(wr, SRC, &data[..200]), EAGAIN);
        assert_eq!(u.write_at(wr, SRC + 200, &data[200..4297]), 100);
        assert_eq!(u.write_at(wr, SRC, &data[..1]), EAGAIN);
        assert_eq!(u.write_at(wr, SRC, &data[..5000]), EAGAIN);
        assert_eq!(u.call(nr::WRITE, &[wr, SRC, 0]), 0);
        let (n, got) = u.read_at(r, DST, 3 * CAP);
        assert_eq!(n, CAP as i64, "a read takes it all, no 4096 cap");
        assert_eq!(got[..CAP - 100], data[..CAP - 100]);
        assert_eq!(got[CAP - 100..], data[200..300]);
        assert_eq!(u.read_at(r, DST, 1).0, EAGAIN);
        // The high half of `flags` is not an int's.
        assert_eq!(u.call(nr::PIPE2, &[DATA, 1 << 32]), 0);
        // No writer: end of file, O_NONBLOCK or not; no reader: EPIPE.
        assert_eq!(u.call(nr::CLOSE, &[wr]), 0);
        assert_eq!(u.read_at(r, DST, 1).0, 0);
        let (r3, w3) = u.pipe2(o::NONBLOCK);
        assert_eq!(u.call(nr::CLOSE, &[r3]), 0);
        assert_eq!(u.write_at(w3, SRC, b"x"), EPIPE);
        0
    });
    w.assert_quiet();
}

#[test]
fn a_blocking_write_larger_than_the_pipe_completes_as_a_reader_makes_room() {
    const BIG: usize = 3 * CAP + 123;
    let w = World::new();
    let reader = w.thread(|u| {
        let sizes = [1, 4095, 4096, 4097, 70_000, 3, 10_000];
        let mut got = Vec::new();
        let mut calls = 0;
        while got.len() < BIG {
            let want = sizes[calls % sizes.len()].min(BIG - got.len());
            let (n, bytes) = u.read_at(u.arg, DST, want);
            if n <= 0 || n as usize > want {
                return 1000 + n;
            }
            got.extend(bytes);
            calls += 1;
            if calls % 3 == 0 {
                u.sleep(TICK_NS);
            }
        }
        if got == pattern(8, BIG) { 0 } else { 1 }
    });
    let status = w.run_to_end(move |u| {
        let (r, wr) = u.pipe();
        let t = u.spawn_thread(reader, r);
        let data = pattern(8, BIG);
        assert_eq!(
            u.write_at(wr, SRC, &data),
            BIG as i64,
            "all of it, in one call"
        );
        u.join_thread(t)
    });
    assert_eq!(status, 0);
    w.assert_quiet();
}

#[test]
fn a_pipe_buf_write_waits_for_room_for_all_and_a_concurrent_writer_goes_first() {
    let w = World::new();
    // Writes `arg >> 8` bytes of its own value (arg & 0xf0) to fd arg & 0xf.
    let writer = w.thread(|u| {
        let (fd, len, value) = (u.arg & 0xf, (u.arg >> 8) as usize, (u.arg & 0xf0) as u8);
        u.write_at(fd, private(u64::from(value >> 4) & 3), &vec![value; len])
    });
    let status = w.run_to_end(move |u| {
        let (r, wr) = u.pipe();
        let fionread = |u: &User| {
            u.call(nr::IOCTL, &[r, ioctl::FIONREAD.into(), DATA + 0x100]);
            i32::from_le_bytes(u.peek(DATA + 0x100, 4).try_into().unwrap()) as usize
        };
        let filler = pattern(12, CAP - 1000);
        assert_eq!(u.write_at(wr, SRC, &filler), filler.len() as i64);
        // PIPE_BUF bytes with room for 1000: it must wait, writing nothing.
        let a = u.spawn_thread(writer, (PIPE_BUF as u64) << 8 | 0xa0 | wr);
        u.sleep(3 * TICK_NS);
        assert_eq!(
            fionread(u),
            CAP - 1000,
            "a blocked PIPE_BUF write put bytes in"
        );
        // A small write that fits is not held up by it, and lands before it.
        let b = u.spawn_thread(writer, 500 << 8 | 0xb0 | wr);
        u.sleep(3 * TICK_NS);
        assert_eq!(fionread(u), CAP - 500);
        // Room for 3500: still not enough.
        assert_eq!(u.read_at(r, DST, 3000).0, 3000);
        u.sleep(3 * TICK_NS);
        assert_eq!(fionread(u), CAP - 3500);
        let mut stream = u.read_at(r, DST, 3000).1;
        u.sleep(3 * TICK_NS);
        assert_eq!(
            fionread(u),
            CAP - 6500 + PIPE_BUF,
            "room for it: all at once"
        );
        while stream.len() < CAP - 1000 - 3000 + 500 + PIPE_BUF {
            stream.extend(u.read_at(r, DST, 10_000).1);
        }
        let tail = &stream[stream.len() - PIPE_BUF - 500..];
        assert!(
            tail[..500].iter().all(|&x| x == 0xb0),
            "the small write first"
        );
        assert!(
            tail[500..].iter().all(|&x| x == 0xa0),
            "then the whole PIPE_BUF"
        );
        for (t, len) in [(a, PIPE_BUF), (b, 500)] {
            assert_eq!(u.join_thread(t), len as i64);
        }
        0
    });
    assert_eq!(status, 0);
    w.assert_quiet();
}

#[test]
fn writes_of_pipe_buf_bytes_from_two_writers_arrive_whole() {
    const MESSAGES: usize = 12;
    let w = World::new();
    // Each writer sends messages of PIPE_BUF bytes of its own value.
    let writer = w.thread(|u| {
        let (fd, k) = (u.arg & 0xff, u.arg >> 8);
        u.poke(private(k), &[0xa0 + k as u8; PIPE_BUF]);
        for _ in 0..MESSAGES {
            let n = u.call(nr::WRITE, &[fd, private(k), PIPE_BUF as u64]);
            if n != PIPE_BUF as i64 {
                return 1000 + n;
            }
        }
        0
    });
    let status = w.run_to_end(move |u| {
        let (r, wr) = u.pipe();
        // Two pages: a writer often finds some room, never enough.
        assert_eq!(u.fcntl(r, fc::F_SETPIPE_SZ, 8192), 8192);
        let t1 = u.spawn_thread(writer, wr);
        let t2 = u.spawn_thread(writer, 1 << 8 | wr);
        let mut stream = Vec::new();
        while stream.len() < 2 * MESSAGES * PIPE_BUF {
            let (n, bytes) = u.read_at(r, DST, 1000);
            assert!(n > 0);
            stream.extend(bytes);
            // Let the writers at a pipe with 1000 to 3000 bytes of room.
            u.sleep(TICK_NS);
        }
        let mut counts = [0; 2];
        for (i, message) in stream.chunks(PIPE_BUF).enumerate() {
            let k = (message[0] - 0xa0) as usize;
            assert!(
                message.iter().all(|&b| b == message[0]),
                "message {i} is mixed"
            );
            counts[k] += 1;
        }
        assert_eq!(counts, [MESSAGES, MESSAGES]);
        for t in [t1, t2] {
            assert_eq!(u.join_thread(t), 0, "a writer's count was short");
        }
        0
    });
    assert_eq!(status, 0);
    w.assert_quiet();
}

#[test]
fn readers_leaving_mid_write_end_it_with_the_count_or_epipe() {
    let w = World::new();
    // Reads some bytes, lets the writer use the room, then closes the
    // only read descriptor.
    let closer = w.thread(|u| {
        u.sleep(5 * TICK_NS);
        let (n, _) = u.read_at(u.arg & 0xff, private(1), (u.arg >> 8) as usize);
        u.sleep(5 * TICK_NS);
        u.call(nr::CLOSE, &[u.arg & 0xff]);
        n
    });
    let status = w.run_to_end(move |u| {
        // EPIPE is what a program that ignores SIGPIPE sees (signals.rs).
        let mut ignore = [0u8; 32];
        ignore[0] = abi::sig::SIG_IGN as u8;
        u.poke(DATA + 0x3000, &ignore);
        assert_eq!(u.call(nr::RT_SIGACTION, &[13, DATA + 0x3000, 0, 8]), 0);
        let (r, wr) = u.pipe();
        let t = u.spawn_thread(closer, 100 << 8 | r);
        // Fills the pipe, blocks, takes 100 more, blocks, and is told.
        assert_eq!(u.write_at(wr, SRC, &pattern(9, 200_000)), CAP as i64 + 100);
        assert_eq!(u.call(nr::WAIT_THREAD, &[t as u64, DATA]), t);
        assert_eq!(u.write_at(wr, SRC, b"x"), EPIPE);
        // Blocked with nothing written, small or large: EPIPE.
        for len in [10, 100_000] {
            let (r, wr) = u.pipe();
            assert_eq!(u.write_at(wr, SRC, &pattern(9, CAP)), CAP as i64);
            let t = u.spawn_thread(closer, r);
            assert_eq!(u.write_at(wr, SRC, &pattern(9, len)), EPIPE, "{len}");
            assert_eq!(u.call(nr::WAIT_THREAD, &[t as u64, DATA]), t);
            assert_eq!(u.call(nr::CLOSE, &[wr]), 0);
        }
        0
    });
    assert_eq!(status, 0);
    w.assert_quiet();
}

#[test]
fn pipe_transfers_allocate_nothing() {
    let w = World::new();
    w.run_to_end(|u| {
        let (r, wr) = u.pipe();
        let data = pattern(10, 20_000);
        u.poke(SRC, &data);
        u.iovecs(DATA, &[(SRC, 300), (SRC + 300, 9000)]);
        use crate::testutil::alloc::count;
        // The first touch of a frame is the simulated RAM's, not counted.
        let (n, allocs) = count(|| u.call(nr::WRITE, &[wr, SRC, 20_000]));
        assert_eq!((n, allocs), (20_000, 0));
        let (n, allocs) = count(|| u.call(nr::WRITEV, &[wr, DATA, 2]));
        assert_eq!((n, allocs), (9300, 0));
        let (n, allocs) = count(|| u.call(nr::READ, &[r, DST, 100_000]));
        assert_eq!((n, allocs), (29_300, 0));
        assert_eq!(u.peek(DST, 20_000), data);
        let (n, allocs) = count(|| {
            u.call(nr::IOCTL, &[r, ioctl::FIONREAD.into(), DATA])
                + u.fcntl(r, fc::F_GETFL, 0)
                + u.call(nr::FSTAT, &[r, DATA])
        });
        assert_eq!((n, allocs), (0, 0));
        0
    });
    w.assert_quiet();
}

#[test]
fn killing_a_program_mid_write_collects_everything() {
    let w = World::new();
    let frames = w.free_frames();
    let pid = w.run(move |u| {
        let (_r, wr) = u.pipe();
        u.call(nr::DUP, &[wr]);
        assert_eq!(u.fcntl(wr, fc::F_SETPIPE_SZ, 1 << 20), 1 << 20);
        // A megabyte pipe takes five of these; the sixth blocks part-way.
        u.poke(SRC, &pattern(11, 0x3_0000));
        for _ in 0..5 {
            assert_eq!(u.call(nr::WRITE, &[wr, SRC, 0x3_0000]), 0x3_0000);
        }
        u.call(nr::WRITE, &[wr, SRC, 0x3_0000])
    });
    w.sys.sleep_ns(10 * TICK_NS);
    w.sys.kill_process(pid, 137).expect("kill");
    assert_eq!(w.sys.join_process(pid, TICK_NS), Ok(137));
    w.assert_quiet();
    assert_eq!(w.free_frames(), frames);
}

#[test]
fn a_write_whose_pipe_is_freed_midway_returns_what_it_wrote() {
    let w = World::new();
    let writer = w.thread(|u| u.write_at(u.arg, private(0), &pattern(13, 100_000)));
    let status = w.run_to_end(move |u| {
        let (r, wr) = u.pipe();
        let t = u.spawn_thread(writer, wr);
        // It fills the pipe and blocks; then every descriptor of both
        // ends goes, and the pipe with them, before it runs again.
        u.sleep(5 * TICK_NS);
        assert_eq!(u.call(nr::CLOSE, &[r]), 0);
        assert_eq!(u.call(nr::CLOSE, &[wr]), 0);
        u.join_thread(t)
    });
    assert_eq!(status, CAP as i64);
    w.assert_quiet();
}
