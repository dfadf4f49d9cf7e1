/* sys.h: everything the oracle programs use instead of a libc.
 *
 * The programs in tests/linux/ are built with
 *     gcc -static -nostdlib -ffreestanding -mgeneral-regs-only
 * and linked with start.c, so the same ELF file runs on Linux and on
 * Faultline (which has no libc and does not save SSE state). This header
 * holds the raw system calls (Linux x86_64 numbers and registers), the
 * constants the programs need, and the output helpers: every observation is
 * one line "key=value", written with a single write(2) so lines from two
 * threads never interleave.
 *
 * A program checks what man 2 says Linux must do with check(); a failed
 * check prints "check_failed=KEY ..." and makes the program exit 1, which
 * run.sh reports as a failure of linux:NAME.
 */
#ifndef ORACLE_SYS_H
#define ORACLE_SYS_H

#include <stddef.h>
#include <stdint.h>

/* --- system call numbers (arch/x86/entry/syscalls/syscall_64.tbl) -------- */
#define SYS_read 0
#define SYS_write 1
#define SYS_open 2
#define SYS_close 3
#define SYS_rt_sigaction 13
#define SYS_pipe 22
#define SYS_sched_yield 24
#define SYS_dup2 33
#define SYS_nanosleep 35
#define SYS_alarm 37
#define SYS_getpid 39
#define SYS_clone 56
#define SYS_fork 57
#define SYS_execve 59
#define SYS_exit 60
#define SYS_wait4 61
#define SYS_kill 62
#define SYS_fcntl 72
#define SYS_getdents64 217
#define SYS_mkdir 83
#define SYS_getppid 110
#define SYS_mount 165
#define SYS_reboot 169
#define SYS_gettid 186
#define SYS_futex 202
#define SYS_clock_gettime 228
#define SYS_exit_group 231
#define SYS_pipe2 293

/* The descriptor calls (fds.c). */
#define SYS_fstat 5
#define SYS_ioctl 16
#define SYS_writev 20
#define SYS_dup 32
#define SYS_dup3 292
#define SYS_sched_setaffinity 203
#define SYS_sched_getaffinity 204

/* --- errno values (include/uapi/asm-generic/errno-base.h, errno.h) ------- */
#define EPERM 1
#define ENOENT 2
#define ESRCH 3
#define EINTR 4
#define EIO 5
#define ENXIO 6
#define E2BIG 7
#define ENOEXEC 8
#define EBADF 9
#define ECHILD 10
#define EAGAIN 11
#define ENOMEM 12
#define EACCES 13
#define EFAULT 14
#define EBUSY 16
#define EEXIST 17
#define ENODEV 19
#define ENOTDIR 20
#define EISDIR 21
#define EINVAL 22
#define ENFILE 23
#define EMFILE 24
#define ENOTTY 25
#define ESPIPE 29
#define EPIPE 32
#define ERANGE 34
#define EDEADLK 35
#define ENAMETOOLONG 36
#define ENOSYS 38
#define ETIMEDOUT 110

/* --- flags and constants -------------------------------------------------- */
#define O_RDONLY 0
#define O_RDWR 02
#define O_NONBLOCK 04000
#define O_DIRECTORY 0200000
#define O_CLOEXEC 02000000
#define F_GETFD 1
#define F_GETFL 3
#define F_SETFL 4
#define FD_CLOEXEC 1

/* Descriptors (fcntl(2), ioctl(2), stat(2); Linux's x86_64 values). */
#define O_WRONLY 01
#define O_ACCMODE 03
#define F_DUPFD 0
#define F_SETFD 2
#define F_DUPFD_CLOEXEC 1030
#define F_SETPIPE_SZ 1031
#define F_GETPIPE_SZ 1032
#define FIONREAD 0x541b
#define TIOCGWINSZ 0x5413
#define FIONBIO 0x5421
#define FIONCLEX 0x5450
#define FIOCLEX 0x5451
#define IOV_MAX 1024
#define S_IFMT 0170000
#define S_IFIFO 0010000
#define S_IFCHR 0020000

/* The kernel's struct stat on x86_64 (144 bytes). */
struct stat {
    unsigned long st_dev;
    unsigned long st_ino;
    unsigned long st_nlink;
    unsigned int st_mode;
    unsigned int st_uid;
    unsigned int st_gid;
    unsigned int pad0;
    unsigned long st_rdev;
    long st_size;
    long st_blksize;
    long st_blocks;
    struct {
        long tv_sec;
        long tv_nsec;
    } st_atim, st_mtim, st_ctim;
    long unused[3];
};

struct iovec {
    const void *iov_base;
    size_t iov_len;
};

#define SIGKILL 9
#define SIGSEGV 11
#define SIGPIPE 13
#define SIGALRM 14
#define SIGTERM 15
#define SIGCHLD 17
#define SIG_DFL ((void *)0)
#define SIG_IGN ((void *)1)

#define WNOHANG 1

#define CLONE_VM 0x00000100
#define CLONE_FS 0x00000200
#define CLONE_FILES 0x00000400
#define CLONE_SIGHAND 0x00000800
#define CLONE_THREAD 0x00010000
#define CLONE_SYSVSEM 0x00040000
#define CLONE_PARENT_SETTID 0x00100000
#define CLONE_CHILD_CLEARTID 0x00200000
/* What a thread library passes, less CLONE_SETTLS (no TLS here). */
#define CLONE_THREAD_FLAGS                                                          \
    (CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM | \
     CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID)

#define FUTEX_WAIT 0
#define FUTEX_WAKE 1
#define FUTEX_PRIVATE_FLAG 128

#define CLOCK_MONOTONIC 1

#define AT_NULL 0
#define AT_PHDR 3
#define AT_PHENT 4
#define AT_PHNUM 5
#define AT_PAGESZ 6
#define AT_ENTRY 9
#define AT_RANDOM 25
#define PT_LOAD 1

struct timespec {
    long tv_sec;
    long tv_nsec;
};

/* The kernel's struct sigaction on x86_64 (not libc's). */
struct k_sigaction {
    void *handler;
    unsigned long flags;
    void *restorer;
    unsigned long mask;
};

/* --- raw system calls ------------------------------------------------------ */
static inline long syscall6(long n, long a, long b, long c, long d, long e, long f)
{
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}
#define syscall0(n) syscall6((n), 0, 0, 0, 0, 0, 0)
#define syscall1(n, a) syscall6((n), (long)(a), 0, 0, 0, 0, 0)
#define syscall2(n, a, b) syscall6((n), (long)(a), (long)(b), 0, 0, 0, 0)
#define syscall3(n, a, b, c) syscall6((n), (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define syscall4(n, a, b, c, d) syscall6((n), (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)
#define syscall5(n, a, b, c, d, e) \
    syscall6((n), (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), 0)

/* Each returns what the kernel returned: -errno on failure. */
static inline long sys_read(int fd, void *buf, size_t len) { return syscall3(SYS_read, fd, buf, len); }
static inline long sys_write(int fd, const void *buf, size_t len) { return syscall3(SYS_write, fd, buf, len); }
static inline long sys_close(int fd) { return syscall1(SYS_close, fd); }
static inline long sys_pipe(int fds[2]) { return syscall1(SYS_pipe, fds); }
static inline long sys_pipe2(int fds[2], int flags) { return syscall2(SYS_pipe2, fds, flags); }
static inline long sys_fcntl(int fd, int cmd, long arg) { return syscall3(SYS_fcntl, fd, cmd, arg); }
static inline long sys_ioctl(int fd, unsigned long req, void *arg) { return syscall3(SYS_ioctl, fd, req, arg); }
static inline long sys_fstat(int fd, struct stat *st) { return syscall2(SYS_fstat, fd, st); }
static inline long sys_writev(int fd, const struct iovec *iov, long n) { return syscall3(SYS_writev, fd, iov, n); }
static inline long sys_getpid(void) { return syscall0(SYS_getpid); }
static inline long sys_getppid(void) { return syscall0(SYS_getppid); }
static inline long sys_gettid(void) { return syscall0(SYS_gettid); }
static inline long sys_sched_yield(void) { return syscall0(SYS_sched_yield); }
static inline long sys_fork(void) { return syscall0(SYS_fork); }
static inline long sys_kill(long pid, int sig) { return syscall2(SYS_kill, pid, sig); }
static inline long sys_wait4(long pid, int *status, int options, void *rusage)
{
    return syscall4(SYS_wait4, pid, status, options, rusage);
}
static inline long sys_sched_setaffinity(long pid, unsigned long len, const void *mask)
{
    return syscall3(SYS_sched_setaffinity, pid, len, mask);
}
static inline long sys_sched_getaffinity(long pid, unsigned long len, void *mask)
{
    return syscall3(SYS_sched_getaffinity, pid, len, mask);
}
/* pin: the calling thread to CPU cpu alone (0, or -errno). */
static inline long pin(int cpu)
{
    unsigned long mask = 1UL << cpu;
    return sys_sched_setaffinity(0, sizeof mask, &mask);
}
static inline long sys_futex(volatile int *uaddr, int op, int val, const struct timespec *timeout)
{
    return syscall6(SYS_futex, (long)uaddr, op, val, (long)timeout, 0, 0);
}
static inline long sys_clock_gettime(int clock, struct timespec *ts)
{
    return syscall2(SYS_clock_gettime, clock, ts);
}
static inline long sys_sigaction(int sig, const struct k_sigaction *act, struct k_sigaction *old)
{
    return syscall4(SYS_rt_sigaction, sig, act, old, 8 /* sizeof(sigset_t) in the kernel */);
}
static inline long sys_nanosleep(long sec, long nsec)
{
    struct timespec ts = {sec, nsec};
    return syscall2(SYS_nanosleep, &ts, 0);
}
__attribute__((noreturn)) static inline void sys_exit_group(int code)
{
    for (;;)
        syscall1(SYS_exit_group, code);
}
__attribute__((noreturn)) static inline void sys_exit_thread(int code)
{
    for (;;)
        syscall1(SYS_exit, code);
}

/* --- start.c --------------------------------------------------------------- */
/* What _start found on the initial stack. */
extern unsigned long *oracle_entry_sp; /* rsp at _start, before any change */
extern char **oracle_envp;
extern unsigned long *oracle_auxv; /* pairs (type, value), ending with AT_NULL */
void _start(void);

/* clone_thread: a new thread running fn(arg) on the stack ending at
 * stack_top, with the given clone flags; the thread ends with exit(2) when
 * fn returns. *ptid and *ctid are what CLONE_PARENT_SETTID and
 * CLONE_CHILD_CLEARTID use. Returns the thread's id or -errno. */
long clone_thread(unsigned long flags, void *stack_top, int *ptid, int *ctid, unsigned long tls,
                  int (*fn)(void *), void *arg);

void *memset(void *dst, int c, size_t n);
void *memcpy(void *dst, const void *src, size_t n);
int memcmp(const void *a, const void *b, size_t n);

/* --- strings and output ---------------------------------------------------- */
static inline size_t str_len(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

static inline int str_eq(const char *a, const char *b)
{
    while (*a && *a == *b)
        a++, b++;
    return *a == *b;
}

static inline const char *errno_name(long e)
{
    switch (e) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case ESRCH: return "ESRCH";
    case EINTR: return "EINTR";
    case EIO: return "EIO";
    case ENXIO: return "ENXIO";
    case E2BIG: return "E2BIG";
    case ENOEXEC: return "ENOEXEC";
    case EBADF: return "EBADF";
    case ECHILD: return "ECHILD";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case EBUSY: return "EBUSY";
    case EEXIST: return "EEXIST";
    case ENODEV: return "ENODEV";
    case ENOTDIR: return "ENOTDIR";
    case EISDIR: return "EISDIR";
    case EINVAL: return "EINVAL";
    case ENFILE: return "ENFILE";
    case EMFILE: return "EMFILE";
    case ENOTTY: return "ENOTTY";
    case ESPIPE: return "ESPIPE";
    case EPIPE: return "EPIPE";
    case ERANGE: return "ERANGE";
    case EDEADLK: return "EDEADLK";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case ENOSYS: return "ENOSYS";
    case ETIMEDOUT: return "ETIMEDOUT";
    }
    return 0;
}

/* A line being built; out_end() writes it with one write(2). */
struct line {
    char buf[256];
    size_t len;
};

static inline void out_str(struct line *l, const char *s)
{
    while (*s && l->len < sizeof l->buf - 1)
        l->buf[l->len++] = *s++;
}

static inline void out_udec(struct line *l, unsigned long v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n && l->len < sizeof l->buf - 1)
        l->buf[l->len++] = tmp[--n];
}

static inline void out_dec(struct line *l, long v)
{
    if (v < 0) {
        out_str(l, "-");
        out_udec(l, (unsigned long)0 - (unsigned long)v);
    } else {
        out_udec(l, (unsigned long)v);
    }
}

static inline void out_hex(struct line *l, unsigned long v)
{
    char tmp[16];
    int n = 0;
    do {
        tmp[n++] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    out_str(l, "0x");
    while (n && l->len < sizeof l->buf - 1)
        l->buf[l->len++] = tmp[--n];
}

/* A system call's result: its errno's name for -4095..-1, else the number. */
static inline void out_ret(struct line *l, long r)
{
    if (r < 0 && r >= -4095) {
        const char *name = errno_name(-r);
        if (name) {
            out_str(l, name);
        } else {
            out_str(l, "errno");
            out_dec(l, -r);
        }
    } else {
        out_dec(l, r);
    }
}

static inline void out_end(struct line *l)
{
    l->buf[l->len++] = '\n';
    sys_write(1, l->buf, l->len);
    l->len = 0;
}

static inline void put_str(const char *key, const char *value)
{
    struct line l = {.len = 0};
    out_str(&l, key);
    out_str(&l, "=");
    out_str(&l, value);
    out_end(&l);
}

static inline void put_int(const char *key, long value)
{
    struct line l = {.len = 0};
    out_str(&l, key);
    out_str(&l, "=");
    out_dec(&l, value);
    out_end(&l);
}

static inline void put_ret(const char *key, long r)
{
    struct line l = {.len = 0};
    out_str(&l, key);
    out_str(&l, "=");
    out_ret(&l, r);
    out_end(&l);
}

/* --- self-checks ------------------------------------------------------------ */
/* How many checks failed; main returns checks_result(). */
static int oracle_failures;

static inline void check_fail(const char *key, const char *what, long got, long want)
{
    struct line l = {.len = 0};
    out_str(&l, "check_failed=");
    out_str(&l, key);
    out_str(&l, " (");
    out_str(&l, what);
    out_str(&l, ": got ");
    out_ret(&l, got);
    out_str(&l, ", want ");
    out_ret(&l, want);
    out_str(&l, ")");
    out_end(&l);
    oracle_failures++;
}

/* check(KEY, COND): prints check_failed=KEY when COND is false. */
#define check(key, cond)                                  \
    do {                                                  \
        if (!(cond)) {                                    \
            struct line l_ = {.len = 0};                  \
            out_str(&l_, "check_failed=");                \
            out_str(&l_, key);                            \
            out_str(&l_, " (" #cond ")");                 \
            out_end(&l_);                                 \
            oracle_failures++;                            \
        }                                                 \
    } while (0)

/* expect_ret(KEY, R, WANT): prints KEY=R, and check_failed when R != WANT.
 * WANT is a result as the kernel returns it: -EFAULT, 0, 3... */
static inline void expect_ret(const char *key, long r, long want)
{
    put_ret(key, r);
    if (r != want)
        check_fail(key, "result", r, want);
}

/* expect_int(KEY, V, WANT): prints KEY=V (a plain number) and checks it. */
static inline void expect_int(const char *key, long v, long want)
{
    put_int(key, v);
    if (v != want)
        check_fail(key, "value", v, want);
}

static inline int checks_result(void)
{
    put_int("checks_failed", oracle_failures);
    return oracle_failures ? 1 : 0;
}

/* cpu_relax: the body of every busy-wait loop, as in Linux's cpu_relax().
 * Besides easing the sibling hyperthread, PAUSE is what lets QEMU's
 * single-threaded round robin (-icount, as ./run.sh bench runs) move on to
 * the next virtual CPU: a loop without it keeps the host thread until the
 * next timer deadline, and a CPU woken by an IPI meanwhile never gets
 * instructions, so a spin waiting for it never ends. */
static inline void cpu_relax(void)
{
    __asm__ volatile("pause" ::: "memory");
}

/* --- threads ---------------------------------------------------------------- */
/* join_thread: wait until the kernel clears *ctid (CLONE_CHILD_CLEARTID
 * clears it and wakes a futex waiter on it when the thread exits). */
static inline void join_thread(volatile int *ctid)
{
    int t;
    while ((t = *ctid) != 0)
        sys_futex(ctid, FUTEX_WAIT, t, 0);
}

#endif
