/* madvise: advice on anonymous private memory, as madvise(2) takes it.
 *
 * Observes: MADV_DONTNEED drops pages, so the next read sees zeros, and
 * leaves the region (a write works at once); only whole pages of the
 * range; MADV_WILLNEED, MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL,
 * MADV_COLD, MADV_PAGEOUT keep the bytes; MADV_FREE succeeds and the
 * memory stays usable (what a read after it sees is Linux's to choose
 * under memory pressure, so it is not printed); MADV_POPULATE_READ and
 * _WRITE, and their EINVAL for rights the region lacks; MADV_REMOVE is
 * EINVAL for private memory; a hole makes the call ENOMEM after the
 * advice was taken elsewhere; unknown advice, misaligned starts and
 * wrapping lengths are EINVAL, an empty range 0, unmapped and kernel
 * addresses ENOMEM.
 */
#include "mm.h"

int main(int argc, char **argv, char **envp)
{
    (void)argc, (void)argv, (void)envp;
    probe_init();
    long a = anon(4 * PAGE, PROT_RW);
    unsigned long u = (unsigned long)a;
    char *p = (char *)a;
    memset(p, 0x5a, 4 * PAGE);
    expect_ret("dontneed", sys_madvise(u + PAGE, PAGE, MADV_DONTNEED), 0);
    put_int("dontneed_reads_zero", all_bytes(p + PAGE, PAGE, 0));
    put_int("dontneed_only_that_page", all_bytes(p, PAGE, 0x5a) && all_bytes(p + 2 * PAGE, 2 * PAGE, 0x5a));
    p[PAGE] = 1;
    put_int("dontneed_then_write", p[PAGE] == 1);
    static const int keep[] = {MADV_WILLNEED, MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL, MADV_COLD,
                               MADV_PAGEOUT, MADV_DONTDUMP, MADV_DODUMP, MADV_HUGEPAGE, MADV_NOHUGEPAGE,
                               MADV_DONTFORK, MADV_DOFORK, MADV_WIPEONFORK, MADV_KEEPONFORK};
    static const char *keep_names[] = {"willneed", "normal", "random", "sequential", "cold", "pageout",
                                       "dontdump", "dodump", "hugepage", "nohugepage", "dontfork", "dofork",
                                       "wipeonfork", "keeponfork"};
    for (unsigned i = 0; i < sizeof keep / sizeof keep[0]; i++) {
        struct line l = {.len = 0};
        out_str(&l, keep_names[i]);
        out_str(&l, "=");
        out_ret(&l, sys_madvise(u + 2 * PAGE, PAGE, keep[i]));
        out_end(&l);
    }
    put_int("advice_kept_bytes", all_bytes(p + 2 * PAGE, 2 * PAGE, 0x5a));
    expect_ret("free", sys_madvise(u + 3 * PAGE, PAGE, MADV_FREE), 0);
    p[3 * PAGE] = 7;
    put_int("free_then_write", p[3 * PAGE] == 7);
    expect_ret("populate_read", sys_madvise(u, 4 * PAGE, MADV_POPULATE_READ), 0);
    expect_ret("populate_write", sys_madvise(u, 4 * PAGE, MADV_POPULATE_WRITE), 0);
    put_int("populate_kept_bytes", p[0] == 0x5a && p[3 * PAGE] == 7);
    expect_ret("remove_private", sys_madvise(u, PAGE, MADV_REMOVE), -EINVAL);
    /* Rights the region lacks. */
    sys_mprotect(u, PAGE, PROT_READ);
    expect_ret("populate_write_read_only", sys_madvise(u, PAGE, MADV_POPULATE_WRITE), -EINVAL);
    expect_ret("populate_read_read_only", sys_madvise(u, PAGE, MADV_POPULATE_READ), 0);
    sys_mprotect(u, PAGE, PROT_NONE);
    expect_ret("populate_read_none", sys_madvise(u, PAGE, MADV_POPULATE_READ), -EINVAL);
    expect_ret("dontneed_none", sys_madvise(u, PAGE, MADV_DONTNEED), 0);
    sys_mprotect(u, PAGE, PROT_RW);
    put_int("dontneed_none_zero", p[0] == 0);
    /* A hole: the advice is taken around it, and ENOMEM. */
    memset(p, 0x33, 4 * PAGE);
    sys_munmap(u + PAGE, PAGE);
    expect_ret("over_hole", sys_madvise(u, 4 * PAGE, MADV_DONTNEED), -ENOMEM);
    put_int("over_hole_before_dropped", p[0] == 0);
    put_int("over_hole_after_dropped", p[2 * PAGE] == 0 && p[3 * PAGE] == 0);
    expect_ret("starts_in_hole", sys_madvise(u + PAGE, PAGE, MADV_DONTNEED), -ENOMEM);
    /* Argument errors. */
    expect_ret("unknown_advice", sys_madvise(u, PAGE, 999), -EINVAL);
    expect_ret("unknown_advice_bad_range", sys_madvise(u + 1, PAGE, 999), -EINVAL);
    expect_ret("misaligned", sys_madvise(u + 1, PAGE, MADV_DONTNEED), -EINVAL);
    expect_ret("len_rounds_to_zero", sys_madvise(u, -1UL, MADV_DONTNEED), -EINVAL);
    expect_ret("len_wraps", sys_madvise(u, -2 * PAGE, MADV_DONTNEED), -EINVAL);
    expect_ret("len_zero", sys_madvise(u, 0, MADV_DONTNEED), 0);
    expect_ret("len_zero_unmapped", sys_madvise(u + PAGE, 0, MADV_DONTNEED), 0);
    expect_ret("kernel_half", sys_madvise(KERNEL_HALF, PAGE, MADV_DONTNEED), -ENOMEM);
    expect_ret("unmapped_willneed", sys_madvise(u + PAGE, PAGE, MADV_WILLNEED), -ENOMEM);
    sys_munmap(u, 4 * PAGE);
    return checks_result();
}
