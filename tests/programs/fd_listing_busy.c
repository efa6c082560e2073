/*
 * fd_listing_busy: a program that lists its fd table all the time, as DMTCP's syscall-tester
 * (its unlink wrapper reads /proc/PID/fd after every unlink) and daemons that close what they
 * find there do.
 *
 * Usage: fd_listing_busy [N=40] [DELAY_MS=20]
 * Prints "start fd_listing_busy n=N", then for i = 1..N lists /proc/self/fd with readdir over
 * and over for DELAY_MS, so that a checkpoint comes while it lists (the runtime's readdir hook
 * reads each entry's fdinfo through an fd of its own for a moment), checks that each listing
 * has 0, 1 and 2, and prints "step i sum=<hex>"; then "result <hex>". A listing that fails, or
 * lacks one of them, ends it with status 1 and says why. Deterministic.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* One listing of /proc/self/fd: whether it has fds 0, 1 and 2. */
static int list_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return 0;
    int seen = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, "0") == 0 || strcmp(e->d_name, "1") == 0 || strcmp(e->d_name, "2") == 0)
            seen++;
    closedir(d);
    return seen == 3;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 40;
    long delay = argc > 2 ? atol(argv[2]) : 20;
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("start fd_listing_busy n=%ld\n", n);
    uint64_t sum = 0;
    for (long i = 1; i <= n; i++) {
        double end = now_ms() + (double)delay;
        do {
            if (!list_fds()) {
                fprintf(stderr, "step %ld: a listing of /proc/self/fd failed or lacked fd 0, 1 or 2\n", i);
                return 1;
            }
        } while (now_ms() < end);
        sum = sum * 31 + (uint64_t)i;
        printf("step %ld sum=%016llx\n", i, (unsigned long long)sum);
    }
    printf("result %016llx\n", (unsigned long long)sum);
    return 0;
}
