/* stress: many threads on every CPU at once, for a few seconds, doing
 * what loses wake-ups when a kernel gets it wrong: pipe ping-pong between
 * pairs of threads, a contended pthread mutex (futex waits and wakes),
 * short sleeps, and threads that start, count and exit while the others
 * run. Built by `musl-gcc -static` and run on Faultline and on Linux
 * (docs/oracle.md); tests/musl/stress.fl runs it twice on Faultline and
 * checks that nothing is left behind (tasks, frames, heap).
 *
 * A lost wake-up hangs a pair or a joiner for good, which the harness's
 * timeout reports; a lost or doubled byte or increment shows in the
 * totals. Every printed value is fixed, whatever the interleaving.
 *
 * Stacks are this program's (pthread_attr_setstack on static buffers), as
 * in pthread.c: musl would mmap them otherwise. */
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#define PAIRS 4
#define WORKERS (2 * PAIRS)
#define ROUNDS 4000
#define LOCK_EVERY 10
#define SLEEP_EVERY 500
#define SPAWN_EVERY 100
#define STACK_SIZE (32 * 1024)

static char worker_stacks[WORKERS][STACK_SIZE] __attribute__((aligned(16)));
static char short_stacks[WORKERS][STACK_SIZE] __attribute__((aligned(16)));
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static long counter;
static long short_runs;
static int failed;

struct worker {
    int index;
    int in, out;        /* read from the partner, write to it */
    long bytes;         /* bytes read back */
    long sum;           /* of the values read */
    int errors;
};

static struct worker workers[WORKERS];

static void check(const char *key, int ok)
{
    if (!ok) {
        printf("check_failed=%s\n", key);
        failed++;
    }
}

static void *short_life(void *arg)
{
    (void)arg;
    __atomic_fetch_add(&short_runs, 1, __ATOMIC_RELAXED);
    return 0;
}

static int start(pthread_t *t, void *stack, void *(*fn)(void *), void *arg)
{
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0)
        return -1;
    int r = pthread_attr_setstack(&attr, stack, STACK_SIZE);
    if (r == 0)
        r = pthread_create(t, &attr, fn, arg);
    pthread_attr_destroy(&attr);
    return r;
}

static void *work(void *arg)
{
    struct worker *w = arg;
    /* The even one of a pair serves first, the odd one answers. */
    int first = w->index % 2 == 0;
    for (int i = 0; i < ROUNDS; i++) {
        unsigned char c = (unsigned char)(i & 0xff);
        if (first && write(w->out, &c, 1) != 1)
            w->errors++;
        unsigned char got;
        if (read(w->in, &got, 1) != 1)
            w->errors++;
        w->bytes++;
        w->sum += got;
        if (!first && write(w->out, &got, 1) != 1)
            w->errors++;
        if (i % LOCK_EVERY == 0) {
            pthread_mutex_lock(&lock);
            counter++;
            pthread_mutex_unlock(&lock);
        }
        if (i % SLEEP_EVERY == 0) {
            struct timespec nap = {0, 1000000};
            nanosleep(&nap, NULL);
        }
        if (i % SPAWN_EVERY == SPAWN_EVERY - 1) {
            pthread_t t;
            if (start(&t, short_stacks[w->index], short_life, 0) != 0 || pthread_join(t, 0) != 0)
                w->errors++;
        }
    }
    return 0;
}

int main(void)
{
    for (int p = 0; p < PAIRS; p++) {
        int there[2], back[2];
        check("pipe", pipe(there) == 0 && pipe(back) == 0);
        struct worker *a = &workers[2 * p], *b = &workers[2 * p + 1];
        a->in = back[0], a->out = there[1];
        b->in = there[0], b->out = back[1];
    }
    pthread_t threads[WORKERS];
    int created = 0;
    for (int i = 0; i < WORKERS; i++) {
        workers[i].index = i;
        created += start(&threads[i], worker_stacks[i], work, &workers[i]) == 0;
    }
    printf("workers_started=%d\n", created);
    check("workers_started", created == WORKERS);
    long bytes = 0, sum = 0;
    int errors = 0;
    for (int i = 0; i < created; i++) {
        check("join", pthread_join(threads[i], 0) == 0);
        bytes += workers[i].bytes;
        sum += workers[i].sum;
        errors += workers[i].errors;
    }
    /* Each round moves one byte each way in every pair, values i & 0xff. */
    long per_round_sum = 0;
    for (int i = 0; i < ROUNDS; i++)
        per_round_sum += i & 0xff;
    printf("bytes_read=%ld\n", bytes);
    check("bytes_read", bytes == (long)WORKERS * ROUNDS);
    printf("sum_right=%d\n", sum == (long)WORKERS * per_round_sum);
    check("sum_right", sum == (long)WORKERS * per_round_sum);
    printf("errors=%d\n", errors);
    check("errors", errors == 0);
    printf("counter=%ld\n", counter);
    check("counter", counter == (long)WORKERS * (ROUNDS / LOCK_EVERY));
    printf("short_threads=%ld\n", short_runs);
    check("short_threads", short_runs == (long)WORKERS * (ROUNDS / SPAWN_EVERY));
    printf("checks_failed=%d\n", failed);
    return failed != 0;
}
