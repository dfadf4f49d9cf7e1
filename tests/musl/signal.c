/* Signals through musl, unchanged: sigaction with SA_SIGINFO, signal(),
 * raise, sigprocmask, sigsetjmp/siglongjmp out of fault handlers, a
 * handler that repairs a fault through its ucontext and returns, and
 * SIGPIPE ignored. Built by `musl-gcc -static` and run on Faultline and
 * on Linux (docs/oracle.md); every line is a key=value line with a fixed
 * value, and it exits 0 only when every check held. */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>

static int failed;
static sigjmp_buf env;
static volatile sig_atomic_t got_signo, got_code;
static void *volatile got_addr;
static volatile long usr1_count;
static long good = 1234;

static void check(const char *key, int ok)
{
    if (!ok) {
        printf("check_failed=%s\n", key);
        failed++;
    }
}

/* Repairs `movq (%rbx), %rax` at 0x10: points rbx at `good` and returns,
 * so the instruction runs again and loads it. */
static void repair(int signo, siginfo_t *info, void *ctx)
{
    ucontext_t *uc = ctx;
    got_signo = signo;
    got_code = info->si_code;
    got_addr = info->si_addr;
    uc->uc_mcontext.gregs[REG_RBX] = (greg_t)&good;
}

/* Leaves a fault for the sigsetjmp that was set before it. */
static void escape(int signo, siginfo_t *info, void *ctx)
{
    (void)ctx;
    got_signo = signo;
    got_code = info->si_code;
    got_addr = info->si_addr;
    siglongjmp(env, 1);
}

static void on_usr1(int signo)
{
    (void)signo;
    usr1_count++;
}

static int escaped(void (*fault)(void), int signo)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = escape;
    sa.sa_flags = SA_SIGINFO;
    sigaction(signo, &sa, 0);
    got_signo = 0;
    if (sigsetjmp(env, 1) == 0) {
        fault();
        return 0;
    }
    return got_signo == signo;
}

static void store_to_null(void)
{
    *(volatile int *)0 = 1;
}

static void illegal(void)
{
    __builtin_trap();
}

static void divide(void)
{
    volatile int zero = 0, x = 7;
    x = x / zero;
}

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = repair;
    sa.sa_flags = SA_SIGINFO;
    check("sigaction", sigaction(SIGSEGV, &sa, 0) == 0);
    long v;
    __asm__ volatile("movq (%%rbx), %%rax" : "=a"(v) : "b"(0x10L) : "memory");
    printf("repaired_value=%ld\n", v);
    printf("repaired_signo=%d\n", (int)got_signo);
    printf("repaired_code_maperr=%d\n", got_code == SEGV_MAPERR);
    printf("repaired_addr_ok=%d\n", got_addr == (void *)0x10);

    printf("null_store_escaped=%d\n", escaped(store_to_null, SIGSEGV));
    printf("null_store_addr_ok=%d\n", got_addr == 0);
    printf("ud2_escaped=%d\n", escaped(illegal, SIGILL));
    printf("ud2_code_illopn=%d\n", got_code == ILL_ILLOPN);
    printf("divide_escaped=%d\n", escaped(divide, SIGFPE));
    printf("divide_code_intdiv=%d\n", got_code == FPE_INTDIV);
    /* siglongjmp with savemask restored the mask from before the fault. */
    sigset_t now;
    sigprocmask(SIG_BLOCK, 0, &now);
    printf("mask_restored=%d\n", !sigismember(&now, SIGSEGV) && !sigismember(&now, SIGFPE));

    check("signal", signal(SIGUSR1, on_usr1) != SIG_ERR);
    raise(SIGUSR1);
    raise(SIGUSR1);
    printf("usr1_count=%ld\n", usr1_count);

    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, 0);
    raise(SIGUSR1);
    printf("blocked_usr1_count=%ld\n", usr1_count);
    sigprocmask(SIG_UNBLOCK, &usr1, 0);
    printf("unblocked_usr1_count=%ld\n", usr1_count);

    signal(SIGPIPE, SIG_IGN);
    int fds[2];
    check("pipe", pipe(fds) == 0);
    close(fds[0]);
    errno = 0;
    ssize_t w = write(fds[1], "x", 1);
    printf("broken_pipe_write=%zd\n", w);
    printf("broken_pipe_epipe=%d\n", errno == EPIPE);

    printf("checks_failed=%d\n", failed);
    return failed != 0;
}
