/*
 * bg_stack_calls: threads that make system calls into their own stacks all the time (the time
 * by syscall, uname, getrusage, nanosleep's remainder), beside a large array a background
 * snapshot takes a while to write-protect: those calls never need the array unprotected, and
 * must not wait for its protection (issue 15: the program's pause).
 *
 * Usage: bg_stack_calls [STEPS=120] [MIB=256]   (compile with -pthread)
 * Two threads call in a loop; main rewrites one word per page of the array per step (every
 * 10 ms) and prints "step i sum=<hex>"; at the end "result <hex>" (a hash of the array).
 * Deterministic output. A call that fails prints "error <call>: ..." and exits 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

static volatile int stop;

static void fail(const char *what)
{
    printf("error %s: %s\n", what, strerror(errno));
    fflush(stdout);
    exit(1);
}

static void *caller(void *unused)
{
    (void)unused;
    while (!stop) {
        struct timespec ts;
        if (syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts) != 0)
            fail("clock_gettime");
        struct utsname u;
        if (uname(&u) != 0)
            fail("uname");
        struct rusage ru;
        if (getrusage(RUSAGE_THREAD, &ru) != 0)
            fail("getrusage");
        struct timespec nap = { 0, 20000 }, left;
        if (nanosleep(&nap, &left) != 0 && errno != EINTR)
            fail("nanosleep");
    }
    return NULL;
}

int main(int argc, char **argv)
{
    long steps = argc > 1 ? atol(argv[1]) : 120;
    size_t size = (size_t)(argc > 2 ? atol(argv[2]) : 256) << 20;
    setvbuf(stdout, NULL, _IOLBF, 0);
    uint64_t *arr = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (arr == MAP_FAILED)
        fail("mmap");
    size_t words = size / 8, pages = size / 4096;
    for (size_t i = 0; i < words; i++)
        arr[i] = i * 0x9E3779B97F4A7C15ull;
    pthread_t t[2];
    for (int k = 0; k < 2; k++)
        if (pthread_create(&t[k], NULL, caller, NULL) != 0)
            fail("pthread_create");
    printf("start bg_stack_calls steps=%ld\n", steps);
    uint64_t sum = 0;
    for (long i = 1; i <= steps; i++) {
        struct timespec ts = { 0, 10 * 1000000L };
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
        for (size_t p = 0; p < pages; p++) {
            uint64_t *w = &arr[p * 512 + (size_t)i % 512];
            *w = *w * 6364136223846793005ull + (uint64_t)i;
            sum = sum * 31 + *w;
        }
        printf("step %ld sum=%016llx\n", i, (unsigned long long)sum);
    }
    stop = 1;
    for (int k = 0; k < 2; k++)
        pthread_join(t[k], NULL);
    uint64_t h = 0;
    for (size_t i = 0; i < words; i++)
        h = h * 1099511628211ull ^ arr[i];
    printf("result %016llx\n", (unsigned long long)h);
    return 0;
}
