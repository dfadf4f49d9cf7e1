/* execve: a process runs a new program (execve(2), execveat(2)).
 *
 * Run as [execve, "a", "b"]: the errors first, each in Linux's order
 * (the path, then the arrays and their strings, then the lookup), the
 * caller untouched by them; then it sets up what exec must drop (a
 * close-on-exec pipe, a caught signal, a mapping) and keep (a plain
 * pipe, an ignored signal, the blocked mask, the pid) and runs itself as
 * [execve, "two", FDS...]. That checks what it was left, and runs
 * "bin/execve" (a relative path) with no argv at all, which Linux gives
 * [""]: the third stage says so and exits 0.
 */
#include "sys.h"

#define SYS_mmap 9
#define SYS_rt_sigprocmask 14
#define SYS_execveat 322
#define AT_FDCWD -100
#define AT_EMPTY_PATH 0x1000
#define AT_EXECFN 31
#define SIGUSR1 10
#define SIGUSR2 12
#define F_GETFD 1
#define MAX_ARG_STRLEN (32 * 4096)

static char big[MAX_ARG_STRLEN + 1];
static char longname[300];

static void handler(int sig) { (void)sig; }

static long exec3(const char *path, char *const *argv, char *const *envp)
{
    return syscall3(SYS_execve, path, argv, envp);
}

static long execat(long fd, const char *path, char *const *argv, char *const *envp, long flags)
{
    return syscall5(SYS_execveat, fd, path, argv, envp, flags);
}

static char *num(char *buf, long v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (int i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    buf[n] = 0;
    return buf;
}

static long parse(const char *s)
{
    long v = 0;
    while (*s)
        v = v * 10 + (*s++ - '0');
    return v;
}

static const char *execfn(void)
{
    for (unsigned long *a = oracle_auxv; a[0] != AT_NULL; a += 2)
        if (a[0] == AT_EXECFN)
            return (const char *)a[1];
    return "(none)";
}

static int first(void)
{
    char *argv[] = {"execve", 0};
    char *envp[] = {0};
    int p[2];
    sys_pipe(p);
    volatile char *keep = (volatile char *)syscall6(SYS_mmap, 0, 4096, 3, 0x22, -1, 0);
    keep[0] = 'k';

    expect_ret("bad_path", exec3((const char *)8, argv, envp), -EFAULT);
    expect_ret("empty_path", exec3("", argv, envp), -ENOENT);
    expect_ret("missing", exec3("/nonexistent", argv, envp), -ENOENT);
    expect_ret("missing_in_bin", exec3("/bin/nope", argv, envp), -ENOENT);
    expect_ret("root_dir", exec3("/", argv, envp), -EACCES);
    expect_ret("bin_dir", exec3("/bin", argv, envp), -EACCES);
    expect_ret("trailing_slash", exec3("/bin/execve/", argv, envp), -ENOTDIR);
    expect_ret("under_a_file", exec3("/bin/execve/x", argv, envp), -ENOTDIR);
    expect_ret("bad_argv_before_lookup", exec3("/bin/nope", (char *const *)8, envp), -EFAULT);
    expect_ret("bad_envp_before_lookup", exec3("/bin/nope", argv, (char *const *)8), -EFAULT);
    char *bad_str[] = {"execve", (char *)8, 0};
    expect_ret("bad_string", exec3("/bin/nope", bad_str, envp), -EFAULT);
    for (int i = 0; i < MAX_ARG_STRLEN; i++)
        big[i] = 'y';
    char *too_long[] = {"execve", big, 0};
    expect_ret("arg_too_long", exec3("/bin/nope", too_long, envp), -E2BIG);
    big[MAX_ARG_STRLEN - 1] = 0; /* now exactly the limit with its NUL */
    char *env_big[] = {big, 0};
    expect_ret("env_at_limit_then_missing", exec3("/bin/nope", argv, env_big), -ENOENT);
    longname[0] = '/';
    for (int i = 1; i < 299; i++)
        longname[i] = 'n';
    expect_ret("name_too_long", exec3(longname, argv, envp), -ENAMETOOLONG);
    expect_ret("at_bad_flags", execat(AT_FDCWD, "/bin/execve", argv, envp, 2), -EINVAL);
    expect_ret("at_pipe_dir", execat(p[0], "execve", argv, envp, 0), -ENOTDIR);
    expect_ret("at_closed_dir", execat(99, "execve", argv, envp, 0), -EBADF);
    expect_ret("at_empty_no_flag", execat(p[0], "", argv, envp, 0), -ENOENT);
    expect_ret("at_empty_pipe", execat(p[0], "", argv, envp, AT_EMPTY_PATH), -EACCES);
    expect_int("mapping_kept", keep[0], 'k');

    /* What the new program must not get, and what it must. */
    int c[2];
    sys_pipe2(c, O_CLOEXEC);
    struct k_sigaction act = {.handler = (void *)handler, .flags = 0x04000000, .restorer = 0, .mask = 0};
    sys_sigaction(SIGUSR1, &act, 0);
    struct k_sigaction ign = {.handler = SIG_IGN};
    sys_sigaction(SIGUSR2, &ign, 0);
    unsigned long block = 1ul << (SIGTERM - 1);
    syscall4(SYS_rt_sigprocmask, 0, &block, 0, 8);
    char b[6][24];
    char *next[] = {"execve", "two", num(b[0], c[0]), num(b[1], c[1]), num(b[2], p[0]),
                    num(b[3], sys_getpid()), num(b[4], (long)keep), 0};
    char *env[] = {"ORACLE=1", "STAGE=two", 0};
    long r = exec3("/bin/../bin/./execve", next, env);
    put_ret("exec_returned", r);
    return 1;
}

static int second(int argc, char **argv, char **envp)
{
    expect_int("argc", argc, 7);
    put_str("env1", envp[0] && envp[1] ? envp[1] : "(none)");
    put_str("execfn", execfn());
    expect_ret("cloexec_read_end", sys_fcntl((int)parse(argv[2]), F_GETFD, 0), -EBADF);
    expect_ret("cloexec_write_end", sys_fcntl((int)parse(argv[3]), F_GETFD, 0), -EBADF);
    expect_ret("plain_pipe", sys_fcntl((int)parse(argv[4]), F_GETFD, 0), 0);
    expect_int("same_pid", sys_getpid() == parse(argv[5]), 1);
    struct k_sigaction old;
    sys_sigaction(SIGUSR1, 0, &old);
    expect_int("caught_now_default", old.handler == SIG_DFL && old.flags == 0, 1);
    sys_sigaction(SIGUSR2, 0, &old);
    expect_int("ignored_stays", old.handler == SIG_IGN, 1);
    unsigned long mask = 0;
    syscall4(SYS_rt_sigprocmask, 0, 0, &mask, 8);
    expect_int("mask_kept", mask == 1ul << (SIGTERM - 1), 1);
    /* The old mapping went with the old program: mapping there again at
     * the same address with MAP_FIXED_NOREPLACE succeeds. */
    long at = parse(argv[6]);
    long m = syscall6(SYS_mmap, at, 4096, 3, 0x22 | 0x100000, -1, 0);
    expect_int("old_mapping_gone", m == at, 1);
    long r = exec3("bin/execve", 0, envp);
    put_ret("exec_returned", r);
    return 1;
}

static int third(int argc, char **argv)
{
    expect_int("argc", argc, 1);
    expect_int("argv0_empty", argv[0][0] == 0, 1);
    put_str("execfn", execfn());
    return checks_result();
}

int main(int argc, char **argv, char **envp)
{
    if (argc >= 2 && str_eq(argv[1], "a"))
        return first();
    if (argc >= 2 && str_eq(argv[1], "two"))
        return second(argc, argv, envp);
    return third(argc, argv);
}
