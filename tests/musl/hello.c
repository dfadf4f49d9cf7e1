/* A C hello world with a real C library: built by `musl-gcc -static` and
 * run unchanged on Faultline and on Linux (docs/oracle.md). musl's own
 * start-up runs before main (arch_prctl(ARCH_SET_FS), set_tid_address,
 * the auxiliary vector's AT_RANDOM for the stack protector), stdio asks
 * ioctl(TIOCGWINSZ) whether stdout is a terminal and writes with writev,
 * and returning from main is exit_group after stdio is flushed.
 *
 * Besides the greeting it prints key=value lines the oracle compares:
 * argv as the kernel passed it, and formatted output whose every byte
 * is known, including a floating-point conversion (musl formats those
 * with x87 long double arithmetic, so the thread's x87 state must start
 * as Linux's does). It exits 0 only when every check held. */
#include <stdio.h>
#include <string.h>

static int failed;

static void check(const char *key, int ok)
{
    if (!ok) {
        printf("check_failed=%s\n", key);
        failed++;
    }
}

int main(int argc, char **argv)
{
    int n = printf("hello, world\n");
    printf("hello_printf_ret=%d\n", n);
    check("hello_printf_ret", n == 13);

    printf("argc=%d\n", argc);
    for (int i = 0; i < argc; i++)
        printf("argv%d=%s\n", i, argv[i]);
    check("argv_null_terminated", argv[argc] == NULL);

    char buf[64];
    int len = snprintf(buf, sizeof buf, "%d|%5x|%-4s|%.3f|%e|%c", -42, 0xbeef, "ab", 2.5, 1e-3, 'z');
    const char *want = "-42| beef|ab  |2.500|1.000000e-03|z";
    printf("snprintf=%s\n", buf);
    check("snprintf", len == (int)strlen(want) && strcmp(buf, want) == 0);

    printf("checks_failed=%d\n", failed);
    return failed != 0;
}
