/*
 * blocked_thread: a thread that blocks every signal for good with a raw rt_sigprocmask (as
 * glibc's own helper threads do: mq_notify's SIGEV_THREAD helper) and waits in a read that never
 * completes; no checkpoint can stop it. Prints "step 1" .. "step N" (one per 100 ms) and
 * "result N": a checkpoint must fail quickly, with a line naming that thread ("blocker"), and
 * the program must go on unharmed.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int p[2];

static void *blocker(void *arg)
{
    (void)arg;
    uint64_t all = ~0ULL;
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, NULL, 8);
    prctl(PR_SET_NAME, "blocker");
    char c;
    for (;;)
        if (read(p[0], &c, 1) == 1)
            break;
    return NULL;
}

int main(int argc, char **argv)
{
    int steps = argc > 1 ? atoi(argv[1]) : 60;
    if (pipe(p) != 0)
        return 2;
    pthread_t t;
    if (pthread_create(&t, NULL, blocker, NULL) != 0)
        return 2;
    printf("start blocked_thread steps=%d\n", steps);
    for (int s = 1; s <= steps; s++) {
        nanosleep(&(struct timespec){ 0, 100000000 }, NULL);
        printf("step %d\n", s);
        fflush(stdout);
    }
    printf("result %d\n", steps);
    return 0;
}
