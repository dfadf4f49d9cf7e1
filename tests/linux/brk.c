/* brk: the program break, as brk(2) moves it (the raw call, which
 * returns the break, not libc's 0 or -1).
 *
 * Observes: brk(0) and a break below the start return the break
 * unmoved; growth gives zeros and keeps them across more growth; an
 * unaligned break; shrinking drops the pages (SIGSEGV with SEGV_MAPERR
 * past the new break), growing again gives zeros; a mapping above stops
 * the break a page short of it, and a failed move returns the old break.
 * Addresses are never printed (Linux places the heap at random): only
 * distances from the first break.
 */
#include "mm.h"

int main(int argc, char **argv, char **envp)
{
    (void)argc, (void)argv, (void)envp;
    probe_init();
    unsigned long start = sys_brk(0);
    put_int("start_aligned", (start & (PAGE - 1)) == 0);
    put_int("brk_zero_again", sys_brk(0) == start);
    put_int("below_start_refused", sys_brk(start - PAGE) == start);
    put_int("grow_unaligned", sys_brk(start + 10) == start + 10);
    put_load("first_page_there", start);
    put_int("first_page_zero", *(volatile char *)(start + 9) == 0);
    *(volatile char *)(start + 9) = 5;
    put_int("grow_more", sys_brk(start + 3 * PAGE) == start + 3 * PAGE);
    put_int("grown_keeps_bytes", *(volatile char *)(start + 9) == 5);
    put_int("grown_pages_zero", all_bytes((void *)(start + PAGE), 2 * PAGE, 0));
    put_load("past_the_break", start + 3 * PAGE);
    /* Shrinking drops the pages. */
    put_int("shrink", sys_brk(start + PAGE) == start + PAGE);
    put_load("shrunk_away", start + 2 * PAGE);
    put_int("shrink_to_start", sys_brk(start) == start);
    put_load("shrunk_to_start", start);
    put_int("grow_again", sys_brk(start + PAGE) == start + PAGE);
    put_int("grown_again_zero", *(volatile char *)(start + 9) == 0);
    /* A mapping above: one page must stay free below it. */
    unsigned long above = start + 16 * PAGE;
    long m = sys_mmap(above, PAGE, PROT_RW, MAP_ANON_PRIVATE | MAP_FIXED_NOREPLACE, -1, 0);
    put_int("mapping_above", m == (long)above);
    put_int("into_mapping_refused", sys_brk(above + PAGE) == start + PAGE);
    put_int("touching_it_refused", sys_brk(above) == start + PAGE);
    put_int("page_short_refused", sys_brk(above - PAGE + 1) == start + PAGE);
    put_int("page_short_allowed", sys_brk(above - PAGE) == above - PAGE);
    put_int("huge_refused", sys_brk(-PAGE) == above - PAGE);
    put_int("mapping_intact", *(volatile char *)above == 0);
    /* Shrinking past a region that is not the heap's own. */
    sys_munmap(above, PAGE);
    put_int("back_to_start", sys_brk(start) == start);
    return checks_result();
}
