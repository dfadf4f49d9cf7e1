/* POSIX threads from musl, unchanged: pthread_create and pthread_join,
 * a pthread_mutex_t and clock_gettime(CLOCK_MONOTONIC), built by
 * `musl-gcc -static` and run on Faultline and on Linux (docs/oracle.md).
 *
 * Each thread runs on a stack this program gives it
 * (pthread_attr_setstack on a static buffer), from before Faultline had
 * mmap (tests/musl/malloc.c lets musl map them). musl then keeps the thread's descriptor and TLS at the top of the
 * buffer (they fit in an eighth of it), so no memory is allocated at all;
 * nor does anything here call malloc (no brk either).
 *
 * What musl asks of the kernel: clone with its flag set (CLONE_DETACHED
 * among them) and a TLS base, futex waits and wakes for the mutex and the
 * join (the exit's CLONE_CHILD_CLEARTID word), rt_sigprocmask around the
 * clone (every signal blocked while the thread is made), clock_gettime (a system call: Faultline gives no vDSO) and nanosleep.
 *
 * The main thread holds the mutex while it starts the threads and sleeps,
 * so each thread's first lock has to wait (a futex wait, unless it has
 * not run yet) and the counter must still be 0 when the sleep ends. Every
 * line is a key=value line whose value is fixed (no times, addresses or
 * ids), so Linux's output and Faultline's can be compared; it exits 0
 * only when every check held. */
#include <pthread.h>
#include <stdio.h>
#include <time.h>

#define THREADS 4
#define ROUNDS 20000
#define STACK_SIZE (64 * 1024)
#define SLEEP_NS 20000000L

static char stacks[THREADS][STACK_SIZE] __attribute__((aligned(16)));
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static long counter;
static int failed;

struct job {
    int index;
    int on_own_stack; /* set by the thread */
    pthread_t self;   /* what pthread_self said in the thread */
};

static struct job jobs[THREADS];

static void check(const char *key, int ok)
{
    if (!ok) {
        printf("check_failed=%s\n", key);
        failed++;
    }
}

static void *work(void *arg)
{
    struct job *job = arg;
    char here;
    /* The stack musl switched to is the buffer it was given. */
    job->on_own_stack = &here >= stacks[job->index] && &here < stacks[job->index] + STACK_SIZE;
    job->self = pthread_self();
    for (int i = 0; i < ROUNDS; i++) {
        pthread_mutex_lock(&lock);
        counter++;
        pthread_mutex_unlock(&lock);
    }
    /* What pthread_join must hand back: distinct per thread. */
    return (void *)(long)(100 + job->index);
}

static long long ns(const struct timespec *t)
{
    return t->tv_sec * 1000000000LL + t->tv_nsec;
}

int main(void)
{
    struct timespec before, after;
    pthread_t threads[THREADS];
    int created = 0, joined = 0, results = 0, own_stacks = 0, selves = 0;

    check("clock_gettime_before", clock_gettime(CLOCK_MONOTONIC, &before) == 0);
    check("lock_main", pthread_mutex_lock(&lock) == 0);
    for (int i = 0; i < THREADS; i++) {
        pthread_attr_t attr;
        jobs[i].index = i;
        check("attr_init", pthread_attr_init(&attr) == 0);
        check("attr_setstack", pthread_attr_setstack(&attr, stacks[i], STACK_SIZE) == 0);
        if (pthread_create(&threads[i], &attr, work, &jobs[i]) == 0)
            created++;
        pthread_attr_destroy(&attr);
    }
    printf("threads_created=%d\n", created);
    check("threads_created", created == THREADS);

    struct timespec nap = {0, SLEEP_NS};
    check("nanosleep", nanosleep(&nap, NULL) == 0);
    /* No thread can have counted while this thread held the lock. */
    printf("counter_while_locked=%ld\n", counter);
    check("counter_while_locked", counter == 0);
    check("unlock_main", pthread_mutex_unlock(&lock) == 0);

    for (int i = 0; i < created; i++) {
        void *ret;
        if (pthread_join(threads[i], &ret) != 0)
            continue;
        joined++;
        results += ret == (void *)(long)(100 + i);
        own_stacks += jobs[i].on_own_stack;
        selves += pthread_equal(jobs[i].self, threads[i]) && !pthread_equal(jobs[i].self, pthread_self());
    }
    printf("threads_joined=%d\n", joined);
    check("threads_joined", joined == THREADS);
    printf("join_results_right=%d\n", results);
    check("join_results_right", results == THREADS);
    printf("threads_on_given_stacks=%d\n", own_stacks);
    check("threads_on_given_stacks", own_stacks == THREADS);
    printf("pthread_self_right=%d\n", selves);
    check("pthread_self_right", selves == THREADS);

    /* Every increment happened once: the mutex excluded the others. */
    printf("counter=%ld\n", counter);
    check("counter", counter == (long)THREADS * ROUNDS);

    check("clock_gettime_after", clock_gettime(CLOCK_MONOTONIC, &after) == 0);
    long long elapsed = ns(&after) - ns(&before);
    printf("monotonic_not_backwards=%d\n", elapsed >= 0);
    check("monotonic_not_backwards", elapsed >= 0);
    /* The nanosleep lay between the two readings. */
    printf("monotonic_covers_sleep=%d\n", elapsed >= SLEEP_NS);
    check("monotonic_covers_sleep", elapsed >= SLEEP_NS);

    printf("checks_failed=%d\n", failed);
    return failed != 0;
}
