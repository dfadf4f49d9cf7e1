/* The whole C runtime a Faultline program needs: the kernel enters _start
 * as Linux does, rsp pointing at argc with argv right above it
 * (docs/abi.md, "Program entry"), so main gets them as its two
 * parameters, and its result is the exit status.
 *
 * NR_EXIT comes from the command line (run.sh reads it from abi/src/lib.rs),
 * so the program follows the ABI's numbers as they change. */
    .globl _start
    .text
_start:
    xor %ebp, %ebp          /* ends the frame-pointer chain */
    mov (%rsp), %rdi        /* argc */
    lea 8(%rsp), %rsi       /* argv */
    and $-16, %rsp          /* the call below then leaves the SysV alignment */
    call main
    mov %rax, %rdi
    mov $NR_EXIT, %eax
    syscall
    ud2                     /* exit does not return */

    .section .note.GNU-stack, "", @progbits
