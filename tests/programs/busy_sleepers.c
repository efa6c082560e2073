/*
 * busy_sleepers: threads that wait in short calls in a tight loop (nanosleep 200 us, poll 1 ms,
 * usleep 300 us, epoll_wait 1 ms): whenever a checkpoint comes they are about to enter their
 * call, in it, or just out of it. EINTR is fatal.
 *
 * Usage: busy_sleepers [STEPS=60]   (compile with -pthread)
 * Main prints "start busy_sleepers", "step N" every 100 ms and "result N".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

static int ep;

static void *loop(void *arg)
{
    long kind = (long)arg;
    for (;;) {
        int r;
        struct epoll_event ev;
        switch (kind) {
        case 0:
            r = nanosleep(&(struct timespec){ 0, 200000 }, NULL);
            break;
        case 1:
            r = poll(NULL, 0, 1);
            break;
        case 2:
            r = usleep(300);
            break;
        default:
            r = epoll_wait(ep, &ev, 1, 1);
            break;
        }
        if (r < 0) {
            printf("FAIL thread %ld: %s\n", kind, errno == EINTR ? "EINTR" : "error");
            fflush(stdout);
            _exit(1);
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int steps = argc > 1 ? atoi(argv[1]) : 60;
    ep = epoll_create1(0);
    printf("start busy_sleepers steps=%d\n", steps);
    fflush(stdout);
    pthread_t t;
    for (long k = 0; k < 4; k++)
        pthread_create(&t, NULL, loop, (void *)k);
    for (int s = 1; s <= steps; s++) {
        nanosleep(&(struct timespec){ 0, 100000000 }, NULL);
        printf("step %d\n", s);
        fflush(stdout);
    }
    printf("result %d\n", steps);
    return 0;
}
