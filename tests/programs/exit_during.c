/*
 * exit_during: a program that ends while a checkpoint of its large heap is being written.
 *
 * Usage: exit_during HOW [MIB=256] [DELAY_MS=30]
 * Fills MIB MiB of heap with pseudo-random data, prints "start", then "step N" every DELAY_MS
 * until a file named `go` appears in the working directory; then prints "result <hash of the
 * heap>" (which does not depend on the number of steps) and ends, HOW being one of:
 *   exit     exit(0)
 *   _exit    _exit(0)
 *   return   a return from main
 *   thread   a second thread calls exit_group(0) directly (no libc exit path at all)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void *ender(void *arg)
{
    (void)arg;
    syscall(SYS_exit_group, 0);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: exit_during exit|_exit|return|thread [MIB] [DELAY_MS]\n");
        return 2;
    }
    const char *how = argv[1];
    long mib = argc > 2 ? atol(argv[2]) : 256;
    long delay = argc > 3 ? atol(argv[3]) : 30;
    setvbuf(stdout, NULL, _IOLBF, 0);
    size_t words = (size_t)mib << 17;
    uint64_t *buf = malloc(words * 8), s = 0x9E3779B97F4A7C15ULL;
    if (!buf)
        return 1;
    for (size_t i = 0; i < words; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        buf[i] = s;
    }
    printf("start exit_during how=%s mib=%ld\n", how, mib);
    for (long step = 1; access("go", F_OK) != 0; step++) {
        printf("step %ld\n", step);
        sleep_ms(delay);
    }
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < words; i++)
        h = (h ^ buf[i]) * 1099511628211ULL;
    printf("result %016llx\n", (unsigned long long)h);
    fflush(stdout);
    if (!strcmp(how, "exit"))
        exit(0);
    if (!strcmp(how, "_exit"))
        _exit(0);
    if (!strcmp(how, "thread")) {
        pthread_t t;
        pthread_create(&t, NULL, ender, NULL);
        for (;;)
            pause();
    }
    return 0;
}
