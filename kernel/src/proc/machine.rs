//! What only the machine can do, as the portable process model needs it.
//!
//! [`super::System`] holds every task, process and pipe and makes every
//! decision; a [`Machine`] carries out the few things that need hardware:
//! making a task's context (a kernel stack and the registers to start
//! from), switching between contexts, telling the time and writing to the
//! console. The booted kernel implements it in `boot/` over the real CPU;
//! the host tests implement it with one thread per task, of which only
//! one runs at a time.
//!
//! # Several CPUs
//!
//! Each CPU calls into the [`super::System`] for itself: the machine says
//! which CPU the caller runs on ([`Machine::cpu_index`]), sends the
//! reschedule interrupts the scheduler asks for ([`Machine::kick`]), and
//! keeps each task's on-CPU mark ([`OnCpu`]), which its switch honours.

use crate::mm::Pfn;
use crate::mm::frame::FrameAllocator;
use crate::mm::paging::TableAlloc;
use crate::mm::phys::PhysMem;
use crate::mm::pte::PteFormat;
use crate::mm::tlb::TlbFlush;
use abi::Errno;
use core::sync::atomic::{AtomicBool, Ordering};

/// A task's on-CPU mark: set while some CPU may be on the task's kernel
/// stack. A switch decided under the scheduler's lock is carried out after
/// it, so the task a CPU switches away from may be picked by another CPU,
/// or reaped, while the first is still saving it. The mark closes that
/// window:
///
/// * the CPU switching *to* a task waits until its mark is clear, then
///   sets it ([`OnCpu::claim`]), and only then reads what the last switch
///   saved of the task (its stack pointer, its registers);
/// * the CPU switching *away* clears it once it no longer touches the
///   task's stack: after storing the stack pointer and loading the next
///   task's ([`OnCpu::release`]);
/// * a task's stack is freed only once its mark is clear
///   ([`OnCpu::wait_off`], which the record's drop calls).
///
/// A wait always ends: the CPU that holds a mark is between its lock
/// release and its switch, with interrupts off and no lock to take, and
/// what it may itself wait for was released by a switch decided earlier
/// (a task is picked only once the switch away from it was decided), so
/// waits cannot go round in a circle.
///
/// The mark lives in the machine's context of the task, whose address
/// does not move while the task can run (the machine boxes it).
#[derive(Debug)]
pub struct OnCpu(AtomicBool);

impl OnCpu {
    /// Set for the context of code already running (the boot thread, a
    /// CPU's first idle task), clear for a task not started yet.
    pub const fn new(running: bool) -> OnCpu {
        OnCpu(AtomicBool::new(running))
    }

    /// The incoming CPU's part: waits until the CPU the task last ran on
    /// has left its stack, then marks it as this CPU's. Acquire: what that
    /// CPU saved of the task before it let go is seen here.
    pub fn claim(&self) {
        while self
            .0
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
    }

    /// The outgoing CPU's part, once off the task's stack. Release: what
    /// it saved of the task comes before. (The booted kernel's switch does
    /// this in its assembly with a plain byte store, which x86 orders as a
    /// release.)
    pub fn release(&self) {
        self.0.store(false, Ordering::Release);
    }

    /// Whether some CPU may still be on the task's stack.
    pub fn is_on(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Waits until no CPU is on the task's stack: before it is freed.
    pub fn wait_off(&self) {
        while self.is_on() {
            core::hint::spin_loop();
        }
    }

    /// The mark's byte, for a switch written in assembly to clear.
    pub fn as_ptr(&self) -> *mut bool {
        self.0.as_ptr()
    }
}

/// A user thread's registers as a system call found them: the general
/// registers (`rcx` and `r11` hold what `syscall` put there: the return
/// address and the flags), the instruction pointer it returns to and its
/// flags. Portable, so that `clone` is decided here and only carried out
/// by the machine.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UserRegs {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub rsp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rip: u64,
    pub rflags: u64,
}

/// A user thread's saved registers while the kernel runs on its behalf
/// (the trap frame): what `clone` copies, `rt_sigreturn` replaces, and a
/// signal's delivery rewrites on the way back to user mode.
pub trait UserFrame {
    fn regs(&self) -> UserRegs;
    /// Replaces them; the machine keeps its own selectors and sanitises
    /// the flags as its CPU requires (interrupts on, no I/O privilege).
    fn set_regs(&mut self, regs: &UserRegs);
}

/// How a new task begins.
#[derive(Debug, Clone, Copy)]
pub enum Start {
    /// The boot thread and the idle task: already running, or never
    /// started through a context of their own.
    None,
    /// A kernel thread running `entry(arg)`; its return value is its exit
    /// status.
    Kernel { entry: fn(u64) -> i64, arg: u64 },
    /// A user thread entering ring 3 at `rip` with stack `rsp` and the
    /// first two argument registers set.
    User {
        rip: u64,
        rsp: u64,
        arg0: u64,
        arg1: u64,
    },
    /// A user thread entering ring 3 with exactly `regs` (a `clone` child:
    /// its parent's registers with rax 0 and the new stack) and FS base
    /// `fs_base`. The machine may sanitise the flags as its CPU requires
    /// (interrupts on, no I/O privilege), nothing else.
    Clone { regs: UserRegs, fs_base: u64 },
}

pub trait Machine: Sync + Sized + 'static {
    /// The page-table entry format of user address spaces.
    type Pte: PteFormat;
    /// Physical memory, as the page tables and user copies reach it.
    type Mem: PhysMem + Sync + 'static;
    /// A task's context: its kernel stack, saved state and on-CPU mark. It
    /// lives in the task's record and is dropped when the task is reaped,
    /// which must free the stack; a context is never dropped while its
    /// task runs (the scheduler refuses to reap a CPU's current task, and
    /// the record's drop waits for the mark).
    type Context: Send;
    /// What a switch needs to know of a task, read under the scheduler
    /// lock and used after it is released.
    type SwitchPoint: Copy;

    fn mem(&self) -> &'static Self::Mem;
    fn frames(&self) -> &'static FrameAllocator<'static>;
    fn tables(&self) -> &dyn TableAlloc;
    /// Flushes translations of user spaces (every page-table change's
    /// flush token goes through it).
    fn tlb(&self) -> &'static dyn TlbFlush;
    /// The kernel's page-table root, whose upper half every space shares.
    fn kernel_root(&self) -> Pfn;
    /// Nanoseconds since boot.
    fn now_ns(&self) -> u64;
    /// Nanoseconds per timer tick (the scheduler charges CPU time in ticks).
    fn tick_ns(&self) -> u64;
    fn console_write(&self, bytes: &[u8]);

    /// A context that begins as `start` says, in address space `root`
    /// (None: the kernel's). `ENOMEM` when no stack can be had.
    fn new_context(&self, start: Start, root: Option<Pfn>) -> Result<Self::Context, Errno>;
    /// What a switch needs of `ctx`, read in the locked section that
    /// decided the switch and used after it: pointers into the context
    /// (its saved stack pointer, its mark), not values that the task's
    /// last switch away may still be writing.
    fn switch_point(ctx: &Self::Context) -> Self::SwitchPoint;
    /// The task's on-CPU mark ([`OnCpu`]): set for a context made running
    /// (the boot thread's, a joining CPU's idle task's), clear for one
    /// [`Machine::new_context`] makes.
    fn on_cpu(ctx: &Self::Context) -> &OnCpu;
    /// Moves the running task `running` to the address space `root`
    /// (`execve`): its context keeps it for later switches, and the CPU
    /// uses it from now on.
    fn set_root(&self, running: &Self::Context, root: Pfn);
    /// The program the kernel knows as `name` (built in, or a boot module:
    /// `/bin/NAME` for `execve`), if any: the kernel's copy of its name,
    /// and its image.
    fn program(&self, name: &str) -> Option<(&'static str, &'static [u8])>;
    /// The FS base of the running task, whose context is `ctx`: what
    /// `ARCH_GET_FS` reports and a `clone` child without `CLONE_SETTLS`
    /// inherits. A new context starts with 0 (`Start::Clone`: its own).
    fn fs_base(&self, ctx: &Self::Context) -> u64;
    /// Sets the running task's FS base (`ctx` is its context) at once and
    /// for every later switch to it. The caller has checked that `base` is
    /// a user address.
    fn set_fs_base(&self, ctx: &Self::Context, base: u64);
    /// Saves the running task into `from` and resumes `to`; returns when
    /// something switches back to `from`, perhaps on another CPU. Called
    /// with interrupts off and no lock held. With several CPUs it keeps
    /// the on-CPU marks ([`OnCpu`]): first it claims `to`'s (waiting for
    /// the CPU `to` last ran on to leave its stack) and only then reads
    /// `to`'s saved state; it releases `from`'s once it has saved `from`
    /// and is off its stack (after loading `to`'s stack pointer).
    fn switch(&self, from: Self::SwitchPoint, to: Self::SwitchPoint);

    /// The index of the CPU running the caller, below
    /// [`crate::sync::MAX_CPUS`]: the scheduler's index of it once it has
    /// joined ([`super::System::join_cpu`]; CPU 0 runs the boot thread).
    /// Called with interrupts off, so the answer cannot change under the
    /// caller.
    fn cpu_index(&self) -> usize;

    /// Asks CPU `cpu` (another one) to look at the run queue: the
    /// reschedule interrupt, whose handler calls
    /// [`super::System::reschedule`] (and on its way back to user mode,
    /// `return_to_user`, which takes kills and signals). Called at the
    /// end of a locked section on the scheduler, its lock still held (the
    /// kicked CPU may wait a few instructions for it), other locks perhaps
    /// held and interrupts off: it sends and returns, taking no lock of
    /// the process model. A kick that arrives when the CPU has looked
    /// already is harmless.
    fn kick(&self, cpu: usize);

    /// How this machine's FPU registers look in a signal frame.
    fn fpu_format(&self) -> FpuFormat;
    /// The running user thread's x87/SSE(/AVX) registers, as a signal
    /// frame's `fpstate` holds them: the first `fpu_format().size` bytes
    /// of `out`, in FXSAVE's layout or XSAVE's standard form (the header
    /// zero but for what XSAVE writes; bytes 464..512, the software's,
    /// zero). The kernel is soft-float, so the registers are still the
    /// thread's when the kernel runs for it.
    fn fpu_save(&self, out: &mut FpuImage);
    /// Loads an image a program may have written: with `Some(features)`
    /// the XSAVE components in `features` (XRSTOR's mask), with None the
    /// legacy x87/SSE region only (FXRSTOR); every other component gets
    /// its initial state. Returns false, loading nothing, when the CPU
    /// would refuse the image (reserved MXCSR bits, a bad XSAVE header),
    /// so that no image faults the kernel: Linux's sigreturn then fails.
    fn fpu_restore(&self, image: &FpuImage, features: Option<u64>) -> bool;
    /// The registers a new thread starts with (a handler starts so).
    fn fpu_reset(&self);
}

/// The layout of a machine's FPU image in signal frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FpuFormat {
    /// Bytes of the image: 512 for FXSAVE's, the XSAVE area's size (for
    /// `xfeatures`) otherwise; at most [`FpuImage::SIZE`].
    pub size: usize,
    /// The XSAVE components saved (XCR0), or 0 for FXSAVE's layout.
    pub xfeatures: u64,
}

/// An FPU image, aligned as XSAVE and XRSTOR need it.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub struct FpuImage(pub [u8; FpuImage::SIZE]);

impl FpuImage {
    /// Room for x87, SSE and AVX (832 bytes), the most Faultline enables.
    pub const SIZE: usize = 1024;

    pub const fn zeroed() -> FpuImage {
        FpuImage([0; FpuImage::SIZE])
    }
}
