/*
 * tree_late_fork: a program that runs alone for a while and forks a worker only later (a
 * process tree from step FORK_AT on; issue 13), for the numbering of its checkpoints.
 *
 * Usage: tree_late_fork [STEPS=80] [FORK_AT=20] [DELAY_MS=40]
 * Prints "step s" every DELAY_MS; at step FORK_AT it forks a worker that adds to a shared
 * anonymous counter until the parent tells it to stop at the end; the parent reaps it and prints
 * "result <hex>" from the steps and the worker's exit status. Deterministic.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tree_common.h"

int main(int argc, char **argv)
{
    long steps = argc > 1 ? atol(argv[1]) : 80, fork_at = argc > 2 ? atol(argv[2]) : 20, delay = argc > 3 ? atol(argv[3]) : 40;
    setvbuf(stdout, NULL, _IONBF, 0);
    printf("start tree_late_fork %ld %ld\n", steps, fork_at);
    volatile uint64_t *sh = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        return 2;
    pid_t w = -1;
    uint64_t acc = 0;
    for (long s = 1; s <= steps; s++) {
        if (s == fork_at) {
            w = fork();
            if (w == 0) {
                while (!sh[1])
                    sleep_ms(5);
                _exit(7);
            }
        }
        acc = mix(acc + (uint64_t)s);
        printf("step %ld\n", s);
        sleep_ms(delay);
    }
    sh[1] = 1;
    int st = 0;
    if (w > 0 && waitpid(w, &st, 0) != w)
        st = -1;
    printf("result %016llx-%d\n", (unsigned long long)acc, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    return 0;
}
