/* smp: threads on two CPUs at once, as a program sees them on a machine
 * with at least two (./run.sh runs both kernels with -smp 2):
 *   - a thread pinned to each CPU by sched_setaffinity(2) runs there, as
 *     getcpu(2) says, and both spin at the same time (each waits for the
 *     other's mark, so one CPU alone would never get past it);
 *   - a thread on CPU 1 blocked in read(2) on a pipe is woken by a write
 *     from CPU 0;
 *   - a signal sent from CPU 0 reaches a thread spinning in user mode on
 *     CPU 1 (it takes it on its way back from an interrupt), whose handler
 *     ends the spin;
 *   - exit_group(2) from CPU 0 ends a thread spinning on CPU 1: the
 *     process's status is the main thread's, 0.
 * Nothing printed depends on timing: the sleeps only make it likely that
 * the reader is blocked and the spinner spinning when they are reached.
 */
#include "sig.h"
#include "sys.h"

#define SYS_getcpu 309
#define STACK 65536

static unsigned char stacks[4][STACK] __attribute__((aligned(16)));
static int tids[4];
static volatile int marks[2];
static volatile long ran_on[2];
static int p[2];
static volatile long read_result, reader_cpu = -1;
static volatile int spinning, stop;
static volatile long spinner_cpu = -1, handler_cpu = -1;

static long cpu_now(void)
{
    unsigned cpu = ~0u, node = ~0u;
    long r = syscall3(SYS_getcpu, &cpu, &node, 0);
    return r < 0 ? r : (long)cpu;
}

static int pinned(void *arg)
{
    int me = (int)(long)arg;
    long pinned = pin(me);
    marks[me] = 1;
    if (pinned != 0) {
        /* Reported, not waited on: the other may never come. */
        ran_on[me] = pinned;
        return 1;
    }
    /* Both marks set means both threads ran at once, one on each CPU. */
    while (!marks[1 - me])
        cpu_relax();
    ran_on[me] = cpu_now();
    return 0;
}

static int reader(void *arg)
{
    (void)arg;
    char c;
    long pinned = pin(1);
    read_result = sys_read(p[0], &c, 1);
    if (pinned != 0)
        read_result = pinned;
    reader_cpu = cpu_now();
    return 0;
}

static void on_usr1(int sig, struct k_siginfo *info, struct k_ucontext *uc)
{
    (void)sig, (void)info, (void)uc;
    handler_cpu = cpu_now();
    stop = 1;
}

static int spinner(void *arg)
{
    (void)arg;
    /* Spins whether or not the pin held: main waits for the mark. */
    long pinned = pin(1);
    spinner_cpu = pinned == 0 ? cpu_now() : pinned;
    spinning = 1;
    while (!stop)
        cpu_relax();
    return 0;
}

static int spin_forever(void *arg)
{
    (void)arg;
    pin(1);
    spinning = 2;
    while (spinning == 2)
        cpu_relax();
    return 0; /* never: nothing changes the mark */
}

static long spawn(int i, int (*fn)(void *), void *arg)
{
    tids[i] = -1;
    return clone_thread(CLONE_THREAD_FLAGS, stacks[i] + STACK, &tids[i], &tids[i], 0, fn, arg);
}

int main(int argc, char **argv, char **envp)
{
    (void)argc, (void)argv, (void)envp;
    expect_ret("pin_main_cpu0", pin(0), 0);
    expect_int("main_on_cpu0", cpu_now(), 0);
    unsigned cpu = 0;
    expect_ret("getcpu_null_node", syscall3(SYS_getcpu, &cpu, 0, 0), 0);
    expect_ret("getcpu_bad_cpu_pointer", syscall3(SYS_getcpu, 8, 0, 0), -EFAULT);

    expect_int("clone_pinned0", spawn(0, pinned, (void *)0L) > 0, 1);
    expect_int("clone_pinned1", spawn(1, pinned, (void *)1L) > 0, 1);
    join_thread(&tids[0]);
    join_thread(&tids[1]);
    expect_int("pinned0_ran_on", ran_on[0], 0);
    expect_int("pinned1_ran_on", ran_on[1], 1);

    expect_ret("pipe", sys_pipe(p), 0);
    expect_int("clone_reader", spawn(2, reader, 0) > 0, 1);
    sys_nanosleep(0, 30000000);
    expect_ret("write_from_cpu0", sys_write(p[1], "x", 1), 1);
    join_thread(&tids[2]);
    expect_int("reader_read", read_result, 1);
    expect_int("reader_on_cpu", reader_cpu, 1);
    expect_int("writer_on_cpu", cpu_now(), 0);

    expect_ret("sigaction_usr1", sig_action(SIGUSR1, on_usr1, 0, 0), 0);
    expect_int("clone_spinner", spawn(3, spinner, 0) > 0, 1);
    while (spinning != 1)
        cpu_relax();
    sys_nanosleep(0, 20000000);
    long spinner_tid = tids[3];
    expect_ret("tgkill_spinner", syscall3(SYS_tgkill, sys_getpid(), spinner_tid, SIGUSR1), 0);
    join_thread(&tids[3]);
    expect_int("spinner_on_cpu", spinner_cpu, 1);
    expect_int("handler_on_cpu", handler_cpu, 1);
    expect_int("spin_ended_by_signal", stop, 1);

    expect_int("clone_spin_forever", spawn(0, spin_forever, 0) > 0, 1);
    while (spinning != 2)
        cpu_relax();
    sys_nanosleep(0, 20000000);
    put_int("exit_group_with_spinner_on_cpu1", 1);
    /* exit_group: the spinner must be stopped for the process to end. */
    return checks_result();
}
