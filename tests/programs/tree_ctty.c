/*
 * tree_ctty: a session of the tree whose controlling terminal is a pseudo-terminal of the tree,
 * held by no fd (zdtm tty00, tty03), as a terminal emulator's shell or sshd's session has: the
 * parent holds the master; its child calls setsid, opens the slave by its name (it becomes the
 * session's controlling terminal), closes it, forks a grandchild that leads a process group of
 * its own and makes that group the terminal's foreground group.
 *
 * Usage: tree_ctty [ROUNDS=40] [DELAY_MS=40]
 * Each round the child checks that /dev/tty opens and is that terminal, that its session is the
 * terminal's (TIOCGSID) and that the grandchild's group is in the foreground (tcgetpgrp), and
 * sends the parent a word with one bit each; the parent checks TIOCGSID on the master (the
 * child's session) and prints "step r parent=.. child=..". At the end the parent closes the
 * master: the terminal hangs up, and the child, the session's controlling process, gets SIGHUP
 * (it says so through the pipe), reaps the grandchild and exits with status 7. The parent
 * prints "result <hex>". Deterministic.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "tree_common.h"

static volatile sig_atomic_t hup;

static void on_hup(int sig)
{
    (void)sig;
    hup = 1;
}

/* Bit 0: /dev/tty is the slave; bit 1: its session is ours; bit 2: the grandchild's group is
 * in the foreground. */
static uint64_t look(dev_t slave, pid_t grandchild)
{
    uint64_t w = 0;
    int t = open("/dev/tty", O_RDWR | O_NOCTTY);
    if (t < 0)
        return 0;
    unsigned int dev = 0; /* the terminal behind /dev/tty, as the kernel encodes it */
    unsigned int want = (minor(slave) & 0xff) | (major(slave) << 8) | ((minor(slave) & ~0xffu) << 12);
    if (ioctl(t, TIOCGDEV, &dev) == 0 && dev == want)
        w |= 1;
    pid_t sid = 0;
    if (ioctl(t, TIOCGSID, &sid) == 0 && sid == getpid())
        w |= 2;
    if (tcgetpgrp(t) == grandchild)
        w |= 4;
    close(t);
    return w;
}

static void child(const char *name, int out, long rounds, long delay)
{
    signal(SIGHUP, on_hup);
    if (setsid() < 0)
        _exit(3);
    int s = open(name, O_RDWR); /* no O_NOCTTY: our controlling terminal now */
    struct stat st;
    if (s < 0 || fstat(s, &st) != 0)
        _exit(3);
    pid_t g = fork();
    if (g < 0)
        _exit(3);
    if (g == 0) {
        setpgid(0, 0);
        for (;;)
            pause();
    }
    setpgid(g, g);
    if (tcsetpgrp(s, g) != 0)
        _exit(3);
    close(s);
    for (long r = 1; r <= rounds; r++) {
        uint64_t w = look(st.st_rdev, g);
        xfer(out, &w, sizeof w, 1);
        sleep_ms(delay);
    }
    /* The parent closes the master now: wait for the hangup's SIGHUP. */
    for (int i = 0; i < 500 && !hup; i++)
        sleep_ms(10);
    uint64_t w = hup ? 0x48 : 0;
    xfer(out, &w, sizeof w, 1);
    kill(g, SIGKILL);
    waitpid(g, NULL, 0);
    _exit(7);
}

int main(int argc, char **argv)
{
    long rounds = argc > 1 ? atol(argv[1]) : 40;
    long delay = argc > 2 ? atol(argv[2]) : 40;
    setvbuf(stdout, NULL, _IOLBF, 0);
    int p[2];
    if (pipe(p) != 0)
        return 2;
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    if (m < 0 || grantpt(m) != 0 || unlockpt(m) != 0)
        return 2;
    printf("start tree_ctty rounds=%ld\n", rounds);
    pid_t pid = fork();
    if (pid < 0)
        return 2;
    if (pid == 0) {
        char name[64];
        if (ptsname_r(m, name, sizeof name) != 0)
            _exit(3);
        close(m);
        close(p[0]);
        child(name, p[1], rounds, delay);
    }
    close(p[1]);
    uint64_t h = 0;
    for (long r = 1; r <= rounds; r++) {
        uint64_t c;
        xfer(p[0], &c, sizeof c, 0);
        pid_t sid = 0;
        uint64_t me = ioctl(m, TIOCGSID, &sid) == 0 && sid == pid;
        h = mix(h ^ me ^ (c << 8) ^ ((uint64_t)r << 40));
        printf("step %ld parent=%llx child=%llx\n", r, (unsigned long long)me, (unsigned long long)c);
    }
    close(m);
    uint64_t c;
    xfer(p[0], &c, sizeof c, 0);
    int st;
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 7) {
        printf("error the child's status\n");
        return 2;
    }
    printf("result %016llx hup=%llx\n", (unsigned long long)h, (unsigned long long)c);
    return 0;
}
