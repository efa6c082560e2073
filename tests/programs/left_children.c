/*
 * left_children: a program with child processes and input from a pipe, what a restart cannot
 * bring back (issue 11). It starts `sleep 300` (a running child) and a child that exits at once
 * and is not waited for (a zombie), reads the first 6 bytes of its stdin, then prints
 * "ready <sleep pid> <zombie pid>" and "step N" lines every DELAY_MS until a file named `go`
 * appears; then it kills and waits for its children and prints how many it found:
 * "result children=<n> stdin=<what it reads next>".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long delay = argc > 1 ? atol(argv[1]) : 20;
    setvbuf(stdout, NULL, _IOLBF, 0);
    pid_t sleeper = fork();
    if (sleeper == 0) {
        execlp("sleep", "sleep", "300", (char *)NULL);
        _exit(127);
    }
    pid_t zombie = fork();
    if (zombie == 0)
        _exit(0);
    char first[7] = { 0 };
    if (read(0, first, 6) != 6)
        return 3;
    printf("start left_children read=%s", first);
    printf("ready %d %d\n", (int)sleeper, (int)zombie);
    struct timespec ts = { delay / 1000, (delay % 1000) * 1000000L };
    for (long step = 1; access("go", F_OK) != 0; step++) {
        printf("step %ld\n", step);
        nanosleep(&ts, NULL);
    }
    kill(sleeper, SIGKILL);
    int found = 0;
    while (waitpid(-1, NULL, 0) > 0)
        found++;
    char next[16] = { 0 };
    ssize_t n = read(0, next, sizeof next - 1);
    printf("result children=%d (%s) stdin=%zd\n", found, strerror(errno), n);
    return 0;
}
