/* glibc's loader lock held across a checkpoint: thread A dlopens a library whose constructor
 * waits (so A holds the lock, a recursive mutex that records its owner's tid) while the main
 * thread prints steps; at step RELEASE the main thread lets the constructor finish, A's dlopen
 * returns and unlocks; then thread B dlopens libm and calls cos. After a restart with new thread
 * ids A cannot unlock (not the owner) and B's dlopen waits forever: the main thread reports a
 * FAIL after 10 s instead of hanging.
 * usage: dlopen_lock LIBDLSLOW STEPS MS RELEASE. Output: start, step N, result. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *lib;
static volatile int a_done, b_done, a_value;
static volatile double b_value;

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void *thread_a(void *arg) {
    (void)arg;
    void *h = dlopen(lib, RTLD_NOW);
    if (!h) {
        printf("FAIL dlopen %s: %s\n", lib, dlerror());
        exit(1);
    }
    int (*f)(void) = (int (*)(void))dlsym(h, "dlslow_value");
    a_value = f ? f() : -1;
    a_done = 1;
    return NULL;
}

static void *thread_b(void *arg) {
    (void)arg;
    void *h = dlopen("libm.so.6", RTLD_NOW);
    double (*c)(double) = h ? (double (*)(double))dlsym(h, "cos") : NULL;
    b_value = c ? c(0.5) : -1;
    b_done = 1;
    return NULL;
}

static int wait_flag(volatile int *flag) {
    for (int i = 0; i < 10000 && !*flag; i++) sleep_ms(1);
    return *flag;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    lib = argv[1];
    int steps = argc > 2 ? atoi(argv[2]) : 60;
    int ms = argc > 3 ? atoi(argv[3]) : 30;
    int rel = argc > 4 ? atoi(argv[4]) : steps * 2 / 3;
    setvbuf(stdout, NULL, _IOLBF, 0);
    int p[2];
    if (pipe(p) != 0) return 2;
    char fd[16];
    snprintf(fd, sizeof fd, "%d", p[0]);
    setenv("DLSLOW_FD", fd, 1);
    printf("start dlopen_lock n=%d release=%d\n", steps, rel);
    pthread_t a, b;
    pthread_create(&a, NULL, thread_a, NULL);
    uint64_t hash = 1469598103934665603ULL;
    for (int i = 1; i <= steps; i++) {
        sleep_ms(ms);
        if (i == rel) {
            char go = 42;
            if (write(p[1], &go, 1) != 1) return 2;
            if (!wait_flag(&a_done)) {
                printf("FAIL the first dlopen did not return\n");
                return 1;
            }
            pthread_join(a, NULL);
            pthread_create(&b, NULL, thread_b, NULL);
            if (!wait_flag(&b_done)) {
                printf("FAIL a dlopen after the first one hangs (glibc's loader lock is still held)\n");
                return 1;
            }
            pthread_join(b, NULL);
            printf("dlopen: constructor value %d, cos(0.5) = %.6f\n", a_value, b_value);
            hash = (hash ^ (uint64_t)a_value) * 1099511628211ULL;
            hash = (hash ^ (uint64_t)(b_value * 1e6)) * 1099511628211ULL;
        }
        hash = (hash ^ (uint64_t)i) * 1099511628211ULL;
        printf("step %d hash=%016llx\n", i, (unsigned long long)hash);
    }
    printf("result %016llx\n", (unsigned long long)hash);
    return 0;
}
