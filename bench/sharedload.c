/* Benchmark workload for scripts/bench-shared: HEAP MiB of private heap and SHARED MiB of
 * shared memory of one kind, both random, then a heartbeat (a write into each, every
 * millisecond) until killed. The checkpoint lines say how long each checkpoint paused it.
 *
 *   sharedload HEAP_MIB SHARED_MIB file|memfd|anon
 *
 * file: MAP_SHARED of sharedload-PID.bin in the working directory; memfd: a memfd; anon:
 * MAP_SHARED | MAP_ANONYMOUS. Prints "ready" once the memory is filled. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: sharedload HEAP_MIB SHARED_MIB file|memfd|anon\n");
        return 2;
    }
    size_t heap = (size_t)atol(argv[1]) << 20, shared = (size_t)atol(argv[2]) << 20;
    uint64_t *h = malloc(heap + 8);
    int fd = -1;
    if (!strcmp(argv[3], "file")) {
        char name[64];
        snprintf(name, sizeof name, "sharedload-%d.bin", getpid());
        fd = open(name, O_RDWR | O_CREAT | O_TRUNC, 0600);
    } else if (!strcmp(argv[3], "memfd")) {
        fd = memfd_create("sharedload", 0);
    }
    if (fd >= 0 && ftruncate(fd, (off_t)shared))
        return 3;
    uint64_t *s = mmap(NULL, shared + 4096, PROT_READ | PROT_WRITE, MAP_SHARED | (fd < 0 ? MAP_ANONYMOUS : 0), fd, 0);
    if (!h || s == MAP_FAILED)
        return 3;
    for (size_t i = 0; i < heap / 8; i++)
        h[i] = next();
    for (size_t i = 0; i < shared / 8; i++)
        s[i] = next();
    printf("ready\n");
    fflush(stdout);
    struct timespec ts = {0, 1000000};
    for (uint64_t t = 0;; t++) {
        h[t % (heap / 8 + 1)] ^= t;
        s[t % (shared / 8 + 1)] ^= t;
        nanosleep(&ts, NULL);
    }
}
