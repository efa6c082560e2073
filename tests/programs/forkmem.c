/*
 * forkmem: memory that a forked snapshot does not inherit, and a program that must never notice
 * the snapshot child.
 *
 * Usage: forkmem [N=40] [DELAY_MS=30]
 * Holds data in four 1 MiB anonymous regions: a plain one, one with MADV_DONTFORK (absent from
 * a forked child), one with MADV_WIPEONFORK (empty in a forked child) and a MAP_SHARED one (not
 * frozen by a fork); a checkpoint must still save all four exactly. It counts SIGCHLD signals and asks waitpid(-1, WNOHANG) for children at every
 * step: it has none, so that must fail with ECHILD even while a checkpoint's snapshot child
 * exists (a raw clone with exit signal 0: no SIGCHLD, invisible to wait() without __WALL or
 * __WCLONE). Both counts are part of the result, so a run that saw the snapshot differs.
 * Prints "step i sum=<hex>" lines and "result <hex>"; deterministic.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>

#define LEN (1 << 20)
static volatile sig_atomic_t sigchld;

static void on_chld(int sig) { (void)sig; sigchld++; }

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static uint64_t *region(int shared, int advice)
{
    void *p = mmap(NULL, LEN, PROT_READ | PROT_WRITE, (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED || (advice && madvise(p, LEN, advice) != 0)) {
        perror("mmap/madvise");
        exit(1);
    }
    return p;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 40;
    long delay = argc > 2 ? atol(argv[2]) : 30;
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGCHLD, on_chld);
    uint64_t *r[4] = { region(0, 0), region(0, MADV_DONTFORK), region(0, MADV_WIPEONFORK), region(1, 0) };
    size_t words = LEN / sizeof(uint64_t);
    uint64_t sum = 0, waited = 0;
    printf("start forkmem n=%ld\n", n);
    for (long i = 1; i <= n; i++) {
        for (int k = 0; k < 4; k++)
            for (size_t w = (size_t)i % 64; w < words; w += 64)
                r[k][w] = r[k][w] * 6364136223846793005ULL + (uint64_t)(i + k);
        sum = sum * 31 + (uint64_t)i;
        if (waitpid(-1, NULL, WNOHANG) != -1 || errno != ECHILD)
            waited++;
        printf("step %ld sum=%016llx\n", i, (unsigned long long)sum);
        sleep_ms(delay);
    }
    uint64_t check = sum ^ (waited << 32) ^ ((uint64_t)sigchld << 48);
    for (int k = 0; k < 4; k++)
        for (size_t w = 0; w < words; w++)
            check = (check ^ r[k][w]) * 1099511628211ULL;
    printf("sigchld %d waited %llu\n", (int)sigchld, (unsigned long long)waited);
    printf("result %016llx\n", (unsigned long long)check);
    return 0;
}
