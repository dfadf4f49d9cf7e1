/* sig_pipe: a write to a pipe whose read end is closed, under SIGPIPE's
 * default action: the signal ends the program (pipe(7)); write(2) never
 * returns EPIPE to it.
 * oracle-status: signal:13
 */
#include "sys.h"

int main(int argc, char **argv, char **envp)
{
    (void)argc, (void)argv, (void)envp;
    int p[2];
    expect_ret("pipe", sys_pipe(p), 0);
    expect_ret("close_read_end", sys_close(p[0]), 0);
    expect_ret("write_len0_no_reader", sys_write(p[1], "x", 0), 0);
    int r = checks_result();
    long w = sys_write(p[1], "x", 1);
    put_ret("write_returned", w); /* never printed */
    return r;
}
