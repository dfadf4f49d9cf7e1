//! Does one thing ring 3 must not be able to do, named by its argument, so
//! tests can check that the kernel kills the program with a report and exit
//! status 128 + the exception's vector. Prints `bad: trying <action>` first
//! and, should the kernel let it live, `bad: survived <action>` (exit 0).
//! An unknown action exits 2.
//!
//! One action is the opposite: `nt` sets RFLAGS.NT, which ring 3 may do,
//! and makes a system call; the kernel must clear NT on entry (an `iretq`
//! with NT set faults in the kernel), so this one must survive and exit 0.
//!
//! Everything is in assembly: the compiler may not reason about, fold or
//! remove an access it considers undefined behaviour.
#![no_std]
#![no_main]

use core::arch::asm;

use rt::abi::killed_status;
use rt::{Args, println};

rt::entry!(main);

// Exception vectors.
const DE: u64 = 0; // divide error
const UD: u64 = 6; // invalid opcode
const GP: u64 = 13; // general protection
const PF: u64 = 14; // page fault

/// Action, the vector it should raise, and the code that tries it.
const ACTIONS: [(&str, u64, fn()); 11] = [
    ("hlt", GP, hlt),
    ("cli", GP, cli),
    ("cr3", GP, write_cr3),
    ("kernel", PF, read_kernel),
    ("null", PF, write_null),
    ("ud2", UD, ud2),
    ("div", DE, divide_by_zero),
    ("gp", GP, read_noncanonical),
    ("nx", PF, execute_stack),
    ("rodata", PF, write_rodata),
    ("text", PF, write_text),
];

fn main(args: Args) -> i64 {
    let wanted = args.get(0).unwrap_or("");
    if wanted == "nt" {
        return nested_task_flag();
    }
    let Some(&(name, vector, action)) = ACTIONS.iter().find(|(name, ..)| *name == wanted) else {
        rt::print!("bad: unknown action '{wanted}'; one of:");
        for (name, ..) in ACTIONS {
            rt::print!(" {name}");
        }
        println!();
        return 2;
    };
    println!("bad: trying {name}");
    println!("bad: expect status={}", killed_status(vector));
    action();
    println!("bad: survived {name}");
    0
}

/// Privileged instruction.
fn hlt() {
    // SAFETY: in ring 3 this raises #GP; it cannot halt anything.
    unsafe { asm!("hlt", options(nomem, nostack)) };
}

/// Privileged while IOPL < 3, which the kernel keeps.
fn cli() {
    // SAFETY: raises #GP in ring 3; if it did not, interrupts stay off only
    // until the kernel next enters, harming nothing of ours.
    unsafe { asm!("cli", options(nomem, nostack)) };
}

/// Privileged: would switch address spaces.
fn write_cr3() {
    // SAFETY: raises #GP in ring 3.
    unsafe { asm!("mov cr3, {}", in(reg) 0u64, options(nostack)) };
}

/// The kernel image: mapped, but supervisor-only.
fn read_kernel() {
    // SAFETY: a read; it faults or returns a value we discard.
    unsafe {
        asm!("mov {}, qword ptr [{}]", lateout(reg) _, in(reg) 0xffff_ffff_8010_0000u64,
             options(nostack, readonly));
    }
}

/// The first page is never mapped, to catch null pointers.
fn write_null() {
    // SAFETY: nothing of ours lives at address 8.
    unsafe { asm!("mov qword ptr [{}], 0", in(reg) 8u64, options(nostack)) };
}

fn ud2() {
    // SAFETY: only raises #UD.
    unsafe { asm!("ud2", options(nomem, nostack)) };
}

fn divide_by_zero() {
    // SAFETY: divides 1 by 0 in registers: #DE, or a result we discard.
    unsafe {
        asm!("xor edx, edx", "div {}", in(reg) 0u64,
             inout("rax") 1u64 => _, out("rdx") _, options(nomem, nostack));
    }
}

/// Bit 47 set, bits 63..48 clear: not canonical, so #GP, not #PF.
fn read_noncanonical() {
    // SAFETY: a read; it faults or returns a value we discard.
    unsafe {
        asm!("mov {}, qword ptr [{}]", lateout(reg) _, in(reg) 0x0000_8000_0000_0000u64,
             options(nostack, readonly));
    }
}

/// The stack is mapped no-execute.
fn execute_stack() {
    let code = [0xc3u8; 16]; // `ret`, in case it runs
    // SAFETY: if the page is (wrongly) executable, the code is a bare `ret`
    // and returns; clobber_abi covers what a called function may change.
    unsafe { asm!("call {}", in(reg) code.as_ptr(), clobber_abi("C")) };
}

/// A constant, so user.ld puts it in the read-only segment.
static READ_ONLY: u64 = 0;

fn write_rodata() {
    // SAFETY: the write is meant to fault; if it does not, READ_ONLY changes
    // only in memory nobody reads again before we exit.
    unsafe { asm!("mov qword ptr [{}], 1", in(reg) &raw const READ_ONLY, options(nostack)) };
}

/// Code is mapped read-execute, never writable.
fn write_text() {
    let target = write_text as fn() as usize;
    // SAFETY: as for write_rodata: writes the byte that is already there.
    unsafe {
        asm!("mov al, byte ptr [{0}]", "mov byte ptr [{0}], al", in(reg) target,
             out("al") _, options(nostack));
    }
}

/// Sets the nested-task flag, makes a system call with it set, clears it.
fn nested_task_flag() -> i64 {
    println!("bad: trying nt");
    // SAFETY: NT only matters to IRET; this code executes none before it
    // clears the flag again, and the kernel must not be harmed by it.
    unsafe {
        asm!("pushfq", "or qword ptr [rsp], 0x4000", "popfq");
    }
    let tid = rt::gettid();
    // SAFETY: as above; clears the flag set there.
    unsafe {
        asm!("pushfq", "and qword ptr [rsp], ~0x4000", "popfq");
    }
    println!("bad: survived nt gettid={tid}");
    0
}
