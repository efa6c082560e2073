/* Benchmark workload for scripts/bench: holds MIB MiB of data of one kind and prints a
 * heartbeat (CLOCK_MONOTONIC in ns) every millisecond, so the largest gap between two lines is
 * the pause a checkpoint caused, as the program saw it.
 *
 *   memload random|quant|smooth|trivial|dirty|dirtyq|scatterq|sparse MIB [--dump FILE]
 *
 * random: xorshift bytes; quant: doubles floor(32767 sin(i 1e-4)); smooth: doubles sin(i 1e-4);
 * trivial: no data; dirty: random data, and 1% of its pages rewritten every second (spread over
 * the ticks); dirtyq: the same with quantized doubles (a page is rewritten with the values of
 * another place of the sine); scatterq: quantized doubles, and on each SIGUSR1 exactly 1% of the
 * pages, scattered (one page at a random place of every run of 100), rewritten as dirtyq does,
 * then a line "rewritten N" (N pages); sparse: a 2 TiB MAP_NORESERVE reservation (as the JVM, Go and the
 * sanitizers make) holding MIB MiB of random bytes in 64 KiB pieces spread evenly over it. --dump writes the data to FILE and exits (to measure compressors
 * on it). */
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static volatile sig_atomic_t rewrite_asked;

static void on_usr1(int sig) {
    (void)sig;
    rewrite_asked = 1;
}
static uint64_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: memload random|quant|smooth|trivial|dirty|dirtyq|scatterq|sparse MIB [--dump FILE]\n");
        return 2;
    }
    const char *mode = argv[1];
    size_t bytes = strcmp(mode, "trivial") == 0 ? 0 : (size_t)atol(argv[2]) << 20;
    uint8_t *mem = NULL;
    if (!strcmp(mode, "sparse")) {
        const size_t reserve = (size_t)2 << 40, piece = 64 << 10;
        mem = mmap(NULL, reserve, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (mem == MAP_FAILED) {
            perror("mmap");
            return 1;
        }
        size_t pieces = bytes / piece, stride = pieces ? reserve / pieces : 0;
        for (size_t p = 0; p < pieces; p++) {
            uint64_t *w = (uint64_t *)(mem + p * stride);
            for (size_t i = 0; i < piece / 8; i++) w[i] = next();
        }
        bytes = 0; /* nothing below touches it */
    } else if (bytes) {
        mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (mem == MAP_FAILED) {
            perror("mmap");
            return 1;
        }
    }
    if (!strcmp(mode, "random") || !strcmp(mode, "dirty")) {
        uint64_t *w = (uint64_t *)mem;
        for (size_t i = 0; i < bytes / 8; i++) w[i] = next();
    } else if (!strcmp(mode, "quant") || !strcmp(mode, "dirtyq") || !strcmp(mode, "scatterq")) {
        double *d = (double *)mem;
        for (size_t i = 0; i < bytes / 8; i++) d[i] = floor(32767.0 * sin((double)i * 1e-4));
    } else if (!strcmp(mode, "smooth")) {
        double *d = (double *)mem;
        for (size_t i = 0; i < bytes / 8; i++) d[i] = sin((double)i * 1e-4);
    } else if (strcmp(mode, "trivial") && strcmp(mode, "sparse")) {
        fprintf(stderr, "memload: unknown mode %s\n", mode);
        return 2;
    }
    if (argc >= 5 && !strcmp(argv[3], "--dump")) {
        FILE *f = fopen(argv[4], "wb");
        if (!f || fwrite(mem, 1, bytes, f) != bytes || fclose(f)) {
            perror("dump");
            return 1;
        }
        return 0;
    }
    int dirty = !strcmp(mode, "dirty"), dirtyq = !strcmp(mode, "dirtyq"), scatterq = !strcmp(mode, "scatterq");
    if (scatterq) signal(SIGUSR1, on_usr1);
    size_t pages = bytes / 4096;
    /* 1% of the pages per second, by the clock (a tick is a little over 1 ms). */
    double per_ns = pages * 0.01 / 1e9, owed = 0;
    unsigned long long last = now_ns();
    printf("ready %llu\n", (unsigned long long)now_ns());
    fflush(stdout);
    struct timespec ms = {0, 1000000};
    for (;;) {
        nanosleep(&ms, NULL);
        unsigned long long t = now_ns();
        double per_tick = (t - last) * per_ns;
        last = t;
        if (dirty) {
            for (owed += per_tick; owed >= 1; owed -= 1) mem[(next() % pages) * 4096 + next() % 4096]++;
        } else if (dirtyq) {
            for (owed += per_tick; owed >= 1; owed -= 1) {
                double *d = (double *)(mem + (next() % pages) * 4096);
                size_t from = next() % (bytes / 8);
                for (size_t k = 0; k < 512; k++) d[k] = floor(32767.0 * sin((double)(from + k) * 1e-4));
            }
        }
        if (scatterq && rewrite_asked) {
            rewrite_asked = 0;
            size_t n = 0;
            for (size_t run = 0; run + 100 <= pages; run += 100, n++) {
                double *d = (double *)(mem + (run + next() % 100) * 4096);
                size_t from = next() % (bytes / 8);
                for (size_t k = 0; k < 512; k++) d[k] = floor(32767.0 * sin((double)(from + k) * 1e-4));
            }
            printf("rewritten %zu\n", n);
        }
        printf("%llu\n", (unsigned long long)now_ns());
        fflush(stdout);
    }
}
