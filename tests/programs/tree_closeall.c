/*
 * tree_closeall: a parent and a child that each close every fd they do not use, as daemons do
 * after they fork (a process tree, issue 13): the child closes every fd up to its fd limit one by
 * one with close() but the write end of a pipe to its parent; the parent moves the read end to
 * fd 3 and closes everything above it with closefrom(4) (and close_range, the system call's
 * libc function, a second time). Both keep running: the child computes a value per round from its
 * private state and writes it to the pipe; the parent prints "step r v=..." for each and, at the
 * end, reaps the child (exit status 7) and prints "result <hex>". Deterministic.
 *
 * Usage: tree_closeall [ROUNDS=60] [DELAY_MS=40]
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tree_common.h"

int main(int argc, char **argv)
{
    long rounds = argc > 1 ? atol(argv[1]) : 60;
    long delay = argc > 2 ? atol(argv[2]) : 40;
    setvbuf(stdout, NULL, _IOLBF, 0);
    int p[2];
    if (pipe(p) != 0)
        return 2;
    printf("start tree_closeall rounds=%ld\n", rounds);
    pid_t pid = fork();
    if (pid < 0)
        return 2;
    if (pid == 0) {
        long max = sysconf(_SC_OPEN_MAX);
        for (long fd = 0; fd < max; fd++)
            if (fd != p[1])
                close((int)fd);
        uint64_t state = 0x5eed;
        for (long r = 1; r <= rounds; r++) {
            state = mix(state + (uint64_t)r);
            if (write(p[1], &state, sizeof state) != sizeof state)
                _exit(4);
            sleep_ms(delay);
        }
        _exit(7);
    }
    if (dup2(p[0], 3) != 3)
        return 2;
    closefrom(4);
    if (close_range(4, ~0U, 0) != 0)
        return 2;
    uint64_t h = 0;
    for (long r = 1; r <= rounds; r++) {
        uint64_t v;
        size_t got = 0;
        while (got < sizeof v) {
            ssize_t n = read(3, (char *)&v + got, sizeof v - got);
            if (n <= 0) {
                printf("error reading the child's value\n");
                return 2;
            }
            got += (size_t)n;
        }
        h = mix(h ^ v ^ ((uint64_t)r << 40));
        printf("step %ld v=%llu\n", r, (unsigned long long)(v % 1000003));
    }
    int st;
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 7) {
        printf("error the child's status\n");
        return 2;
    }
    printf("result %016llx\n", (unsigned long long)h);
    return 0;
}
