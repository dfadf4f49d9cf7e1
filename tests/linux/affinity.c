/* affinity: sched_setaffinity(2) and sched_getaffinity(2) as man 2 and
 * Linux 6.1's kernel/sched/core.c have them, on whatever number of CPUs
 * the machine has (nothing printed depends on it: only CPU 0 is asked
 * about, and only masks no machine here could run or every machine can).
 *   - getaffinity returns the size of the kernel's cpumask, 8 bytes with
 *     at most 64 CPUs, and stores only those; EINVAL when len is not a
 *     multiple of 8 or has no bit for each CPU (len * 8 in 32 bits, so
 *     1 << 29 wraps to 0); its order: len, ESRCH, EFAULT;
 *   - setaffinity reads min(len, 8) bytes first (EFAULT), a short mask's
 *     higher CPUs clear, len 0 reading nothing; then ESRCH; then EINVAL
 *     for a mask with no CPU that runs;
 *   - pid 0 and the caller's tid are the caller.
 */
#include "sys.h"

#define NO_SUCH_PID 999999


static long set_mask(long pid, unsigned long mask)
{
    return sys_sched_setaffinity(pid, 8, &mask);
}

/* Whether CPU 0 is in the caller's mask, or the getaffinity error. */
static long cpu0(void)
{
    unsigned long mask = 0;
    long r = sys_sched_getaffinity(0, 8, &mask);
    return r < 0 ? r : (long)(mask & 1);
}

int main(int argc, char **argv, char **envp)
{
    (void)argc, (void)argv, (void)envp;
    unsigned char buf[24];
    for (int i = 0; i < 24; i++)
        buf[i] = 0xaa;
    expect_ret("get_24_bytes", sys_sched_getaffinity(0, 24, buf), 8);
    int untouched = 1;
    for (int i = 8; i < 24; i++)
        untouched &= buf[i] == 0xaa;
    expect_int("get_stores_8_bytes_only", untouched, 1);
    expect_int("get_cpu0_allowed", buf[0] & 1, 1);
    expect_ret("get_by_own_tid", sys_sched_getaffinity(sys_gettid(), 8, buf), 8);

    expect_ret("get_len_0", sys_sched_getaffinity(0, 0, buf), -EINVAL);
    expect_ret("get_len_4", sys_sched_getaffinity(0, 4, buf), -EINVAL);
    expect_ret("get_len_7", sys_sched_getaffinity(0, 7, buf), -EINVAL);
    expect_ret("get_len_12", sys_sched_getaffinity(0, 12, buf), -EINVAL);
    expect_ret("get_len_wraps_to_0", sys_sched_getaffinity(0, 1UL << 29, buf), -EINVAL);
    expect_ret("get_len_wraps_to_64_bits", sys_sched_getaffinity(0, (1UL << 29) + 8, buf), 8);
    expect_ret("get_len_high_bits_ignored", sys_sched_getaffinity(0, 1UL << 32 | 8, buf), 8);
    expect_ret("get_len_before_pid", sys_sched_getaffinity(NO_SUCH_PID, 4, 0), -EINVAL);
    expect_ret("get_pid_before_pointer", sys_sched_getaffinity(NO_SUCH_PID, 8, 0), -ESRCH);
    expect_ret("get_null_pointer", sys_sched_getaffinity(0, 8, 0), -EFAULT);
    expect_ret("get_pid_minus_1", sys_sched_getaffinity(-1, 8, buf), -ESRCH);

    expect_ret("set_pointer_before_pid", sys_sched_setaffinity(NO_SUCH_PID, 8, 0), -EFAULT);
    expect_ret("set_no_such_pid", set_mask(NO_SUCH_PID, 1), -ESRCH);
    expect_ret("set_pid_before_mask", set_mask(NO_SUCH_PID, 0), -ESRCH);
    expect_ret("set_empty_mask", set_mask(0, 0), -EINVAL);
    expect_ret("set_no_running_cpu", set_mask(0, 1UL << 63), -EINVAL);
    expect_ret("set_len_0_reads_nothing", sys_sched_setaffinity(0, 0, 0), -EINVAL);
    expect_ret("set_len_0_pid_first", sys_sched_setaffinity(NO_SUCH_PID, 0, 0), -ESRCH);

    expect_ret("set_cpu0_only", set_mask(0, 1), 0);
    unsigned long mask = 0;
    expect_ret("get_after_set", sys_sched_getaffinity(0, 8, &mask), 8);
    expect_int("get_cpu0_only", (long)mask, 1);
    unsigned char shorter[4] = {1, 0xff, 0xff, 0xff};
    expect_ret("set_len_1_is_cpus_0_to_7", sys_sched_setaffinity(0, 1, shorter), 0);
    expect_int("set_len_1_cpu0_only", (long)(sys_sched_getaffinity(0, 8, &mask) == 8 ? mask : 99), 1);
    unsigned char longer[16] = {1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    expect_ret("set_len_16_reads_8", sys_sched_setaffinity(sys_gettid(), 16, longer), 0);
    expect_int("set_len_16_cpu0_only", (long)(sys_sched_getaffinity(0, 8, &mask) == 8 ? mask : 99), 1);
    expect_ret("set_all_cpus", set_mask(0, ~0UL), 0);
    expect_ret("set_all_cpu0_allowed", cpu0(), 1);
    return checks_result();
}
