/* sig_thread: a divide error in a second thread, no handler: SIGFPE's
 * default action ends the whole process, the main thread too, blocked as
 * it is in a read(2) nobody will satisfy.
 * oracle-status: signal:8
 */
#include "sys.h"

#define STACK 65536

static unsigned char stack[STACK] __attribute__((aligned(16)));
static int tid_word;
static volatile long divisor;

static int divide(void *arg)
{
    (void)arg;
    sys_nanosleep(0, 50000000);
    long q;
    /* A real division (the compiler may not fold it or trap by itself). */
    __asm__ volatile("cqo\n\tidivq %2" : "=a"(q) : "a"(7L), "r"(divisor) : "rdx");
    put_int("survived_divide", q != 0); /* never printed */
    return 0;
}

int main(int argc, char **argv, char **envp)
{
    (void)argc, (void)argv, (void)envp;
    int p[2];
    char c;
    expect_ret("pipe", sys_pipe(p), 0);
    long t = clone_thread(CLONE_THREAD_FLAGS, stack + STACK, &tid_word, &tid_word, 0, divide, 0);
    expect_int("clone", t > 0, 1);
    int r = checks_result();
    long n = sys_read(p[0], &c, 1);
    put_ret("read_returned", n); /* never printed */
    return r;
}
