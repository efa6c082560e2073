/*
 * tree_pty_shared: DMTCP's pty2 as a deterministic test. The parent opens /dev/ptmx and forks
 * the child, which inherits the master too; the child calls setsid and opens the slave by its
 * name as fds 0-2 (its controlling terminal) and records the terminal's settings.
 *
 * Usage: tree_pty_shared [ROUNDS=40] [DELAY_MS=40]
 * The child, each round r = 1..ROUNDS, checks that it still leads its session and process
 * group, that the terminal's session is its own (tcgetsid), that the terminal's settings are
 * those it recorded (c_iflag, c_oflag, c_cflag, c_lflag) and that its parent is alive
 * (kill(ppid, 0)), computes v from its private running state and sends "r v ok" through a pipe;
 * the parent prints "step r v=.. bad=N" (N: rounds with a check that failed) and at the end,
 * once it reaped the child (status 0), "result <hex> bad=N". Deterministic. The slave's name goes
 * to stderr ("slave /dev/pts/N"), for a test that takes that index on the host before a restart.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "tree_common.h"

static void child(const char *slave, long rounds, long delay, int out)
{
    if (setsid() < 0)
        _exit(3);
    close(0);
    close(1);
    close(2);
    /* The first terminal a session leader opens is its controlling terminal. */
    int fd = open(slave, O_RDWR);
    if (fd != 0 || dup(fd) != 1 || dup(fd) != 2)
        _exit(3);
    struct termios orig;
    if (tcgetattr(1, &orig) != 0)
        _exit(3);
    pid_t ppid = getppid();
    uint64_t state = 0x9772;
    for (long r = 1; r <= rounds; r++) {
        struct termios now;
        int t = open(slave, O_RDWR);
        uint64_t ok = getsid(0) == getpid() && getpgrp() == getpid();
        ok |= (uint64_t)(t >= 0 && tcgetsid(t) == getpid()) << 1;
        ok |= (uint64_t)(tcgetattr(1, &now) == 0 && now.c_iflag == orig.c_iflag && now.c_oflag == orig.c_oflag && now.c_cflag == orig.c_cflag && now.c_lflag == orig.c_lflag) << 2;
        ok |= (uint64_t)(kill(ppid, 0) == 0) << 3;
        if (t >= 0)
            close(t);
        state = mix(state + (uint64_t)r);
        uint64_t w[3] = { (uint64_t)r, state, ok };
        xfer(out, w, sizeof w, 1);
        sleep_ms(delay);
    }
    _exit(0);
}

int main(int argc, char **argv)
{
    long rounds = argc > 1 ? atol(argv[1]) : 40;
    long delay = argc > 2 ? atol(argv[2]) : 40;
    setvbuf(stdout, NULL, _IOLBF, 0);
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    char *slave = m < 0 || grantpt(m) != 0 || unlockpt(m) != 0 ? NULL : ptsname(m);
    int p[2];
    if (!slave || pipe(p) != 0) {
        printf("error pty\n");
        return 2;
    }
    printf("start tree_pty_shared rounds=%ld\n", rounds);
    fprintf(stderr, "slave %s\n", slave);
    pid_t c = fork();
    if (c < 0)
        return 2;
    if (c == 0) {
        close(p[0]);
        child(slave, rounds, delay, p[1]);
    }
    close(p[1]);
    uint64_t h = 0;
    long bad = 0;
    for (long r = 1; r <= rounds; r++) {
        uint64_t w[3];
        xfer(p[0], w, sizeof w, 0);
        if (w[0] != (uint64_t)r)
            return 2;
        bad += w[2] != 15;
        h = mix(h ^ w[1] ^ w[2] << 56);
        printf("step %ld v=%llu bad=%ld\n", r, (unsigned long long)(h % 1000003), bad);
    }
    reap_exited(c, 0);
    printf("result %016llx bad=%ld\n", (unsigned long long)h, bad);
    return 0;
}
