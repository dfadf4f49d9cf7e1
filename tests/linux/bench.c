/* bench: what a few operations cost, in TSC cycles, for `./run.sh bench`.
 *
 * Each sample is rdtsc immediately before and after one operation; nothing
 * is subtracted (not even rdtsc's own cost). Each figure is the median
 * (element SAMPLES/2 of the sorted samples) of SAMPLES samples, taken after
 * WARMUP unrecorded ones. Under QEMU's -icount shift=0 the TSC counts
 * guest instructions, so the figures repeat exactly from run to run.
 *
 *   syscall_getppid        one getppid(2)
 *   pipe_pingpong_threads  two threads (raw clone) and two pipes: one byte
 *                          there and one back; half the round trip
 *   futex_wake_wait        two threads and one futex word: FUTEX_WAKE the
 *                          other and FUTEX_WAIT until it wakes us back;
 *                          half the round trip
 *   clock_gettime          clock_gettime(CLOCK_MONOTONIC) as a raw system
 *                          call, not through the vDSO (which Linux would
 *                          use from a libc and which makes no system call)
 *   anon_fault             the first write to a page of fresh private
 *                          anonymous memory: the fault, a zeroed frame,
 *                          its entry; per page, over 2000 pages (after
 *                          WARMUP more), one mmap for all of them
 *   remote_wakeup_cycles   a thread pinned to CPU 1 sleeps in FUTEX_WAIT;
 *                          from CPU 0, the cycles from just before the
 *                          FUTEX_WAKE to the waiter running again (its
 *                          rdtsc after the wait). The waker sleeps 1 ms
 *                          first, so the waiter is asleep (CPU 1 idle):
 *                          the wake crosses CPUs by IPI. Fewer samples
 *                          (REMOTE_SAMPLES): each round sleeps. Needs two
 *                          CPUs; with one it is left out. The waker's
 *                          busy-waits pause (cpu_relax, sys.h says why).
 *
 * It prints NAME=cycles lines; run.sh prefixes them with "linux_".
 */
#include "sys.h"

#define SAMPLES 2000
#define WARMUP 100
#define ROUNDS (SAMPLES + WARMUP)
#define STACK 65536

static unsigned char stack[STACK] __attribute__((aligned(16)));
static volatile int peer_tid;
static unsigned long samples[SAMPLES];
static int ping[2], pong[2];
static volatile int word;

#define REMOTE_SAMPLES 101
#define REMOTE_WARMUP 10

static volatile int remote_word, remote_ready;
static volatile unsigned long remote_stamp;

static inline unsigned long rdtsc(void)
{
    unsigned lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi)::"memory");
    return (unsigned long)hi << 32 | lo;
}

/* The median of the first n samples (the remote bench takes fewer). */
static unsigned long median_of(int n)
{
    /* Shell sort: no libc qsort here. */
    for (int gap = n / 2; gap > 0; gap /= 2)
        for (int i = gap; i < n; i++) {
            unsigned long v = samples[i];
            int j = i;
            for (; j >= gap && samples[j - gap] > v; j -= gap)
                samples[j] = samples[j - gap];
            samples[j] = v;
        }
    return samples[n / 2];
}

static unsigned long median(void) { return median_of(SAMPLES); }

static void report(const char *name, unsigned long value)
{
    put_int(name, (long)value);
    check(name, value > 0);
}

static int pipe_peer(void *arg)
{
    (void)arg;
    char c;
    for (int i = 0; i < ROUNDS; i++) {
        if (sys_read(ping[0], &c, 1) != 1 || sys_write(pong[1], &c, 1) != 1)
            return 1;
    }
    return 0;
}

static int futex_peer(void *arg)
{
    (void)arg;
    for (int i = 0; i < ROUNDS; i++) {
        while (__atomic_load_n(&word, __ATOMIC_ACQUIRE) == 0)
            sys_futex(&word, FUTEX_WAIT | FUTEX_PRIVATE_FLAG, 0, 0);
        __atomic_store_n(&word, 0, __ATOMIC_RELEASE);
        sys_futex(&word, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, 1, 0);
    }
    return 0;
}

static int remote_waiter(void *arg)
{
    (void)arg;
    if (pin(1) != 0)
        return 1;
    for (int i = 0; i < REMOTE_SAMPLES + REMOTE_WARMUP; i++) {
        __atomic_store_n(&remote_ready, 1, __ATOMIC_RELEASE);
        while (__atomic_load_n(&remote_word, __ATOMIC_ACQUIRE) == 0)
            sys_futex(&remote_word, FUTEX_WAIT | FUTEX_PRIVATE_FLAG, 0, 0);
        unsigned long t = rdtsc();
        if (i >= REMOTE_WARMUP)
            samples[i - REMOTE_WARMUP] = t - remote_stamp;
        __atomic_store_n(&remote_word, 0, __ATOMIC_RELEASE);
    }
    return 0;
}

static long start_peer(int (*fn)(void *))
{
    peer_tid = -1;
    return clone_thread(CLONE_THREAD_FLAGS, stack + STACK, (int *)&peer_tid, (int *)&peer_tid, 0, fn, 0);
}

int main(int argc, char **argv, char **envp)
{
    (void)argc, (void)argv, (void)envp;
    unsigned long t0, t1;

    for (int i = 0; i < ROUNDS; i++) {
        t0 = rdtsc();
        sys_getppid();
        t1 = rdtsc();
        if (i >= WARMUP)
            samples[i - WARMUP] = t1 - t0;
    }
    report("syscall_getppid", median());

    check("pipes", sys_pipe(ping) == 0 && sys_pipe(pong) == 0);
    check("pipe_peer", start_peer(pipe_peer) > 0);
    char c = 'x';
    for (int i = 0; i < ROUNDS; i++) {
        t0 = rdtsc();
        long w = sys_write(ping[1], &c, 1);
        long r = sys_read(pong[0], &c, 1);
        t1 = rdtsc();
        if (w != 1 || r != 1) {
            check("pipe_pingpong_transfer", 0);
            break;
        }
        if (i >= WARMUP)
            samples[i - WARMUP] = (t1 - t0) / 2;
    }
    join_thread(&peer_tid);
    report("pipe_pingpong_threads", median());

    word = 0;
    check("futex_peer", start_peer(futex_peer) > 0);
    for (int i = 0; i < ROUNDS; i++) {
        t0 = rdtsc();
        __atomic_store_n(&word, 1, __ATOMIC_RELEASE);
        sys_futex(&word, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, 1, 0);
        while (__atomic_load_n(&word, __ATOMIC_ACQUIRE) == 1)
            sys_futex(&word, FUTEX_WAIT | FUTEX_PRIVATE_FLAG, 1, 0);
        t1 = rdtsc();
        if (i >= WARMUP)
            samples[i - WARMUP] = (t1 - t0) / 2;
    }
    join_thread(&peer_tid);
    report("futex_wake_wait", median());

    struct timespec ts;
    for (int i = 0; i < ROUNDS; i++) {
        t0 = rdtsc();
        sys_clock_gettime(CLOCK_MONOTONIC, &ts);
        t1 = rdtsc();
        if (i >= WARMUP)
            samples[i - WARMUP] = t1 - t0;
    }
    report("clock_gettime", median());

    volatile unsigned char *fresh =
        (volatile unsigned char *)syscall6(9 /* mmap */, 0, ROUNDS * 4096L, 3 /* RW */,
                                           0x22 /* MAP_PRIVATE|MAP_ANONYMOUS */, -1, 0);
    check("anon_mmap", (long)fresh > 0);
    if ((long)fresh > 0) {
        for (int i = 0; i < ROUNDS; i++) {
            t0 = rdtsc();
            fresh[i * 4096L] = 1;
            t1 = rdtsc();
            if (i >= WARMUP)
                samples[i - WARMUP] = t1 - t0;
        }
        report("anon_fault", median());
        syscall2(11 /* munmap */, fresh, ROUNDS * 4096L);
    }

    /* Pinned: the waker on CPU 0, the waiter on CPU 1; only with both. */
    unsigned long cpus = 0;
    sys_sched_getaffinity(0, sizeof cpus, &cpus);
    if ((cpus & 3) != 3)
        return checks_result();
    long pinned = pin(0);
    check("pin_cpu0", pinned == 0);
    unsigned long remote = 0;
    if (pinned == 0 && start_peer(remote_waiter) > 0) {
        for (int i = 0; i < REMOTE_SAMPLES + REMOTE_WARMUP; i++) {
            while (!__atomic_load_n(&remote_ready, __ATOMIC_ACQUIRE))
                cpu_relax();
            remote_ready = 0;
            sys_nanosleep(0, 1000000);
            remote_stamp = rdtsc();
            __atomic_store_n(&remote_word, 1, __ATOMIC_RELEASE);
            sys_futex(&remote_word, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, 1, 0);
            /* The waiter takes its sample before it clears the word. */
            while (__atomic_load_n(&remote_word, __ATOMIC_ACQUIRE) == 1)
                cpu_relax();
        }
        join_thread(&peer_tid);
        remote = median_of(REMOTE_SAMPLES);
    }
    report("remote_wakeup_cycles", remote);
    return checks_result();
}
