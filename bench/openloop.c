/* Benchmark workload for scripts/bench: the cost of the runtime's hooks.
 *   openloop open N    : N times open+close of a file; prints ns per iteration
 *   openloop compute N : N iterations of an arithmetic loop; prints ns per iteration */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    long n = atol(argv[2]);
    double t0 = now_ns();
    if (!strcmp(argv[1], "open")) {
        for (long i = 0; i < n; i++) {
            int fd = open("/etc/hostname", O_RDONLY);
            if (fd < 0) return 1;
            close(fd);
        }
    } else {
        volatile uint64_t x = 1;
        for (long i = 0; i < n; i++) x = x * 6364136223846793005ull + 1442695040888963407ull;
    }
    printf("%.1f\n", (now_ns() - t0) / n);
    return 0;
}
