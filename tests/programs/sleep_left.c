/*
 * sleep_left: three threads sleep SECONDS (default 12) each, in three ways that keep their
 * remaining time differently: sleep() (glibc passes its request as `rem`: the kernel writes the
 * time left there), usleep() (no `rem`: only the runtime's note of the start time knows it) and
 * poll() with a timeout (nothing written back either). Prints "sleeping" once all three sleep,
 * then "slept <how> <ms>" for each (CLOCK_MONOTONIC), and "result ok" if none came back early
 * or with an error. Across a checkpoint the sleeps must go on for the time that was left: not
 * return early, not start over.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static int seconds = 12;
static volatile int started;
static int64_t slept[3];
static int failed;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *sleeper(void *arg)
{
    long how = (long)arg;
    int64_t t0 = now_ms();
    __atomic_add_fetch(&started, 1, __ATOMIC_SEQ_CST);
    long r;
    if (how == 0)
        r = sleep(seconds);
    else if (how == 1)
        r = usleep(seconds * 1000000u);
    else
        r = poll(NULL, 0, seconds * 1000);
    if (r != 0) {
        printf("FAIL %ld returned %ld (errno %d)\n", how, r, errno);
        failed = 1;
    }
    slept[how] = now_ms() - t0;
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        seconds = atoi(argv[1]);
    pthread_t th[3];
    for (long i = 0; i < 3; i++)
        pthread_create(&th[i], NULL, sleeper, (void *)i);
    while (started < 3)
        usleep(1000);
    usleep(100000);
    printf("sleeping\n");
    fflush(stdout);
    const char *names[3] = { "sleep", "usleep", "poll" };
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        printf("slept %s %lld\n", names[i], (long long)slept[i]);
        if (slept[i] < seconds * 1000LL) {
            printf("FAIL %s came back early\n", names[i]);
            failed = 1;
        }
    }
    printf("result %s\n", failed ? "failed" : "ok");
    return failed;
}
