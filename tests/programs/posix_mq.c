/*
 * posix_mq: holds a POSIX message queue (mq_open) with a message in it and a notification
 * registered with the raw system call (not through libc's mq_notify, which ckpt sees), and
 * prints "step 1" .. "step N" (one per 100 ms) and "result N". The notification's value is not
 * known to ckpt (the kernel does not show it): the restart must refuse in one line naming the
 * queue, never register it again with another value.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <mqueue.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 40;
    char name[64];
    snprintf(name, sizeof name, "/ckpt-test-mq-%d", (int)getpid());
    struct mq_attr attr = {.mq_maxmsg = 4, .mq_msgsize = 64};
    mqd_t q = mq_open(name, O_CREAT | O_RDWR, 0600, &attr);
    if (q == (mqd_t)-1) {
        perror("mq_open");
        return 2;
    }
    if (mq_send(q, "hello", 6, 0)) {
        perror("mq_send");
        return 2;
    }
    signal(SIGUSR1, SIG_IGN);
    struct sigevent ev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR1, .sigev_value.sival_int = 7};
    if (syscall(SYS_mq_notify, q, &ev)) {
        perror("mq_notify");
        return 2;
    }
    struct timespec ts = {0, 100000000};
    for (int i = 1; i <= n; i++) {
        nanosleep(&ts, NULL);
        printf("step %d\n", i);
        fflush(stdout);
    }
    char buf[64];
    if (mq_receive(q, buf, sizeof buf, NULL) != 6) {
        perror("mq_receive");
        return 1;
    }
    mq_unlink(name);
    printf("result %d\n", n);
    return 0;
}
