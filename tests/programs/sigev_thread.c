/*
 * sigev_thread: a POSIX timer that notifies by starting a thread (SIGEV_THREAD), as vim and
 * DMTCP's timer2 use it. glibc's helper thread for such timers blocks every signal.
 *
 * Usage: sigev_thread [STEPS=30]   (compile with -pthread)
 * The timer fires every 100 ms with sigev_value 77; each notification runs in a new thread,
 * which checks the value, sleeps 50 ms (a notification can be stopped mid-way), and counts.
 * Main prints "step N" when 5 N notifications have run, then "result <sum of the values>".
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static volatile long count, sum;
static volatile pid_t main_tid;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void notified(union sigval v)
{
    if (gettid() == main_tid) {
        printf("FAIL notified on the main thread\n");
        exit(1);
    }
    usleep(50000);
    pthread_mutex_lock(&lock);
    count++;
    sum += v.sival_int;
    pthread_mutex_unlock(&lock);
}

int main(int argc, char **argv)
{
    int steps = argc > 1 ? atoi(argv[1]) : 30;
    main_tid = gettid();
    printf("start sigev_thread steps=%d\n", steps);
    fflush(stdout);
    timer_t t;
    struct sigevent se = { .sigev_notify = SIGEV_THREAD, .sigev_notify_function = notified, .sigev_value.sival_int = 77 };
    if (timer_create(CLOCK_MONOTONIC, &se, &t) != 0) {
        perror("timer_create");
        return 1;
    }
    struct itimerspec its = { { 0, 100000000 }, { 0, 100000000 } };
    timer_settime(t, 0, &its, NULL);
    long target_sum = 0;
    for (int s = 1; s <= steps; s++) {
        while (count < 5L * s)
            usleep(10000);
        printf("step %d\n", s);
        fflush(stdout);
    }
    timer_delete(t);
    pthread_mutex_lock(&lock);
    target_sum = 77L * 5 * steps;
    long got = sum - (count - 5L * steps) * 77; /* notifications past the last step */
    pthread_mutex_unlock(&lock);
    printf("result %ld\n", got == target_sum ? got : -got);
    return 0;
}
