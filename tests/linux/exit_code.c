/* exit_code: exit_group(2) from a second thread while the main one is
 * blocked in read(2): the whole process ends with the thread's code, 3
 * (the main thread's return value never counts).
 * oracle-status: 3
 */
#include "sys.h"

#define STACK 65536

static unsigned char stack[STACK] __attribute__((aligned(16)));
static int tid_word;

static int leave(void *arg)
{
    (void)arg;
    sys_nanosleep(0, 50000000);
    sys_exit_group(3);
}

int main(int argc, char **argv, char **envp)
{
    (void)argc, (void)argv, (void)envp;
    int p[2];
    char c;
    expect_ret("pipe", sys_pipe(p), 0);
    long t = clone_thread(CLONE_THREAD_FLAGS, stack + STACK, &tid_word, &tid_word, 0, leave, 0);
    expect_int("clone", t > 0, 1);
    int r = checks_result();
    long n = sys_read(p[0], &c, 1);
    put_ret("read_returned", n); /* never printed */
    return r + 40;
}
