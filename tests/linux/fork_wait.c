/* fork_wait: fork(2) and the exit status wait4(2) reports (wait(2)'s
 * encoding: exit code << 8 for a normal end, the signal number for a
 * signal, no core dump here since RLIMIT_CORE is 0 from Linux's init).
 * Kept apart from the other programs because it needs fork, which
 * Faultline does not have yet.
 *
 * Children: exit codes 0, 1, 42, 255 and 256 (only the low 8 bits count),
 * exit(2) alone, exit_group(2) from a second thread, SIGKILL sent to
 * itself, a store to address 0 (SIGSEGV), a write to a pipe with no reader
 * under the default SIGPIPE action. Also: ECHILD without children, WNOHANG
 * on a running child, and a bad status pointer (EFAULT; Linux has reaped
 * the child by then, so waiting again gives ECHILD).
 */
#include "sys.h"

#define STACK 65536

static unsigned char stack[STACK] __attribute__((aligned(16)));
static volatile int ctid;
static volatile int global = 1;

static int exit_group_5(void *arg)
{
    (void)arg;
    sys_exit_group(5);
}

/* Fork a child that runs how(arg) and ends with exit_group(its value);
 * return the raw wait status, or -errno. */
static long child_status(int (*how)(long), long arg)
{
    long pid = sys_fork();
    if (pid == 0)
        sys_exit_group(how(arg));
    if (pid < 0)
        return pid;
    int status = -1;
    long r = sys_wait4(pid, &status, 0, 0);
    if (r != pid)
        return r < 0 ? r : -ECHILD;
    return status;
}

static int code(long c) { return (int)c; }

static int exit_alone(long c)
{
    sys_exit_thread((int)c);
}

static int thread_exit_group(long unused)
{
    (void)unused;
    ctid = -1;
    clone_thread(CLONE_THREAD_FLAGS, stack + STACK, (int *)&ctid, (int *)&ctid, 0, exit_group_5, 0);
    for (int i = 0; i < 30; i++)
        sys_nanosleep(1, 0); /* ended by the thread's exit_group */
    return 104;              /* the thread never ended the process */
}

static int kill_self(long sig)
{
    sys_kill(sys_getpid(), (int)sig);
    return 100; /* not reached */
}

static int store_to_null(long unused)
{
    (void)unused;
    volatile int *volatile p = 0;
    *p = 1;
    return 101; /* not reached */
}

static int write_no_reader(long unused)
{
    (void)unused;
    int p[2];
    if (sys_pipe(p) != 0)
        return 102;
    sys_close(p[0]);
    sys_write(p[1], "x", 1); /* SIGPIPE, default action: terminate */
    return 103;
}

static int report(long ppid)
{
    /* Exit 0 only if the child sees itself as the parent's child and its
     * own copy of memory. */
    int ok = sys_getppid() == ppid && sys_getpid() != ppid && global == 1;
    global = 2;
    return ok ? 0 : 1;
}

int main(int argc, char **argv, char **envp)
{
    (void)argc, (void)argv, (void)envp;
    int status = 0;
    expect_ret("wait4_no_children", sys_wait4(-1, &status, 0, 0), -ECHILD);
    expect_ret("wait4_no_children_wnohang", sys_wait4(-1, &status, WNOHANG, 0), -ECHILD);
    expect_ret("wait4_not_a_child", sys_wait4(sys_getppid(), &status, 0, 0), -ECHILD);

    expect_ret("status_exit_0", child_status(code, 0), 0);
    expect_ret("status_exit_1", child_status(code, 1), 1 << 8);
    expect_ret("status_exit_42", child_status(code, 42), 42 << 8);
    expect_ret("status_exit_255", child_status(code, 255), 255 << 8);
    expect_ret("status_exit_256", child_status(code, 256), 0);
    expect_ret("status_exit_thread_3", child_status(exit_alone, 3), 3 << 8);
    expect_ret("status_exit_group_from_thread_5", child_status(thread_exit_group, 0), 5 << 8);
    expect_ret("status_sigkill", child_status(kill_self, SIGKILL), SIGKILL);
    expect_ret("status_sigterm", child_status(kill_self, SIGTERM), SIGTERM);
    expect_ret("status_sigsegv", child_status(store_to_null, 0), SIGSEGV);
    expect_ret("status_sigpipe", child_status(write_no_reader, 0), SIGPIPE);
    expect_ret("status_child_view", child_status(report, sys_getpid()), 0);
    expect_int("parent_memory_unchanged", global, 1);

    /* WNOHANG on a child blocked reading a pipe, then its end of file. */
    int p[2];
    check("pipe", sys_pipe(p) == 0);
    long pid = sys_fork();
    if (pid == 0) {
        char c;
        sys_close(p[1]);
        sys_exit_group(sys_read(p[0], &c, 1) == 0 ? 6 : 7);
    }
    sys_close(p[0]);
    expect_ret("wait4_wnohang_running", sys_wait4(pid, &status, WNOHANG, 0), 0);
    sys_close(p[1]);
    status = 0;
    expect_int("wait4_after_eof_is_pid", sys_wait4(pid, &status, 0, 0) == pid, 1);
    expect_int("status_child_saw_eof", status, 6 << 8);

    /* A bad status pointer. */
    pid = sys_fork();
    if (pid == 0)
        sys_exit_group(9);
    expect_ret("wait4_bad_status", sys_wait4(pid, (int *)0xffff800000000000UL, 0, 0), -EFAULT);
    put_ret("wait4_after_bad_status", sys_wait4(pid, &status, 0, 0));
    expect_ret("wait4_all_reaped", sys_wait4(-1, &status, WNOHANG, 0), -ECHILD);
    return checks_result();
}
