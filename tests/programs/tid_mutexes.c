/* Mutexes that record their owner's kernel thread id, held across a checkpoint: a holder thread
 * locks an error-checking mutex, a recursive one (twice), a robust one and a priority-inheritance
 * one, then sleeps while the main thread prints steps; at step RELEASE it unlocks them all (and
 * the recursive one twice) and every unlock must succeed (after a restart with new thread ids
 * glibc says EPERM: not the owner). Then other threads lock and unlock each of them.
 * usage: tid_mutexes STEPS MS RELEASE. Output: start, step N (with a running hash), result. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t errchk, recur, robust, pi;
static volatile int held, release_now, released;
static char report[256];

static void init_mutex(pthread_mutex_t *m, int type, int robust_, int proto) {
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, type);
    if (robust_) pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    if (proto) pthread_mutexattr_setprotocol(&a, proto);
    if (pthread_mutex_init(m, &a) != 0) {
        printf("FAIL mutex init\n");
        exit(2);
    }
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void *holder(void *arg) {
    (void)arg;
    int r[5];
    r[0] = pthread_mutex_lock(&errchk);
    r[1] = pthread_mutex_lock(&recur);
    r[2] = pthread_mutex_lock(&recur);
    r[3] = pthread_mutex_lock(&robust);
    r[4] = pthread_mutex_lock(&pi);
    for (int i = 0; i < 5; i++)
        if (r[i] != 0) {
            printf("FAIL lock %d: %s\n", i, strerror(r[i]));
            exit(1);
        }
    held = 1;
    while (!release_now) sleep_ms(5);
    int u[5];
    u[0] = pthread_mutex_unlock(&pi);
    u[1] = pthread_mutex_unlock(&robust);
    u[2] = pthread_mutex_unlock(&recur);
    u[3] = pthread_mutex_unlock(&recur);
    u[4] = pthread_mutex_unlock(&errchk);
    const char *names[5] = {"pi", "robust", "recursive", "recursive (2nd)", "errorcheck"};
    int n = 0;
    for (int i = 0; i < 5; i++)
        n += snprintf(report + n, sizeof report - n, "%s%s=%s", i ? " " : "", names[i], u[i] ? strerror(u[i]) : "ok");
    released = 1;
    return NULL;
}

static void *locker(void *arg) {
    pthread_mutex_t *ms[4] = {&errchk, &recur, &robust, &pi};
    intptr_t *bad = arg;
    for (int i = 0; i < 4; i++) {
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += 5;
        int r = pthread_mutex_timedlock(ms[i], &dl);
        if (r == 0) r = pthread_mutex_unlock(ms[i]);
        if (r != 0) *bad |= 1 << i;
    }
    return NULL;
}

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 60;
    int ms = argc > 2 ? atoi(argv[2]) : 30;
    int rel = argc > 3 ? atoi(argv[3]) : steps * 2 / 3;
    setvbuf(stdout, NULL, _IOLBF, 0);
    init_mutex(&errchk, PTHREAD_MUTEX_ERRORCHECK, 0, 0);
    init_mutex(&recur, PTHREAD_MUTEX_RECURSIVE, 0, 0);
    init_mutex(&robust, PTHREAD_MUTEX_ERRORCHECK, 1, 0);
    init_mutex(&pi, PTHREAD_MUTEX_ERRORCHECK, 0, PTHREAD_PRIO_INHERIT);
    printf("start tid_mutexes n=%d release=%d\n", steps, rel);
    pthread_t h;
    pthread_create(&h, NULL, holder, NULL);
    while (!held) sleep_ms(1);
    uint64_t hash = 1469598103934665603ULL;
    for (int i = 1; i <= steps; i++) {
        sleep_ms(ms);
        if (i == rel) {
            release_now = 1;
            while (!released) sleep_ms(1);
            printf("unlocked by the holder: %s\n", report);
            intptr_t bad = 0;
            pthread_t l;
            pthread_create(&l, NULL, locker, &bad);
            pthread_join(l, NULL);
            printf("locked and unlocked by another thread: %s\n", bad ? "FAIL" : "ok");
            pthread_join(h, NULL);
            for (char *c = report; *c; c++) hash = (hash ^ (unsigned char)*c) * 1099511628211ULL;
            hash = (hash ^ (uint64_t)bad) * 1099511628211ULL;
        }
        hash = (hash ^ (uint64_t)i) * 1099511628211ULL;
        printf("step %d hash=%016llx\n", i, (unsigned long long)hash);
    }
    printf("result %016llx\n", (unsigned long long)hash);
    return 0;
}
