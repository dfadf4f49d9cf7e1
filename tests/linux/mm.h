/* mm.h: what the memory programs add to sys.h and sig.h (mmap.c,
 * mprotect.c, brk.c, madvise.c, mremap.c): the memory calls, Linux's
 * x86_64 constants, and probes that touch memory and report the SIGSEGV
 * they met instead of dying of it.
 *
 * A probe is one instruction in assembly with a known address; the
 * handler records si_code and si_addr and resumes at probe_resume, which
 * returns -1 from the probe. A SIGSEGV anywhere else is not caught: the
 * handler puts the default action back and returns, so the program dies
 * as it should.
 */
#ifndef ORACLE_MM_H
#define ORACLE_MM_H

#include "sig.h"

#define SYS_mmap 9
#define SYS_mprotect 10
#define SYS_munmap 11
#define SYS_brk 12
#define SYS_mremap 25
#define SYS_madvise 28

#define PROT_NONE 0x0
#define PROT_READ 0x1
#define PROT_WRITE 0x2
#define PROT_EXEC 0x4
#define PROT_SEM 0x8
#define PROT_GROWSDOWN 0x01000000
#define PROT_GROWSUP 0x02000000
#define PROT_RW (PROT_READ | PROT_WRITE)

#define MAP_SHARED 0x01
#define MAP_PRIVATE 0x02
#define MAP_SHARED_VALIDATE 0x03
#define MAP_FIXED 0x10
#define MAP_ANONYMOUS 0x20
#define MAP_32BIT 0x40
#define MAP_GROWSDOWN 0x0100
#define MAP_LOCKED 0x2000
#define MAP_NORESERVE 0x4000
#define MAP_POPULATE 0x8000
#define MAP_STACK 0x20000
#define MAP_HUGETLB 0x40000
#define MAP_FIXED_NOREPLACE 0x100000
#define MAP_ANON_PRIVATE (MAP_PRIVATE | MAP_ANONYMOUS)

#define MREMAP_MAYMOVE 1
#define MREMAP_FIXED 2
#define MREMAP_DONTUNMAP 4

#define MADV_NORMAL 0
#define MADV_RANDOM 1
#define MADV_SEQUENTIAL 2
#define MADV_WILLNEED 3
#define MADV_DONTNEED 4
#define MADV_FREE 8
#define MADV_REMOVE 9
#define MADV_DONTFORK 10
#define MADV_DOFORK 11
#define MADV_HUGEPAGE 14
#define MADV_NOHUGEPAGE 15
#define MADV_DONTDUMP 16
#define MADV_DODUMP 17
#define MADV_WIPEONFORK 18
#define MADV_KEEPONFORK 19
#define MADV_COLD 20
#define MADV_PAGEOUT 21
#define MADV_POPULATE_READ 22
#define MADV_POPULATE_WRITE 23

#define PAGE 4096UL
/* The first address of the kernel's half: every call must refuse it. */
#define KERNEL_HALF 0xffff800000000000UL

static inline long sys_mmap(unsigned long addr, unsigned long len, unsigned long prot,
                            unsigned long flags, long fd, unsigned long off)
{
    return syscall6(SYS_mmap, (long)addr, (long)len, (long)prot, (long)flags, fd, (long)off);
}
static inline long sys_munmap(unsigned long addr, unsigned long len) { return syscall2(SYS_munmap, addr, len); }
static inline long sys_mprotect(unsigned long addr, unsigned long len, unsigned long prot)
{
    return syscall3(SYS_mprotect, addr, len, prot);
}
static inline long sys_madvise(unsigned long addr, unsigned long len, long advice)
{
    return syscall3(SYS_madvise, addr, len, advice);
}
static inline unsigned long sys_brk(unsigned long addr) { return (unsigned long)syscall1(SYS_brk, addr); }
static inline long sys_mremap(unsigned long addr, unsigned long old_len, unsigned long new_len,
                              unsigned long flags, unsigned long new_addr)
{
    return syscall5(SYS_mremap, addr, old_len, new_len, flags, new_addr);
}

/* An anonymous private mapping anywhere, or -errno. */
static inline long anon(unsigned long len, unsigned long prot)
{
    return sys_mmap(0, len, prot, MAP_ANON_PRIVATE, -1, 0);
}

/* Whether a result is an address (not -4095..-1). */
static inline int is_addr(long r) { return r < -4095 || r >= 0; }

/* ---- probes --------------------------------------------------------------- */

long probe_load(unsigned long addr);                /* the byte, or -1 */
long probe_store(unsigned long addr, long value);   /* 0, or -1 */
long probe_exec(unsigned long addr);                /* calls addr; -1 on a fault */
extern char probe_load_insn[], probe_store_insn[], probe_resume[];
__asm__(".text\n"
        ".global probe_load, probe_load_insn, probe_store, probe_store_insn\n"
        ".global probe_exec, probe_resume\n"
        "probe_load: xor %eax, %eax\n"
        "probe_load_insn: movzbl (%rdi), %eax\n"
        "    ret\n"
        "probe_store: xor %eax, %eax\n"
        "probe_store_insn: movb %sil, (%rdi)\n"
        "    ret\n"
        "probe_exec: xor %eax, %eax\n"
        "    call *%rdi\n"
        "    ret\n"
        "probe_resume: mov $-1, %rax\n"
        "    ret\n");

static volatile int probe_code;
static volatile unsigned long probe_addr;
static volatile int probe_faults;

static void probe_handler(int sig, struct k_siginfo *si, struct k_ucontext *uc)
{
    unsigned long rip = uc->gregs[REG_RIP];
    unsigned long *sp = (unsigned long *)uc->gregs[REG_RSP];
    probe_code = si->code;
    probe_addr = (unsigned long)si->u.addr;
    probe_faults++;
    if (rip == (unsigned long)probe_load_insn || rip == (unsigned long)probe_store_insn) {
        uc->gregs[REG_RIP] = (unsigned long)probe_resume;
    } else if (rip == probe_addr) {
        /* A fetch at the callee's first byte: back to probe_exec's call,
         * whose return address is on top of the stack. */
        uc->gregs[REG_RIP] = (unsigned long)probe_resume;
        uc->gregs[REG_RSP] += 8;
        (void)sp;
    } else {
        sig_disposition(sig, SIG_DFL);
    }
}

static inline void probe_init(void)
{
    sig_action(SIGSEGV, probe_handler, SA_SIGINFO | SA_NODEFER, 0);
}

static inline const char *segv_name(int code)
{
    return code == SEGV_MAPERR ? "SEGV_MAPERR" : code == SEGV_ACCERR ? "SEGV_ACCERR" : "SEGV_other";
}

/* KEY=ok after a load or store that went through, KEY=SEGV_... after one
 * that faulted (and KEY_addr_ok=1 when si_addr was the address). */
static inline void put_probe(const char *key, long r, unsigned long addr)
{
    if (r != -1) {
        put_str(key, "ok");
        return;
    }
    put_str(key, segv_name(probe_code));
    struct line l = {.len = 0};
    out_str(&l, key);
    out_str(&l, "_addr_ok=");
    out_dec(&l, probe_addr == addr);
    out_end(&l);
}

static inline void put_load(const char *key, unsigned long addr) { put_probe(key, probe_load(addr), addr); }
static inline void put_store(const char *key, unsigned long addr, long v)
{
    put_probe(key, probe_store(addr, v), addr);
}

/* Whether every byte of [p, p + len) is b. */
static inline int all_bytes(const void *p, unsigned long len, unsigned char b)
{
    const unsigned char *c = p;
    for (unsigned long i = 0; i < len; i++)
        if (c[i] != b)
            return 0;
    return 1;
}

#endif
