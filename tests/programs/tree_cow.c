/*
 * tree_cow: a parent and two children that share most of its memory copy-on-write, as fork left
 * it (zdtm cow00, cow01): after a restart the pages nobody wrote since the fork must still be one
 * page shared by the three, and the pages each one changed must hold its own values.
 *
 * Usage: tree_cow [STEPS=40] [DELAY_MS=30]
 * The parent fills PAGES pages of private anonymous memory (each page its own values), then forks
 * children A and B. By page number modulo 8: 1 is rewritten by A, 2 by B, 3 by the parent after
 * the fork, 5 dropped by A (MADV_DONTNEED: zero in A), 6 dropped by the parent; 0, 4 and 7 are
 * touched by nobody. The parent prints "step s" every DELAY_MS; at the end each process checks
 * its pages: every value as it wrote or inherited it, and every untouched page present and not
 * mapped exclusively (bit 56 of /proc/self/pagemap, readable by any user: clear when the page is
 * shared with another process). Each reports a bit mask of failed checks (1: a value, 2: an
 * untouched page mapped by this process alone, 4: pagemap unreadable); the result line holds
 * the memory's hash and the three masks. Deterministic.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tree_common.h"

#define PAGES 512
#define WORDS (4096 / 8)

static volatile sig_atomic_t stop;

static void on_usr1(int sig)
{
    (void)sig;
    stop = 1;
}

/* What word w of page p holds for writer `who` (0: the parent before the fork). */
static uint64_t value(int who, size_t p, size_t w)
{
    return mix(((uint64_t)who << 40) ^ (p << 12) ^ w ^ 0x5bd1e995u);
}

static void write_page(uint64_t *mem, int who, size_t p)
{
    for (size_t w = 0; w < WORDS; w++)
        mem[p * WORDS + w] = value(who, p, w);
}

/* The writer whose values page p holds for process `me` (1: A, 2: B, 3: the parent), -1: zero. */
static int expected(int me, size_t p)
{
    switch (p % 8) {
    case 1:
        return me == 1 ? 1 : 0;
    case 2:
        return me == 2 ? 2 : 0;
    case 3:
        return me == 3 ? 3 : 0;
    case 5:
        return me == 1 ? -1 : 0;
    case 6:
        return me == 3 ? -1 : 0;
    default:
        return 0;
    }
}

/* Check every page of `mem` for process `me`; the mask of failed checks. */
static int check(const uint64_t *mem, int me, uint64_t *hash)
{
    int bad = 0;
    for (size_t p = 0; p < PAGES; p++) {
        int who = expected(me, p);
        for (size_t w = 0; w < WORDS; w++) {
            uint64_t v = mem[p * WORDS + w];
            *hash = mix(*hash + v);
            if (v != (who < 0 ? 0 : value(who, p, w)))
                bad |= 1;
        }
    }
    int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return bad | 4;
    uint64_t e[PAGES];
    if (pread(fd, e, sizeof e, (off_t)((uintptr_t)mem / 4096 * 8)) != (ssize_t)sizeof e)
        bad |= 4;
    close(fd);
    for (size_t p = 0; p < PAGES; p++) {
        int untouched = p % 8 == 0 || p % 8 == 4 || p % 8 == 7;
        int present = (e[p] >> 63) & 1, exclusive = (e[p] >> 56) & 1;
        if (untouched && (!present || exclusive)) {
            if (!(bad & 2))
                fprintf(stderr, "process %d: page %zu: present %d exclusive %d\n", me, p, present, exclusive);
            bad |= 2;
        }
    }
    return bad;
}

/* A child: its changes, then wait for the parent's signal and check. */
static void child(uint64_t *mem, int me, int report)
{
    for (size_t p = 0; p < PAGES; p++) {
        if (p % 8 == (size_t)me)
            write_page(mem, me, p);
        if (me == 1 && p % 8 == 5)
            madvise(mem + p * WORDS, 4096, MADV_DONTNEED);
    }
    xfer(report, "r", 1, 1);
    while (!stop)
        sleep_ms(5);
    uint64_t hash = 0;
    int bad = check(mem, me, &hash);
    xfer(report, &hash, sizeof hash, 1);
    _exit(bad);
}

int main(int argc, char **argv)
{
    long steps = argc > 1 ? atol(argv[1]) : 40, delay = argc > 2 ? atol(argv[2]) : 30;
    setvbuf(stdout, NULL, _IONBF, 0);
    printf("start tree_cow %ld\n", steps);
    uint64_t *mem = mmap(NULL, PAGES * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        return 2;
    for (size_t p = 0; p < PAGES; p++)
        write_page(mem, 0, p);
    signal(SIGUSR1, on_usr1);
    int pipes[2][2];
    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        if (pipe(pipes[k]) != 0)
            return 2;
        kids[k] = fork();
        if (kids[k] == 0) {
            close(pipes[k][0]);
            child(mem, k + 1, pipes[k][1]);
        }
        close(pipes[k][1]);
        char c;
        xfer(pipes[k][0], &c, 1, 0);
    }
    for (size_t p = 0; p < PAGES; p++) {
        if (p % 8 == 3)
            write_page(mem, 3, p);
        if (p % 8 == 6)
            madvise(mem + p * WORDS, 4096, MADV_DONTNEED);
    }
    for (long s = 1; s <= steps; s++) {
        printf("step %ld\n", s);
        sleep_ms(delay);
    }
    uint64_t hash = 0;
    int bad = check(mem, 3, &hash);
    int status[2];
    for (int k = 0; k < 2; k++) {
        uint64_t h;
        kill(kids[k], SIGUSR1);
        xfer(pipes[k][0], &h, sizeof h, 0);
        hash = mix(hash ^ h);
        int st = 0;
        waitpid(kids[k], &st, 0);
        status[k] = WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st);
    }
    printf("result %016llx-%d-%d-%d\n", (unsigned long long)hash, bad, status[0], status[1]);
    return 0;
}
