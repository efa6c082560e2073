/* mq_notify with SIGEV_THREAD (glibc runs the function in a new thread; its own helper thread
 * blocks every signal): an empty queue with a notification registered (value 77). Prints
 * READY, waits for "go", sends a message (empty to not empty: the notification fires) and
 * prints what the notification thread saw (the value, the message it received), then that the
 * registration was used up (a new one can be made); "done" at the end. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int dir;
static mqd_t q;
static sem_t seen;
static int got_value;
static char got[40];

static void wait_go(void) {
    struct timespec ts = {0, 20 * 1000 * 1000};
    while (faccessat(dir, "go", F_OK, 0) != 0) nanosleep(&ts, NULL);
}

static void notified(union sigval v) {
    got_value = v.sival_int;
    ssize_t n = mq_receive(q, got, 32, NULL);
    got[n > 0 ? n : 0] = 0;
    sem_post(&seen);
}

int main(void) {
    dir = open(".", O_RDONLY | O_DIRECTORY);
    sem_init(&seen, 0, 0);
    char name[64];
    snprintf(name, sizeof name, "/ckpt-mq-thread-%d", (int)getpid());
    struct mq_attr a = {.mq_maxmsg = 4, .mq_msgsize = 32};
    q = mq_open(name, O_RDWR | O_CREAT | O_EXCL | O_NONBLOCK, 0600, &a);
    if (q == (mqd_t)-1) {
        perror("mq_open");
        return 2;
    }
    struct sigevent ev = {.sigev_notify = SIGEV_THREAD, .sigev_notify_function = notified, .sigev_value.sival_int = 77};
    if (mq_notify(q, &ev)) {
        perror("mq_notify");
        return 2;
    }
    printf("READY\n");
    fflush(stdout);
    wait_go();
    if (mq_send(q, "ping", 4, 3)) return 2;
    struct timespec limit;
    clock_gettime(CLOCK_REALTIME, &limit);
    limit.tv_sec += 30;
    if (sem_timedwait(&seen, &limit)) {
        printf("no notification: %s\n", strerror(errno));
    } else {
        printf("notified: value %d, received %s\n", got_value, got);
    }
    printf("registering again: %s\n", mq_notify(q, &ev) ? strerror(errno) : "ok");
    mq_unlink(name);
    printf("done\n");
    return 0;
}
