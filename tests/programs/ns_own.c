/*
 * ns_own: a thread enters a UTS namespace of its own (unshare(CLONE_NEWUTS) through libc) and
 * sets a host name there. Prints "step 1" .. "step N" (one per 100 ms) and "result N": a
 * checkpoint must fail with one line naming the thread and the namespace (a restart would bring
 * it back in ckpt's namespace, with ckpt's host name), and the program must go on unharmed.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static volatile int ready;

static void *isolated(void *arg) {
    (void)arg;
    if (unshare(CLONE_NEWUTS) || sethostname("elsewhere", 9)) {
        perror("unshare");
        exit(1);
    }
    ready = 1;
    for (;;) pause();
    return NULL;
}

int main(int argc, char **argv) {
    long steps = argc > 1 ? atol(argv[1]) : 40;
    setvbuf(stdout, NULL, _IONBF, 0);
    pthread_t t;
    pthread_create(&t, NULL, isolated, NULL);
    while (!ready) usleep(1000);
    for (long s = 1; s <= steps; s++) {
        printf("step %ld\n", s);
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    printf("result %ld\n", steps);
    return 0;
}
