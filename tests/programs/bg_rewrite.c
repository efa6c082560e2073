/*
 * bg_rewrite: a program that rewrites all of its memory all the time and makes the system calls
 * that write into it, for background snapshots (write-protection while the image is written).
 *
 * Usage: bg_rewrite [MIB=64] [STEPS=60] [DELAY_MS=20] [ORDER=seq|rand]
 * Holds MIB MiB of numbers (mmap) and a malloc'd buffer. Each step: the main thread rewrites
 * every page of the array (a function of the step; in address order, or with `rand` in an order
 * that jumps all over the array, so that a snapshot's writer is always behind), reads bytes from a pipe straight into the
 * array and into the buffer (read, readv, recv through a socketpair), asks the kernel for the
 * time into the array (clock_gettime by syscall), and hands a word to a second thread through
 * a futex in the array (FUTEX_WAIT/FUTEX_WAKE, private and shared), which folds it into the
 * buffer; both threads also sleep. Prints "step i sum=<hex>" after each step and
 * "result <hex>" (a hash of all memory) at the end. Deterministic: the same arguments always
 * give the same output. A restart that lost a write, or a system call that failed because of
 * write-protection (EFAULT), prints another result or "error ...".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096

static uint64_t *arr;
static size_t words;
static uint8_t *buf;
static int pipefd[2], sock[2];
/* The futex words live in the array (protected memory). */
static uint32_t *req, *ack;
static long steps;

static void die(const char *what)
{
    printf("error %s: %s\n", what, strerror(errno));
    fflush(stdout);
    exit(1);
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static long futex(uint32_t *w, int op, uint32_t v)
{
    struct timespec ts = { 0, 50 * 1000000L };
    return syscall(SYS_futex, w, op, v, op == FUTEX_WAIT || op == FUTEX_WAIT_PRIVATE ? &ts : NULL, NULL, 0);
}

/* The second thread: waits for each step's word, folds it into the buffer, acknowledges. */
static void *worker(void *unused)
{
    (void)unused;
    for (long i = 1; i <= steps; i++) {
        while (__atomic_load_n(req, __ATOMIC_ACQUIRE) != (uint32_t)i) {
            int op = i % 2 ? FUTEX_WAIT_PRIVATE : FUTEX_WAIT;
            if (futex(req, op, __atomic_load_n(req, __ATOMIC_ACQUIRE)) != 0 && errno != EAGAIN && errno != ETIMEDOUT && errno != EINTR)
                die("futex wait");
        }
        for (int k = 0; k < 64; k++)
            buf[(i * 64 + k) % 65536] ^= (uint8_t)(i * 31 + k);
        sleep_ms(1);
        __atomic_store_n(ack, (uint32_t)i, __ATOMIC_RELEASE);
        if (futex(ack, i % 2 ? FUTEX_WAKE_PRIVATE : FUTEX_WAKE, 1) < 0)
            die("futex wake");
    }
    return NULL;
}

static void feed(const void *p, size_t n)
{
    if (write(pipefd[1], p, n) != (ssize_t)n)
        die("write");
}

int main(int argc, char **argv)
{
    size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 64;
    steps = argc > 2 ? atol(argv[2]) : 60;
    long delay = argc > 3 ? atol(argv[3]) : 20;
    int rand_order = argc > 4 && strcmp(argv[4], "rand") == 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    size_t len = mib << 20;
    words = len / 8;
    arr = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    buf = malloc(65536);
    if (arr == MAP_FAILED || !buf)
        die("memory");
    memset(buf, 7, 65536);
    for (size_t i = 0; i < words; i++)
        arr[i] = i * 0x9E3779B97F4A7C15ull;
    req = (uint32_t *)&arr[3 * PAGE / 8];
    ack = (uint32_t *)&arr[5 * PAGE / 8];
    *req = 0;
    *ack = 0;
    if (pipe(pipefd) != 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, sock) != 0)
        die("pipe");
    pthread_t t;
    if (pthread_create(&t, NULL, worker, NULL) != 0)
        die("pthread_create");
    if ((mib & (mib - 1)) != 0) {
        printf("error MIB must be a power of two\n");
        return 1;
    }
    printf("start bg_rewrite mib=%zu steps=%ld\n", mib, steps);
    for (long i = 1; i <= steps; i++) {
        /* Rewrite every page (all of memory, all the time): 8 words of each. */
        size_t pages = words / (PAGE / 8);
        for (size_t k = 0; k < pages; k++) {
            /* rand: page k * 40503 mod pages (pages is a power of two, 40503 odd: a permutation). */
            size_t p = rand_order ? (k * 40503) & (pages - 1) : k;
            for (size_t w = p * (PAGE / 8); w < (p + 1) * (PAGE / 8); w += 64) {
                if (w == 3 * PAGE / 8 || w == 5 * PAGE / 8)
                    continue;
                arr[w] = arr[w] * 6364136223846793005ull + (uint64_t)i;
            }
        }
        /* The kernel writes into the array and the buffer. */
        uint64_t msg[64];
        for (int k = 0; k < 64; k++)
            msg[k] = (uint64_t)i * 1000 + k;
        size_t at = ((size_t)i * 7919 * PAGE / 8) % (words - 1024) + 7;
        feed(msg, sizeof msg);
        if (read(pipefd[0], &arr[at], sizeof msg) != sizeof msg)
            die("read");
        feed(msg, sizeof msg);
        struct iovec iov[2] = { { &arr[(at + 4096) % (words - 64)], 256 }, { buf + (i % 200) * 256, 256 } };
        if (readv(pipefd[0], iov, 2) != 512)
            die("readv");
        if (send(sock[0], msg, sizeof msg, 0) != sizeof msg)
            die("send");
        if (recv(sock[1], &arr[(at + 9000) % (words - 64)], sizeof msg, 0) != sizeof msg)
            die("recv");
        struct timespec *ts = (struct timespec *)&arr[(at + 20000) % (words - 4)];
        if (syscall(SYS_clock_gettime, CLOCK_MONOTONIC, ts) != 0)
            die("clock_gettime");
        ts->tv_sec = 0; /* not deterministic: only the call must succeed */
        ts->tv_nsec = 0;
        /* Hand the step to the worker through the futex in the array, wait for its answer. */
        __atomic_store_n(req, (uint32_t)i, __ATOMIC_RELEASE);
        if (futex(req, i % 2 ? FUTEX_WAKE_PRIVATE : FUTEX_WAKE, 1) < 0)
            die("futex wake");
        while (__atomic_load_n(ack, __ATOMIC_ACQUIRE) != (uint32_t)i) {
            int op = i % 2 ? FUTEX_WAIT_PRIVATE : FUTEX_WAIT;
            if (futex(ack, op, __atomic_load_n(ack, __ATOMIC_ACQUIRE)) != 0 && errno != EAGAIN && errno != ETIMEDOUT && errno != EINTR)
                die("futex wait");
        }
        uint64_t h = 0xcbf29ce484222325ull;
        for (size_t w = 0; w < words; w += 97)
            h = (h ^ arr[w]) * 0x100000001B3ull;
        for (int k = 0; k < 65536; k += 61)
            h = (h ^ buf[k]) * 0x100000001B3ull;
        printf("step %ld sum=%016llx\n", i, (unsigned long long)h);
        sleep_ms(delay);
    }
    pthread_join(t, NULL);
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t w = 0; w < words; w++)
        h = (h ^ arr[w]) * 0x100000001B3ull;
    for (int k = 0; k < 65536; k++)
        h = (h ^ buf[k]) * 0x100000001B3ull;
    printf("result %016llx\n", (unsigned long long)h);
    return 0;
}
