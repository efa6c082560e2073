/*
 * tree_unfit: a parent and a forked child that cannot take part in a tree's checkpoint; the
 * checkpoint must be refused at once in one line naming the child, and the program go on.
 *
 * Usage: tree_unfit MODE [ROUNDS=400] [DELAY_MS=20] [PROGRAM]
 * MODE traced: the child calls PTRACE_TRACEME (the parent is its tracer) and then waits.
 * MODE exec: the child execs PROGRAM (a static one, which cannot load the runtime: it never
 * joins the tree), which waits.
 * (A stopped child is checkpointed now: tree_stopped.c.)
 * The parent prints "step r" each round; at the end it kills and reaps the child and prints
 * "result <hex>" of its running state. Deterministic.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tree_common.h"

int main(int argc, char **argv)
{
    int exec = argc > 4 && strcmp(argv[1], "exec") == 0;
    if (argc < 2 || (strcmp(argv[1], "traced") && !exec)) {
        fprintf(stderr, "usage: tree_unfit traced|exec [ROUNDS] [DELAY_MS] [PROGRAM]\n");
        return 2;
    }
    long rounds = argc > 2 ? atol(argv[2]) : 400, delay = argc > 3 ? atol(argv[3]) : 20;
    pid_t child = fork();
    if (child < 0) {
        perror("fork");
        return 1;
    }
    if (child == 0 && exec) {
        execl(argv[4], argv[4], (char *)NULL);
        perror("execl");
        _exit(1);
    }
    if (child == 0) {
        if (ptrace(PTRACE_TRACEME, 0, NULL, NULL) != 0) {
            perror("PTRACE_TRACEME");
            _exit(1);
        }
        for (;;)
            pause();
    }
    uint64_t state = 1;
    for (long r = 1; r <= rounds; r++) {
        state = mix(state + (uint64_t)r);
        printf("step %ld\n", r);
        fflush(stdout);
        sleep_ms(delay);
    }
    end_with_child(child, state);
    return 0;
}
