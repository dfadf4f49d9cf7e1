/* init.c: /init of the oracle's initramfs, run by Linux as process 1.
 *
 * Mounts /proc, runs every program in /bin in name order, each as
 *     fork; child: alarm(PROGRAM_TIMEOUT), execve("/bin/NAME", [NAME, "a", "b"], ENV)
 *     parent: wait4(child)
 * and prints
 *     ==== NAME                   before it
 *     ==== NAME status=N          after it: N is its exit code,
 *     ==== NAME status=signal:N   or the signal that ended it
 * then "==== done programs=N" and powers off. run.sh splits the serial
 * output at these lines (target/linux-out/NAME.txt). If /init returned,
 * Linux would panic, so every path ends in reboot(POWER_OFF).
 */
#include "sys.h"

#define PROGRAM_TIMEOUT 30 /* seconds; a hung program is killed by SIGALRM */
#define MAX_PROGRAMS 64

#define LINUX_REBOOT_MAGIC1 0xfee1dead
#define LINUX_REBOOT_MAGIC2 672274793
#define LINUX_REBOOT_CMD_POWER_OFF 0x4321fedc

static void say(const char *a, const char *b, const char *c)
{
    struct line l = {.len = 0};
    out_str(&l, a);
    out_str(&l, b);
    out_str(&l, c);
    out_end(&l);
}

__attribute__((noreturn)) static void power_off(void)
{
    syscall4(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, LINUX_REBOOT_CMD_POWER_OFF, 0);
    say("init: reboot(POWER_OFF) failed", "", "");
    for (;;)
        sys_nanosleep(1000, 0);
}

/* The console: the kernel opens /dev/console for /init when the initramfs
 * has it. Otherwise mount devtmpfs and open it ourselves. */
static void ensure_console(void)
{
    if (syscall2(SYS_fcntl, 1, F_GETFD) >= 0)
        return;
    syscall2(SYS_mkdir, "/dev", 0755);
    syscall5(SYS_mount, "devtmpfs", "/dev", "devtmpfs", 0, 0);
    long fd = syscall3(SYS_open, "/dev/console", O_RDWR, 0);
    if (fd < 0)
        power_off(); /* nowhere to say anything */
    for (int i = 0; i < 3; i++)
        if (fd != i)
            syscall2(SYS_dup2, fd, i);
    if (fd > 2)
        sys_close((int)fd);
}

struct dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

static char names[MAX_PROGRAMS][64];
static int count;

static void list_programs(void)
{
    static char buf[8192] __attribute__((aligned(8)));
    long fd = syscall3(SYS_open, "/bin", O_RDONLY | O_DIRECTORY, 0);
    if (fd < 0) {
        say("init: cannot open /bin", "", "");
        return;
    }
    for (;;) {
        long n = syscall3(SYS_getdents64, fd, buf, sizeof buf);
        if (n <= 0)
            break;
        for (long off = 0; off < n;) {
            struct dirent64 *d = (struct dirent64 *)(buf + off);
            off += d->d_reclen;
            if (d->d_name[0] == '.' || count == MAX_PROGRAMS || str_len(d->d_name) >= 64)
                continue;
            memcpy(names[count], d->d_name, str_len(d->d_name) + 1);
            count++;
        }
    }
    sys_close((int)fd);
    /* Name order (bytewise), insertion sort. */
    for (int i = 1; i < count; i++) {
        char tmp[64];
        memcpy(tmp, names[i], sizeof tmp);
        int j = i;
        while (j > 0) {
            const unsigned char *a = (const unsigned char *)names[j - 1];
            const unsigned char *b = (const unsigned char *)tmp;
            while (*a && *a == *b)
                a++, b++;
            if (*a <= *b)
                break;
            memcpy(names[j], names[j - 1], sizeof tmp);
            j--;
        }
        memcpy(names[j], tmp, sizeof tmp);
    }
}

static void run(const char *name)
{
    char path[80];
    size_t n = str_len(name);
    memcpy(path, "/bin/", 5);
    memcpy(path + 5, name, n + 1);
    say("==== ", name, "");
    long pid = sys_fork();
    if (pid == 0) {
        char *argv[] = {(char *)name, "a", "b", 0};
        char *envp[] = {"ORACLE=1", 0};
        syscall1(SYS_alarm, PROGRAM_TIMEOUT);
        long r = syscall3(SYS_execve, path, argv, envp);
        struct line l = {.len = 0};
        out_str(&l, "init: execve failed: ");
        out_ret(&l, r);
        out_end(&l);
        sys_exit_group(127);
    }
    struct line l = {.len = 0};
    out_str(&l, "==== ");
    out_str(&l, name);
    if (pid < 0) {
        out_str(&l, " status=fork-failed:");
        out_ret(&l, pid);
        out_end(&l);
        return;
    }
    int status = 0;
    long r;
    do
        r = sys_wait4(pid, &status, 0, 0);
    while (r == -EINTR);
    if (r != pid) {
        out_str(&l, " status=wait4-failed:");
        out_ret(&l, r);
    } else if ((status & 0x7f) == 0) {
        out_str(&l, " status=");
        out_dec(&l, (status >> 8) & 0xff);
    } else {
        out_str(&l, " status=signal:");
        out_dec(&l, status & 0x7f);
    }
    out_end(&l);
}

int main(int argc, char **argv, char **envp)
{
    (void)argc, (void)argv, (void)envp;
    ensure_console();
    syscall2(SYS_mkdir, "/proc", 0555);
    long r = syscall5(SYS_mount, "proc", "/proc", "proc", 0, 0);
    if (r < 0) {
        struct line l = {.len = 0};
        out_str(&l, "init: mount /proc failed: ");
        out_ret(&l, r);
        out_end(&l);
    }
    list_programs();
    for (int i = 0; i < count; i++)
        run(names[i]);
    struct line l = {.len = 0};
    out_str(&l, "==== done programs=");
    out_dec(&l, count);
    out_end(&l);
    power_off();
}
