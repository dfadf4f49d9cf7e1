/* efault: system calls given a bad user pointer fail with EFAULT and have
 * no other effect (read(2), write(2), pipe(2), clock_gettime(2): "EFAULT
 * buf is outside your accessible address space").
 *
 * Bad addresses: null, a low page, an unmapped user address, the kernel
 * half, and a non-canonical address. (-cpu max gives Linux 5-level paging,
 * so 1 << 47 would be a valid but unmapped user address; the ones here are
 * bad under both 4- and 5-level paging.) wait4 with a bad status pointer
 * needs a child process: fork_wait tests it.
 */
#include "sys.h"

static const struct {
    const char *name;
    unsigned long addr;
} bad[] = {
    {"null", 0},
    {"low", 0x1000},
    {"unmapped", 0x100000000000UL},
    {"kernel", 0xffff800000000000UL},
    {"noncanonical", 0x8000000000000000UL},
};
#define NBAD (sizeof bad / sizeof bad[0])

static void key(char *out, const char *a, const char *b)
{
    size_t n = str_len(a), m = str_len(b);
    memcpy(out, a, n);
    memcpy(out + n, b, m + 1);
}

int main(int argc, char **argv, char **envp)
{
    (void)argc, (void)argv, (void)envp;
    char k[64];
    int p[2];
    /* Non-blocking, so a read of the empty pipe below cannot hang. */
    check("pipe2", sys_pipe2(p, O_NONBLOCK) == 0);
    int first_rd = p[0], first_wr = p[1];

    for (unsigned i = 0; i < NBAD; i++) {
        void *b = (void *)bad[i].addr;
        struct timespec *ts = b;
        int *fds = b;
        key(k, "write_pipe_", bad[i].name);
        expect_ret(k, sys_write(p[1], b, 3), -EFAULT);
        key(k, "write_stdout_", bad[i].name);
        expect_ret(k, sys_write(1, b, 3), -EFAULT);
        key(k, "pipe_", bad[i].name);
        expect_ret(k, sys_pipe(fds), -EFAULT);
        key(k, "pipe2_", bad[i].name);
        expect_ret(k, sys_pipe2(fds, 0), -EFAULT);
        key(k, "clock_gettime_", bad[i].name);
        expect_ret(k, sys_clock_gettime(CLOCK_MONOTONIC, ts), -EFAULT);
    }

    /* A failed write put nothing in the pipe. */
    char buf[8];
    expect_ret("pipe_empty_after_failed_writes", sys_read(p[0], buf, sizeof buf), -EAGAIN);

    /* A read into a bad buffer fails and consumes nothing. */
    check("write_xyz", sys_write(p[1], "xyz", 3) == 3);
    for (unsigned i = 0; i < NBAD; i++) {
        key(k, "read_pipe_", bad[i].name);
        expect_ret(k, sys_read(p[0], (void *)bad[i].addr, 3), -EFAULT);
    }
    expect_ret("read_after_efault", sys_read(p[0], buf, sizeof buf), 3);
    expect_int("read_after_efault_data_kept", memcmp(buf, "xyz", 3) == 0, 1);

    /* A pipe(2) that failed created no descriptor: the next one gets the
     * lowest free numbers, the ones the first pipe had before closing. */
    sys_close(p[0]);
    sys_close(p[1]);
    check("pipe_again", sys_pipe(p) == 0);
    expect_int("pipe_efault_leaked_no_fd", p[0] == first_rd && p[1] == first_wr, 1);

    /* Zero-length transfers: observations, no man page says which wins. */
    put_ret("write_pipe_null_len0", sys_write(p[1], 0, 0));
    put_ret("write_pipe_kernel_len0", sys_write(p[1], (void *)0xffff800000000000UL, 0));
    /* Which is checked first, the descriptor or the pointer. */
    put_ret("write_badfd_null", sys_write(99, 0, 1));
    put_ret("read_badfd_null", sys_read(99, 0, 1));
    sys_close(p[0]);
    sys_close(p[1]);

    expect_int("efault_is_14", EFAULT, 14);
    return checks_result();
}
