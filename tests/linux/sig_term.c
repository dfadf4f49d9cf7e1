/* sig_term: kill(2) of ourselves with SIGTERM while it is blocked: the
 * call returns 0 and the signal waits; unblocking it ends the program
 * before rt_sigprocmask returns (SIGTERM's default action, Term).
 * oracle-status: signal:15
 */
#include "sig.h"

int main(int argc, char **argv, char **envp)
{
    (void)argc, (void)argv, (void)envp;
    expect_ret("block_sigterm", sig_setmask(SIG_BLOCK, SIGBIT(SIGTERM)), 0);
    expect_ret("kill_self_sigterm", sys_kill(sys_getpid(), SIGTERM), 0);
    expect_int("alive_while_blocked", 1, 1);
    expect_hex("mask_while_blocked", sig_mask(), SIGBIT(SIGTERM));
    int r = checks_result();
    sig_setmask(SIG_UNBLOCK, SIGBIT(SIGTERM));
    put_int("survived_unblock", 1); /* never printed */
    return r;
}
