/* thread: a thread made with a raw clone(2) and joined the way a thread
 * library does it: CLONE_PARENT_SETTID stores the new thread's id in a
 * word, CLONE_CHILD_CLEARTID makes the kernel clear that word and
 * FUTEX_WAKE it when the thread exits, and the joiner FUTEX_WAITs on it.
 * Also: the thread shares memory and descriptors, has its own id but the
 * process's pid, a read blocked in one thread is ended by a write in
 * another, kill(2) of the thread's own id reaches its process (Linux finds
 * the task, then signals its thread group) while -tid names no process
 * group, and clone refuses flag combinations clone(2) calls invalid.
 */
#include "sys.h"

#define STACK 65536

static unsigned char stack[STACK] __attribute__((aligned(16)));
static volatile int tid_word;
static volatile long seen_tid, seen_pid, read_result, kill_tid, kill_minus_tid;
static volatile int ran;
static int shared_pipe[2];
static volatile int made_pipe;
static char got;

static int body(void *arg)
{
    seen_tid = sys_gettid();
    seen_pid = sys_getpid();
    kill_tid = sys_kill(seen_tid, 0);
    kill_minus_tid = sys_kill(-seen_tid, 0);
    ran = (int)(long)arg;
    return 7; /* the exit code of one thread is nobody's status */
}

static int make_pipe(void *arg)
{
    (void)arg;
    made_pipe = sys_pipe(shared_pipe) == 0;
    return 0;
}

static int blocked_reader(void *arg)
{
    (void)arg;
    read_result = sys_read(shared_pipe[0], &got, 1);
    return 0;
}

static long spawn(int (*fn)(void *), void *arg)
{
    tid_word = -1;
    return clone_thread(CLONE_THREAD_FLAGS, stack + STACK, (int *)&tid_word, (int *)&tid_word, 0, fn,
                        arg);
}

int main(int argc, char **argv, char **envp)
{
    (void)argc, (void)argv, (void)envp;
    long pid = sys_getpid(), tid = sys_gettid();
    expect_int("main_tid_is_pid", tid == pid, 1);

    long t = spawn(body, (void *)42L);
    expect_int("clone_returned_tid", t > 0, 1);
    /* The kernel wrote the id before clone returned (the thread may even be
     * gone already, its word cleared). */
    expect_int("parent_settid_matches", tid_word == t || tid_word == 0, 1);
    join_thread(&tid_word);
    expect_int("tid_cleared_at_exit", tid_word, 0);
    expect_int("thread_ran", ran, 42);
    expect_int("thread_tid_is_clone_result", seen_tid == t, 1);
    expect_int("thread_tid_differs_from_main", seen_tid != tid, 1);
    expect_int("thread_pid_is_process_pid", seen_pid == pid, 1);
    expect_ret("kill_thread_tid", kill_tid, 0);
    expect_ret("kill_minus_thread_tid", kill_minus_tid, -ESRCH);

    /* Descriptors are shared (CLONE_FILES): a pipe the thread made is ours. */
    spawn(make_pipe, 0);
    join_thread(&tid_word);
    expect_int("thread_made_pipe", made_pipe, 1);
    expect_ret("write_threads_pipe", sys_write(shared_pipe[1], "q", 1), 1);
    char c = 0;
    expect_ret("read_threads_pipe", sys_read(shared_pipe[0], &c, 1), 1);
    expect_int("threads_pipe_data", c == 'q', 1);

    /* A read blocked in the thread, ended by our write 50 ms later. */
    read_result = 99;
    spawn(blocked_reader, 0);
    sys_nanosleep(0, 50000000);
    expect_int("reader_still_blocked", read_result, 99);
    expect_ret("write_to_blocked_reader", sys_write(shared_pipe[1], "r", 1), 1);
    join_thread(&tid_word);
    expect_ret("blocked_read_result", read_result, 1);
    expect_int("blocked_read_data", got == 'r', 1);
    sys_close(shared_pipe[0]);
    sys_close(shared_pipe[1]);

    /* clone(2): CLONE_THREAD needs CLONE_SIGHAND, CLONE_SIGHAND needs CLONE_VM. */
    int dummy = 0;
    expect_ret("clone_thread_without_sighand",
               clone_thread(CLONE_VM | CLONE_THREAD, stack + STACK, &dummy, &dummy, 0, body, 0), -EINVAL);
    expect_ret("clone_sighand_without_vm",
               clone_thread(CLONE_SIGHAND, stack + STACK, &dummy, &dummy, 0, body, 0), -EINVAL);
    return checks_result();
}
