/* mq_notify with SIGEV_SIGNAL: a queue holding one message, with a notification registered
 * (SIGUSR1, value 4242). Prints READY, waits for "go", then receives the message (the queue
 * empties: no notification), checks that no signal came, sends one message (empty to not
 * empty: the notification fires) and prints the signal's value and code, then that the
 * registration was used up (a new one can be made); "done" at the end. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int dir;

static void wait_go(void) {
    struct timespec ts = {0, 20 * 1000 * 1000};
    while (faccessat(dir, "go", F_OK, 0) != 0) nanosleep(&ts, NULL);
}

int main(void) {
    dir = open(".", O_RDONLY | O_DIRECTORY);
    char name[64];
    snprintf(name, sizeof name, "/ckpt-mq-notify-%d", (int)getpid());
    struct mq_attr a = {.mq_maxmsg = 4, .mq_msgsize = 32};
    mqd_t q = mq_open(name, O_RDWR | O_CREAT | O_EXCL | O_NONBLOCK, 0600, &a);
    if (q == (mqd_t)-1) {
        perror("mq_open");
        return 2;
    }
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, NULL);
    if (mq_send(q, "first", 5, 2)) return 2;
    struct sigevent ev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR1, .sigev_value.sival_int = 4242};
    if (mq_notify(q, &ev)) {
        perror("mq_notify");
        return 2;
    }
    printf("READY\n");
    fflush(stdout);
    wait_go();
    char buf[32];
    ssize_t n = mq_receive(q, buf, sizeof buf, NULL);
    printf("received %.*s\n", (int)(n > 0 ? n : 0), buf);
    sigset_t pending;
    sigpending(&pending);
    printf("signal before the send: %s\n", sigismember(&pending, SIGUSR1) ? "yes" : "no");
    if (mq_send(q, "second", 6, 1)) return 2;
    siginfo_t si;
    struct timespec limit = {30, 0};
    if (sigtimedwait(&usr1, &si, &limit) != SIGUSR1) {
        printf("no notification: %s\n", strerror(errno));
    } else {
        printf("notified: value %d, code %s\n", si.si_value.sival_int, si.si_code == SI_MESGQ ? "SI_MESGQ" : "other");
    }
    printf("registering again: %s\n", mq_notify(q, &ev) ? strerror(errno) : "ok");
    mq_unlink(name);
    printf("done\n");
    return 0;
}
