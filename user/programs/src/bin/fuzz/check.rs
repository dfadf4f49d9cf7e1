//! A system call that proves it changed no register it may not change.
//!
//! docs/abi.md: "Every register other than `rax`, `rcx` and `r11` is
//! unchanged by a call." Before `syscall` every general register is loaded
//! from a block in memory (the arguments where the call has them, random
//! values everywhere else, so unused argument registers carry garbage the
//! kernel must ignore); right after it every register is stored back and
//! compared. `rsp` is compared too.

use core::arch::asm;

use crate::rng::Rng;

/// Register names in the block's order (the order of their encodings).
pub const NAMES: [&str; 16] = [
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12", "r13",
    "r14", "r15",
];
const RAX: usize = 0;
/// Every register but rax (the result), rcx and r11 (syscall's own).
const PRESERVED: [usize; 13] = [1, 3, 4, 5, 6, 7, 8, 9, 10, 12, 13, 14, 15];
/// Where arguments 1 to 6 go: rdi, rsi, rdx, r10, r8, r9.
const ARG_REGS: [usize; 6] = [5, 4, 3, 10, 8, 9];

#[repr(C)]
struct Block {
    input: [u64; 16],
    output: [u64; 16],
}

/// A register the kernel changed although it must not.
#[derive(Clone, Copy)]
pub struct Clobber {
    pub reg: usize,
    pub before: u64,
    pub after: u64,
}

pub struct Done {
    pub ret: u64,
    pub clobber: Option<Clobber>,
}

/// Makes system call `nr` with `args` (all six are loaded; what the call
/// does not use is garbage to it).
///
/// # Safety
///
/// As for `rt::raw`: whatever the kernel writes at the addresses in `args`
/// must not break anything Rust relies on. The callers only pass memory the
/// fuzzer owns outside any borrow, or addresses the kernel must refuse.
pub unsafe fn syscall(nr: u64, args: &[u64; 6], rng: &mut Rng) -> Done {
    let mut block = Block {
        input: [0; 16],
        output: [0; 16],
    };
    for r in block.input.iter_mut() {
        *r = rng.next();
    }
    block.input[RAX] = nr;
    for (i, &reg) in ARG_REGS.iter().enumerate() {
        block.input[reg] = args[i];
    }
    let p = &raw mut block;
    // SAFETY: rbx and rbp cannot be named as operands, so they are saved on
    // the stack and restored; every other register is declared clobbered.
    // The block pointer survives the call on the stack. The memory the
    // kernel may touch is the caller's responsibility (see above).
    unsafe {
        asm!(
            "push rbx",
            "push rbp",
            "push rax",
            "mov [rax + 56], rsp",
            "mov rbx, [rax + 8]",
            "mov rdx, [rax + 24]",
            "mov rsi, [rax + 32]",
            "mov rdi, [rax + 40]",
            "mov rbp, [rax + 48]",
            "mov r8, [rax + 64]",
            "mov r9, [rax + 72]",
            "mov r10, [rax + 80]",
            "mov r12, [rax + 96]",
            "mov r13, [rax + 104]",
            "mov r14, [rax + 112]",
            "mov r15, [rax + 120]",
            "mov rax, [rax]",
            "syscall",
            // rcx is syscall's to clobber, so it is free to hold the block.
            "mov rcx, [rsp]",
            "mov [rcx + 128], rax",
            "mov [rcx + 136], rbx",
            "mov [rcx + 152], rdx",
            "mov [rcx + 160], rsi",
            "mov [rcx + 168], rdi",
            "mov [rcx + 176], rbp",
            "mov [rcx + 184], rsp",
            "mov [rcx + 192], r8",
            "mov [rcx + 200], r9",
            "mov [rcx + 208], r10",
            "mov [rcx + 216], r11",
            "mov [rcx + 224], r12",
            "mov [rcx + 232], r13",
            "mov [rcx + 240], r14",
            "mov [rcx + 248], r15",
            "pop rax",
            "pop rbp",
            "pop rbx",
            inout("rax") p => _,
            out("rcx") _, out("rdx") _, out("rsi") _, out("rdi") _,
            out("r8") _, out("r9") _, out("r10") _, out("r11") _,
            out("r12") _, out("r13") _, out("r14") _, out("r15") _,
        );
    }
    let clobber = PRESERVED
        .iter()
        .find(|&&r| block.output[r] != block.input[r])
        .map(|&reg| Clobber {
            reg,
            before: block.input[reg],
            after: block.output[reg],
        });
    Done {
        ret: block.output[RAX],
        clobber,
    }
}
