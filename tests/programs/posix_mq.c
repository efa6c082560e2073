/*
 * posix_mq: holds a POSIX message queue (mq_open) with a message in it, and prints "step 1" ..
 * "step N" (one per 100 ms) and "result N". POSIX message queues are not made again by a
 * restart yet: the restart must refuse in one line naming the queue (before, the fd came back as
 * a regular file and mq_send failed with EBADF).
 */
#include <fcntl.h>
#include <mqueue.h>
#include <stdio.h>
#include <stdlib.h>
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
