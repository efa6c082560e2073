/*
 * vm_limit: a program with much address space and little memory, for runs under `ulimit -v`.
 *
 * Usage: vm_limit [MIB=1100] [STEPS=60] [DELAY_MS=30]
 * Allocates MIB MiB with one malloc (address space: mmap'd, untouched pages cost no memory),
 * writes one pseudo-random word on every 16th page (fixed seed), prints "start vm_limit mib=M",
 * then each step changes 256 of those words and prints "step i probe=<hex>", then "result <hex>"
 * (a hash of every word written). At the end it prints "vmpeak_kib <N>" (its own VmPeak from
 * /proc/self/status: the most address space it ever had) on stderr, so that a test can set a
 * limit just above what it needs natively. Deterministic.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STRIDE (16 * 4096 / sizeof(uint64_t)) /* words between two touched words */

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

static long vmpeak_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmPeak:", 7) == 0)
            kib = atol(line + 7);
    if (f)
        fclose(f);
    return kib;
}

int main(int argc, char **argv)
{
    long mib = argc > 1 ? atol(argv[1]) : 1100;
    long steps = argc > 2 ? atol(argv[2]) : 60;
    long delay = argc > 3 ? atol(argv[3]) : 30;
    setvbuf(stdout, NULL, _IOLBF, 0);

    size_t words = (size_t)mib * 1024 * 1024 / sizeof(uint64_t);
    size_t touched = words / STRIDE;
    uint64_t *buf = malloc(words * sizeof *buf);
    if (buf == NULL || touched < 16) {
        fprintf(stderr, "vm_limit: cannot allocate %ld MiB: %s\n", mib, strerror(errno));
        return 1;
    }
    uint64_t seed = 0x9E3779B97F4A7C15ULL;
    for (size_t i = 0; i < touched; i++)
        buf[i * STRIDE] = xorshift64(&seed);

    printf("start vm_limit mib=%ld steps=%ld\n", mib, steps);
    for (long step = 1; step <= steps; step++) {
        uint64_t probe = 0;
        for (int k = 0; k < 256; k++) {
            size_t pos = (xorshift64(&seed) % touched) * STRIDE;
            buf[pos] = buf[pos] * 6364136223846793005ULL + (uint64_t)step;
            probe ^= buf[pos] + (uint64_t)k;
        }
        printf("step %ld probe=%016llx\n", step, (unsigned long long)probe);
        sleep_ms(delay);
    }

    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < touched; i++)
        h = (h ^ buf[i * STRIDE]) * 1099511628211ULL;
    printf("result %016llx\n", (unsigned long long)h);
    fprintf(stderr, "vmpeak_kib %ld\n", vmpeak_kib());
    free(buf);
    return 0;
}
