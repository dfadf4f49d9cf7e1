/* An ordinary C program, linked against the C library the usual way: the
 * result needs a dynamic linker (PT_INTERP), which Faultline refuses. */
#include <stdio.h>

int main(void)
{
    puts("hello from a dynamic program");
    return 0;
}
