/* fds: descriptors as such, and the calls that work on them: dup(2),
 * dup2(2), dup3(2), fcntl(2) (F_DUPFD, F_DUPFD_CLOEXEC, F_GETFD, F_SETFD,
 * F_GETFL, F_SETFL, F_GETPIPE_SZ, F_SETPIPE_SZ), fstat(2), ioctl(2)
 * (FIONREAD, TIOCGWINSZ, FIONBIO, FIOCLEX, FIONCLEX), writev(2), and the
 * errno of their bad arguments, a bad descriptor with a bad pointer
 * included (the descriptor is judged first).
 *
 * A program starts with 0, 1 and 2 open on one terminal, so the numbers
 * it gets are fixed: the lowest free, from 3. Only what every Linux shows
 * is printed: numbers, flags, sizes and errnos; of struct stat the file
 * type and mode bits, st_nlink, st_size, st_blksize and equalities (both
 * ends of a pipe are one inode), never a device or inode number, an owner
 * or a time; of the terminal's window size only that it has one. What
 * Faultline is documented to do otherwise (docs/abi.md) is not asked for:
 * descriptors from 64 to 1023 (RLIMIT_NOFILE), pipe sizes above 1 MiB
 * (a privilege on Linux), O_DIRECT and O_ASYNC, a read of the terminal.
 */
#include "sys.h"

static char buf[8192];
static struct iovec many[IOV_MAX + 1];

#define KERNEL_ADDR ((void *)0xffff800000000000UL)

static void start_state(void)
{
    /* 0, 1 and 2: one open file, the terminal, readable and writable. */
    for (int fd = 0; fd < 3; fd++)
        check("stdio_open", sys_fcntl(fd, F_GETFD, 0) == 0);
    put_int("stdin_accmode", sys_fcntl(0, F_GETFL, 0) & O_ACCMODE);
    expect_ret("stdio_nonblock_set_via_2", sys_fcntl(2, F_SETFL, O_NONBLOCK), 0);
    expect_int("stdio_nonblock_seen_via_0", (sys_fcntl(0, F_GETFL, 0) & O_NONBLOCK) != 0, 1);
    expect_ret("stdio_nonblock_clear_via_1", sys_fcntl(1, F_SETFL, 0), 0);
    expect_int("stdio_nonblock_cleared", (sys_fcntl(2, F_GETFL, 0) & O_NONBLOCK) != 0, 0);
    struct stat st;
    expect_ret("fstat_stdout", sys_fstat(1, &st), 0);
    expect_int("stdout_is_chr", (st.st_mode & S_IFMT) == S_IFCHR, 1);
    unsigned short ws[4];
    put_ret("tiocgwinsz_stdout", sys_ioctl(1, TIOCGWINSZ, ws));
    /* A read of nothing returns at once, even from a terminal. */
    expect_ret("read_stdin_len0", sys_read(0, buf, 0), 0);
    expect_ret("read_stdin_len0_kernel", sys_read(0, KERNEL_ADDR, 0), -EFAULT);
    expect_ret("write_stdout_len0_null", sys_write(1, 0, 0), 0);
    expect_ret("write_stdout_len0_kernel", sys_write(1, KERNEL_ADDR, 0), -EFAULT);
}

static void dups(int r, int w)
{
    expect_ret("dup", syscall1(SYS_dup, w), 5);
    expect_ret("dup_lowest_again", syscall1(SYS_dup, w), 6);
    expect_ret("dup_closed", syscall1(SYS_dup, 99), -EBADF);
    expect_ret("dup2", syscall2(SYS_dup2, w, 10), 10);
    expect_ret("dup2_itself", syscall2(SYS_dup2, w, w), w);
    expect_ret("dup2_closed_itself", syscall2(SYS_dup2, 99, 99), -EBADF);
    expect_ret("dup2_closed", syscall2(SYS_dup2, 99, 11), -EBADF);
    expect_ret("dup2_too_big", syscall2(SYS_dup2, w, 5000), -EBADF);
    expect_ret("dup2_negative", syscall2(SYS_dup2, w, -1), -EBADF);
    expect_ret("dup3_itself", syscall3(SYS_dup3, w, w, 0), -EINVAL);
    expect_ret("dup3_bad_flag", syscall3(SYS_dup3, w, 11, O_NONBLOCK), -EINVAL);
    expect_ret("dup3_closed", syscall3(SYS_dup3, 99, 11, 0), -EBADF);
    expect_ret("dup3_cloexec", syscall3(SYS_dup3, w, 11, O_CLOEXEC), 11);
    expect_ret("dup3_cloexec_getfd", sys_fcntl(11, F_GETFD, 0), FD_CLOEXEC);
    expect_ret("dup2_over_cloexec", syscall2(SYS_dup2, w, 11), 11);
    expect_ret("dup2_clears_cloexec", sys_fcntl(11, F_GETFD, 0), 0);
    /* dup2 onto an open descriptor closes what it named: 10 was a write
     * end, now it is the read end. */
    expect_ret("dup2_over_open", syscall2(SYS_dup2, r, 10), 10);
    expect_ret("dup2_over_open_getfl", sys_fcntl(10, F_GETFL, 0) & O_ACCMODE, O_RDONLY);
    /* Every descriptor of the write end shares it: the data written
     * through one dup is read through another. */
    expect_ret("write_via_dup", sys_write(6, "dup", 3), 3);
    expect_ret("read_via_dup", sys_read(10, buf, sizeof buf), 3);
    static const int made[] = {5, 6, 10, 11};
    for (unsigned i = 0; i < sizeof made / sizeof made[0]; i++)
        check("close_dup", sys_close(made[i]) == 0);
}

static void fcntls(int r, int w)
{
    expect_ret("getfd", sys_fcntl(r, F_GETFD, 0), 0);
    expect_ret("setfd_all_bits", sys_fcntl(r, F_SETFD, 0xff), 0);
    expect_ret("getfd_only_cloexec", sys_fcntl(r, F_GETFD, 0), FD_CLOEXEC);
    expect_ret("setfd_0", sys_fcntl(r, F_SETFD, 0), 0);
    expect_ret("getfd_cleared", sys_fcntl(r, F_GETFD, 0), 0);
    expect_ret("getfl_read_end", sys_fcntl(r, F_GETFL, 0), O_RDONLY);
    expect_ret("getfl_write_end", sys_fcntl(w, F_GETFL, 0), O_WRONLY);

    /* O_NONBLOCK belongs to the open file: a dup sees it. The access
     * mode cannot be changed. */
    int d = (int)syscall1(SYS_dup, r);
    expect_ret("setfl_nonblock", sys_fcntl(r, F_SETFL, O_NONBLOCK | O_RDWR), 0);
    expect_ret("getfl_nonblock", sys_fcntl(r, F_GETFL, 0), O_NONBLOCK);
    expect_ret("getfl_nonblock_dup", sys_fcntl(d, F_GETFL, 0), O_NONBLOCK);
    expect_ret("getfl_other_end", sys_fcntl(w, F_GETFL, 0), O_WRONLY);
    expect_ret("read_empty_nonblock", sys_read(d, buf, 1), -EAGAIN);
    expect_ret("setfl_0", sys_fcntl(d, F_SETFL, 0), 0);
    expect_ret("getfl_blocking_again", sys_fcntl(r, F_GETFL, 0), O_RDONLY);
    sys_close(d);

    expect_ret("f_dupfd", sys_fcntl(r, F_DUPFD, 20), 20);
    expect_ret("f_dupfd_next", sys_fcntl(r, F_DUPFD, 20), 21);
    expect_ret("f_dupfd_cloexec", sys_fcntl(r, F_DUPFD_CLOEXEC, 20), 22);
    expect_ret("f_dupfd_cloexec_getfd", sys_fcntl(22, F_GETFD, 0), FD_CLOEXEC);
    expect_ret("f_dupfd_getfd", sys_fcntl(21, F_GETFD, 0), 0);
    expect_ret("f_dupfd_low", sys_fcntl(r, F_DUPFD, 0), 5);
    expect_ret("f_dupfd_negative", sys_fcntl(r, F_DUPFD, -1), -EINVAL);
    expect_ret("f_dupfd_too_big", sys_fcntl(r, F_DUPFD, 5000), -EINVAL);
    expect_ret("f_dupfd_closed", sys_fcntl(99, F_DUPFD, 0), -EBADF);
    for (int fd = 20; fd <= 22; fd++)
        sys_close(fd);
    sys_close(5);
    expect_ret("fcntl_closed", sys_fcntl(99, F_GETFD, 0), -EBADF);
    expect_ret("fcntl_unknown_cmd", sys_fcntl(r, 9999, 0), -EINVAL);
    expect_ret("fcntl_closed_unknown_cmd", sys_fcntl(99, 9999, 0), -EBADF);
}

static void pipe_sizes(int r, int w)
{
    expect_ret("getpipe_sz", sys_fcntl(r, F_GETPIPE_SZ, 0), 65536);
    expect_ret("getpipe_sz_write_end", sys_fcntl(w, F_GETPIPE_SZ, 0), 65536);
    expect_ret("setpipe_sz_0", sys_fcntl(r, F_SETPIPE_SZ, 0), 4096);
    expect_ret("setpipe_sz_4097", sys_fcntl(w, F_SETPIPE_SZ, 4097), 8192);
    expect_ret("setpipe_sz_65535", sys_fcntl(r, F_SETPIPE_SZ, 65535), 65536);
    expect_ret("setpipe_sz_1m", sys_fcntl(r, F_SETPIPE_SZ, 1 << 20), 1 << 20);
    expect_ret("getpipe_sz_1m", sys_fcntl(w, F_GETPIPE_SZ, 0), 1 << 20);
    expect_ret("setpipe_sz_over_2g", sys_fcntl(r, F_SETPIPE_SZ, (1UL << 31) + 1), -EINVAL);
    expect_ret("getpipe_sz_stdout", sys_fcntl(1, F_GETPIPE_SZ, 0), -EBADF);
    expect_ret("setpipe_sz_stdout", sys_fcntl(1, F_SETPIPE_SZ, 4096), -EBADF);
    /* Too small for what is buffered: EBUSY, and the bytes stay. */
    memset(buf, 'p', 5000);
    expect_ret("write_5000", sys_write(w, buf, 5000), 5000);
    expect_ret("setpipe_sz_busy", sys_fcntl(r, F_SETPIPE_SZ, 4096), -EBUSY);
    expect_ret("setpipe_sz_room", sys_fcntl(r, F_SETPIPE_SZ, 8192), 8192);
    expect_ret("read_5000", sys_read(r, buf, sizeof buf), 5000);
    expect_ret("setpipe_sz_back", sys_fcntl(r, F_SETPIPE_SZ, 65536), 65536);
}

static void fstats(int r, int w)
{
    struct stat a, b, c;
    expect_ret("fstat_read_end", sys_fstat(r, &a), 0);
    expect_ret("fstat_write_end", sys_fstat(w, &b), 0);
    expect_int("fstat_pipe_mode", a.st_mode, S_IFIFO | 0600);
    expect_int("fstat_pipe_is_fifo", (a.st_mode & S_IFMT) == S_IFIFO, 1);
    expect_int("fstat_pipe_nlink", (long)a.st_nlink, 1);
    expect_int("fstat_pipe_blksize", a.st_blksize, 4096);
    expect_int("fstat_ends_one_inode", a.st_ino == b.st_ino && a.st_dev == b.st_dev, 1);
    expect_ret("write_abc", sys_write(w, "abc", 3), 3);
    expect_ret("fstat_after_write", sys_fstat(r, &c), 0);
    expect_int("fstat_pipe_size_stays_0", c.st_size, 0);
    int q[2];
    check("pipe_second", sys_pipe(q) == 0);
    expect_ret("fstat_second_pipe", sys_fstat(q[1], &c), 0);
    expect_int("fstat_pipes_differ", c.st_ino != a.st_ino && c.st_dev == a.st_dev, 1);
    sys_close(q[0]);
    sys_close(q[1]);
    expect_ret("read_abc", sys_read(r, buf, sizeof buf), 3);
    expect_ret("fstat_closed", sys_fstat(99, &a), -EBADF);
    expect_ret("fstat_closed_null", sys_fstat(99, 0), -EBADF);
    expect_ret("fstat_null", sys_fstat(r, 0), -EFAULT);
    expect_ret("fstat_kernel", sys_fstat(r, KERNEL_ADDR), -EFAULT);
}

static void ioctls(int r, int w)
{
    int n = -1;
    expect_ret("fionread_empty", sys_ioctl(r, FIONREAD, &n), 0);
    expect_int("fionread_empty_n", n, 0);
    expect_ret("write_hello", sys_write(w, "hello", 5), 5);
    n = -1;
    expect_ret("fionread", sys_ioctl(r, FIONREAD, &n), 0);
    expect_int("fionread_n", n, 5);
    n = -1;
    expect_ret("fionread_write_end", sys_ioctl(w, FIONREAD, &n), 0);
    expect_int("fionread_write_end_n", n, 5);
    expect_ret("fionread_null", sys_ioctl(r, FIONREAD, 0), -EFAULT);
    expect_ret("fionread_closed", sys_ioctl(99, FIONREAD, &n), -EBADF);
    expect_ret("fionread_closed_null", sys_ioctl(99, FIONREAD, 0), -EBADF);
    unsigned short ws[4];
    expect_ret("tiocgwinsz_pipe", sys_ioctl(r, TIOCGWINSZ, ws), -ENOTTY);
    expect_ret("tiocgwinsz_pipe_null", sys_ioctl(r, TIOCGWINSZ, 0), -ENOTTY);
    expect_ret("ioctl_unknown", sys_ioctl(w, 0x1234, 0), -ENOTTY);
    expect_ret("ioctl_closed_unknown", sys_ioctl(99, 0x1234, 0), -EBADF);
    /* For every file: O_NONBLOCK from an int, close-on-exec. */
    int on = 7, off = 0;
    expect_ret("fionbio_on", sys_ioctl(r, FIONBIO, &on), 0);
    expect_ret("fionbio_on_getfl", sys_fcntl(r, F_GETFL, 0), O_NONBLOCK);
    expect_ret("fionbio_off", sys_ioctl(r, FIONBIO, &off), 0);
    expect_ret("fionbio_off_getfl", sys_fcntl(r, F_GETFL, 0), O_RDONLY);
    expect_ret("fionbio_null", sys_ioctl(r, FIONBIO, 0), -EFAULT);
    expect_ret("fioclex", sys_ioctl(w, FIOCLEX, 0), 0);
    expect_ret("fioclex_getfd", sys_fcntl(w, F_GETFD, 0), FD_CLOEXEC);
    expect_ret("fionclex", sys_ioctl(w, FIONCLEX, 0), 0);
    expect_ret("fionclex_getfd", sys_fcntl(w, F_GETFD, 0), 0);
    expect_ret("read_hello", sys_read(r, buf, sizeof buf), 5);
}

static void writevs(int r, int w)
{
    struct iovec iov[3] = {{"ab", 2}, {0, 0}, {"cde", 3}};
    expect_ret("writev", sys_writev(w, iov, 3), 5);
    long got = sys_read(r, buf, sizeof buf);
    expect_ret("writev_read", got, 5);
    expect_int("writev_in_order", got == 5 && memcmp(buf, "abcde", 5) == 0, 1);
    /* A line to the terminal in two pieces. */
    struct iovec line[2] = {{"writev_stdout", 13}, {"=2_pieces\n", 10}};
    expect_ret("writev_stdout_ret", sys_writev(1, line, 2), 23);
    expect_ret("writev_count_0", sys_writev(w, 0, 0), 0);
    expect_ret("writev_count_0_kernel", sys_writev(w, KERNEL_ADDR, 0), 0);
    for (int i = 0; i < IOV_MAX + 1; i++)
        many[i] = (struct iovec){buf, 0};
    expect_ret("writev_iov_max_empty", sys_writev(w, many, IOV_MAX), 0);
    expect_ret("writev_over_iov_max", sys_writev(w, many, IOV_MAX + 1), -EINVAL);
    expect_ret("writev_null_array", sys_writev(w, 0, 1), -EFAULT);
    expect_ret("writev_kernel_array", sys_writev(w, KERNEL_ADDR, 1), -EFAULT);
    /* (A kernel address: an unmapped user one would be Linux's to find
     * part-way through the copy, docs/abi.md says how that differs.) */
    struct iovec bad[2] = {{"ok", 2}, {KERNEL_ADDR, 4}};
    expect_ret("writev_bad_buffer", sys_writev(w, bad, 2), -EFAULT);
    struct iovec neg[2] = {{"ok", 2}, {"x", (size_t)-1}};
    expect_ret("writev_negative_len", sys_writev(w, neg, 2), -EINVAL);
    struct iovec empty_kernel[1] = {{KERNEL_ADDR, 0}};
    expect_ret("writev_empty_kernel_buffer", sys_writev(w, empty_kernel, 1), -EFAULT);
    struct iovec empty_null[1] = {{0, 0}};
    expect_ret("writev_empty_null_buffer", sys_writev(w, empty_null, 1), 0);
    /* None of the refused ones wrote a byte. */
    int n = -1;
    check("fionread_after_refused", sys_ioctl(r, FIONREAD, &n) == 0);
    expect_int("writev_refused_wrote_nothing", n, 0);
    /* The descriptor first; a read end only once the array is read. */
    expect_ret("writev_closed", sys_writev(99, iov, 3), -EBADF);
    expect_ret("writev_closed_null_array", sys_writev(99, 0, 1), -EBADF);
    expect_ret("writev_closed_over_iov_max", sys_writev(99, many, IOV_MAX + 1), -EBADF);
    expect_ret("writev_read_end", sys_writev(r, iov, 3), -EBADF);
    expect_ret("writev_read_end_count_0", sys_writev(r, iov, 0), -EBADF);
    put_ret("writev_read_end_null_array", sys_writev(r, 0, 1));
    put_ret("writev_read_end_negative_len", sys_writev(r, neg, 2));
}

static void order(int r, int w)
{
    /* A descriptor that is closed, or open the other way, is EBADF
     * whatever the pointer. */
    expect_ret("read_closed_null", sys_read(99, 0, 1), -EBADF);
    expect_ret("write_closed_null", sys_write(99, 0, 1), -EBADF);
    expect_ret("read_write_end_null", sys_read(w, 0, 1), -EBADF);
    expect_ret("write_read_end_null", sys_write(r, 0, 1), -EBADF);
    expect_ret("read_write_end_kernel", sys_read(w, KERNEL_ADDR, 1), -EBADF);
    /* The right end: now the pointer. */
    expect_ret("write_x", sys_write(w, "x", 1), 1);
    expect_ret("read_null", sys_read(r, 0, 1), -EFAULT);
    expect_ret("write_null", sys_write(w, 0, 1), -EFAULT);
    expect_ret("read_x", sys_read(r, buf, sizeof buf), 1);
    expect_ret("close_closed", sys_close(99), -EBADF);
}

int main(int argc, char **argv, char **envp)
{
    (void)argc, (void)argv, (void)envp;
    start_state();
    int p[2];
    expect_ret("pipe", sys_pipe(p), 0);
    expect_int("pipe_read_fd", p[0], 3);
    expect_int("pipe_write_fd", p[1], 4);
    dups(p[0], p[1]);
    fcntls(p[0], p[1]);
    pipe_sizes(p[0], p[1]);
    fstats(p[0], p[1]);
    ioctls(p[0], p[1]);
    writevs(p[0], p[1]);
    order(p[0], p[1]);
    sys_close(p[0]);
    sys_close(p[1]);
    /* Nothing leaked: the next pipe gets the same numbers. */
    int q[2];
    check("pipe_again", sys_pipe(q) == 0);
    expect_int("pipe_again_same_fds", q[0] == 3 && q[1] == 4, 1);
    sys_close(q[0]);
    sys_close(q[1]);
    return checks_result();
}
