/*
 * openmp_loop: an OpenMP parallel loop with a reduction, repeated for many steps.
 *
 * Usage: openmp_loop [STEPS=50] [N=1048576] [DELAY_MS=30]   (compile with -fopenmp)
 * Keeps an array of N 64-bit words; each step updates every word in an
 * `omp parallel for reduction(+:sum)` over all cores (default thread count) and prints
 * "step s sum=<hex>", then sleeps DELAY_MS. Prints "start openmp_loop steps=S n=N" first and
 * "result <hex>" (combining every step's sum and the final array) last. Integer arithmetic
 * modulo 2^64 makes the reduction independent of the thread count and order: deterministic.
 */
#include <errno.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

int main(int argc, char **argv)
{
    long steps = argc > 1 ? atol(argv[1]) : 50;
    long n = argc > 2 ? atol(argv[2]) : 1048576;
    long delay = argc > 3 ? atol(argv[3]) : 30;
    setvbuf(stdout, NULL, _IOLBF, 0);

    uint64_t *a = malloc((size_t)n * sizeof *a);
    if (a == NULL) {
        perror("malloc");
        return 1;
    }
    for (long i = 0; i < n; i++)
        a[i] = (uint64_t)i * 0x9E3779B97F4A7C15ULL;

    fprintf(stderr, "openmp_loop: %d threads\n", omp_get_max_threads());
    printf("start openmp_loop steps=%ld n=%ld\n", steps, n);
    fflush(stdout);
    uint64_t total = 0;
    for (long s = 1; s <= steps; s++) {
        uint64_t sum = 0;
#pragma omp parallel for reduction(+ : sum) schedule(static)
        for (long i = 0; i < n; i++) {
            uint64_t x = a[i] * 6364136223846793005ULL + (uint64_t)s;
            x ^= x >> 29;
            a[i] = x;
            sum += x;
        }
        total = total * 31 + sum;
        printf("step %ld sum=%016llx\n", s, (unsigned long long)sum);
        fflush(stdout);
        sleep_ms(delay);
    }
    uint64_t h = total;
    for (long i = 0; i < n; i++)
        h = (h ^ a[i]) * 1099511628211ULL;
    printf("result %016llx\n", (unsigned long long)h);
    fflush(stdout);
    free(a);
    return 0;
}
