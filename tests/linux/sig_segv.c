/* sig_segv: a load from address 0 under SIGSEGV's default action ends
 * the program with the signal, as signal(7) says (Term and core; no core
 * file here: Linux's init leaves RLIMIT_CORE at 0, and /init prints only
 * the signal's number).
 * oracle-status: signal:11
 */
#include "sys.h"

/* Volatile, so that the compiler neither knows it is null nor turns the
 * load into a trap instruction of its own. */
static int *volatile nowhere;

int main(int argc, char **argv, char **envp)
{
    (void)argc, (void)argv, (void)envp;
    put_int("about_to_load_from_null", 1);
    int r = checks_result();
    r += *nowhere;
    put_int("survived_the_load", 1); /* never printed */
    return r;
}
