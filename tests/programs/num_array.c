/*
 * num_array: arrays of numbers, the memory that images store byte-shuffled (codec Shuffle8).
 *
 * Usage: num_array [MIB=16] [STEPS=60] [DELAY_MS=30]
 * Fills MIB MiB of doubles with a quantized sine (compressible once byte-shuffled, like the
 * arrays of a simulation), prints "start num_array mib=M", then each step adds the step
 * number to 4096 elements and prints "step i sum=<value>", then "result <hex>" (a hash of
 * every element). Deterministic.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

int main(int argc, char **argv)
{
    long mib = argc > 1 ? atol(argv[1]) : 16;
    long steps = argc > 2 ? atol(argv[2]) : 60;
    long delay = argc > 3 ? atol(argv[3]) : 30;
    setvbuf(stdout, NULL, _IOLBF, 0);

    size_t n = (size_t)mib * 1024 * 1024 / sizeof(double);
    double *a = malloc(n * sizeof *a);
    if (a == NULL || n < 4096) {
        fprintf(stderr, "num_array: cannot allocate %ld MiB\n", mib);
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        a[i] = floor(32767.0 * sin((double)i * 1e-4));

    printf("start num_array mib=%ld\n", mib);
    for (long step = 1; step <= steps; step++) {
        double sum = 0;
        for (size_t k = 0; k < 4096; k++) {
            size_t i = (k * 7919 + (size_t)step * 104729) % n;
            a[i] += (double)step;
            sum += a[i];
        }
        printf("step %ld sum=%.0f\n", step, sum);
        sleep_ms(delay);
    }

    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        uint64_t w;
        memcpy(&w, &a[i], sizeof w);
        h = (h ^ w) * 1099511628211ULL;
    }
    printf("result %016llx\n", (unsigned long long)h);
    free(a);
    return 0;
}
