/* malloc from musl, unchanged: small and large blocks, calloc's zeros,
 * realloc keeping the bytes, free and reuse, many blocks at once, and
 * threads on stacks musl maps itself (mmap, with a PROT_NONE guard
 * below), built by `musl-gcc -static` and run on Faultline and on Linux
 * (docs/oracle.md).
 *
 * What musl asks of the kernel: brk to grow the heap for small blocks
 * (mallocng takes it when the break moves), mmap of anonymous private
 * memory for the rest and for large blocks, munmap when they are freed,
 * mprotect for a thread stack's guard, madvise(MADV_FREE) for freed
 * groups. Every line is a key=value line whose value is fixed (no
 * addresses), so Linux's output and Faultline's can be compared; it
 * exits 0 only when every check held. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MANY 2000
#define THREADS 4

static int failed;

static void check(const char *key, int ok)
{
    printf("%s=%d\n", key, ok);
    if (!ok) {
        printf("check_failed=%s\n", key);
        failed++;
    }
}

static int all(const unsigned char *p, size_t n, unsigned char b)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != b)
            return 0;
    return 1;
}

static void *worker(void *arg)
{
    long n = (long)arg;
    /* A deep enough frame to use the stack musl mapped. */
    volatile char frame[32 * 1024];
    memset((char *)frame, (int)n, sizeof frame);
    char *p = malloc(1000 + (size_t)n);
    if (!p)
        return 0;
    memset(p, (int)n, 1000 + (size_t)n);
    long sum = frame[100] + p[999];
    free(p);
    return (void *)sum;
}

int main(void)
{
    char *small = malloc(24);
    check("small_malloc", small != 0);
    strcpy(small, "hello, heap");
    check("small_keeps", strcmp(small, "hello, heap") == 0);

    unsigned char *big = malloc(1 << 20);
    check("big_malloc", big != 0);
    if (big) {
        memset(big, 0xa5, 1 << 20);
        check("big_keeps", all(big, 1 << 20, 0xa5));
    }

    unsigned char *zeros = calloc(1000, 100);
    check("calloc_zeroed", zeros && all(zeros, 100000, 0));

    char *grown = malloc(16);
    strcpy(grown, "0123456789");
    grown = realloc(grown, 200000);
    check("realloc_keeps", grown && strcmp(grown, "0123456789") == 0);
    grown = realloc(grown, 8);
    check("realloc_shrinks", grown && memcmp(grown, "01234567", 8) == 0);

    static void *blocks[MANY];
    int got = 0;
    for (int i = 0; i < MANY; i++) {
        blocks[i] = malloc((size_t)(i % 500) + 1);
        if (blocks[i]) {
            memset(blocks[i], i & 0xff, (size_t)(i % 500) + 1);
            got++;
        }
    }
    check("many_blocks", got == MANY);
    int intact = 1;
    for (int i = 0; i < MANY; i++)
        intact &= blocks[i] && all(blocks[i], (size_t)(i % 500) + 1, (unsigned char)(i & 0xff));
    check("many_blocks_intact", intact);
    for (int i = 0; i < MANY; i += 2)
        free(blocks[i]);
    for (int i = 0; i < MANY; i += 2)
        blocks[i] = malloc(64);
    intact = 1;
    for (int i = 1; i < MANY; i += 2)
        intact &= all(blocks[i], (size_t)(i % 500) + 1, (unsigned char)(i & 0xff));
    check("reuse_leaves_others", intact);
    for (int i = 0; i < MANY; i++)
        free(blocks[i]);

    free(big);
    free(zeros);
    free(grown);
    free(small);
    big = malloc(1 << 20);
    check("big_again", big != 0 && (memset(big, 1, 1 << 20), 1));
    free(big);

    /* One at a time: while a thread changes the mappings, no other runs
     * (Faultline flushes the TLB of the CPU that changed them only, until
     * the shootdown across CPUs comes: docs/mm.md). */
    int made = 0, right = 0;
    for (long i = 0; i < THREADS; i++) {
        pthread_t t;
        void *r = 0;
        if (pthread_create(&t, 0, worker, (void *)(i + 1)) != 0)
            continue;
        made++;
        pthread_join(t, &r);
        right += (long)r == 2 * (i + 1);
    }
    check("threads_created", made == THREADS);
    check("threads_results", right == THREADS);

    printf("checks_failed=%d\n", failed);
    return failed != 0;
}
