/*
 * tree_subreaper_session: a daemon that double-forked under a child subreaper (a job runner,
 * tini, a session manager): the session it lives in lost its leader, and its parent is the
 * subreaper, which is in another session (zdtm session02's first part).
 *
 * Usage: tree_subreaper_session [ROUNDS=40] [DELAY_MS=40]
 * The root forks S, which becomes a child subreaper and forks A; A calls setsid, forks D and
 * exits; S reaps A, and D is S's child now, in A's session and process group. Each round D
 * checks that its parent is S, its session and process group A's (a bit each), computes a
 * value from its private state and sends both through a pipe; the root prints "step r v=..
 * ids=..". At the end D exits with status 7, S reaps it and exits with D's status, and the root
 * reaps S and prints "result <hex>". Deterministic.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tree_common.h"

static void daemon_loop(int out, pid_t s, pid_t a, long rounds, long delay)
{
    uint64_t state = 0xda3;
    while (getppid() != s) /* until A has exited and we are S's */
        sleep_ms(1);
    for (long r = 1; r <= rounds; r++) {
        state = mix(state + (uint64_t)r);
        uint64_t ids = (getppid() == s) | (getsid(0) == a) << 1 | (getpgrp() == a) << 2;
        uint64_t w[2] = { state, ids };
        xfer(out, w, sizeof w, 1);
        sleep_ms(delay);
    }
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
    printf("start tree_subreaper_session rounds=%ld\n", rounds);
    pid_t s = fork();
    if (s < 0)
        return 2;
    if (s == 0) {
        close(p[0]);
        if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
            _exit(3);
        pid_t me = getpid();
        pid_t a = fork();
        if (a < 0)
            _exit(3);
        if (a == 0) {
            if (setsid() < 0)
                _exit(3);
            pid_t leader = getpid();
            sleep_ms(100); /* (as above) */
            pid_t d = fork();
            if (d < 0)
                _exit(3);
            if (d == 0)
                daemon_loop(p[1], me, leader, rounds, delay);
            _exit(0);
        }
        close(p[1]);
        int st;
        if (waitpid(a, &st, 0) != a || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            _exit(4);
        /* D is ours now: wait for it. */
        pid_t d = wait(&st);
        _exit(d > 0 && WIFEXITED(st) ? WEXITSTATUS(st) : 5);
    }
    close(p[1]);
    uint64_t h = 0;
    for (long r = 1; r <= rounds; r++) {
        uint64_t w[2];
        xfer(p[0], w, sizeof w, 0);
        h = mix(h ^ w[0] ^ (w[1] << 56) ^ ((uint64_t)r << 40));
        printf("step %ld v=%llu ids=%llx\n", r, (unsigned long long)(w[0] % 1000003), (unsigned long long)w[1]);
    }
    int st;
    if (waitpid(s, &st, 0) != s || !WIFEXITED(st) || WEXITSTATUS(st) != 7) {
        printf("error the subreaper's status\n");
        return 2;
    }
    printf("result %016llx\n", (unsigned long long)h);
    return 0;
}
