/* mremap: growing, shrinking and moving anonymous memory, as mremap(2)
 * does it.
 *
 * Observes: a shrink unmaps the tail; a grow in place where the space
 * above is free, keeping the bytes, the new part zeros; ENOMEM without
 * MREMAP_MAYMOVE when something is in the way, a move with it (the bytes
 * come along, the old place is gone: SEGV_MAPERR); MREMAP_FIXED onto a
 * given place (what was there goes); MREMAP_DONTUNMAP (the old place
 * stays mapped, empty); a range over two regions is EFAULT (mremap works
 * on one); the argument errors in Linux's order (EINVAL for flags,
 * alignment, a zero new length, an old length of 0 for private memory,
 * overlap; EFAULT for no region at the address).
 */
#include "mm.h"

int main(int argc, char **argv, char **envp)
{
    (void)argc, (void)argv, (void)envp;
    probe_init();
    unsigned long base = 0x310000000000UL;
    long a = sys_mmap(base, 4 * PAGE, PROT_RW, MAP_ANON_PRIVATE | MAP_FIXED_NOREPLACE, -1, 0);
    put_int("mapped", a == (long)base);
    char *p = (char *)base;
    for (int i = 0; i < 4; i++)
        p[i * PAGE] = (char)('a' + i);
    /* Shrink: the tail goes. */
    expect_ret("shrink", sys_mremap(base, 4 * PAGE, 2 * PAGE, 0, 0) == (long)base, 1);
    put_load("shrunk_tail", base + 3 * PAGE);
    /* Grow in place over free space. */
    expect_ret("grow_in_place", sys_mremap(base, 2 * PAGE, 6 * PAGE, 0, 0) == (long)base, 1);
    put_int("grown_kept", p[0] == 'a' && p[PAGE] == 'b');
    put_int("grown_new_zero", p[3 * PAGE] == 0 && p[5 * PAGE] == 0);
    /* Something above: in place is ENOMEM, MAYMOVE moves. */
    long blocker = sys_mmap(base + 6 * PAGE, PAGE, PROT_READ, MAP_ANON_PRIVATE | MAP_FIXED, -1, 0);
    put_int("blocker_mapped", blocker == (long)(base + 6 * PAGE));
    expect_ret("grow_blocked", sys_mremap(base, 6 * PAGE, 8 * PAGE, 0, 0), -ENOMEM);
    long moved = sys_mremap(base, 6 * PAGE, 8 * PAGE, MREMAP_MAYMOVE, 0);
    put_int("moved_elsewhere", is_addr(moved) && moved != (long)base);
    char *q = (char *)moved;
    put_int("moved_bytes_came", q[0] == 'a' && q[PAGE] == 'b');
    put_int("moved_new_zero", q[7 * PAGE] == 0);
    put_load("old_place_gone", base);
    /* MREMAP_FIXED onto the blocker, which goes. */
    long fixed = sys_mremap((unsigned long)moved, PAGE, PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, base + 6 * PAGE);
    put_int("fixed_where_asked", fixed == (long)(base + 6 * PAGE));
    put_int("fixed_bytes_came", p[6 * PAGE] == 'a');
    put_store("fixed_writable_now", base + 6 * PAGE, 'z');
    put_load("fixed_old_gone", (unsigned long)moved);
    /* MREMAP_DONTUNMAP: the old place stays, empty. */
    long d = sys_mremap((unsigned long)moved + PAGE, PAGE, PAGE, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, 0);
    put_int("dontunmap_moved", is_addr(d) && d != (long)moved + (long)PAGE);
    put_int("dontunmap_bytes_came", is_addr(d) && *(char *)d == 'b');
    put_load("dontunmap_old_mapped", (unsigned long)moved + PAGE);
    put_int("dontunmap_old_empty", *(volatile char *)(moved + PAGE) == 0);
    /* Two regions: EFAULT. */
    sys_mprotect((unsigned long)moved + 3 * PAGE, PAGE, PROT_READ);
    expect_ret("across_regions", sys_mremap((unsigned long)moved + 2 * PAGE, 3 * PAGE, 4 * PAGE, MREMAP_MAYMOVE, 0),
               -EFAULT);
    /* Argument errors. */
    unsigned long m = (unsigned long)moved + 2 * PAGE;
    expect_ret("unknown_flag", sys_mremap(m, PAGE, PAGE, 8, 0), -EINVAL);
    expect_ret("fixed_without_maymove", sys_mremap(m, PAGE, PAGE, MREMAP_FIXED, base), -EINVAL);
    expect_ret("dontunmap_resize", sys_mremap(m, PAGE, 2 * PAGE, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, 0), -EINVAL);
    expect_ret("dontunmap_without_maymove", sys_mremap(m, PAGE, PAGE, MREMAP_DONTUNMAP, 0), -EINVAL);
    expect_ret("misaligned", sys_mremap(m + 1, PAGE, PAGE, 0, 0), -EINVAL);
    expect_ret("new_len_zero", sys_mremap(m, PAGE, 0, 0, 0), -EINVAL);
    expect_ret("no_region", sys_mremap(base + 40 * PAGE, PAGE, 2 * PAGE, 0, 0), -EFAULT);
    expect_ret("no_region_shrink", sys_mremap(base + 40 * PAGE, 2 * PAGE, PAGE, 0, 0), -EFAULT);
    expect_ret("old_len_zero_private", sys_mremap(m, 0, PAGE, MREMAP_MAYMOVE, 0), -EINVAL);
    expect_ret("fixed_misaligned", sys_mremap(m, PAGE, PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, base + 1), -EINVAL);
    expect_ret("fixed_overlap", sys_mremap(m, PAGE, 2 * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, m - PAGE), -EINVAL);
    expect_ret("fixed_kernel_half", sys_mremap(m, PAGE, PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, KERNEL_HALF), -EINVAL);
    expect_ret("kernel_half", sys_mremap(KERNEL_HALF, PAGE, PAGE, 0, 0), -EFAULT);
    expect_ret("same_size", sys_mremap(m, PAGE, PAGE, 0, 0) == (long)m, 1);
    return checks_result();
}
