/* start.c: the entry point every oracle program (and /init) is linked with.
 *
 * _start receives the System V initial stack (argc, argv..., NULL, envp...,
 * NULL, auxv pairs..., AT_NULL) at rsp, records where things are, calls
 * main(argc, argv, envp) and ends the process with exit_group(main's value).
 * It also holds clone_thread and the few memory functions gcc may call
 * even with -ffreestanding (struct copies and initialisers).
 */
#include "sys.h"

unsigned long *oracle_entry_sp;
char **oracle_envp;
unsigned long *oracle_auxv;

int main(int argc, char **argv, char **envp);

__attribute__((used, noreturn)) void oracle_start_c(unsigned long *sp)
{
    int argc = (int)sp[0];
    char **argv = (char **)(sp + 1);
    char **envp = argv + argc + 1;
    char **e = envp;
    while (*e)
        e++;
    oracle_entry_sp = sp;
    oracle_envp = envp;
    oracle_auxv = (unsigned long *)(e + 1);
    sys_exit_group(main(argc, argv, envp));
}

/* rbp = 0 ends frame chains; rdi = the initial rsp; the call is made with
 * rsp 16-byte aligned as the ABI wants (argv.c checks the kernel did so). */
__asm__(".text\n"
        ".global _start\n"
        ".type _start,@function\n"
        "_start:\n"
        "    xor %ebp, %ebp\n"
        "    mov %rsp, %rdi\n"
        "    and $-16, %rsp\n"
        "    call oracle_start_c\n"
        "    hlt\n"
        ".size _start, .-_start\n");

/* long clone_thread(flags rdi, stack_top rsi, ptid rdx, ctid rcx, tls r8,
 *                   fn r9, arg 8(%rsp))
 * Linux x86_64: clone(flags, newsp, parent_tid, child_tid, tls). fn and arg
 * go on the new stack, so the child, which starts with rsp = newsp and the
 * parent's other registers, finds them without touching the parent's frame. */
__asm__(".text\n"
        ".global clone_thread\n"
        ".type clone_thread,@function\n"
        "clone_thread:\n"
        "    mov 8(%rsp), %rax\n"
        "    and $-16, %rsi\n"
        "    sub $16, %rsi\n"
        "    mov %r9, 0(%rsi)\n"
        "    mov %rax, 8(%rsi)\n"
        "    mov %rcx, %r10\n"
        "    mov $56, %eax\n" /* SYS_clone */
        "    syscall\n"
        "    test %rax, %rax\n"
        "    jnz 1f\n"
        "    xor %ebp, %ebp\n"
        "    pop %rax\n"
        "    pop %rdi\n"
        "    call *%rax\n"
        "    mov %eax, %edi\n"
        "    mov $60, %eax\n" /* SYS_exit: this thread only */
        "    syscall\n"
        "    hlt\n"
        "1:  ret\n"
        ".size clone_thread, .-clone_thread\n");

void *memset(void *dst, int c, size_t n)
{
    unsigned char *d = dst;
    while (n--)
        *d++ = (unsigned char)c;
    return dst;
}

void *memcpy(void *dst, const void *src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;
    while (n--)
        *d++ = *s++;
    return dst;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;
    for (; n; n--, x++, y++)
        if (*x != *y)
            return *x - *y;
    return 0;
}
