/* POSIX message queues: a named queue (mode 0640, 8 messages of up to 64 bytes) with six
 * messages of three priorities, held by an fd, a dup of it and a second open (write-only,
 * O_NONBLOCK), and a removed queue (mq_unlink) with one message. Prints READY, waits for "go",
 * then the attributes, mode and messages of each (in the order received: highest priority
 * first, oldest first within one), whether the non-blocking fd still does not block, whether
 * the named queue can be opened by name and the removed one cannot; "done" at the end. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int dir;

static void wait_go(void) {
    struct timespec ts = {0, 20 * 1000 * 1000};
    while (faccessat(dir, "go", F_OK, 0) != 0) nanosleep(&ts, NULL);
}

static void attrs(const char *what, mqd_t q) {
    struct mq_attr a;
    if (mq_getattr(q, &a)) {
        printf("%s: mq_getattr: %s\n", what, strerror(errno));
        return;
    }
    printf("%s: maxmsg %ld msgsize %ld curmsgs %ld nonblock %s\n", what, a.mq_maxmsg, a.mq_msgsize, a.mq_curmsgs, a.mq_flags & O_NONBLOCK ? "yes" : "no");
}

static void drain(const char *what, mqd_t q) {
    char buf[64];
    unsigned prio;
    struct timespec now;
    for (;;) {
        clock_gettime(CLOCK_REALTIME, &now);
        ssize_t n = mq_timedreceive(q, buf, sizeof buf, &prio, &now);
        if (n < 0) {
            printf("%s: then %s\n", what, strerror(errno));
            return;
        }
        printf("%s: %.*s priority %u\n", what, (int)n, buf, prio);
    }
}

int main(void) {
    dir = open(".", O_RDONLY | O_DIRECTORY);
    char name[64], gone[64];
    snprintf(name, sizeof name, "/ckpt-mq-%d", (int)getpid());
    snprintf(gone, sizeof gone, "/ckpt-mq-gone-%d", (int)getpid());
    mode_t old = umask(0);
    struct mq_attr a = {.mq_maxmsg = 8, .mq_msgsize = 64};
    mqd_t q = mq_open(name, O_RDWR | O_CREAT | O_EXCL, 0640, &a);
    struct mq_attr b = {.mq_maxmsg = 4, .mq_msgsize = 16};
    mqd_t g = mq_open(gone, O_RDWR | O_CREAT | O_EXCL, 0600, &b);
    umask(old);
    if (q == (mqd_t)-1 || g == (mqd_t)-1) {
        perror("mq_open");
        return 2;
    }
    mqd_t w = mq_open(name, O_WRONLY | O_NONBLOCK);
    mqd_t d = dup(q);
    const char *text[] = {"a", "b", "c", "d", "e", "f"};
    unsigned prio[] = {1, 5, 1, 3, 5, 0};
    for (int i = 0; i < 6; i++)
        if (mq_send(i % 2 ? w : q, text[i], strlen(text[i]), prio[i])) {
            perror("mq_send");
            return 2;
        }
    if (mq_send(g, "x", 1, 7) || mq_unlink(gone)) return 2;
    printf("READY\n");
    fflush(stdout);
    wait_go();
    attrs("queue", q);
    attrs("dup", d);
    attrs("second open", w);
    attrs("removed queue", g);
    struct stat st;
    fstat(q, &st);
    printf("mode %o\n", st.st_mode & 0777);
    drain("queue (through the dup)", d);
    int sent = 0;
    while (mq_send(w, "z", 1, 0) == 0) sent++;
    printf("second open: %d sent, then %s\n", sent, strerror(errno));
    drain("removed queue", g);
    mqd_t again = mq_open(name, O_RDONLY);
    printf("open by name: %s\n", again == (mqd_t)-1 ? strerror(errno) : "ok");
    mqd_t none = mq_open(gone, O_RDONLY);
    printf("removed queue by name: %s\n", none == (mqd_t)-1 ? strerror(errno) : "found");
    mq_unlink(name);
    printf("done\n");
    return 0;
}
