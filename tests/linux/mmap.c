/* mmap: anonymous private memory as mmap(2) and munmap(2) give it.
 *
 * Observes: fresh mappings read as zeros and keep what is written; the
 * kernel's choice of address goes down from its base, a second mapping
 * right below the first; a free hint is taken, a low one raised to
 * mmap_min_addr; MAP_FIXED replaces what was there with zeros,
 * MAP_FIXED_NOREPLACE refuses (EEXIST); MAP_POPULATE; the kernel reads
 * and writes untouched pages on a program's behalf (write from, read
 * into); munmap of a page in the middle (SIGSEGV with SEGV_MAPERR and the
 * address there after); the stack grows down to 8 MiB and no further;
 * the argument errors of both calls in Linux's order (EINVAL, EBADF,
 * ENODEV, EACCES, ENOMEM, EPERM-free cases only) and the commit
 * heuristic (a writable private mapping larger than memory is ENOMEM,
 * with MAP_NORESERVE it is not).
 */
#include "mm.h"

static void fresh(void)
{
    long a = anon(3 * PAGE, PROT_RW);
    put_int("anon_is_address", is_addr(a));
    put_int("anon_aligned", (a & (PAGE - 1)) == 0);
    char *p = (char *)a;
    put_int("anon_reads_zero", all_bytes(p, 3 * PAGE, 0));
    for (unsigned long i = 0; i < 3 * PAGE; i += 512)
        p[i] = (char)(i / 512 + 1);
    int kept = 1;
    for (unsigned long i = 0; i < 3 * PAGE; i += 512)
        kept &= p[i] == (char)(i / 512 + 1);
    put_int("anon_keeps_writes", kept);
    long b = anon(PAGE, PROT_RW);
    put_int("second_right_below_first", b == a - (long)PAGE);
    /* munmap of the middle page: the others stay. */
    expect_ret("munmap_middle", sys_munmap((unsigned long)a + PAGE, PAGE), 0);
    put_load("load_after_munmap", (unsigned long)a + PAGE);
    put_int("first_page_kept", p[0] == 1);
    put_int("last_page_kept", p[2 * PAGE] == (char)(2 * PAGE / 512 + 1));
    expect_ret("munmap_all", sys_munmap((unsigned long)b, 4 * PAGE), 0);
    put_load("load_after_munmap_all", (unsigned long)a);
    expect_ret("munmap_nothing_there", sys_munmap((unsigned long)a, 4 * PAGE), 0);
}

static void hints_and_fixed(void)
{
    /* A free hint is taken as it is. */
    unsigned long hint = 0x200000000000UL;
    long a = sys_mmap(hint, 2 * PAGE, PROT_RW, MAP_ANON_PRIVATE, -1, 0);
    put_int("free_hint_taken", a == (long)hint);
    /* A hint below mmap_min_addr is raised to it. */
    long low = sys_mmap(0x1000, PAGE, PROT_READ, MAP_ANON_PRIVATE, -1, 0);
    put_int("low_hint_raised_to_min", low == 0x10000);
    sys_munmap((unsigned long)low, PAGE);
    /* A taken hint is not: the kernel chooses. */
    long c = sys_mmap(hint, PAGE, PROT_RW, MAP_ANON_PRIVATE, -1, 0);
    put_int("taken_hint_elsewhere", is_addr(c) && c != (long)hint);
    sys_munmap((unsigned long)c, PAGE);
    char *p = (char *)a;
    p[0] = 'x';
    p[PAGE] = 'y';
    expect_ret("noreplace_over_mapping",
               sys_mmap(hint + PAGE, PAGE, PROT_RW, MAP_ANON_PRIVATE | MAP_FIXED_NOREPLACE, -1, 0),
               -EEXIST);
    put_int("noreplace_left_it", p[PAGE] == 'y');
    long f = sys_mmap(hint + PAGE, PAGE, PROT_RW, MAP_ANON_PRIVATE | MAP_FIXED, -1, 0);
    put_int("fixed_over_mapping", f == (long)(hint + PAGE));
    put_int("fixed_gives_zeros", p[PAGE] == 0);
    put_int("fixed_kept_neighbour", p[0] == 'x');
    long n = sys_mmap(hint + 4 * PAGE, PAGE, PROT_RW, MAP_ANON_PRIVATE | MAP_FIXED_NOREPLACE, -1, 0);
    put_int("noreplace_in_free_space", n == (long)(hint + 4 * PAGE));
    sys_munmap(hint, 8 * PAGE);
    /* MAP_POPULATE: there at once, zeros all the same. */
    long pop = sys_mmap(0, 4 * PAGE, PROT_RW, MAP_ANON_PRIVATE | MAP_POPULATE, -1, 0);
    put_int("populate_reads_zero", is_addr(pop) && all_bytes((void *)pop, 4 * PAGE, 0));
    sys_munmap((unsigned long)pop, 4 * PAGE);
    /* MAP_32BIT: below 2 GiB. */
    long low32 = sys_mmap(0, PAGE, PROT_RW, MAP_ANON_PRIVATE | MAP_32BIT, -1, 0);
    put_int("map_32bit_below_2g", is_addr(low32) && (unsigned long)low32 < 0x80000000UL);
    sys_munmap((unsigned long)low32, PAGE);
}

static void kernel_access(void)
{
    int fds[2];
    sys_pipe(fds);
    /* write() from pages never touched: zeros. */
    long a = anon(2 * PAGE, PROT_RW);
    expect_ret("write_from_untouched", sys_write(fds[1], (char *)a + PAGE - 8, 16), 16);
    char buf[16];
    memset(buf, 0xee, sizeof buf);
    sys_read(fds[0], buf, 16);
    put_int("untouched_bytes_are_zero", all_bytes(buf, 16, 0));
    /* read() into pages never touched, across two of them. */
    long b = anon(2 * PAGE, PROT_RW);
    sys_write(fds[1], "0123456789abcdef", 16);
    expect_ret("read_into_untouched", sys_read(fds[0], (char *)b + PAGE - 8, 16), 16);
    put_int("read_arrived", memcmp((char *)b + PAGE - 8, "0123456789abcdef", 16) == 0);
    /* Unmapped: EFAULT, nothing consumed. */
    sys_munmap((unsigned long)b, 2 * PAGE);
    sys_write(fds[1], "zz", 2);
    expect_ret("read_into_unmapped", sys_read(fds[0], (char *)b, 2), -EFAULT);
    expect_ret("write_from_unmapped", sys_write(fds[1], (char *)b, 2), -EFAULT);
    expect_ret("read_still_there", sys_read(fds[0], buf, 2), 2);
    sys_munmap((unsigned long)a, 2 * PAGE);
    sys_close(fds[0]);
    sys_close(fds[1]);
}

/* Touches the byte `below` bytes under this frame. */
static __attribute__((noinline)) long touch_below(unsigned long below)
{
    volatile char here = 0;
    unsigned long at = ((unsigned long)&here - below) & ~(PAGE - 1);
    return probe_store(at, 1);
}

static void stack_growth(void)
{
    put_probe("stack_4mib_below", touch_below(4UL << 20), 0);
    long r = touch_below(9UL << 20);
    put_str("stack_9mib_below", r == -1 ? segv_name(probe_code) : "ok");
}

static void errors(void)
{
    int fds[2];
    sys_pipe(fds);
    /* The offset first, then the descriptor, then the length. */
    expect_ret("offset_misaligned", sys_mmap(0, 0, PROT_RW, MAP_PRIVATE, 99, 1), -EINVAL);
    expect_ret("bad_fd", sys_mmap(0, 0, PROT_RW, MAP_PRIVATE, 99, 0), -EBADF);
    expect_ret("len_zero", sys_mmap(0, 0, PROT_RW, MAP_ANON_PRIVATE, -1, 0), -EINVAL);
    expect_ret("len_wraps", sys_mmap(0, -PAGE + 1, PROT_RW, MAP_ANON_PRIVATE, -1, 0), -ENOMEM);
    expect_ret("no_map_type", sys_mmap(0, PAGE, PROT_RW, MAP_ANONYMOUS, -1, 0), -EINVAL);
    expect_ret("shared_validate_anon", sys_mmap(0, PAGE, PROT_RW, MAP_SHARED_VALIDATE | MAP_ANONYMOUS, -1, 0),
               -EINVAL);
    expect_ret("fixed_kernel_half", sys_mmap(KERNEL_HALF, PAGE, PROT_RW, MAP_ANON_PRIVATE | MAP_FIXED, -1, 0),
               -ENOMEM);
    expect_ret("fixed_misaligned", sys_mmap(0x200000000123UL, PAGE, PROT_RW, MAP_ANON_PRIVATE | MAP_FIXED, -1, 0),
               -EINVAL);
    expect_ret("fixed_kernel_half_bad_type", sys_mmap(KERNEL_HALF, PAGE, PROT_RW, MAP_ANONYMOUS | MAP_FIXED, -1, 0),
               -ENOMEM);
    /* Files that cannot be mapped: the terminal, a pipe's ends. */
    expect_ret("console_private", sys_mmap(0, PAGE, PROT_READ, MAP_PRIVATE, 1, 0), -ENODEV);
    expect_ret("pipe_read_end", sys_mmap(0, PAGE, PROT_READ, MAP_PRIVATE, fds[0], 0), -ENODEV);
    expect_ret("pipe_write_end", sys_mmap(0, PAGE, PROT_READ, MAP_PRIVATE, fds[1], 0), -EACCES);
    expect_ret("pipe_read_end_shared_write", sys_mmap(0, PAGE, PROT_RW, MAP_SHARED, fds[0], 0), -EACCES);
    /* More than all of memory, writable: refused unless not counted. */
    expect_ret("huge_writable", sys_mmap(0, 1UL << 40, PROT_RW, MAP_ANON_PRIVATE, -1, 0), -ENOMEM);
    long nr = sys_mmap(0, 1UL << 40, PROT_RW, MAP_ANON_PRIVATE | MAP_NORESERVE, -1, 0);
    put_int("huge_noreserve_maps", is_addr(nr));
    put_int("huge_noreserve_page_works", is_addr(nr) && probe_store((unsigned long)nr + (1UL << 39), 7) == 0);
    sys_munmap((unsigned long)nr, 1UL << 40);
    long ro = sys_mmap(0, 1UL << 40, PROT_READ, MAP_ANON_PRIVATE, -1, 0);
    put_int("huge_readonly_maps", is_addr(ro));
    sys_munmap((unsigned long)ro, 1UL << 40);
    /* munmap's own. */
    long a = anon(PAGE, PROT_RW);
    expect_ret("munmap_misaligned", sys_munmap((unsigned long)a + 1, PAGE), -EINVAL);
    expect_ret("munmap_len_zero", sys_munmap((unsigned long)a, 0), -EINVAL);
    expect_ret("munmap_kernel_half", sys_munmap(KERNEL_HALF, PAGE), -EINVAL);
    expect_ret("munmap_len_wraps", sys_munmap((unsigned long)a, -PAGE), -EINVAL);
    expect_ret("munmap_partial_page_len", sys_munmap((unsigned long)a, 1), 0);
    put_load("load_after_partial_len_munmap", (unsigned long)a);
    sys_close(fds[0]);
    sys_close(fds[1]);
}

int main(int argc, char **argv, char **envp)
{
    (void)argc, (void)argv, (void)envp;
    probe_init();
    fresh();
    hints_and_fixed();
    kernel_access();
    stack_growth();
    errors();
    return checks_result();
}
