/*
 * tree_stdio_closed: processes that closed their stdin, stdout and stderr keep them closed across
 * a restart (zdtm fd: a child that closed every fd found fd 0 on /dev/null after a restart).
 * The parent closes its stdin only (it prints the steps); its child, a daemon-like worker,
 * closes fds 0, 1 and 2 and talks to the parent through a pipe. Each round both look which of
 * fds 0-2 are open (a bit each) and what number the next open() gets (0 when fd 0 is closed, as
 * a daemon that reopens /dev/null on fd 0 expects), and close that file again; the child sends
 * its word through the pipe and the parent prints "step r parent=.. child=..". At the end the
 * parent reaps the child and prints "result <hex>". Deterministic.
 *
 * Usage: tree_stdio_closed [ROUNDS=40] [DELAY_MS=40]
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tree_common.h"

/* Bits 0-2: fds 0-2 open; bits 8-15: the fd open() gives now. */
static uint64_t look(void)
{
    uint64_t w = 0;
    for (int fd = 0; fd < 3; fd++)
        if (fcntl(fd, F_GETFD) != -1)
            w |= 1u << fd;
    int n = open("/dev/null", O_RDONLY);
    if (n < 0)
        return 0xdead;
    close(n);
    return w | (uint64_t)(n & 0xff) << 8;
}

int main(int argc, char **argv)
{
    long rounds = argc > 1 ? atol(argv[1]) : 40;
    long delay = argc > 2 ? atol(argv[2]) : 40;
    setvbuf(stdout, NULL, _IOLBF, 0);
    int p[2];
    if (pipe(p) != 0)
        return 2;
    printf("start tree_stdio_closed rounds=%ld\n", rounds);
    pid_t pid = fork();
    if (pid < 0)
        return 2;
    if (pid == 0) {
        close(p[0]);
        close(0);
        close(1);
        close(2);
        for (long r = 1; r <= rounds; r++) {
            uint64_t w = look();
            xfer(p[1], &w, sizeof w, 1);
            sleep_ms(delay);
        }
        _exit(7);
    }
    close(p[1]);
    close(0);
    uint64_t h = 0;
    for (long r = 1; r <= rounds; r++) {
        uint64_t c, me = look();
        xfer(p[0], &c, sizeof c, 0);
        h = mix(h ^ me ^ (c << 16) ^ ((uint64_t)r << 40));
        printf("step %ld parent=%llx child=%llx\n", r, (unsigned long long)me, (unsigned long long)c);
    }
    int st;
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 7) {
        printf("error the child's status\n");
        return 2;
    }
    printf("result %016llx\n", (unsigned long long)h);
    return 0;
}
