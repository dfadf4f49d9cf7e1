//! Raw system calls: a number and up to six arguments in, the raw `rax` out
//! (decode it with [`abi::decode`]). The typed wrappers in this crate are
//! built on these; tests use them directly to pass bad pointers on purpose.
//!
//! Registers follow abi/src/lib.rs: the number in `rax`, arguments in `rdi`,
//! `rsi`, `rdx`, `r10`, `r8`, `r9`, the result in `rax`; `syscall` clobbers
//! `rcx` (return address) and `r11` (saved flags). The kernel preserves
//! every other register and runs on its own stack, hence `nostack`.
//!
//! # Safety (all functions)
//!
//! The kernel reads or writes memory at addresses passed as arguments, as
//! docs/abi.md says for each call. The caller must make sure any such access
//! is sound for Rust: writes go only to memory nothing else borrows. Addresses
//! the kernel rejects (EFAULT) are harmless: it touches nothing then.

use core::arch::asm;

/// # Safety
/// See the [module documentation](self).
pub unsafe fn syscall0(nr: u64) -> u64 {
    let ret;
    // SAFETY: only rax, rcx and r11 change, all declared; memory effects are
    // the caller's responsibility (module docs).
    unsafe {
        asm!("syscall", inlateout("rax") nr => ret,
             lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret
}

/// # Safety
/// See the [module documentation](self).
pub unsafe fn syscall1(nr: u64, a0: u64) -> u64 {
    let ret;
    // SAFETY: as in `syscall0`.
    unsafe {
        asm!("syscall", inlateout("rax") nr => ret, in("rdi") a0,
             lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret
}

/// # Safety
/// See the [module documentation](self).
pub unsafe fn syscall2(nr: u64, a0: u64, a1: u64) -> u64 {
    let ret;
    // SAFETY: as in `syscall0`.
    unsafe {
        asm!("syscall", inlateout("rax") nr => ret, in("rdi") a0, in("rsi") a1,
             lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret
}

/// # Safety
/// See the [module documentation](self).
pub unsafe fn syscall3(nr: u64, a0: u64, a1: u64, a2: u64) -> u64 {
    let ret;
    // SAFETY: as in `syscall0`.
    unsafe {
        asm!("syscall", inlateout("rax") nr => ret, in("rdi") a0, in("rsi") a1, in("rdx") a2,
             lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret
}

/// # Safety
/// See the [module documentation](self).
pub unsafe fn syscall4(nr: u64, a0: u64, a1: u64, a2: u64, a3: u64) -> u64 {
    let ret;
    // SAFETY: as in `syscall0`.
    unsafe {
        asm!("syscall", inlateout("rax") nr => ret, in("rdi") a0, in("rsi") a1, in("rdx") a2,
             in("r10") a3, lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret
}

/// # Safety
/// See the [module documentation](self).
pub unsafe fn syscall5(nr: u64, a0: u64, a1: u64, a2: u64, a3: u64, a4: u64) -> u64 {
    let ret;
    // SAFETY: as in `syscall0`.
    unsafe {
        asm!("syscall", inlateout("rax") nr => ret, in("rdi") a0, in("rsi") a1, in("rdx") a2,
             in("r10") a3, in("r8") a4, lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret
}

/// # Safety
/// See the [module documentation](self).
pub unsafe fn syscall6(nr: u64, a0: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> u64 {
    let ret;
    // SAFETY: as in `syscall0`.
    unsafe {
        asm!("syscall", inlateout("rax") nr => ret, in("rdi") a0, in("rsi") a1, in("rdx") a2,
             in("r10") a3, in("r8") a4, in("r9") a5,
             lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret
}
