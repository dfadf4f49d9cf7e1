/* signal_errors: the errno of arguments the signal calls refuse, as man 2
 * lists them:
 *   - rt_sigaction(2) on SIGKILL, signal 0, signal 65, or with a sigset size
 *     other than 8: EINVAL;
 *   - kill(2) with signal 65: EINVAL; signal 0 to ourselves: 0.
 */
#include "sys.h"

int main(int argc, char **argv, char **envp)
{
    (void)argc, (void)argv, (void)envp;
    struct k_sigaction ign = {.handler = SIG_IGN};
    expect_ret("sigaction_sigkill", sys_sigaction(SIGKILL, &ign, 0), -EINVAL);
    expect_ret("sigaction_signal_0", sys_sigaction(0, &ign, 0), -EINVAL);
    expect_ret("sigaction_signal_65", sys_sigaction(65, &ign, 0), -EINVAL);
    expect_ret("sigaction_setsize_4", syscall4(SYS_rt_sigaction, SIGPIPE, &ign, 0, 4), -EINVAL);
    expect_ret("kill_signal_65", sys_kill(sys_getpid(), 65), -EINVAL);
    expect_ret("kill_signal_0_self", sys_kill(sys_getpid(), 0), 0);
    return checks_result();
}
