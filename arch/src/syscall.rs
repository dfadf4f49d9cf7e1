//! The `syscall` instruction's entry.
//!
//! `syscall` does not switch stacks, so the entry swaps GS to this CPU's
//! per-CPU area (`percpu.rs`), parks the user RSP there and loads the
//! current task's kernel stack top, which the task switcher keeps up to
//! date in the same area.
//! It then builds the same [`TrapFrame`] an interrupt from ring 3 would,
//! with vector [`SYSCALL_VECTOR`], and joins the trap path: the handler reads
//! arguments from and writes the result into one familiar structure, and the
//! return is `iretq`, which is always safe (unlike `sysret` with a
//! non-canonical RCX).

use spin::Once;
use x86_64::VirtAddr;
use x86_64::registers::model_specific::{Efer, EferFlags, LStar, SFMask, Star};
use x86_64::registers::rflags::RFlags;

use crate::trap::TrapFrame;

/// The `vector` field of a trap frame built by a system call.
pub const SYSCALL_VECTOR: u64 = 0x100;

// Builds the frame header an interrupt from ring 3 would have pushed, then
// shares the trap path's register save, dispatch and iretq (past the trap
// stubs' own swapgs: this one has swapped already).
core::arch::global_asm!(
    r#"
    .section .text.syscall, "ax"
    .global faultline_syscall_entry
faultline_syscall_entry:
    swapgs
    movq %rsp, %gs:{user_rsp}
    movq %gs:{kernel_rsp}, %rsp
    pushq ${user_ss}
    pushq %gs:{user_rsp}
    pushq %r11                      /* user RFLAGS */
    pushq ${user_cs}
    pushq %rcx                      /* user RIP */
    pushq $0                        /* error code */
    pushq ${vector}
    jmp faultline_trap_save
    "#,
    user_ss = const crate::gdt::USER_DS,
    user_cs = const crate::gdt::USER_CS,
    vector = const SYSCALL_VECTOR,
    user_rsp = const crate::percpu::OFF_USER_RSP,
    kernel_rsp = const crate::percpu::OFF_KERNEL_RSP,
    options(att_syntax)
);

unsafe extern "C" {
    fn faultline_syscall_entry();
}

static HANDLER: Once<fn(&mut TrapFrame)> = Once::new();

/// Called by the trap dispatcher for frames with [`SYSCALL_VECTOR`].
pub(crate) fn dispatch(frame: &mut TrapFrame) {
    match HANDLER.get() {
        Some(handler) => handler(frame),
        None => frame.rax = (-38i64) as u64, // ENOSYS
    }
}

/// Enables `syscall` and sends it to `handler`, with interrupts masked on
/// entry (the handler may enable them once it is on the kernel stack).
pub fn init(handler: fn(&mut TrapFrame)) {
    HANDLER.call_once(|| handler);
    init_cpu();
}

/// Programs this CPU's `syscall` MSRs (each CPU has its own).
pub fn init_cpu() {
    let sel = crate::gdt::selectors();
    // The entry hard-codes the user selectors; make sure they match.
    assert_eq!(
        (sel.user_data.0, sel.user_code.0),
        (crate::gdt::USER_DS, crate::gdt::USER_CS)
    );
    // SAFETY: the selectors come from the loaded GDT in the order STAR
    // requires, the entry point is the assembly above, and the masked flags
    // keep interrupts, tracing and alignment checks off until the kernel
    // stack is in place.
    unsafe {
        Efer::update(|f| f.insert(EferFlags::SYSTEM_CALL_EXTENSIONS));
        let _ = Star::write(
            sel.user_code,
            sel.user_data,
            sel.kernel_code,
            sel.kernel_data,
        );
        LStar::write(VirtAddr::new(faultline_syscall_entry as *const () as u64));
        // NT too: ring 3 can set it, and the kernel's iretq faults when it
        // is set (tasks.rs: privileged_and_bad_accesses_kill_only_the_task
        // runs `bad nt`).
        SFMask::write(
            RFlags::INTERRUPT_FLAG
                | RFlags::TRAP_FLAG
                | RFlags::DIRECTION_FLAG
                | RFlags::ALIGNMENT_CHECK
                | RFlags::NESTED_TASK,
        );
    }
}

/// Sets the kernel stack for traps and system calls from ring 3: the top of
/// the stack of the task about to run, in this CPU's TSS and per-CPU area.
pub fn set_kernel_stack(top: u64) {
    crate::gdt::set_kernel_stack(top);
}
