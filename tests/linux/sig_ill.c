/* sig_ill: ud2 while SIGILL is blocked and has a handler. A signal the
 * CPU raises cannot wait (Linux's force_sig): it is unblocked, its
 * handler reset to SIG_DFL, and its default action ends the program.
 * oracle-status: signal:4
 */
#include "sig.h"

static volatile int handled;

static void handler(int sig, struct k_siginfo *si, struct k_ucontext *uc)
{
    (void)sig, (void)si, (void)uc;
    handled = 1;
}

int main(int argc, char **argv, char **envp)
{
    (void)argc, (void)argv, (void)envp;
    expect_ret("sigaction_sigill", sig_action(SIGILL, handler, SA_SIGINFO, 0), 0);
    expect_ret("block_sigill", sig_setmask(SIG_BLOCK, SIGBIT(SIGILL)), 0);
    int r = checks_result();
    __asm__ volatile("ud2");
    put_int("survived_ud2", 1); /* never printed */
    return r + handled;
}
