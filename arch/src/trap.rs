//! Interrupt descriptor table, entry stubs and dispatch.
//!
//! Stable Rust has no `x86-interrupt` ABI, so every vector gets a small
//! assembly stub: it pushes a zero where the CPU pushes no error code (so
//! every frame has the same shape), pushes the vector number, and jumps to
//! one common routine that saves the general registers and calls
//! [`trap_dispatch`] with a pointer to the resulting [`TrapFrame`].
//!
//! Exceptions in kernel mode are fatal: they are reported with vector, error
//! code, RIP, CR2 and registers, and QEMU exits with the failure status.
//! A breakpoint is the exception that returns. Hardware interrupts go to the
//! handler registered for their vector.

use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};
use kernel::sync::IrqMutex;
use spin::Lazy;
use x86_64::VirtAddr;
use x86_64::structures::idt::InterruptDescriptorTable;

use crate::exit::{ExitCode, exit_qemu};
use crate::gdt;

/// The registers saved on every trap, in stack order (lowest address first).
#[repr(C)]
#[derive(Debug, Clone, Default)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error: u64,
    // Pushed by the CPU.
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

impl TrapFrame {
    /// Whether the trap interrupted ring 3.
    pub fn from_user(&self) -> bool {
        self.cs & 3 == 3
    }
}

// Vectors whose exceptions push an error code: 8, 10-14, 17, 21, 29, 30.
//
// GS: an entry from ring 3 (the saved CS has RPL 3) swaps the user's GS
// base out and this CPU's per-CPU area in, and the exit swaps them back
// right before `iretq`, with interrupts off so nothing runs in between.
// NMI, double fault and machine check can arrive anywhere, also in the
// few kernel instructions that run with the user's GS (between the exit's
// swapgs and iretq, or before the syscall entry's swapgs), so their stubs
// go through `faultline_trap_paranoid`, which asks the GS_BASE MSR
// instead of the saved CS: a kernel area's address has bit 63 set, a
// user's GS base never has (it is 0: no arch_prctl(ARCH_SET_GS), no
// CR4.FSGSBASE, and a selector load gives a 32-bit base). It swaps only
// when GS_BASE was the user's and says so in RBX, which the handler
// preserves (callee-saved), so the way out swaps back exactly then: an
// NMI that returns (a TLB shootdown's) leaves GS as it found it, even in
// those few instructions. Double fault and machine check never return
// (they report and power off), and no return-to-user work runs after any
// of the three: they are the machine's, not the interrupted task's.
core::arch::global_asm!(
    r#"
    .section .text.trap_stubs, "ax"
    /* The general registers, in TrapFrame's order read from the top. */
    .macro TRAP_SAVE_REGS
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    .endm
    .macro TRAP_RESTORE_REGS
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rbp
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rbx
    popq %rax
    .endm
    .global faultline_trap_stubs
    .global faultline_trap_common
    .global faultline_trap_save
    .balign 16
faultline_trap_stubs:
    .set vec, 0
    .rept 256
    .balign 16
    .if (vec == 8) || ((vec >= 10) && (vec <= 14)) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
    .else
    pushq $0
    .endif
    pushq $vec
    .if (vec == 2) || (vec == 8) || (vec == 18)
    jmp faultline_trap_paranoid
    .else
    jmp faultline_trap_common
    .endif
    .set vec, vec + 1
    .endr

faultline_trap_paranoid:
    TRAP_SAVE_REGS
    cld
    xorl %ebx, %ebx                 /* rbx: 1 once swapped on the way in */
    movl $0xc0000101, %ecx          /* IA32_GS_BASE */
    rdmsr
    testl %edx, %edx                /* the kernel half has bit 63 set */
    js 1f
    swapgs
    movl $1, %ebx
1:  movq %rsp, %rdi
    call {paranoid}
    testl %ebx, %ebx
    jz 2f
    swapgs
2:  TRAP_RESTORE_REGS
    addq $16, %rsp
    iretq

faultline_trap_common:
    testb $3, 24(%rsp)              /* CS, above vector, error and RIP */
    jz faultline_trap_save
    swapgs
faultline_trap_save:
    TRAP_SAVE_REGS
    movq %rsp, %rdi
    cld
    call {dispatch}
    /* Also the way into ring 3 for a thread that starts from a copied
       trap frame (context.rs, faultline_enter_user_frame). */
    .global faultline_trap_return
faultline_trap_return:
    TRAP_RESTORE_REGS
    addq $16, %rsp
    testb $3, 8(%rsp)               /* CS, above RIP */
    jz 2f
    cli
    swapgs
2:  iretq
    "#,
    dispatch = sym trap_dispatch,
    paranoid = sym paranoid_dispatch,
    options(att_syntax)
);

unsafe extern "C" {
    static faultline_trap_stubs: u8;
}

const STUB_SIZE: u64 = 16;

fn stub_address(vector: u8) -> VirtAddr {
    let base = (&raw const faultline_trap_stubs) as u64;
    VirtAddr::new(base + STUB_SIZE * vector as u64)
}

/// A handler for an interrupt vector (32..=255).
pub type Handler = fn(&mut TrapFrame);

static HANDLERS: IrqMutex<[Option<Handler>; 256]> =
    IrqMutex::ranked(kernel::sync::rank::HANDLERS, [None; 256]);

/// Called for exceptions in ring 3; it must not return to the faulting
/// code (it ends the task and switches away).
static USER_FAULT_HOOK: spin::Once<fn(&mut TrapFrame)> = spin::Once::new();

/// Installs the handler for exceptions raised in user mode.
pub fn set_user_fault_hook(hook: fn(&mut TrapFrame)) {
    USER_FAULT_HOOK.call_once(|| hook);
}

/// Called last before any return to ring 3 (system calls included), with
/// interrupts off: where a task with a pending kill ends itself.
static RETURN_TO_USER_HOOK: spin::Once<fn(&mut TrapFrame)> = spin::Once::new();

/// Installs the return-to-user hook.
pub fn set_return_to_user_hook(hook: fn(&mut TrapFrame)) {
    RETURN_TO_USER_HOOK.call_once(|| hook);
}

/// Number of breakpoints taken, for tests.
pub static BREAKPOINTS: AtomicU64 = AtomicU64::new(0);

static IDT: Lazy<InterruptDescriptorTable> = Lazy::new(build_idt);

fn build_idt() -> InterruptDescriptorTable {
    let mut idt = InterruptDescriptorTable::new();
    // SAFETY: for every set_handler_addr below, the address is the start of
    // a stub in `faultline_trap_stubs`, which keeps the frame layout the CPU
    // expects and returns with iretq; the IST indices name stacks that
    // gdt::init installed in the TSS.
    unsafe {
        for v in [0u8, 1, 5, 6, 7, 9, 16, 19, 20, 28] {
            idt[v].set_handler_addr(stub_address(v));
        }
        // int3 and into may be executed in ring 3, as on Linux: int3 is
        // then a breakpoint (SIGTRAP), not a #GP for the gate's privilege
        // (into is #UD in 64-bit mode anyway).
        for v in [3u8, 4] {
            idt[v]
                .set_handler_addr(stub_address(v))
                .set_privilege_level(x86_64::PrivilegeLevel::Ring3);
        }
        idt.non_maskable_interrupt
            .set_handler_addr(stub_address(2))
            .set_stack_index(gdt::IST_NMI);
        idt.double_fault
            .set_handler_addr(stub_address(8))
            .set_stack_index(gdt::IST_DOUBLE_FAULT);
        idt.invalid_tss.set_handler_addr(stub_address(10));
        idt.segment_not_present.set_handler_addr(stub_address(11));
        idt.stack_segment_fault.set_handler_addr(stub_address(12));
        idt.general_protection_fault
            .set_handler_addr(stub_address(13));
        idt.page_fault.set_handler_addr(stub_address(14));
        idt.alignment_check.set_handler_addr(stub_address(17));
        idt.machine_check
            .set_handler_addr(stub_address(18))
            .set_stack_index(gdt::IST_MACHINE_CHECK);
        idt.cp_protection_exception
            .set_handler_addr(stub_address(21));
        idt.vmm_communication_exception
            .set_handler_addr(stub_address(29));
        idt.security_exception.set_handler_addr(stub_address(30));
        for v in 32..=255u8 {
            idt[v].set_handler_addr(stub_address(v));
        }
    }
    idt
}

/// Loads the IDT (one table for every CPU; the IST stacks it names are
/// each CPU's own, through its TSS), and lets ring 3 ask for alignment
/// checks (CR0.AM, as Linux's CR0 has it: a program that sets EFLAGS.AC
/// gets #AC, SIGBUS, for a misaligned access; ring 0 is never checked).
/// Interrupts stay disabled until the caller enables them.
pub fn init() {
    IDT.load();
    // SAFETY: AM only enables a check that applies at CPL 3 when the
    // program sets EFLAGS.AC; the other CR0 bits are kept.
    unsafe {
        x86_64::registers::control::Cr0::update(|f| {
            f.insert(x86_64::registers::control::Cr0Flags::ALIGNMENT_MASK)
        })
    };
}

/// Installs `handler` for `vector` (32..=255). Replaces an earlier one.
pub fn set_handler(vector: u8, handler: Handler) {
    if vector >= 32 {
        HANDLERS.lock()[vector as usize] = Some(handler);
    }
}

extern "C" fn trap_dispatch(frame: *mut TrapFrame) {
    // SAFETY: the common stub passes the frame it has just built on the
    // current stack; nothing else refers to it until the stub pops it.
    let frame = unsafe { &mut *frame };
    handle(frame);
    if frame.from_user()
        && let Some(hook) = RETURN_TO_USER_HOOK.get()
    {
        crate::cpu::disable_interrupts();
        hook(frame);
    }
}

/// NMI, double fault and machine check, from `faultline_trap_paranoid`
/// with GS the kernel's. Only an NMI returns.
extern "C" fn paranoid_dispatch(frame: *mut TrapFrame) {
    // SAFETY: as in trap_dispatch: the paranoid stub's frame, on the IST
    // stack, referred to by nothing else until the stub pops it.
    let frame = unsafe { &mut *frame };
    handle(frame);
}

fn handle(frame: &mut TrapFrame) {
    // NMI (2) and machine check (18) are the machine's, not the program's,
    // even when they arrive in ring 3.
    if frame.vector < 32
        && !matches!(frame.vector, 2 | 18)
        && frame.from_user()
        && let Some(hook) = USER_FAULT_HOOK.get()
    {
        return hook(frame);
    }
    match frame.vector {
        crate::syscall::SYSCALL_VECTOR => crate::syscall::dispatch(frame),
        3 => {
            BREAKPOINTS.fetch_add(1, Ordering::Relaxed);
            log::debug!("breakpoint at rip={:#x}", frame.rip);
        }
        // A stop (a CPU is reporting a failure) or a TLB shootdown.
        2 => crate::smp::on_nmi(),
        v @ 32..=255 => {
            let handler = HANDLERS.lock()[v as usize];
            match handler {
                Some(h) => {
                    // Not around the system calls and user-mode exceptions
                    // above, nor the return-to-user hook after: they act for
                    // the task. A tick that switches away carries the count
                    // with the task it leaves (`kernel::sync::IrqState`).
                    let _irq = kernel::sync::InterruptContext::enter();
                    h(frame)
                }
                None => log::warn!("unexpected interrupt vector {v}"),
            }
        }
        _ => fatal(frame),
    }
}

/// Exception names by vector, for reports.
pub fn exception_name(vector: u64) -> &'static str {
    const NAMES: [&str; 32] = [
        "divide error",
        "debug",
        "non-maskable interrupt",
        "breakpoint",
        "overflow",
        "bound range exceeded",
        "invalid opcode",
        "device not available",
        "double fault",
        "coprocessor segment overrun",
        "invalid TSS",
        "segment not present",
        "stack-segment fault",
        "general protection fault",
        "page fault",
        "reserved",
        "x87 floating-point",
        "alignment check",
        "machine check",
        "SIMD floating-point",
        "virtualization",
        "control protection",
        "reserved",
        "reserved",
        "reserved",
        "reserved",
        "reserved",
        "reserved",
        "hypervisor injection",
        "VMM communication",
        "security",
        "reserved",
    ];
    NAMES.get(vector as usize).copied().unwrap_or("interrupt")
}

/// The `si_code` of a debug trap (#DB) in user mode, as Linux's
/// `get_si_code` reads DR6: single step (BS) TRAP_TRACE, a breakpoint
/// register TRAP_HWBKPT, nothing (icebp) TRAP_BRKPT. DR6 is cleared for
/// the next one, since the CPU never clears its bits.
pub fn debug_trap_code() -> i32 {
    const TRAP_BRKPT: i32 = 1;
    const TRAP_TRACE: i32 = 2;
    const TRAP_HWBKPT: i32 = 4;
    const BS: u64 = 1 << 14;
    const B0_B3: u64 = 0xf;
    // What DR6 holds with no condition recorded (its reserved bits set).
    const DR6_CLEAR: u64 = 0xffff_0ff0;
    let dr6: u64;
    // SAFETY: reading and writing DR6 at ring 0 have no effect beyond the
    // register; the value written is its architectural reset state.
    unsafe {
        core::arch::asm!("mov {}, dr6", out(reg) dr6, options(nomem, nostack, preserves_flags));
        core::arch::asm!("mov dr6, {}", in(reg) DR6_CLEAR, options(nomem, nostack, preserves_flags));
    }
    if dr6 & BS != 0 {
        TRAP_TRACE
    } else if dr6 & B0_B3 != 0 {
        TRAP_HWBKPT
    } else {
        TRAP_BRKPT
    }
}

/// Decodes a page-fault error code (Intel SDM vol. 3 §4.7) for the
/// portable fault handler.
pub fn page_fault_access(error: u64) -> kernel::mm::fault::Access {
    kernel::mm::fault::Access {
        present: error & 1 != 0,
        write: error & 2 != 0,
        exec: error & 16 != 0,
    }
}

/// Decodes a page-fault error code into words a person reads.
pub fn page_fault_cause(error: u64) -> &'static str {
    match (error & 1 != 0, error & 2 != 0, error & 16 != 0) {
        (_, _, true) => "instruction fetch",
        (false, false, _) => "read of a non-present page",
        (false, true, _) => "write to a non-present page",
        (true, false, _) => "read: protection violation",
        (true, true, _) => "write: protection violation",
    }
}

/// Prints the report of a fault the kernel cannot survive. (A fault in
/// user mode gets a one-line report from the process model instead.)
pub fn write_report(out: &mut dyn Write, frame: &TrapFrame) -> core::fmt::Result {
    let mode = if frame.from_user() { "user" } else { "kernel" };
    writeln!(
        out,
        "EXCEPTION: {} in {mode} mode",
        exception_name(frame.vector)
    )?;
    write!(
        out,
        "fault vector={} error={:#x} rip={:#x} rsp={:#x} cs={:#x} rflags={:#x}",
        frame.vector, frame.error, frame.rip, frame.rsp, frame.cs, frame.rflags
    )?;
    if frame.vector == 14 {
        write!(
            out,
            " cr2={:#x} cause=\"{}\"",
            crate::paging::fault_address(),
            page_fault_cause(frame.error)
        )?;
    }
    writeln!(out)?;
    if frame.vector == 8 {
        let here = (&raw const *frame) as u64;
        let ist = gdt::double_fault_stack();
        let on_ist = ist.contains(&here);
        writeln!(
            out,
            "double_fault_stack={} handler_rsp={here:#x} ist_range={:#x}..{:#x} (a kernel stack overflow lands here)",
            if on_ist { "yes" } else { "no" },
            ist.start,
            ist.end
        )?;
        // The stack that overflowed is the one whose guard CR2 names (the
        // push that could not be made), and the interrupted RSP lies next
        // to it; each is named by its layout region.
        let cr2 = crate::paging::fault_address();
        writeln!(
            out,
            "interrupted_rsp={:#x} rsp_in={} cr2={cr2:#x} cr2_in={}",
            frame.rsp,
            crate::layout::region_name(frame.rsp),
            crate::layout::region_name(cr2)
        )?;
    }
    writeln!(
        out,
        "rax={:#x} rbx={:#x} rcx={:#x} rdx={:#x} rsi={:#x} rdi={:#x} rbp={:#x}",
        frame.rax, frame.rbx, frame.rcx, frame.rdx, frame.rsi, frame.rdi, frame.rbp
    )?;
    writeln!(
        out,
        "r8={:#x} r9={:#x} r10={:#x} r11={:#x} r12={:#x} r13={:#x} r14={:#x} r15={:#x}",
        frame.r8, frame.r9, frame.r10, frame.r11, frame.r12, frame.r13, frame.r14, frame.r15
    )
}

fn fatal(frame: &TrapFrame) -> ! {
    crate::percpu::repair_gs();
    // The others stop first: this report is the last word.
    let Some(cpu) = crate::smp::stop_others() else {
        // Another CPU is reporting a failure of its own.
        crate::smp::stopped()
    };
    let mut out = crate::serial::emergency_writer();
    let _ = writeln!(
        out,
        "fault on cpu={} apic_id={} others_stopped={}",
        cpu.index(),
        cpu.apic_id(),
        crate::smp::stopped_count()
    );
    let _ = write_report(&mut out, frame);
    let _ = writeln!(out, "kernel fault: powering off with failure status");
    exit_qemu(ExitCode::Failure)
}
