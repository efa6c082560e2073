/*
 * bigheap: a program with a large, incompressible heap that keeps changing.
 *
 * Usage: bigheap [MIB=256] [STEPS=40] [DELAY_MS=30]
 * Fills MIB MiB of heap with xorshift64 pseudo-random data (fixed seed), prints
 * "start bigheap mib=M steps=S", then each step mutates 4096 random words and prints
 * "step i probe=<hex>" (a hash of the mutated words plus 64 words sampled across the whole
 * buffer), then prints "result <hex>": an FNV-1a hash of the entire buffer. Any lost, stale or
 * misplaced page changes the result. Deterministic.
 */
#include <errno.h>
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

static uint64_t xorshift64(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

int main(int argc, char **argv)
{
    long mib = argc > 1 ? atol(argv[1]) : 256;
    long steps = argc > 2 ? atol(argv[2]) : 40;
    long delay = argc > 3 ? atol(argv[3]) : 30;
    setvbuf(stdout, NULL, _IOLBF, 0);

    size_t words = (size_t)mib * 1024 * 1024 / sizeof(uint64_t);
    uint64_t *buf = malloc(words * sizeof *buf);
    if (buf == NULL || words < 64) {
        fprintf(stderr, "bigheap: cannot allocate %ld MiB\n", mib);
        return 1;
    }
    uint64_t seed = 0x9E3779B97F4A7C15ULL;
    for (size_t i = 0; i < words; i++)
        buf[i] = xorshift64(&seed);

    printf("start bigheap mib=%ld steps=%ld\n", mib, steps);
    fflush(stdout);
    for (long step = 1; step <= steps; step++) {
        uint64_t probe = 0;
        for (int k = 0; k < 4096; k++) {
            size_t pos = xorshift64(&seed) % words;
            buf[pos] = buf[pos] * 6364136223846793005ULL + (uint64_t)step;
            probe ^= buf[pos] + (uint64_t)k;
        }
        for (size_t j = 0; j < 64; j++)
            probe = probe * 31 + buf[(j * (words / 64) + (size_t)step * 4099) % words];
        printf("step %ld probe=%016llx\n", step, (unsigned long long)probe);
        fflush(stdout);
        sleep_ms(delay);
    }

    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < words; i++)
        h = (h ^ buf[i]) * 1099511628211ULL;
    printf("result %016llx\n", (unsigned long long)h);
    fflush(stdout);
    free(buf);
    return 0;
}
