/*
 * fd_listing_busy: a program that lists its fd table all the time, as DMTCP's syscall-tester
 * (its unlink wrapper reads /proc/PID/fd after every unlink) and daemons that close what they
 * find there do.
 *
 * Usage: fd_listing_busy [N=40] [DELAY_MS=20]
 * Prints "start fd_listing_busy n=N", then for i = 1..N lists /proc/self/fd with readdir over
 * and over for DELAY_MS, so that a checkpoint comes while it lists (the runtime's readdir hook
 * reads each entry's fdinfo through an fd of its own for a moment), checks that each listing
 * has 0, 1 and 2 and no other fd (but the listing's own and those it inherited), and prints "step i sum=<hex>"; then
 * "result <hex>". A listing that fails, lacks one of them or has another ends it with status 1
 * and says why. Deterministic.
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

/* The fds the program had when it started (0, 1, 2 and any it inherited). */
static int start_fds[64], n_start = -1;

static int at_start(int fd)
{
    for (int i = 0; i < n_start; i++)
        if (start_fds[i] == fd)
            return 1;
    return 0;
}

/* One listing of /proc/self/fd: whether it has fds 0, 1 and 2 and no other but those the
 * program had when it started and the listing's own (the program opens nothing else: a
 * runtime fd, or one of the process before a restart that readdir still had in its buffer,
 * must not show). The first listing records those it had. */
static int list_fds(long step)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return 0;
    int seen = 0, other = -1, first = n_start < 0;
    if (first)
        n_start = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        int fd = atoi(e->d_name);
        if (fd <= 2)
            seen++;
        if (fd == dirfd(d))
            continue;
        if (first && n_start < 64)
            start_fds[n_start++] = fd;
        else if (!at_start(fd))
            other = fd;
    }
    closedir(d);
    if (other >= 0)
        fprintf(stderr, "step %ld: a listing of /proc/self/fd showed fd %d, which the program did not open\n", step, other);
    return seen == 3 && other < 0;
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
            if (!list_fds(i)) {
                fprintf(stderr, "step %ld: a listing of /proc/self/fd failed, lacked fd 0, 1 or 2 or had another\n", i);
                return 1;
            }
        } while (now_ms() < end);
        sum = sum * 31 + (uint64_t)i;
        printf("step %ld sum=%016llx\n", i, (unsigned long long)sum);
    }
    printf("result %016llx\n", (unsigned long long)sum);
    return 0;
}
