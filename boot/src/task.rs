//! The task executor: the machine under the portable process model.
//!
//! `kernel::proc::System` keeps every task, process and pipe and decides
//! which task runs; this module is its [`Machine`]: each task's kernel
//! stack and saved stack pointer (the [`Ctx`] in the task's record), a user
//! thread's x87/SSE/AVX registers, the switch itself (stack pointer, kernel
//! stack for traps, address space, those registers),
//! how kernel and user threads start, and the clock. It also builds the
//! one `System` of the booted kernel and hooks it to the timer, the
//! `syscall` entry and user faults.

use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};

use arch::fpu::FpuArea;
use arch::layout::{KSTACK_BASE, KSTACK_SLOT, KSTACK_SLOTS};
use arch::phys::{DIRECT_MAP, DirectMap};
use arch::pte::X86Pte;
use arch::trap::TrapFrame;
use kernel::mm::frame::FrameAllocator;
use kernel::mm::paging::TableAlloc;
use kernel::mm::pte::LeafFlags;
use kernel::mm::tlb::FlushBatch;
use kernel::mm::{PAGE_SIZE, Pfn};
use kernel::proc::{FpuFormat, FpuImage, Machine, OnCpu, Start, System, UserFrame, UserRegs};
use kernel::sync::IrqMutex;
use kernel::task::sched::{SchedError, Tid};
use spin::Once;

use abi::Errno;

use crate::memory::{self, FrameTables};

/// Kernel stack size; the rest of each KSTACK_SLOT stays unmapped below it
/// as a guard, so an overflow is a reported double fault, not corruption.
const KSTACK_BYTES: u64 = 16 * 1024;
/// Nanoseconds per timer tick, for polling loops.
pub const TICK_NS: u64 = 1_000_000_000 / arch::timer::HZ;

/// The booted kernel's machine.
pub struct BootMachine;

/// A task's context: its stack pointer while switched out, its kernel
/// stack, its user registers beyond the general ones, its address space
/// and how it starts. Boxed, so the saved stack pointer and the register
/// area keep their addresses while the scheduler's table grows.
pub struct Ctx {
    saved_rsp: AtomicU64,
    /// None for the boot thread, whose stack is in the kernel image.
    stack: Option<KernelStack>,
    /// The x87/SSE/AVX registers of a user thread while it is switched
    /// out. None for kernel threads: the kernel is soft-float and never
    /// uses them, so switching between kernel threads saves nothing. A
    /// cell because the switch writes it through the shared reference the
    /// scheduler hands out (only the switch touches it, interrupts off).
    fpu: Option<UnsafeCell<FpuArea>>,
    /// Page-table root of the task's address space as a frame number, 0
    /// for the kernel's (frame 0 is never a table). Atomic because
    /// `execve` gives the running task a new one while other CPUs may read
    /// the context to switch away from it... never to it: it is running.
    root: AtomicU64,
    start: Start,
    /// A user task's FS base while it is switched out (the MSR holds it
    /// while it runs).
    fs_base: AtomicU64,
    /// Set while a CPU may be on this task's stack (`OnCpu`): claimed by
    /// the switch to it, cleared by the switch's assembly once off it.
    on_cpu: OnCpu,
}

/// What a switch needs of a task: its boxed Ctx, found under the
/// scheduler's lock and read through only once the task's on-CPU mark is
/// claimed (its last CPU may still be saving it when the switch is
/// decided). One pointer: the decision's section hands it on cheaply.
#[derive(Clone, Copy)]
pub struct SwitchPoint(NonNull<Ctx>);

/// A task's kernel stack: a slot in the stack region, its top
/// KSTACK_BYTES mapped to frames of its own; freed with the context.
struct KernelStack {
    slot: u64,
}

/// Pages of a stack.
const KSTACK_PAGES: u64 = KSTACK_BYTES / PAGE_SIZE;
/// Freed stacks whose slots wait for one shootdown together.
const STALE_STACKS: usize = 32;

/// Which stack slots are taken (a bitmap, so taking one never allocates),
/// and the stacks freed since their last shootdown.
///
/// A freed stack's pages are unmapped, but some CPU may still cache their
/// translations (global: any CPU that ran the task, whatever root it has
/// loaded) until a shootdown. Nobody uses them: once the task's on-CPU mark
/// is clear (its drop waits for it) no code touches the stack, and stores
/// never go through a translation speculatively. So the frames go back at
/// once; it is the address that must wait: a stack mapped there anew would
/// be reached, on a CPU with the stale translation, on the old frame. The
/// slot therefore stays taken until one shootdown has flushed
/// [`STALE_STACKS`] of them (or until a new stack finds no other slot),
/// instead of one shootdown, a round of NMIs waited for, per thread exit:
/// Linux purges freed vmalloc areas (vmap stacks among them) lazily in the
/// same way.
struct Slots {
    taken: [u64; (KSTACK_SLOTS / 64) as usize],
    stale: [u64; STALE_STACKS],
    stale_len: usize,
    /// The stale stacks' old translations, owed until their slots go.
    flush: FlushBatch,
}

/// What a purge of the stale stacks takes out of [`Slots`].
struct Stale {
    slots: [u64; STALE_STACKS],
    len: usize,
    flush: FlushBatch,
}

impl Slots {
    fn take_free(&mut self) -> Option<u64> {
        let (word, bits) = self
            .taken
            .iter_mut()
            .enumerate()
            .find(|(_, w)| **w != u64::MAX)?;
        let bit = bits.trailing_ones() as u64;
        *bits |= 1 << bit;
        Some(word as u64 * 64 + bit)
    }

    fn release(&mut self, slot: u64) {
        self.taken[(slot / 64) as usize] &= !(1 << (slot % 64));
    }

    fn take_stale(&mut self) -> Stale {
        let len = core::mem::take(&mut self.stale_len);
        Stale {
            slots: self.stale,
            len,
            flush: core::mem::take(&mut self.flush),
        }
    }
}

impl Stale {
    /// Shoots the stale stacks' translations down (one round of NMIs for
    /// them all), then frees their slots.
    fn purge(self) {
        self.flush.flush(&arch::tlb::SHOOTDOWN);
        let mut slots = SLOTS.lock();
        for &slot in &self.slots[..self.len] {
            slots.release(slot);
        }
    }
}

static SLOTS: IrqMutex<Slots> = IrqMutex::ranked(
    kernel::sync::rank::STACK_SLOTS,
    Slots {
        taken: [0; (KSTACK_SLOTS / 64) as usize],
        stale: [0; STALE_STACKS],
        stale_len: 0,
        flush: FlushBatch::new(),
    },
);

impl KernelStack {
    fn top(&self) -> u64 {
        KSTACK_BASE + (self.slot + 1) * KSTACK_SLOT
    }

    fn pages(&self) -> impl Iterator<Item = u64> {
        let top = self.top();
        (top - KSTACK_BYTES..top).step_by(PAGE_SIZE as usize)
    }

    fn bottom(&self) -> u64 {
        self.top() - KSTACK_BYTES
    }

    fn new() -> Result<KernelStack, Errno> {
        let slot = take_slot().ok_or(Errno::EAGAIN)?;
        let stack = KernelStack { slot };
        let flags = LeafFlags::WRITABLE | LeafFlags::GLOBAL;
        for va in stack.pages() {
            let pfn = memory::frames().alloc_frame().map_err(|_| Errno::ENOMEM)?;
            if memory::map_kernel_page(va, pfn, flags).is_err() {
                let _ = memory::frames().free(pfn, 0);
                // Dropping `stack` frees what was mapped and the slot.
                return Err(Errno::ENOMEM);
            }
        }
        Ok(stack)
    }
}

/// A free slot; when every slot is taken, the stale ones are purged
/// first.
fn take_slot() -> Option<u64> {
    loop {
        let stale = {
            let mut slots = SLOTS.lock();
            if let Some(slot) = slots.take_free() {
                return Some(slot);
            }
            if slots.stale_len == 0 {
                return None;
            }
            slots.take_stale()
        };
        stale.purge();
    }
}

impl Drop for KernelStack {
    /// Unmaps whatever of the stack is mapped and frees the frames; the
    /// slot waits for the shootdown of its translations (see [`Slots`]).
    fn drop(&mut self) {
        let mut flush = FlushBatch::new();
        let mut frames = [Pfn(0); KSTACK_PAGES as usize];
        let mut n = 0;
        memory::unmap_kernel_pages(self.bottom(), KSTACK_PAGES, &mut flush, |pfn| {
            frames[n] = pfn;
            n += 1;
        });
        for &pfn in &frames[..n] {
            if let Err(e) = memory::frames().free(pfn, 0) {
                log::error!("freeing a kernel stack frame: {e}");
            }
        }
        let full = {
            let mut slots = SLOTS.lock();
            slots.flush.append(flush);
            let len = slots.stale_len;
            slots.stale[len] = self.slot;
            slots.stale_len = len + 1;
            (slots.stale_len == STALE_STACKS).then(|| slots.take_stale())
        };
        if let Some(stale) = full {
            stale.purge();
        }
    }
}

/// A kernel stack of its own for an application processor (its idle loop
/// and the interrupts it takes), with the guard below it like every task
/// stack's, kept for good. Returns its top.
pub fn cpu_stack() -> Result<u64, Errno> {
    let stack = KernelStack::new()?;
    let top = stack.top();
    // The CPU uses it until the machine stops.
    core::mem::forget(stack);
    Ok(top)
}

/// A box made without the infallible allocator: a failed allocation is an
/// error code, not a kernel panic.
fn try_box<T>(value: T) -> Result<alloc::boxed::Box<T>, Errno> {
    let mut v = Vec::new();
    v.try_reserve_exact(1).map_err(|_| Errno::ENOMEM)?;
    v.push(value);
    let boxed: alloc::boxed::Box<[T]> = v.into_boxed_slice();
    let raw = alloc::boxed::Box::into_raw(boxed) as *mut T;
    // SAFETY: the slice box holds exactly one T, allocated with T's layout
    // (a one-element slice has the layout of T), so it is a valid Box<T>.
    Ok(unsafe { alloc::boxed::Box::from_raw(raw) })
}

impl Machine for BootMachine {
    type Pte = X86Pte;
    type Mem = DirectMap;
    type Context = alloc::boxed::Box<Ctx>;
    type SwitchPoint = SwitchPoint;

    fn mem(&self) -> &'static DirectMap {
        &DIRECT_MAP
    }

    fn frames(&self) -> &'static FrameAllocator<'static> {
        memory::frames()
    }

    fn tables(&self) -> &dyn TableAlloc {
        &FrameTables
    }

    fn tlb(&self) -> &'static dyn kernel::mm::tlb::TlbFlush {
        // Every CPU that may cache the space, not only this one.
        &arch::tlb::SHOOTDOWN
    }

    fn kernel_root(&self) -> Pfn {
        memory::kernel_root()
    }

    fn now_ns(&self) -> u64 {
        arch::timer::uptime_ns()
    }

    fn tick_ns(&self) -> u64 {
        TICK_NS
    }

    fn console_write(&self, bytes: &[u8]) {
        arch::serial::write_raw(bytes);
    }

    fn new_context(&self, start: Start, root: Option<Pfn>) -> Result<Self::Context, Errno> {
        let entry: extern "C" fn(u64) -> ! = match start {
            Start::User { .. } => user_entry,
            Start::Clone { .. } => clone_entry,
            Start::Kernel { .. } => kernel_entry,
            // Only the idle task is made without a start of its own.
            Start::None => idle_entry,
        };
        // Made here, not at the first switch: the switch must not allocate.
        // A fresh area is a clean state, for a program's first thread and
        // for spawn_thread's alike (they start at an entry, not as a copy).
        let fpu = match start {
            Start::User { .. } => Some(UnsafeCell::new(FpuArea::new().map_err(|_| Errno::ENOMEM)?)),
            // A clone child starts as a copy of its parent, registers and
            // all (as Linux copies the FPU state): the parent is the task
            // running now, and nothing since its system call began has
            // touched these registers (the kernel is soft-float).
            Start::Clone { .. } => {
                let mut area = FpuArea::new().map_err(|_| Errno::ENOMEM)?;
                area.save();
                Some(UnsafeCell::new(area))
            }
            Start::Kernel { .. } | Start::None => None,
        };
        let stack = KernelStack::new()?;
        // SAFETY: the stack's pages were just mapped writable to frames
        // allocated for this task alone; `top` is page-aligned.
        let rsp = unsafe { arch::context::init_stack(stack.top(), entry, 0) };
        let fs_base = match start {
            Start::Clone { fs_base, .. } => fs_base,
            _ => 0,
        };
        try_box(Ctx {
            saved_rsp: AtomicU64::new(rsp),
            stack: Some(stack),
            fpu,
            root: AtomicU64::new(root.map_or(0, |r| r.0)),
            start,
            fs_base: AtomicU64::new(fs_base),
            on_cpu: OnCpu::new(false),
        })
    }

    fn switch_point(ctx: &Self::Context) -> SwitchPoint {
        SwitchPoint(NonNull::from(&**ctx))
    }

    fn on_cpu(ctx: &Self::Context) -> &OnCpu {
        &ctx.on_cpu
    }

    fn cpu_index(&self) -> usize {
        // The per-CPU area's index, as the locks' hook has it. An AP joins
        // the scheduler at the end of its bring-up (`System::join_cpu`); a
        // tick or kick before that finds nothing to do.
        arch::percpu::index()
    }

    fn kick(&self, cpu: usize) {
        // The reschedule IPI; its handler calls `System::reschedule` (the
        // hook `init` sets).
        arch::smp::kick(cpu);
    }

    fn fs_base(&self, _running: &Self::Context) -> u64 {
        // Ring 3 may have changed it by loading FS: the MSR is the truth.
        arch::cpu::fs_base()
    }

    fn set_fs_base(&self, running: &Self::Context, base: u64) {
        running.fs_base.store(base, Ordering::Relaxed);
        arch::cpu::set_fs_base(base);
    }

    // Without it, the FPU and FS-base branches tip the dev profile's
    // inliner: the switch becomes a call taking both points through
    // memory, and the kernel-thread switch costs ~50-75 instructions more
    // (`./run.sh bench`).
    #[inline(always)]
    fn switch(&self, from: SwitchPoint, to: SwitchPoint) {
        arch::percpu::count_switch();
        // SAFETY: both are boxed Ctxs, freed only when their records are
        // dropped, which waits for their on-CPU marks: `from`'s is this
        // CPU's until the assembly clears it last, `to`'s is claimed first
        // thing below, before anything else of it is read.
        let (from, to) = unsafe { (from.0.as_ref(), to.0.as_ref()) };
        // The CPU `to` last ran on may still be saving it.
        to.on_cpu.claim();
        if let Some(stack) = &to.stack {
            arch::syscall::set_kernel_stack(stack.top());
        }
        // The FS base belongs to user tasks alone (the kernel never uses
        // FS), so kernel threads neither save nor load it.
        if from.user_root().is_some() {
            from.fs_base.store(arch::cpu::fs_base(), Ordering::Relaxed);
        }
        let to_root = to.user_root();
        if to_root.is_some() {
            arch::cpu::set_fs_base(to.fs_base.load(Ordering::Relaxed));
        }
        let root = to_root.unwrap_or_else(memory::kernel_root);
        if root != arch::paging::current_root() {
            // SAFETY: every address space shares the kernel half, which
            // holds all kernel code, data and stacks; the user half is the
            // incoming task's own.
            unsafe { arch::paging::load_root(root) };
        }
        // Nothing since the outgoing thread left ring 3 has touched these
        // registers (the kernel is soft-float), so they are still its own.
        if let Some(area) = &from.fpu {
            // SAFETY: only the switch uses the area, on the CPU holding the
            // task's mark with interrupts off, so no other reference to it
            // exists now.
            unsafe { &mut *area.get() }.save();
        }
        if let Some(area) = &to.fpu {
            // SAFETY: as above: this CPU holds `to`'s mark.
            unsafe { &*area.get() }.restore();
        }
        // Its mark is claimed: the switch that saved it is done.
        let rsp = to.saved_rsp.load(Ordering::Relaxed);
        // SAFETY: interrupts are off (the System's contract); `from`'s
        // saved stack pointer and mark are in a Ctx freed only once the
        // mark is clear, which the assembly does last; `rsp` was saved by
        // a switch or built by init_stack on a stack that belongs to the
        // incoming task, whose mark this CPU holds.
        unsafe { arch::context::switch(from.saved_rsp.as_ptr(), rsp, from.on_cpu.as_ptr()) };
    }

    fn fpu_format(&self) -> FpuFormat {
        let (size, xfeatures) = arch::fpu::signal_format();
        FpuFormat { size, xfeatures }
    }

    fn fpu_save(&self, out: &mut FpuImage) {
        arch::fpu::save_signal_image(out);
    }

    fn fpu_restore(&self, image: &FpuImage, features: Option<u64>) -> bool {
        arch::fpu::restore_signal_image(image, features)
    }

    fn fpu_reset(&self) {
        arch::fpu::reset();
    }

    fn set_root(&self, running: &Self::Context, root: Pfn) {
        running.root.store(root.0, Ordering::Relaxed);
        // SAFETY: the caller's task runs on this CPU with its new space
        // complete: the kernel half is shared by every root, so the
        // kernel code and stack running now stay mapped.
        unsafe { arch::paging::load_root(root) };
    }

    fn program(&self, name: &str) -> Option<(&'static str, &'static [u8])> {
        crate::programs::lookup(name).map(|p| (p.name, p.image))
    }
}

impl Ctx {
    /// The root of the task's user space, None for a kernel thread.
    fn user_root(&self) -> Option<Pfn> {
        Some(self.root.load(Ordering::Relaxed))
            .filter(|&r| r != 0)
            .map(Pfn)
    }
}

// SAFETY: a SwitchPoint is only used by the CPU that performs the switch,
// with interrupts off; nothing shares it across threads.
unsafe impl Send for SwitchPoint {}

static SYSTEM: Once<System<BootMachine>> = Once::new();

/// The booted kernel's process model. Panics only if called before
/// `init`, a boot-order bug.
pub fn system() -> &'static System<BootMachine> {
    match SYSTEM.get() {
        Some(s) => s,
        None => panic!("the process model was used before task::init"),
    }
}

/// Makes the running boot code task 1 ("main"), creates the idle task,
/// and hooks the timer, the `syscall` entry and user faults to the System.
pub fn init() {
    let (Ok(boot), Ok(idle)) = (
        running_context(),
        BootMachine.new_context(Start::None, None),
    ) else {
        panic!("no memory for the idle task's stack");
    };
    SYSTEM.call_once(|| System::new(BootMachine, idle, boot));
    arch::timer::set_tick_hook(|_| system().tick());
    arch::smp::set_reschedule_hook(|| system().reschedule());
    arch::syscall::init(syscall_entry);
    arch::trap::set_user_fault_hook(user_fault);
    arch::trap::set_return_to_user_hook(return_to_user);
}

/// The context of the code calling, which is running on a stack of its
/// own that it keeps for good (the boot thread's is in the kernel image,
/// an application processor's is `cpu_stack`'s): no stack to free, the
/// kernel's address space, its on-CPU mark set. The boot thread becomes
/// task 1 on it; an AP joins the scheduler on it as its idle task
/// (`System::join_cpu`).
pub fn running_context() -> Result<alloc::boxed::Box<Ctx>, Errno> {
    try_box(Ctx {
        saved_rsp: AtomicU64::new(0),
        stack: None,
        fpu: None,
        root: AtomicU64::new(0),
        start: Start::None,
        fs_base: AtomicU64::new(0),
        // It is running: the caller.
        on_cpu: OnCpu::new(true),
    })
}

extern "C" fn idle_entry(_: u64) -> ! {
    kernel::sync::start_of_task();
    loop {
        arch::cpu::wait_for_interrupt();
    }
}

fn current_start() -> Start {
    system().with_current_context(|c| c.map_or(Start::None, |c| c.start))
}

extern "C" fn kernel_entry(_: u64) -> ! {
    kernel::sync::start_of_task();
    arch::cpu::enable_interrupts();
    let status = match current_start() {
        Start::Kernel { entry, arg } => entry(arg),
        _ => -1,
    };
    system().exit_current(status)
}

extern "C" fn user_entry(_: u64) -> ! {
    kernel::sync::start_of_task();
    match current_start() {
        Start::User {
            rip,
            rsp,
            arg0,
            arg1,
        } => {
            // SAFETY: the switch that got here loaded this task's address
            // space, in which the loader mapped rip and rsp for user mode,
            // and set the kernel stack to this task's.
            unsafe { arch::context::enter_user(rip, rsp, arg0, arg1) }
        }
        _ => system().exit_current(-1),
    }
}

/// A `clone` child's first entry to ring 3: its parent's registers, as
/// the process model decided them.
extern "C" fn clone_entry(_: u64) -> ! {
    kernel::sync::start_of_task();
    match current_start() {
        // The parent's return address: the instruction after its
        // `syscall`, in user memory. Were it past the user half, iretq
        // would fault in the kernel; fault the child instead.
        Start::Clone { regs, .. } if regs.rip < abi::USER_END => {
            // SAFETY: the switch that got here loaded the parent's address
            // space (the child's) and this task's kernel stack; the stack
            // pointer is the program's to get right (a bad one faults in
            // ring 3), rip is a user address.
            unsafe { arch::context::enter_user_frame(&trap_frame(&regs)) }
        }
        Start::Clone { regs, .. } => {
            system().user_fault(13, "general protection", 0, regs.rip, None, 0);
            // A handler cannot run with that rip either.
            system().exit_process(abi::signaled_status(abi::sig::SIGSEGV))
        }
        _ => system().exit_current(-1),
    }
}

/// The user registers a system call's trap frame holds.
fn user_regs(f: &TrapFrame) -> UserRegs {
    UserRegs {
        rax: f.rax,
        rbx: f.rbx,
        rcx: f.rcx,
        rdx: f.rdx,
        rsi: f.rsi,
        rdi: f.rdi,
        rbp: f.rbp,
        rsp: f.rsp,
        r8: f.r8,
        r9: f.r9,
        r10: f.r10,
        r11: f.r11,
        r12: f.r12,
        r13: f.r13,
        r14: f.r14,
        r15: f.r15,
        rip: f.rip,
        rflags: f.rflags,
    }
}

/// A trap frame returning to `r` (enter_user_frame sets the selectors).
fn trap_frame(r: &UserRegs) -> TrapFrame {
    TrapFrame {
        r15: r.r15,
        r14: r.r14,
        r13: r.r13,
        r12: r.r12,
        r11: r.r11,
        r10: r.r10,
        r9: r.r9,
        r8: r.r8,
        rbp: r.rbp,
        rdi: r.rdi,
        rsi: r.rsi,
        rdx: r.rdx,
        rcx: r.rcx,
        rbx: r.rbx,
        rax: r.rax,
        rip: r.rip,
        rflags: r.rflags,
        rsp: r.rsp,
        ..TrapFrame::default()
    }
}

/// A system call's or trap's frame, as the process model reads and
/// replaces it.
struct Frame<'a>(&'a mut TrapFrame);

impl UserFrame for Frame<'_> {
    fn regs(&self) -> UserRegs {
        user_regs(self.0)
    }

    fn set_regs(&mut self, r: &UserRegs) {
        // The selectors stay ring 3's, and the flags keep interrupts on
        // and I/O privilege 0 whatever a signal frame said (the process
        // model passes only the flags a program may set).
        let (vector, error, cs, ss) = (self.0.vector, self.0.error, self.0.cs, self.0.ss);
        *self.0 = TrapFrame {
            vector,
            error,
            cs,
            ss,
            ..trap_frame(r)
        };
        self.0.rflags = (r.rflags | 0x200) & !0x3000;
    }
}

/// Entry from `arch::syscall`, with interrupts off and on the task's
/// kernel stack.
fn syscall_entry(frame: &mut TrapFrame) {
    // Interrupts on: a long call can be preempted like user code. Every
    // lock is taken with interrupts off.
    arch::cpu::enable_interrupts();
    let args = [
        frame.rdi, frame.rsi, frame.rdx, frame.r10, frame.r8, frame.r9,
    ];
    let number = frame.rax;
    // Linux's orig_rax: the error-code slot, unused for a system call,
    // keeps the number for a restart after a signal.
    frame.error = number;
    let rax = system().syscall(number, args, &mut Frame(frame));
    frame.rax = rax;
    arch::cpu::disable_interrupts();
}

/// Every return to ring 3 (a system call's, a trap's, an interrupt's):
/// kills and signals are carried out here.
fn return_to_user(frame: &mut TrapFrame) {
    if !system().return_work() {
        return;
    }
    let syscall = (frame.vector == arch::syscall::SYSCALL_VECTOR).then_some(frame.error);
    system().return_to_user(&mut Frame(frame), syscall);
}

/// A fault in ring 3: the portable fault path decides.
fn user_fault(frame: &mut TrapFrame) {
    let fault = (frame.vector == 14).then(|| kernel::mm::fault::Fault {
        addr: arch::paging::fault_address(),
        access: arch::trap::page_fault_access(frame.error),
    });
    let what = arch::trap::exception_name(frame.vector);
    let code = match frame.vector {
        1 => arch::trap::debug_trap_code(),
        16 | 19 => arch::fpu::exception_code(frame.vector),
        _ => 0,
    };
    system().user_fault(frame.vector, what, frame.error, frame.rip, fault, code);
}

// ---- Conveniences over the System for the console and test kernels ----

/// Starts a kernel thread running `entry(arg)`; its return value is its
/// exit status.
pub fn spawn_kernel(name: &str, entry: fn(u64) -> i64, arg: u64) -> Result<Tid, SchedError> {
    system().spawn_kernel(name, entry, arg)
}

/// Waits for task `tid` to exit and reaps it; returns its status.
pub fn join(tid: Tid) -> Result<i64, SchedError> {
    system().join(tid, TICK_NS)
}

pub fn sleep_ns(ns: u64) {
    system().sleep_ns(ns)
}

pub fn yield_now() {
    system().yield_now()
}

pub fn current() -> Tid {
    system().current()
}

/// Kicks CPU `cpu` as the scheduler would (a reschedule IPI).
pub fn kick(cpu: usize) {
    system().machine().kick(cpu)
}
