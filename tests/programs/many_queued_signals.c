/*
 * many_queued_signals: queues 5000 real-time signals with values to itself (blocked, so they
 * stay pending), more than the runtime records with their siginfo (4096). Prints "step 1" ..
 * "step N" (one per 100 ms), then takes every signal and checks each value came once, in order,
 * and prints "result N". A checkpoint must fail with one line saying so (a restart would bring
 * the others back without their values), and the program must go on unharmed.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define QUEUED 5000

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 40;
    sigset_t rt;
    sigemptyset(&rt);
    sigaddset(&rt, SIGRTMIN);
    sigprocmask(SIG_BLOCK, &rt, NULL);
    for (int i = 0; i < QUEUED; i++) {
        union sigval v = {.sival_int = i};
        if (sigqueue(getpid(), SIGRTMIN, v)) {
            perror("sigqueue");
            return 2;
        }
    }
    struct timespec ts = {0, 100000000};
    for (int i = 1; i <= n; i++) {
        nanosleep(&ts, NULL);
        printf("step %d\n", i);
        fflush(stdout);
    }
    struct timespec zero = {0, 0};
    for (int i = 0; i < QUEUED; i++) {
        siginfo_t si;
        if (sigtimedwait(&rt, &si, &zero) != SIGRTMIN || si.si_code != SI_QUEUE || si.si_value.sival_int != i) {
            printf("signal %d: missing, without its value or out of order\n", i);
            return 1;
        }
    }
    printf("result %d\n", n);
    return 0;
}
