/*
 * tree_forkadvice: a process tree whose root holds memory fork does not copy (MADV_DONTFORK)
 * and memory fork gives a child empty (MADV_WIPEONFORK), both written at every step (issue 12:
 * the forked snapshot of a tree's process did not see it, and the checkpoint failed).
 *
 * Usage: tree_forkadvice [STEPS=60] [DELAY_MS=30]
 * The root forks a child that counts in a shared page until it is signalled, then prints
 * "step s" every DELAY_MS, writing s into both regions at each step. At the end it mixes both
 * regions' contents into the result, and forks a second child that reports (exit status) whether
 * the advice still holds: the MADV_WIPEONFORK page is zero in it and the MADV_DONTFORK one is
 * not mapped there (madvise on it fails with ENOMEM). Deterministic.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tree_common.h"

#define PAGES 4
#define LEN (PAGES * 4096)

static volatile sig_atomic_t stop;

static void on_usr1(int sig)
{
    (void)sig;
    stop = 1;
}

static uint64_t sum(const uint64_t *p)
{
    uint64_t r = 0;
    for (size_t i = 0; i < LEN / 8; i++)
        r = mix(r + p[i]);
    return r;
}

int main(int argc, char **argv)
{
    long steps = argc > 1 ? atol(argv[1]) : 60, delay = argc > 2 ? atol(argv[2]) : 30;
    setvbuf(stdout, NULL, _IONBF, 0);
    printf("start tree_forkadvice %ld\n", steps);
    volatile uint64_t *count = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    uint64_t *dontfork = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint64_t *wipe = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (count == MAP_FAILED || dontfork == MAP_FAILED || wipe == MAP_FAILED)
        return 2;
    if (madvise(dontfork, LEN, MADV_DONTFORK) || madvise(wipe, LEN, MADV_WIPEONFORK)) {
        perror("madvise");
        return 3;
    }
    signal(SIGUSR1, on_usr1);
    pid_t c = fork();
    if (c == 0) {
        while (!stop) {
            (*count)++;
            sleep_ms(5);
        }
        _exit(0);
    }
    for (long s = 1; s <= steps; s++) {
        for (size_t i = 0; i < LEN / 8; i += 512) {
            dontfork[i] += (uint64_t)s * 3 + i;
            wipe[i] += (uint64_t)s * 7 + i;
        }
        printf("step %ld\n", s);
        sleep_ms(delay);
    }
    kill(c, SIGUSR1);
    waitpid(c, NULL, 0);
    uint64_t r = mix(sum(dontfork) ^ mix(sum(wipe)));
    pid_t check = fork();
    if (check == 0) {
        int zero = 1;
        for (size_t i = 0; i < LEN / 8; i++)
            zero &= wipe[i] == 0;
        int unmapped = madvise(dontfork, LEN, MADV_NORMAL) != 0 && errno == ENOMEM;
        _exit(zero * 1 + unmapped * 2);
    }
    int st = 0;
    waitpid(check, &st, 0);
    printf("result %016llx-%d\n", (unsigned long long)r, WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st));
    return 0;
}
