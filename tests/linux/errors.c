/* errors: the errno of arguments a call refuses, as man 2 lists them.
 *   - an unknown system call number: ENOSYS (syscall(2)); numbers no
 *     kernel uses (100000, 999, -1), since newer kernels keep adding
 *     calls after 6.1's last (and Faultline has calls of its own from
 *     1000 up, docs/abi.md);
 *   - pipe2(2) with a flag it does not know: EINVAL;
 *   - wait4(2) with an unknown option: EINVAL (checked before children);
 *     pid INT_MIN: ESRCH; no child to wait for: ECHILD, with WNOHANG too;
 *   - clock_gettime(2) with an unknown clock: EINVAL;
 *   - nanosleep(2) with tv_nsec outside 0..999999999 or a negative tv_sec:
 *     EINVAL.
 * The signal calls' are signal_errors.c's.
 */
#include "sys.h"

int main(int argc, char **argv, char **envp)
{
    (void)argc, (void)argv, (void)envp;
    expect_ret("syscall_100000", syscall0(100000), -ENOSYS);
    expect_ret("syscall_999", syscall0(999), -ENOSYS);
    expect_ret("syscall_minus_1", syscall0(-1), -ENOSYS);
    expect_int("enosys_is_38", ENOSYS, 38);

    int p[2];
    expect_ret("pipe2_flag_rdwr", sys_pipe2(p, O_RDWR), -EINVAL);
    expect_ret("pipe2_flag_high_bit", sys_pipe2(p, (int)0x80000000), -EINVAL);
    expect_ret("pipe2_flag_1", sys_pipe2(p, 1), -EINVAL);
    expect_ret("pipe2_valid_flags", sys_pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    expect_ret("pipe2_cloexec_set", syscall2(SYS_fcntl, p[0], F_GETFD), FD_CLOEXEC);
    expect_ret("pipe2_nonblock_set", (syscall2(SYS_fcntl, p[1], F_GETFL) & O_NONBLOCK) != 0, 1);
    sys_close(p[0]);
    sys_close(p[1]);
    expect_int("einval_is_22", EINVAL, 22);

    int status;
    expect_ret("wait4_bad_option", sys_wait4(-1, &status, 0x100, 0), -EINVAL);
    expect_ret("wait4_wexited_is_waitids", sys_wait4(-1, &status, 4, 0), -EINVAL);
    expect_ret("wait4_int_min", sys_wait4(-2147483647L - 1, &status, 0, 0), -ESRCH);
    expect_ret("wait4_no_child", sys_wait4(-1, &status, 0, 0), -ECHILD);
    expect_ret("wait4_no_child_wnohang", sys_wait4(-1, &status, WNOHANG, 0), -ECHILD);
    expect_ret("wait4_no_such_pid", sys_wait4(99999, 0, 0, 0), -ECHILD);
    struct timespec ts;
    expect_ret("clock_gettime_bad_clock", sys_clock_gettime(1000, &ts), -EINVAL);
    expect_ret("clock_gettime_monotonic", sys_clock_gettime(CLOCK_MONOTONIC, &ts), 0);
    expect_int("clock_gettime_nsec_in_range", ts.tv_nsec >= 0 && ts.tv_nsec < 1000000000L, 1);
    expect_ret("nanosleep_nsec_1e9", sys_nanosleep(0, 1000000000L), -EINVAL);
    expect_ret("nanosleep_nsec_negative", sys_nanosleep(0, -1), -EINVAL);
    expect_ret("nanosleep_sec_negative", sys_nanosleep(-1, 0), -EINVAL);
    expect_ret("nanosleep_1ms", sys_nanosleep(0, 1000000), 0);
    return checks_result();
}
