/* sig.h: what the signal programs add to sys.h (signal.c, signal_intr.c,
 * sig_*.c): the signal calls, Linux's x86_64 constants and the layouts a
 * handler sees (siginfo_t, stack_t, ucontext_t as the kernel writes them,
 * not as a libc declares them), and a restorer.
 *
 * x86-64 Linux refuses a handler without SA_RESTORER (the frame cannot be
 * built: SIGSEGV instead), so every handler set with sig_action() gets
 * SA_RESTORER and oracle_restore_rt, which is what a libc's __restore_rt
 * is: rt_sigreturn, with the stack pointer where the handler's return
 * left it (just past the frame's return address).
 */
#ifndef ORACLE_SIG_H
#define ORACLE_SIG_H

#include "sys.h"

#define SYS_rt_sigprocmask 14
#define SYS_rt_sigreturn 15
#define SYS_sigaltstack 131
#define SYS_tkill 200
#define SYS_tgkill 234

#define SIGHUP 1
#define SIGINT 2
#define SIGILL 4
#define SIGTRAP 5
#define SIGBUS 7
#define SIGFPE 8
#define SIGUSR1 10
#define SIGUSR2 12
#define SIGSTOP 19
#define SIGURG 23
#define SIGWINCH 28
#define SIGBIT(s) (1UL << ((s) - 1))

#define SA_SIGINFO 0x4UL
#define SA_UNSUPPORTED 0x400UL
#define SA_RESTORER 0x04000000UL
#define SA_ONSTACK 0x08000000UL
#define SA_RESTART 0x10000000UL
#define SA_NODEFER 0x40000000UL
#define SA_RESETHAND 0x80000000UL

#define SIG_BLOCK 0
#define SIG_UNBLOCK 1
#define SIG_SETMASK 2

#define SS_ONSTACK 1
#define SS_DISABLE 2
#define SS_AUTODISARM (1U << 31)
#define MINSIGSTKSZ 2048

#define SI_USER 0
#define SI_KERNEL 0x80
#define SI_TKILL (-6)
#define SEGV_MAPERR 1
#define SEGV_ACCERR 2
#define ILL_ILLOPN 2
#define FPE_INTDIV 1

/* siginfo_t: 128 bytes; the union starts at 16. */
struct k_siginfo {
    int signo;
    int errno_;
    int code;
    int pad_;
    union {
        struct {
            int pid;
            int uid;
        } kill;
        void *addr;
    } u;
    char rest_[104];
};

/* stack_t */
struct k_stack {
    void *sp;
    int flags;
    int pad_;
    unsigned long size;
};

/* uc_mcontext.gregs, in struct sigcontext's order. */
enum {
    REG_R8, REG_R9, REG_R10, REG_R11, REG_R12, REG_R13, REG_R14, REG_R15,
    REG_RDI, REG_RSI, REG_RBP, REG_RBX, REG_RDX, REG_RAX, REG_RCX, REG_RSP,
    REG_RIP, REG_EFL, REG_CSGSFS, REG_ERR, REG_TRAPNO, REG_OLDMASK, REG_CR2,
    NGREG
};

/* The kernel's struct ucontext on x86_64: 304 bytes, then (in the frame)
 * the siginfo. fpstate points at the FXSAVE/XSAVE image above the frame. */
struct k_ucontext {
    unsigned long flags;
    void *link;
    struct k_stack stack;
    unsigned long gregs[NGREG];
    unsigned char *fpstate;
    unsigned long reserved1_[8];
    unsigned long sigmask;
};
#define UC_FP_XSTATE 0x1UL
#define UC_SIGCONTEXT_SS 0x2UL
#define UC_STRICT_RESTORE_SS 0x4UL

/* The restorer: rt_sigreturn. */
void oracle_restore_rt(void);
__asm__(".text\n"
        ".global oracle_restore_rt\n"
        ".type oracle_restore_rt,@function\n"
        "oracle_restore_rt:\n"
        "    mov $15, %eax\n" /* SYS_rt_sigreturn */
        "    syscall\n"
        "    hlt\n"
        ".size oracle_restore_rt, .-oracle_restore_rt\n");

typedef void (*sig_handler)(int, struct k_siginfo *, struct k_ucontext *);

/* A handler with SA_RESTORER and oracle_restore_rt (flags: the others). */
static inline long sig_action(int sig, sig_handler handler, unsigned long flags, unsigned long mask)
{
    struct k_sigaction a = {(void *)handler, flags | SA_RESTORER, (void *)oracle_restore_rt, mask};
    return sys_sigaction(sig, &a, 0);
}

/* SIG_DFL or SIG_IGN. */
static inline long sig_disposition(int sig, void *what)
{
    struct k_sigaction a = {what, 0, 0, 0};
    return sys_sigaction(sig, &a, 0);
}

static inline long sys_sigprocmask(int how, const unsigned long *set, unsigned long *old)
{
    return syscall4(SYS_rt_sigprocmask, how, set, old, 8);
}

static inline long sig_setmask(int how, unsigned long set)
{
    return sys_sigprocmask(how, &set, 0);
}

/* The calling thread's signal mask. */
static inline unsigned long sig_mask(void)
{
    unsigned long m = 0xdead;
    sys_sigprocmask(SIG_BLOCK, 0, &m);
    return m;
}

static inline long sys_tgkill(long tgid, long tid, int sig) { return syscall3(SYS_tgkill, tgid, tid, sig); }
static inline long sys_tkill(long tid, int sig) { return syscall2(SYS_tkill, tid, sig); }
static inline long sys_sigaltstack(const struct k_stack *ss, struct k_stack *old)
{
    return syscall2(SYS_sigaltstack, ss, old);
}

/* A signal to the calling thread, as raise(3) sends it. */
static inline long raise_sig(int sig) { return sys_tgkill(sys_getpid(), sys_gettid(), sig); }

static inline void put_hex(const char *key, unsigned long value)
{
    struct line l = {.len = 0};
    out_str(&l, key);
    out_str(&l, "=");
    out_hex(&l, value);
    out_end(&l);
}

/* expect_hex(KEY, V, WANT): prints KEY=0x.. and checks it. */
static inline void expect_hex(const char *key, unsigned long v, unsigned long want)
{
    put_hex(key, v);
    if (v != want)
        check_fail(key, "value", (long)v, (long)want);
}

#endif
