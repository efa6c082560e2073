/*
 * bg_blocked_read: a thread blocked in read() on a pipe, into memory a background snapshot
 * protects, while checkpoints are taken (the call is interrupted by the snapshot's stops and
 * restarted by the kernel).
 *
 * Usage: bg_blocked_read [STEPS=150] [MIB=1]   (compile with -pthread)
 * A reader thread reads the pipe into a page of an mmap'd, touched buffer of MIB MiB (the more,
 * the longer a snapshot takes to protect it while the call waits); main writes one
 * record per step (every 20 ms), waits until the reader has folded it into a sum, and prints
 * "step i sum=<hex>"; at the end "result <hex> fd=N", N the number a new open() gets (an fd
 * the runtime left in the image would take it). A read that fails (EFAULT on protected
 * memory) prints "error read: ..." and exits 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static int pipefd[2];
static uint8_t *buf;
static uint64_t sum;
static volatile long done;

static void *reader(void *unused)
{
    (void)unused;
    for (long i = 1;; i++) {
        ssize_t n = read(pipefd[0], buf + 8192, 4096);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            printf("error read: %s\n", strerror(errno));
            fflush(stdout);
            exit(1);
        }
        if (n == 0)
            return NULL;
        for (ssize_t k = 0; k < n; k++)
            sum = sum * 31 + buf[8192 + k];
        __atomic_store_n(&done, i, __ATOMIC_RELEASE);
    }
}

int main(int argc, char **argv)
{
    long steps = argc > 1 ? atol(argv[1]) : 150;
    size_t size = (size_t)(argc > 2 ? atol(argv[2]) : 1) << 20;
    setvbuf(stdout, NULL, _IOLBF, 0);
    buf = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED || pipe(pipefd) != 0)
        return 1;
    memset(buf, 1, size);
    pthread_t t;
    pthread_create(&t, NULL, reader, NULL);
    printf("start bg_blocked_read steps=%ld\n", steps);
    for (long i = 1; i <= steps; i++) {
        struct timespec ts = { 0, 20 * 1000000L };
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
        char rec[16];
        int len = snprintf(rec, sizeof rec, "rec%ld", i);
        if (write(pipefd[1], rec, (size_t)len) != len)
            return 1;
        while (__atomic_load_n(&done, __ATOMIC_ACQUIRE) < i) {
            struct timespec w = { 0, 100000 };
            nanosleep(&w, NULL);
        }
        printf("step %ld sum=%016llx\n", i, (unsigned long long)sum);
    }
    int nfd = open("/dev/null", O_RDONLY);
    close(pipefd[1]);
    pthread_join(t, NULL);
    printf("result %016llx fd=%d\n", (unsigned long long)sum, nfd);
    return 0;
}
