/* futex: FUTEX_WAIT and FUTEX_WAKE as futex(2) describes them.
 *   - WAIT when the word does not hold the expected value: EAGAIN at once;
 *   - WAIT with a relative timeout nobody ends: ETIMEDOUT, not early;
 *   - WAKE with no waiter: 0; a bad address: EFAULT; a misaligned one:
 *     EINVAL; an invalid timeout: EINVAL; an unknown operation: ENOSYS;
 *   - WAKE(1) wakes at most one of three waiting threads, and three such
 *     wakes (however many calls that takes) release all three, each of
 *     whose WAIT returns 0; WAKE(INT_MAX) releases the rest.
 * When a thread has not reached its WAIT yet a wake finds nobody, so only
 * totals and bounds are printed, never the count of one call.
 */
#include "sys.h"

#define WAITERS 3
#define STACK 65536
#define INT_MAX 0x7fffffff

static unsigned char stacks[WAITERS][STACK] __attribute__((aligned(16)));
static int tids[WAITERS];
static volatile int ctids[WAITERS];
static volatile int gate;
static volatile int ready;
static volatile long results[WAITERS];

static long now_ns(void)
{
    struct timespec ts;
    sys_clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static int waiter(void *arg)
{
    long i = (long)arg;
    __atomic_add_fetch(&ready, 1, __ATOMIC_SEQ_CST);
    results[i] = sys_futex(&gate, FUTEX_WAIT, 0, 0);
    return 0;
}

static void start_waiters(int n)
{
    ready = 0;
    for (int i = 0; i < n; i++) {
        results[i] = 1; /* not returned yet */
        ctids[i] = -1;
        long t = clone_thread(CLONE_THREAD_FLAGS, stacks[i] + STACK, &tids[i], (int *)&ctids[i], 0,
                              waiter, (void *)(long)i);
        check("clone_waiter", t > 0);
    }
    while (__atomic_load_n(&ready, __ATOMIC_SEQ_CST) < n)
        sys_sched_yield();
}

/* Wake with NR until N threads were woken in all, or 10 s passed; returns
 * the total and sets *max to the largest single result. */
static long wake_until(int nr, long n, long *max)
{
    long total = 0, deadline = now_ns() + 10000000000L;
    *max = 0;
    while (total < n && now_ns() < deadline) {
        long r = sys_futex(&gate, FUTEX_WAKE, nr, 0);
        if (r < 0)
            return r;
        total += r;
        if (r > *max)
            *max = r;
        if (total < n)
            sys_sched_yield();
    }
    return total;
}

int main(int argc, char **argv, char **envp)
{
    (void)argc, (void)argv, (void)envp;
    volatile int word = 1;

    expect_ret("wait_value_mismatch", sys_futex(&word, FUTEX_WAIT, 2, 0), -EAGAIN);
    expect_ret("wait_value_mismatch_private",
               sys_futex(&word, FUTEX_WAIT | FUTEX_PRIVATE_FLAG, 2, 0), -EAGAIN);
    struct timespec timeout = {0, 20000000}; /* 20 ms */
    long before = now_ns();
    expect_ret("wait_timeout", sys_futex(&word, FUTEX_WAIT, 1, &timeout), -ETIMEDOUT);
    expect_int("wait_timeout_not_early", now_ns() - before >= 20000000L, 1);
    expect_ret("wait_timeout_private", sys_futex(&word, FUTEX_WAIT | FUTEX_PRIVATE_FLAG, 1, &timeout),
               -ETIMEDOUT);
    expect_ret("wake_nobody", sys_futex(&word, FUTEX_WAKE, 1, 0), 0);
    expect_ret("wake_nobody_private", sys_futex(&word, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, INT_MAX, 0), 0);
    expect_int("word_unchanged", word, 1);

    expect_ret("wait_null", sys_futex(0, FUTEX_WAIT, 0, 0), -EFAULT);
    expect_ret("wait_kernel_address", sys_futex((volatile int *)0xffff800000000000UL, FUTEX_WAIT, 0, 0),
               -EFAULT);
    expect_ret("wait_misaligned", sys_futex((volatile int *)((char *)&word + 1), FUTEX_WAIT, 1, 0),
               -EINVAL);
    struct timespec bad_nsec = {0, 1000000000L}, negative = {-1, 0};
    expect_ret("wait_timeout_nsec_1e9", sys_futex(&word, FUTEX_WAIT, 1, &bad_nsec), -EINVAL);
    expect_ret("wait_timeout_negative", sys_futex(&word, FUTEX_WAIT, 1, &negative), -EINVAL);
    expect_ret("wait_timeout_bad_pointer", sys_futex(&word, FUTEX_WAIT, 1, (struct timespec *)16),
               -EFAULT);
    expect_ret("unknown_op", sys_futex(&word, 99, 0, 0), -ENOSYS);

    /* Three waiters, woken one at a time. */
    long max;
    start_waiters(WAITERS);
    long total = wake_until(1, WAITERS, &max);
    expect_int("wake_one_total", total, WAITERS);
    expect_int("wake_one_at_most_one", max <= 1, 1);
    for (int i = 0; i < WAITERS; i++)
        join_thread(&ctids[i]);
    int zeros = 0;
    for (int i = 0; i < WAITERS; i++)
        zeros += results[i] == 0;
    expect_int("woken_waits_returned_0", zeros, WAITERS);

    /* Three more, woken all at once (in as many calls as it takes). */
    start_waiters(WAITERS);
    total = wake_until(INT_MAX, WAITERS, &max);
    expect_int("wake_all_total", total, WAITERS);
    expect_int("wake_all_at_most_waiters", max <= WAITERS, 1);
    for (int i = 0; i < WAITERS; i++)
        join_thread(&ctids[i]);
    zeros = 0;
    for (int i = 0; i < WAITERS; i++)
        zeros += results[i] == 0;
    expect_int("woken_all_waits_returned_0", zeros, WAITERS);
    expect_ret("wake_after_all_left", sys_futex(&gate, FUTEX_WAKE, INT_MAX, 0), 0);
    return checks_result();
}
