/* CLOCK_MONOTONIC and CLOCK_BOOTTIME across a restart: between two steps (MS apart) neither
 * clock may jump by more than LIMIT ms, whatever happened in between (the program was killed
 * and restarted seconds later), and neither ever goes back.
 * usage: clocks STEPS MS LIMIT. Output: start, step N, result. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static int64_t ms_of(clockid_t c) {
    struct timespec ts;
    clock_gettime(c, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 60;
    int ms = argc > 2 ? atoi(argv[2]) : 30;
    int limit = argc > 3 ? atoi(argv[3]) : 1500;
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("start clocks n=%d\n", steps);
    int64_t mono = ms_of(CLOCK_MONOTONIC), boot = ms_of(CLOCK_BOOTTIME);
    uint64_t hash = 1469598103934665603ULL;
    int bad = 0;
    for (int i = 1; i <= steps; i++) {
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
        int64_t m = ms_of(CLOCK_MONOTONIC), b = ms_of(CLOCK_BOOTTIME);
        if (m < mono || m - mono > limit || b < boot || b - boot > limit) {
            printf("FAIL step %d: CLOCK_MONOTONIC moved by %lld ms, CLOCK_BOOTTIME by %lld ms\n", i, (long long)(m - mono), (long long)(b - boot));
            bad++;
        }
        mono = m;
        boot = b;
        hash = (hash ^ (uint64_t)i ^ (uint64_t)bad << 32) * 1099511628211ULL;
        printf("step %d hash=%016llx\n", i, (unsigned long long)hash);
    }
    printf("result %016llx\n", (unsigned long long)hash);
    return bad != 0;
}
