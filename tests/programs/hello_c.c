/* A static C program for Faultline, without a C library (start.S is its
 * runtime). It exits with the decimal number given as its argument, or 43
 * without one (not the Rust hello's 42, so the two cannot be mistaken),
 * so a test names the status it expects and so proves that the program
 * ran, got its arguments and reached exit. It touches all
 * three kinds of data segment, so a loader that skipped one fails it:
 * 99 if .data was not loaded or .bss not zeroed, 98 for a bad argument. */

/* volatile: the compiler must read them from memory, not fold them. */
static volatile long zeroed[64];        /* .bss */
static volatile long loaded = 43;       /* .data */
static const char digits[] = "0123456789"; /* .rodata */

static int digit_value(char c)
{
    for (int i = 0; i < 10; i++)
        if (digits[i] == c)
            return i;
    return -1;
}

long main(long argc, const char **argv)
{
    for (int i = 0; i < 64; i++)
        if (zeroed[i] != 0)
            return 99;
    if (loaded != 43)
        return 99;
    if (argc < 2)
        return loaded;
    const char *arg = argv[1];
    long n = 0;
    for (unsigned long i = 0; arg[i] != 0; i++) {
        int d = digit_value(arg[i]);
        if (d < 0 || n > 100000)
            return 98;
        n = n * 10 + d;
    }
    return n;
}
