/* mprotect: changing the rights of anonymous memory, as mprotect(2) does.
 *
 * Observes: a read-only page refuses stores (SEGV_ACCERR, si_addr) and
 * keeps its bytes; PROT_NONE refuses loads too and keeps the bytes for
 * when the rights come back; a page that was never touched behaves the
 * same; exec of a page without PROT_EXEC (SEGV_ACCERR); the kernel's
 * copies follow the rights (EFAULT); a range over a hole is ENOMEM after
 * the part before it changed; PROT_GROWSDOWN on memory that does not
 * grow is EINVAL; the argument errors in Linux's order (EINVAL for
 * misalignment and unknown bits, 0 for an empty range whatever the bits,
 * ENOMEM for wrapping, unmapped and kernel addresses). Regions split and
 * merge as Linux's: mremap, which works on one region only, shows where
 * the boundaries are.
 */
#include "mm.h"

/* ret: the x86 instruction, to put in a page and call. */
#define RET 0xc3

static void rights(void)
{
    long a = anon(4 * PAGE, PROT_RW);
    char *p = (char *)a;
    p[0] = 'a';
    p[PAGE] = 'b';
    expect_ret("to_read_only", sys_mprotect((unsigned long)a, PAGE, PROT_READ), 0);
    put_load("read_only_load", (unsigned long)a);
    put_store("read_only_store", (unsigned long)a + 5, 1);
    put_int("read_only_kept", p[0] == 'a' && p[5] == 0);
    put_store("neighbour_still_writable", (unsigned long)a + PAGE, 'c');
    expect_ret("to_none", sys_mprotect((unsigned long)a, 2 * PAGE, PROT_NONE), 0);
    put_load("none_load", (unsigned long)a + PAGE + 3);
    put_store("none_store", (unsigned long)a, 1);
    expect_ret("back_to_rw", sys_mprotect((unsigned long)a, 2 * PAGE, PROT_RW), 0);
    put_int("none_kept_bytes", p[0] == 'a' && p[PAGE] == 'c');
    /* Pages never touched. */
    expect_ret("untouched_to_none", sys_mprotect((unsigned long)a + 2 * PAGE, 2 * PAGE, PROT_NONE), 0);
    put_load("untouched_none_load", (unsigned long)a + 3 * PAGE);
    expect_ret("untouched_to_read", sys_mprotect((unsigned long)a + 2 * PAGE, 2 * PAGE, PROT_READ), 0);
    put_load("untouched_read_load", (unsigned long)a + 3 * PAGE);
    put_store("untouched_read_store", (unsigned long)a + 3 * PAGE, 1);
    /* The kernel's copies follow the rights. */
    int fds[2];
    sys_pipe(fds);
    sys_write(fds[1], "xy", 2);
    expect_ret("read_into_read_only", sys_read(fds[0], p + 2 * PAGE, 2), -EFAULT);
    expect_ret("write_from_read_only", sys_write(fds[1], p + 2 * PAGE, 2), 2);
    sys_mprotect((unsigned long)a, PAGE, PROT_NONE);
    expect_ret("write_from_none", sys_write(fds[1], p, 2), -EFAULT);
    sys_close(fds[0]);
    sys_close(fds[1]);
    sys_munmap((unsigned long)a, 4 * PAGE);
}

static void exec(void)
{
    long a = anon(PAGE, PROT_RW);
    *(unsigned char *)a = RET;
    put_probe("exec_without_prot_exec", probe_exec((unsigned long)a), (unsigned long)a);
    expect_ret("to_read_exec", sys_mprotect((unsigned long)a, PAGE, PROT_READ | PROT_EXEC), 0);
    put_probe("exec_with_prot_exec", probe_exec((unsigned long)a), (unsigned long)a);
    /* A fetch from a page never touched: mapped first, then refused. */
    long b = anon(PAGE, PROT_READ);
    put_probe("exec_untouched_read_only", probe_exec((unsigned long)b), (unsigned long)b);
    sys_munmap((unsigned long)a, PAGE);
    sys_munmap((unsigned long)b, PAGE);
}

static void holes_and_errors(void)
{
    long a = anon(4 * PAGE, PROT_RW);
    unsigned long u = (unsigned long)a;
    sys_munmap(u + 2 * PAGE, PAGE);
    /* Over the hole: the regions before it changed, not those after. */
    expect_ret("over_hole", sys_mprotect(u, 4 * PAGE, PROT_READ), -ENOMEM);
    put_store("before_hole_changed", u + PAGE, 1);
    put_store("after_hole_unchanged", u + 3 * PAGE, 1);
    expect_ret("starts_in_hole", sys_mprotect(u + 2 * PAGE, 2 * PAGE, PROT_READ), -ENOMEM);
    put_store("starts_in_hole_unchanged", u + 3 * PAGE, 2);
    expect_ret("misaligned", sys_mprotect(u + 1, PAGE, PROT_READ), -EINVAL);
    expect_ret("unknown_bit", sys_mprotect(u, PAGE, 0x10), -EINVAL);
    expect_ret("prot_sem_accepted", sys_mprotect(u, PAGE, PROT_RW | PROT_SEM), 0);
    expect_ret("len_zero_any_bits", sys_mprotect(u, 0, 0x10), 0);
    expect_ret("len_zero_misaligned", sys_mprotect(u + 1, 0, PROT_READ), -EINVAL);
    expect_ret("len_wraps", sys_mprotect(u, -PAGE, PROT_READ), -ENOMEM);
    expect_ret("wraps_before_bits", sys_mprotect(u, -PAGE, 0x10), -ENOMEM);
    expect_ret("kernel_half", sys_mprotect(KERNEL_HALF, PAGE, PROT_READ), -ENOMEM);
    expect_ret("unmapped", sys_mprotect(u + 2 * PAGE, PAGE, PROT_READ), -ENOMEM);
    expect_ret("growsdown_and_up", sys_mprotect(u, PAGE, PROT_READ | PROT_GROWSDOWN | PROT_GROWSUP), -EINVAL);
    expect_ret("growsdown_not_a_stack", sys_mprotect(u, PAGE, PROT_READ | PROT_GROWSDOWN), -EINVAL);
    expect_ret("growsup", sys_mprotect(u, PAGE, PROT_READ | PROT_GROWSUP), -EINVAL);
    sys_munmap(u, 4 * PAGE);
}

/* mremap grow in place of [a, a + len): works only for one region that
 * ends there with free space above; shrink back after. */
static long grow_probe(unsigned long a, unsigned long len)
{
    long r = sys_mremap(a, len, len + PAGE, 0, 0);
    if (r == (long)a)
        sys_mremap(a, len + PAGE, len, 0, 0);
    return r;
}

static void merges(void)
{
    /* Room above, so that growth in place can be tried. */
    unsigned long base = 0x300000000000UL;
    long a = sys_mmap(base, 4 * PAGE, PROT_RW, MAP_ANON_PRIVATE | MAP_FIXED_NOREPLACE, -1, 0);
    put_int("merge_base_mapped", a == (long)base);
    /* A split in the middle, then the rights back: one region again. */
    sys_mprotect(base + PAGE, PAGE, PROT_READ);
    expect_ret("split_grow_whole", grow_probe(base, 4 * PAGE), -EFAULT);
    sys_mprotect(base + PAGE, PAGE, PROT_RW);
    expect_ret("merged_grow_whole", grow_probe(base, 4 * PAGE) == (long)base, 1);
    /* Read-only from the start is not charged; made writable it is, and
     * then it merges with writable memory. */
    long b = sys_mmap(base + 4 * PAGE, PAGE, PROT_READ, MAP_ANON_PRIVATE | MAP_FIXED, -1, 0);
    put_int("read_only_neighbour_mapped", b == (long)(base + 4 * PAGE));
    expect_ret("unmerged_grow", grow_probe(base, 5 * PAGE), -EFAULT);
    sys_mprotect(base + 4 * PAGE, PAGE, PROT_RW);
    expect_ret("merged_after_mprotect", grow_probe(base, 5 * PAGE) == (long)base, 1);
    /* Written read-only memory made writable again also merges back. */
    *(char *)(base + 2 * PAGE) = 1;
    sys_mprotect(base + 2 * PAGE, PAGE, PROT_READ);
    sys_mprotect(base + 2 * PAGE, PAGE, PROT_RW);
    expect_ret("merged_after_round_trip", grow_probe(base, 5 * PAGE) == (long)base, 1);
    sys_munmap(base, 8 * PAGE);
}

int main(int argc, char **argv, char **envp)
{
    (void)argc, (void)argv, (void)envp;
    probe_init();
    rights();
    exec();
    holes_and_errors();
    merges();
    return checks_result();
}
