/*
 * tree_mqueue: a parent and a forked child that talk through two POSIX message queues both
 * hold, as DMTCP's posix-mq1 does, for the test of a tree's restart (process_trees_mqueue).
 *
 * Usage: tree_mqueue [ROUNDS=200] [DELAY_MS=20]
 * The parent makes queue q (8 messages of up to 32 bytes) and queue a, then forks. The child
 * opens q again by name (an open of its own) and removes both names; it keeps the parent's a
 * (one open file description for both, inherited). Round r: the parent sends "lo r" at
 * priority 1 then "hi r" at priority 5 through q, then a byte through a pipe; the child, once it
 * has the byte, must receive "hi r" then "lo r" through its own open (priority order: else
 * exit 93) and answers r through a; the parent
 * receives r (else exit 93), prints "step r" and sleeps. At the end the parent prints
 * "result <hash of every answer>". Deterministic.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <mqueue.h>

#include "tree_common.h"

static void must(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "%s: %s\n", what, strerror(errno));
        exit(90);
    }
}

static ssize_t receive(mqd_t q, char *buf, unsigned *prio)
{
    ssize_t n;
    while ((n = mq_receive(q, buf, 32, prio)) < 0 && errno == EINTR) {
    }
    must(n >= 0, "mq_receive");
    buf[n] = 0;
    return n;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 200;
    long delay = argc > 2 ? atol(argv[2]) : 20;
    char qname[64], aname[64];
    snprintf(qname, sizeof qname, "/ckpt-tree-mq-%d", (int)getpid());
    snprintf(aname, sizeof aname, "/ckpt-tree-mq-ack-%d", (int)getpid());
    struct mq_attr attr = {.mq_maxmsg = 8, .mq_msgsize = 32};
    mqd_t q = mq_open(qname, O_RDWR | O_CREAT | O_EXCL, 0600, &attr);
    mqd_t a = mq_open(aname, O_RDWR | O_CREAT | O_EXCL, 0600, &attr);
    must(q != (mqd_t)-1 && a != (mqd_t)-1, "mq_open");
    int turn[2];
    must(pipe(turn) == 0, "pipe");
    pid_t child = fork();
    must(child >= 0, "fork");
    if (child == 0) {
        close(turn[1]);
        mqd_t c = mq_open(qname, O_RDONLY);
        must(c != (mqd_t)-1, "mq_open in the child");
        mq_unlink(qname);
        mq_unlink(aname);
        for (int r = 1;; r++) {
            char buf[40], want[40];
            unsigned prio;
            xfer(turn[0], buf, 1, 0);
            receive(c, buf, &prio);
            snprintf(want, sizeof want, "hi %d", r);
            if (strcmp(buf, want) || prio != 5) {
                fprintf(stderr, "child: got %s (priority %u), wanted %s\n", buf, prio, want);
                exit(93);
            }
            receive(c, buf, &prio);
            snprintf(want, sizeof want, "lo %d", r);
            if (strcmp(buf, want) || prio != 1) {
                fprintf(stderr, "child: got %s (priority %u), wanted %s\n", buf, prio, want);
                exit(93);
            }
            snprintf(buf, sizeof buf, "%d", r);
            while (mq_send(a, buf, strlen(buf), 0) && errno == EINTR) {
            }
        }
    }
    close(turn[0]);
    uint64_t state = 0;
    for (int r = 1; r <= rounds; r++) {
        char buf[40];
        snprintf(buf, sizeof buf, "lo %d", r);
        must(mq_send(q, buf, strlen(buf), 1) == 0, "mq_send");
        snprintf(buf, sizeof buf, "hi %d", r);
        must(mq_send(q, buf, strlen(buf), 5) == 0, "mq_send");
        xfer(turn[1], "t", 1, 1);
        unsigned prio;
        receive(a, buf, &prio);
        if (atoi(buf) != r) {
            fprintf(stderr, "parent: answer %s to round %d\n", buf, r);
            exit(93);
        }
        state = mix(state ^ (uint64_t)r);
        printf("step %d\n", r);
        fflush(stdout);
        sleep_ms(delay);
    }
    end_with_child(child, state);
    return 0;
}
