/* pipe: pipe(2), pipe2(2), read(2), write(2) and close(2) on pipes, as
 * pipe(7) describes them: end of file once every write end is closed,
 * EPIPE for a write with no reader (SIGPIPE ignored, so the process lives),
 * EAGAIN on an empty or full non-blocking pipe, EBADF for the wrong end.
 * The pipe's capacity is not printed (Linux's is 64 KiB; POSIX only says
 * writes of up to PIPE_BUF = 4096 bytes are atomic).
 */
#include "sys.h"

#define PIPE_BUF 4096

static unsigned char big[128 * 1024];
static unsigned char back[128 * 1024];

int main(int argc, char **argv, char **envp)
{
    (void)argc, (void)argv, (void)envp;
    int p[2];
    char buf[16];

    /* End of file. */
    expect_ret("pipe", sys_pipe(p), 0);
    expect_int("pipe_fds_distinct", p[0] != p[1], 1);
    expect_int("pipe_fds_above_stdio", p[0] > 2 && p[1] > 2, 1);
    expect_ret("write_hello", sys_write(p[1], "hello", 5), 5);
    expect_ret("read_end_write", sys_write(p[0], "x", 1), -EBADF);
    expect_ret("write_end_read", sys_read(p[1], buf, 1), -EBADF);
    expect_ret("close_write_end", sys_close(p[1]), 0);
    expect_ret("close_write_end_again", sys_close(p[1]), -EBADF);
    expect_ret("read_before_eof", sys_read(p[0], buf, sizeof buf), 5);
    expect_int("read_data_matches", memcmp(buf, "hello", 5) == 0, 1);
    expect_ret("read_at_eof", sys_read(p[0], buf, sizeof buf), 0);
    expect_ret("read_at_eof_again", sys_read(p[0], buf, sizeof buf), 0);
    expect_ret("close_read_end", sys_close(p[0]), 0);

    /* No reader: EPIPE, and SIGPIPE (ignored here) does not kill us. */
    struct k_sigaction ign = {.handler = SIG_IGN};
    expect_ret("sigaction_sigpipe_ignore", sys_sigaction(SIGPIPE, &ign, 0), 0);
    expect_ret("pipe_for_epipe", sys_pipe(p), 0);
    expect_ret("close_read_end_first", sys_close(p[0]), 0);
    expect_ret("write_no_reader", sys_write(p[1], "x", 1), -EPIPE);
    put_ret("write_len0_no_reader", sys_write(p[1], "x", 0));
    expect_ret("close_lone_write_end", sys_close(p[1]), 0);

    /* Non-blocking: empty, then full. */
    expect_ret("pipe2_nonblock", sys_pipe2(p, O_NONBLOCK), 0);
    expect_ret("read_empty_nonblock", sys_read(p[0], buf, sizeof buf), -EAGAIN);
    for (unsigned i = 0; i < sizeof big; i++)
        big[i] = (unsigned char)(i % 251);
    long total = 0, r;
    int writes = 0;
    /* Writes of PIPE_BUF bytes are atomic: each goes in whole or fails
     * with EAGAIN. (A pipe that takes all of big never filled: r = 1.) */
    for (;;) {
        if (total + PIPE_BUF > (long)sizeof big) {
            r = 1;
            break;
        }
        r = sys_write(p[1], big + total, PIPE_BUF);
        if (r <= 0)
            break;
        total += r;
        writes++;
    }
    expect_ret("write_full_nonblock", r, -EAGAIN);
    expect_int("filled_at_least_pipe_buf", total >= PIPE_BUF, 1);
    expect_int("fill_writes_whole", total == (long)writes * PIPE_BUF, 1);
    long got = 0;
    while ((r = sys_read(p[0], back + got, sizeof back - got)) > 0)
        got += r;
    expect_ret("read_drained_nonblock", r, -EAGAIN);
    expect_int("read_back_all", got == total, 1);
    expect_int("read_back_in_order", memcmp(big, back, total) == 0, 1);
    expect_ret("close_nonblock_write_end", sys_close(p[1]), 0);
    expect_ret("read_nonblock_at_eof", sys_read(p[0], buf, sizeof buf), 0);
    expect_ret("close_nonblock_read_end", sys_close(p[0]), 0);

    /* Descriptors that were never open. */
    expect_ret("close_never_open", sys_close(77), -EBADF);
    expect_ret("read_never_open", sys_read(77, buf, 1), -EBADF);
    expect_ret("write_never_open", sys_write(77, "x", 1), -EBADF);
    expect_ret("close_negative", sys_close(-1), -EBADF);
    return checks_result();
}
