/*
 * seccomp_strict: a worker thread enters seccomp strict mode (prctl(PR_SET_SECCOMP,
 * SECCOMP_MODE_STRICT) through libc, or with "raw" a raw seccomp system call no libc function
 * sees) and then computes with read and write only: it reads numbers from a pipe the main
 * thread fills and writes back a running hash of them. The main thread feeds 200 numbers,
 * prints READY after the first 100 and waits for a file named `go` (the worker meanwhile
 * blocked in its read), then feeds the rest and prints (all after READY, which a restarted run
 * does not print again):
 *   - the sums of the worker's answers before and after READY;
 *   - the worker's Seccomp field in /proc/self/task/TID/status (1: strict mode);
 *   - whether a forbidden call (getppid) ended the worker, as strict mode does: the main
 *     thread joins it and finds no answer to that last request.
 * With "spin" as second argument, the worker computes in user space during the wait for `go`
 * (it spins on a flag the main thread sets then), so that checkpoints find it running rather
 * than blocked in its read.
 * The same lines after checkpoints and restarts prove that the worker continued with its state
 * and is still in strict mode.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int to_worker[2], from_worker[2];
static int raw;
static volatile pid_t worker_tid;
static volatile int go_flag;
static volatile uint64_t spins;

/* A request for the worker to make a call strict mode forbids. */
#define FORBIDDEN UINT64_MAX
/* A request to compute, with no call, until go_flag is set. */
#define SPIN (UINT64_MAX - 1)

static void *worker(void *arg) {
    (void)arg;
    worker_tid = gettid();
    if (raw) {
        long r;
        __asm__ volatile("syscall" : "=a"(r) : "a"((long)SYS_seccomp), "D"((long)SECCOMP_SET_MODE_STRICT), "S"(0L), "d"(0L) : "rcx", "r11", "memory");
        if (r != 0) return NULL;
    } else if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT) != 0) {
        return NULL;
    }
    uint64_t state = 1469598103934665603ULL;
    char ok = 'S';
    if (write(from_worker[1], &ok, 1) != 1) syscall(SYS_exit, 1);
    for (;;) {
        uint64_t n;
        if (read(to_worker[0], &n, sizeof n) != sizeof n) break;
        if (n == FORBIDDEN) {
            long r;
            __asm__ volatile("syscall" : "=a"(r) : "a"((long)SYS_getppid) : "rcx", "r11", "memory");
            (void)r;
        }
        if (n == SPIN)
            while (!go_flag) spins++;
        for (int i = 0; i < 1000; i++) state = (state ^ (n + i)) * 1099511628211ULL;
        if (write(from_worker[1], &state, sizeof state) != sizeof state) break;
    }
    /* Strict mode allows only _exit, not exit_group nor what pthread_exit does. */
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"((long)SYS_exit), "D"(0L) : "rcx", "r11", "memory");
    return NULL;
}

static uint64_t feed(uint64_t from, uint64_t to) {
    uint64_t sum = 0;
    for (uint64_t n = from; n <= to; n++) {
        uint64_t v;
        if (write(to_worker[1], &n, sizeof n) != sizeof n || read(from_worker[0], &v, sizeof v) != sizeof v) {
            printf("FAIL: the worker stopped answering at %llu\n", (unsigned long long)n);
            exit(1);
        }
        sum += v;
    }
    return sum;
}

static int seccomp_field(pid_t tid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/self/task/%d/status", tid);
    FILE *f = fopen(path, "r");
    int mode = -1;
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Seccomp: %d", &mode) == 1) break;
    fclose(f);
    return mode;
}

int main(int argc, char **argv) {
    raw = argc > 1 && strcmp(argv[1], "raw") == 0;
    int spin = argc > 2 && strcmp(argv[2], "spin") == 0;
    if (pipe(to_worker) || pipe(from_worker)) return 1;
    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
    char c;
    if (read(from_worker[0], &c, 1) != 1 || c != 'S') {
        printf("FAIL: the worker could not enter strict mode\n");
        return 1;
    }
    uint64_t before = feed(1, 100);
    uint64_t spun = 0, request = SPIN;
    if (spin && write(to_worker[1], &request, sizeof request) != sizeof request) return 1;
    printf("READY\n");
    fflush(stdout);
    struct timespec ts = {0, 10 * 1000 * 1000};
    struct stat st;
    while (stat("go", &st) != 0) nanosleep(&ts, NULL);
    if (spin) {
        go_flag = 1;
        if (read(from_worker[0], &spun, sizeof spun) != sizeof spun) return 1;
        printf("spun: %llx\n", (unsigned long long)spun);
    }
    printf("before: %llx\n", (unsigned long long)before);
    printf("after: %llx\n", (unsigned long long)feed(101, 200));
    printf("worker Seccomp: %d\n", seccomp_field(worker_tid));
    uint64_t bad = FORBIDDEN;
    if (write(to_worker[1], &bad, sizeof bad) != sizeof bad) return 1;
    pthread_join(t, NULL);
    fcntl(from_worker[0], F_SETFL, O_NONBLOCK);
    uint64_t v;
    ssize_t n = read(from_worker[0], &v, sizeof v);
    printf(n < 0 && errno == EAGAIN ? "a forbidden call ended the worker\n" : "FAIL: the worker survived a forbidden call\n");
    printf("done\n");
    return 0;
}
