/* sig_kill: SIGKILL has no handler, cannot be blocked or ignored
 * (rt_sigaction and rt_sigprocmask say so or drop it), and sent with
 * tgkill(2) to one thread, here by a second thread to the main one, it
 * ends the whole process.
 * oracle-status: signal:9
 */
#include "sig.h"

#define STACK 65536

static unsigned char stack[STACK] __attribute__((aligned(16)));
static int tid_word;
static long pid, main_tid;

static void handler(int sig, struct k_siginfo *si, struct k_ucontext *uc)
{
    (void)sig, (void)si, (void)uc;
}

static int killer(void *arg)
{
    (void)arg;
    sys_nanosleep(0, 50000000);
    sys_tgkill(pid, main_tid, SIGKILL);
    sys_nanosleep(0, 500000000);
    put_int("thread_survived", 1); /* never printed */
    return 0;
}

int main(int argc, char **argv, char **envp)
{
    (void)argc, (void)argv, (void)envp;
    pid = sys_getpid();
    main_tid = sys_gettid();
    expect_ret("sigaction_sigkill", sig_action(SIGKILL, handler, SA_SIGINFO, 0), -EINVAL);
    expect_ret("ignore_sigkill", sig_disposition(SIGKILL, SIG_IGN), -EINVAL);
    expect_ret("block_everything", sig_setmask(SIG_SETMASK, ~0UL), 0);
    expect_int("sigkill_not_blocked", (sig_mask() & SIGBIT(SIGKILL)) == 0, 1);
    int p[2];
    char c;
    expect_ret("pipe", sys_pipe(p), 0);
    long t = clone_thread(CLONE_THREAD_FLAGS, stack + STACK, &tid_word, &tid_word, 0, killer, 0);
    expect_int("clone", t > 0, 1);
    int r = checks_result();
    long n = sys_read(p[0], &c, 1);
    put_ret("read_returned", n); /* never printed */
    return r;
}
