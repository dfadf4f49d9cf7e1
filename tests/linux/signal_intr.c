/* signal_intr: blocking calls a signal interrupts, as signal(7)'s
 * "Interruption of system calls and library functions by signal
 * handlers" lists them. A second thread (raw clone, as thread.c makes it)
 * sends the main thread SIGUSR1 with tgkill(2) while it is blocked:
 *   - read(2) on an empty pipe: EINTR without SA_RESTART; with it the read
 *     goes on and returns the byte the thread writes afterwards;
 *   - write(2) to a full pipe: EINTR, or restarted with SA_RESTART until
 *     the thread makes room; a write that had written part of its bytes
 *     returns that count either way;
 *   - FUTEX_WAIT without a timeout: EINTR, or restarted with SA_RESTART
 *     (then woken by FUTEX_WAKE: 0); with a timeout: EINTR even with
 *     SA_RESTART;
 *   - nanosleep(2) and clock_nanosleep(2): EINTR with the time left in
 *     rem, SA_RESTART or not; an absolute clock_nanosleep leaves rem alone;
 * and a signal sent to the process (kill) goes to a thread that does not
 * block it; blocked by every thread, it waits for the first to unblock it.
 * The thread keeps sending (every 100 ms) until the main thread's call has
 * returned, so a signal that came before the call blocked changes nothing
 * printed.
 */
#include "sig.h"

#define STACK 65536
#define MS 1000000L
#define PIPE_SIZE 65536

static unsigned char stack[STACK] __attribute__((aligned(16)));
static volatile int tid_word;
static long pid, main_tid;
static int pfd[2];
static volatile int hits, returned, go;
static volatile long h_tid;
static volatile int futex_word;
static unsigned char big[2 * PIPE_SIZE];
static char thread_buf[4096];

static void handler(int sig, struct k_siginfo *si, struct k_ucontext *uc)
{
    (void)sig, (void)si, (void)uc;
    hits++;
    h_tid = sys_gettid();
}

static long spawn(int (*fn)(void *), void *arg)
{
    tid_word = -1;
    return clone_thread(CLONE_THREAD_FLAGS, stack + STACK, (int *)&tid_word, (int *)&tid_word, 0, fn,
                        arg);
}

/* What the thread does once the main thread's call is interrupted. */
enum after { NOTHING, WRITE_BYTE, READ_SOME, WAKE_FUTEX };

/* Sends SIGUSR1 to the main thread until its call returns, then (or,
 * for the restarted calls, after the first signal) does `after`. */
static int poke(void *arg)
{
    enum after what = (enum after)(long)arg;
    sys_nanosleep(0, 50 * MS);
    sys_tgkill(pid, main_tid, SIGUSR1);
    if (what == NOTHING) {
        while (!returned) {
            sys_nanosleep(0, 100 * MS);
            if (!returned)
                sys_tgkill(pid, main_tid, SIGUSR1);
        }
        return 0;
    }
    sys_nanosleep(0, 50 * MS);
    switch (what) {
    case WRITE_BYTE:
        sys_write(pfd[1], "x", 1);
        break;
    case READ_SOME:
        /* A page: Linux's pipe takes a write into a free page only. */
        sys_read(pfd[0], thread_buf, sizeof thread_buf);
        break;
    case WAKE_FUTEX:
        while (!returned) {
            sys_futex(&futex_word, FUTEX_WAKE, 1, 0);
            sys_nanosleep(0, 20 * MS);
        }
        break;
    case NOTHING:
        break;
    }
    return 0;
}

static void start(enum after what)
{
    hits = 0;
    returned = 0;
    spawn(poke, (void *)(long)what);
}

static void finish(void)
{
    returned = 1;
    join_thread(&tid_word);
}

static void use_restart(int restart)
{
    sig_action(SIGUSR1, handler, SA_SIGINFO | (restart ? SA_RESTART : 0), 0);
}

static void reads(void)
{
    char c = 0;
    expect_ret("pipe", sys_pipe(pfd), 0);
    use_restart(0);
    start(NOTHING);
    long r = sys_read(pfd[0], &c, 1);
    finish();
    expect_ret("read_interrupted", r, -EINTR);
    expect_int("read_interrupted_handler_ran", hits >= 1, 1);
    expect_int("read_interrupted_handler_in_main", h_tid == main_tid, 1);

    use_restart(1);
    start(WRITE_BYTE);
    r = sys_read(pfd[0], &c, 1);
    finish();
    expect_ret("read_restarted", r, 1);
    expect_int("read_restarted_byte", c == 'x', 1);
    expect_int("read_restarted_handler_ran", hits, 1);
}

static void writes(void)
{
    for (unsigned i = 0; i < sizeof big; i++)
        big[i] = (unsigned char)i;
    /* 128 KiB into an empty 64 KiB pipe: 64 KiB go in, then the write
     * waits; the signal ends it with the count written. */
    use_restart(0);
    start(NOTHING);
    long r = sys_write(pfd[1], big, sizeof big);
    finish();
    expect_ret("write_partial_interrupted", r, PIPE_SIZE);
    expect_int("write_partial_handler_ran", hits >= 1, 1);
    /* The pipe is full: one more byte waits, then EINTR. */
    start(NOTHING);
    r = sys_write(pfd[1], "y", 1);
    finish();
    expect_ret("write_full_interrupted", r, -EINTR);
    /* With SA_RESTART it waits on until the thread reads a page. */
    use_restart(1);
    start(READ_SOME);
    r = sys_write(pfd[1], "z", 1);
    finish();
    expect_ret("write_full_restarted", r, 1);
    expect_int("write_full_restarted_handler_ran", hits, 1);
    /* Drain: the 64 KiB less the page read, and the "z". */
    long total = 0, want = PIPE_SIZE - (long)sizeof thread_buf + 1;
    int ok = 1;
    while (total < want) {
        r = sys_read(pfd[0], big + PIPE_SIZE, PIPE_SIZE);
        if (r <= 0) {
            ok = 0;
            break;
        }
        total += r;
    }
    expect_int("write_drained", ok && total == want && big[PIPE_SIZE + r - 1] == 'z', 1);
}

static void futexes(void)
{
    futex_word = 0;
    use_restart(0);
    start(NOTHING);
    long r = sys_futex(&futex_word, FUTEX_WAIT, 0, 0);
    finish();
    expect_ret("futex_wait_interrupted", r, -EINTR);
    expect_int("futex_wait_handler_ran", hits >= 1, 1);

    use_restart(1);
    start(WAKE_FUTEX);
    r = sys_futex(&futex_word, FUTEX_WAIT, 0, 0);
    finish();
    expect_ret("futex_wait_restarted_then_woken", r, 0);
    expect_int("futex_wait_restarted_handler_ran", hits, 1);

    /* Timed: not restarted, SA_RESTART or not. */
    struct timespec ts = {5, 0};
    start(NOTHING);
    r = sys_futex(&futex_word, FUTEX_WAIT, 0, &ts);
    finish();
    expect_ret("futex_timed_wait_interrupted", r, -EINTR);
}

static int rem_in(const struct timespec *rem, long max_sec)
{
    return rem->tv_sec >= 0 && rem->tv_nsec >= 0 && rem->tv_nsec < 1000000000L &&
           (rem->tv_sec < max_sec || (rem->tv_sec == max_sec && rem->tv_nsec == 0)) &&
           (rem->tv_sec > 0 || rem->tv_nsec > 0);
}

static void sleeps(void)
{
    for (int restart = 0; restart < 2; restart++) {
        use_restart(restart);
        struct timespec req = {5, 0}, rem = {77, 77};
        start(NOTHING);
        long r = syscall2(SYS_nanosleep, &req, &rem);
        finish();
        expect_ret(restart ? "nanosleep_sa_restart" : "nanosleep", r, -EINTR);
        expect_int(restart ? "nanosleep_sa_restart_rem" : "nanosleep_rem", rem_in(&rem, 5), 1);
    }
    use_restart(1);
    struct timespec req = {5, 0}, rem = {77, 77};
    start(NOTHING);
    long r = syscall4(230 /* clock_nanosleep */, CLOCK_MONOTONIC, 0, &req, &rem);
    finish();
    expect_ret("clock_nanosleep", r, -EINTR);
    expect_int("clock_nanosleep_rem", rem_in(&rem, 5), 1);
    struct timespec now;
    sys_clock_gettime(CLOCK_MONOTONIC, &now);
    struct timespec until = {now.tv_sec + 5, now.tv_nsec};
    rem.tv_sec = 77, rem.tv_nsec = 77;
    start(NOTHING);
    r = syscall4(230, CLOCK_MONOTONIC, 1 /* TIMER_ABSTIME */, &until, &rem);
    finish();
    expect_ret("clock_nanosleep_abstime", r, -EINTR);
    expect_int("clock_nanosleep_abstime_rem_untouched", rem.tv_sec == 77 && rem.tv_nsec == 77, 1);
}

/* ---- Signals to the process ------------------------------------------------- */

static volatile long reader_result, thread_tid;
static volatile int reader_ready;

static int blocked_reader(void *arg)
{
    (void)arg;
    char c = 0;
    thread_tid = sys_gettid();
    reader_ready = 1;
    reader_result = sys_read(pfd[0], &c, 1);
    if (c != 'p')
        reader_result = -1000;
    return 0;
}

static int unblock_later(void *arg)
{
    (void)arg;
    thread_tid = sys_gettid();
    sig_setmask(SIG_BLOCK, SIGBIT(SIGUSR1));
    reader_ready = 1;
    while (!go)
        sys_futex((volatile int *)&go, FUTEX_WAIT, 0, 0);
    sig_setmask(SIG_UNBLOCK, SIGBIT(SIGUSR1));
    return hits;
}

static void process_signals(void)
{
    /* The main thread blocks SIGUSR1, the reader does not: it takes it,
     * and its read (SA_RESTART) goes on. */
    use_restart(1);
    hits = 0;
    h_tid = 0;
    reader_ready = 0;
    spawn(blocked_reader, 0);
    sig_setmask(SIG_BLOCK, SIGBIT(SIGUSR1));
    while (!reader_ready)
        sys_nanosleep(0, MS);
    sys_nanosleep(0, 50 * MS);
    expect_ret("kill_process", sys_kill(pid, SIGUSR1), 0);
    sys_nanosleep(0, 50 * MS);
    expect_int("kill_process_handler_ran", hits, 1);
    expect_int("kill_process_taken_by_thread", h_tid == thread_tid, 1);
    sys_write(pfd[1], "p", 1);
    join_thread(&tid_word);
    expect_ret("kill_process_thread_read", reader_result, 1);
    sig_setmask(SIG_SETMASK, 0);
    expect_int("kill_process_not_again_in_main", hits, 1);

    /* Every thread blocks it: it waits, for the first that unblocks. */
    hits = 0;
    h_tid = 0;
    go = 0;
    reader_ready = 0;
    sig_setmask(SIG_BLOCK, SIGBIT(SIGUSR1));
    spawn(unblock_later, 0);
    while (!reader_ready)
        sys_nanosleep(0, MS);
    expect_ret("kill_all_blocked", sys_kill(pid, SIGUSR1), 0);
    sys_nanosleep(0, 50 * MS);
    expect_int("kill_all_blocked_waits", hits, 0);
    go = 1;
    sys_futex((volatile int *)&go, FUTEX_WAKE, 1, 0);
    join_thread(&tid_word);
    expect_int("kill_all_blocked_taken_at_unblock", hits, 1);
    expect_int("kill_all_blocked_taken_by_thread", h_tid == thread_tid, 1);
    sig_setmask(SIG_SETMASK, 0);
    expect_int("kill_all_blocked_once", hits, 1);
}

int main(int argc, char **argv, char **envp)
{
    (void)argc, (void)argv, (void)envp;
    pid = sys_getpid();
    main_tid = sys_gettid();
    reads();
    writes();
    futexes();
    sleeps();
    process_signals();
    sig_disposition(SIGUSR1, SIG_DFL);
    return checks_result();
}
