//! Kernel context switch and the way into ring 3.
//!
//! A task's kernel context is just its stack pointer: `switch` pushes the
//! callee-saved registers and RFLAGS on the current stack, stores RSP in the
//! outgoing task's slot, loads the incoming task's RSP, clears the outgoing
//! task's on-CPU mark (from then on this CPU no longer touches its stack,
//! so another CPU may resume it) and pops the same registers back. Everything else (caller-saved registers, the user
//! registers in a trap frame) is already on the stack by the time any code
//! calls `switch`, because it is an ordinary function call. A user
//! thread's x87/SSE/AVX registers are the exception: the soft-float kernel
//! never spills them, so the caller saves and restores them around this
//! switch ([`crate::fpu`]).

use core::arch::asm;

use crate::trap::TrapFrame;

core::arch::global_asm!(
    r#"
    .section .text.context, "ax"
    .global faultline_context_switch
faultline_context_switch:           /* rdi = &mut saved rsp, rsi = new rsp, rdx = &mut on-CPU mark of the outgoing task */
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    pushfq
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    /* Off the old stack: another CPU may take it now. x86 keeps stores in
       order, so the saved rsp above is seen before the mark is clear. */
    movb $0, (%rdx)
    popfq
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret

    .global faultline_task_trampoline
faultline_task_trampoline:          /* a new task's first return lands here */
    movq %r13, %rdi
    xorl %ebp, %ebp
    callq *%r12
    ud2
    "#,
    options(att_syntax)
);

unsafe extern "C" {
    fn faultline_context_switch(save: *mut u64, to: u64, leaving: *mut bool);
    fn faultline_task_trampoline();
}

/// Saves the current context into `*save` and resumes the one whose stack
/// pointer is `to`, then stores `false` at `leaving` (the outgoing task's
/// on-CPU mark), once it is off the outgoing stack. Returns when some
/// later switch resumes this context, perhaps on another CPU.
///
/// # Safety
/// Interrupts must be off. `save` must stay valid until this context is
/// resumed; `to` must be a stack pointer saved by `switch` or built by
/// [`init_stack`] whose stack is still allocated and used by no one else
/// (its on-CPU mark claimed by this CPU); `leaving` must be valid for a
/// byte write until the mark is clear (nothing frees the outgoing task's
/// context while it is set).
pub unsafe fn switch(save: *mut u64, to: u64, leaving: *mut bool) {
    // SAFETY: the caller upholds the contract above; the assembly only
    // touches the two stacks, the mark and callee-saved registers it
    // restores.
    unsafe { faultline_context_switch(save, to, leaving) }
}

/// Words `init_stack` places below the top.
const INITIAL_WORDS: u64 = 8;

/// Prepares a fresh stack so that the first `switch` to it calls
/// `entry(arg)` with interrupts off. Returns the stack pointer to switch to.
///
/// # Safety
/// `[top - 64, top)` must be writable memory owned by the new task, and
/// `top` must be 16-byte aligned.
pub unsafe fn init_stack(top: u64, entry: extern "C" fn(u64) -> !, arg: u64) -> u64 {
    let rsp = top - INITIAL_WORDS * 8;
    // Popped by the switch in this order: RFLAGS, r15, r14, r13 (arg),
    // r12 (entry), rbx, rbp, then the return address.
    let words: [u64; INITIAL_WORDS as usize] = [
        0x2, // RFLAGS: reserved bit 1 set, interrupts off
        0,
        0,
        arg,
        entry as *const () as u64,
        0,
        0,
        faultline_task_trampoline as *const () as u64,
    ];
    let ptr = rsp as *mut u64;
    for (i, w) in words.iter().enumerate() {
        // SAFETY: inside the range the caller vouches for.
        unsafe { ptr.add(i).write(*w) };
    }
    rsp
}

/// Leaves the kernel for ring 3 at `rip` with stack `rsp`, `rdi = arg0`,
/// `rsi = arg1`, interrupts on, every other register zero.
///
/// # Safety
/// Interrupts must be off (a task's first entry runs with them off).
/// The current address space must map `rip` and `rsp` for user mode, and
/// the TSS's kernel stack must be this task's, so the next trap lands on it.
pub unsafe fn enter_user(rip: u64, rsp: u64, arg0: u64, arg1: u64) -> ! {
    let sel = crate::gdt::selectors();
    let (cs, ss) = (sel.user_code.0 as u64, sel.user_data.0 as u64);
    // SAFETY: builds an interrupt-return frame for ring 3 and executes iretq;
    // the caller vouches for the mappings. Registers are cleared so no
    // kernel value leaks to user mode. Interrupts are off from here to the
    // iretq (the caller's contract), so nothing runs with the user's GS.
    unsafe {
        asm!(
            "push {ss}",
            "push {rsp}",
            "push 0x202",
            "push {cs}",
            "push {rip}",
            "xor eax, eax", "xor ebx, ebx", "xor ecx, ecx", "xor edx, edx",
            "xor ebp, ebp", "xor r8d, r8d", "xor r9d, r9d", "xor r10d, r10d",
            "xor r11d, r11d", "xor r12d, r12d", "xor r13d, r13d", "xor r14d, r14d",
            "xor r15d, r15d",
            // The user's GS base in, this CPU's area out to KERNEL_GS_BASE
            // for the next entry (interrupts are off until iretq).
            "swapgs",
            "iretq",
            ss = in(reg) ss,
            rsp = in(reg) rsp,
            cs = in(reg) cs,
            rip = in(reg) rip,
            in("rdi") arg0,
            in("rsi") arg1,
            options(noreturn)
        )
    }
}

core::arch::global_asm!(
    r#"
    .section .text.context, "ax"
    .global faultline_enter_user_frame
faultline_enter_user_frame:         /* rdi = a TrapFrame on this stack */
    movq %rdi, %rsp
    /* The trap path's own return: pops the frame, iretq. */
    jmp faultline_trap_return
    "#,
    options(att_syntax)
);

unsafe extern "C" {
    fn faultline_enter_user_frame(frame: *const TrapFrame) -> !;
}

/// RFLAGS bits ring 3 may set itself (the arithmetic flags, TF, DF, NT,
/// AC and ID); IOPL, VM, RF and the virtual-interrupt bits are not.
const USER_FLAGS: u64 = 0x24_4dd5;

/// Leaves the kernel for ring 3 with every general register, `rip`, `rsp`
/// and the user-settable flags as `frame` has them (a `clone` child: its
/// parent's registers). The selectors are the user's whatever the frame
/// says, and interrupts are on.
///
/// # Safety
/// As for [`enter_user`], except that `rsp` may be anything: the first
/// use of a bad stack faults in ring 3. `frame.rip` must be a canonical
/// user address, or the `iretq` itself faults in the kernel.
pub unsafe fn enter_user_frame(frame: &TrapFrame) -> ! {
    let sel = crate::gdt::selectors();
    let mut f = frame.clone();
    f.cs = sel.user_code.0.into();
    f.ss = sel.user_data.0.into();
    f.rflags = (f.rflags & USER_FLAGS) | 0x202;
    // SAFETY: `f` lives in this frame, which is never returned to: the
    // assembly makes it the stack, pops it and returns to ring 3 with
    // iretq; interrupts stay off until then (the caller's, as for
    // enter_user). The caller vouches for the address space and the TSS.
    unsafe { faultline_enter_user_frame(&f) }
}
