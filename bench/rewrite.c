/* Benchmark workload for scripts/bench: the cost of periodic checkpoints to a program that keeps
 * rewriting its memory. Holds MIB MiB and rewrites every byte of it PASSES times; prints the
 * seconds that took (CLOCK_MONOTONIC) and a checksum.
 *
 *   rewrite MIB PASSES
 *
 * Under ckpt-run --interval, each checkpoint write-protects the memory (copy-on-write for the
 * snapshot, and with increments also userfaultfd write-protect): the next write to each page
 * faults once. The difference to a native run is that cost. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: rewrite MIB PASSES\n");
        return 2;
    }
    size_t n = ((size_t)atol(argv[1]) << 20) / 8;
    long passes = atol(argv[2]);
    uint64_t *w = mmap(NULL, n * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (w == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    double t0 = now();
    uint64_t sum = 0;
    for (long p = 0; p < passes; p++) {
        for (size_t i = 0; i < n; i++) w[i] = w[i] * 6364136223846793005ull + i + p;
        sum += w[p % n];
    }
    printf("%.3f %llx\n", now() - t0, (unsigned long long)sum);
    return 0;
}
