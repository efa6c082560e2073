/*
 * tree_pidfd_thread: a process holds pidfds of threads of its child (pidfd_open of the thread's
 * tid with PIDFD_THREAD) across a checkpoint and uses them at the end (issue 13: pidfds of
 * threads of another process of the tree).
 *
 * Usage: tree_pidfd_thread [STEPS=60] [DELAY_MS=30] [mutual]
 * The root forks a child that starts two threads and tells the root their tids through a pipe.
 * Before step 1 the root opens a pidfd of each (PIDFD_THREAD; the worker's also O_NONBLOCK, and
 * dups it to another fd), then lets the second thread end and waits until its pidfd says so:
 * a pidfd of a thread that had exited. The worker waits until SIGUSR1 reaches it; its handler
 * notes the tid it ran on. The root prints "step s" every DELAY_MS. At the end it checks that
 * the worker's pidfd is not readable yet (the thread is alive), that its flags are kept,
 * sends SIGUSR1 through it (a thread-directed signal: the handler runs on the worker, not on
 * the child's main thread, which does not block it either), polls the dup until the worker has
 * ended, and checks the exited thread's pidfd: readable, and a signal gets ESRCH. The child
 * joins its worker and exits with 1 when the handler ran on the worker. "result ..." prints
 * each check. With "mutual" the child also holds a pidfd of a thread of the root (its tid
 * through a pipe, before step 1), through which it sends SIGUSR1 once its worker has ended (SIGUSR2
 * is ckpt's checkpoint request):
 * the root's thread notes the tid its handler ran on, and the root prints whether it was its.
 * Deterministic.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tree_common.h"

#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL
#endif

static volatile pid_t handled_on, worker_tid_g, short_tid_g, root_sig_on;
static int to_root[2], to_child[2];

static void on_usr1(int sig)
{
    (void)sig;
    handled_on = (pid_t)syscall(SYS_gettid);
}

static void on_root_usr1(int sig)
{
    (void)sig;
    root_sig_on = (pid_t)syscall(SYS_gettid);
}

/* The root's thread in "mutual": waits until SIGUSR1 reaches it. */
static void *root_thread(void *arg)
{
    pid_t *me = arg;
    *me = (pid_t)syscall(SYS_gettid);
    while (root_sig_on == 0)
        sleep_ms(5);
    return NULL;
}

static void *worker(void *arg)
{
    (void)arg;
    pid_t me = (pid_t)syscall(SYS_gettid);
    worker_tid_g = me;
    while (handled_on == 0)
        sleep_ms(5);
    return (void *)(long)(handled_on == me);
}

static void *short_lived(void *arg)
{
    (void)arg;
    short_tid_g = (pid_t)syscall(SYS_gettid);
    char b;
    xfer(to_child[0], &b, 1, 0); /* the root holds a pidfd of this thread: end */
    return NULL;
}

static int readable(int fd, int ms)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    int n = poll(&p, 1, ms);
    return n == 1 && (p.revents & POLLIN);
}

int main(int argc, char **argv)
{
    long steps = argc > 1 ? atol(argv[1]) : 60, delay = argc > 2 ? atol(argv[2]) : 30;
    setvbuf(stdout, NULL, _IONBF, 0);
    int mutual = argc > 3 && !strcmp(argv[3], "mutual");
    printf("start tree_pidfd_thread %ld%s\n", steps, mutual ? " mutual" : "");
    if (pipe(to_root) || pipe(to_child))
        return 2;
    pid_t c = fork();
    if (c == 0) {
        signal(SIGUSR1, on_usr1);
        int rfd = -1;
        if (mutual) {
            pid_t rtid;
            xfer(to_child[0], &rtid, sizeof rtid, 0);
            rfd = (int)syscall(SYS_pidfd_open, rtid, PIDFD_THREAD);
            if (rfd < 0)
                _exit(4);
        }
        pthread_t w, s;
        void *ok = NULL;
        if (pthread_create(&w, NULL, worker, NULL))
            _exit(3);
        while (worker_tid_g == 0)
            sleep_ms(1);
        if (pthread_create(&s, NULL, short_lived, NULL))
            _exit(3);
        while (short_tid_g == 0)
            sleep_ms(1);
        pid_t tids[2] = { worker_tid_g, short_tid_g };
        xfer(to_root[1], tids, sizeof tids, 1);
        pthread_join(s, NULL);
        pthread_join(w, &ok);
        if (mutual && syscall(SYS_pidfd_send_signal, rfd, SIGUSR1, NULL, 0) != 0)
            _exit(5);
        _exit(ok ? 1 : 0);
    }
    pthread_t rt;
    pid_t rtid = 0;
    if (mutual) {
        signal(SIGUSR1, on_root_usr1);
        if (pthread_create(&rt, NULL, root_thread, &rtid))
            return 2;
        while (__atomic_load_n(&rtid, __ATOMIC_SEQ_CST) == 0)
            sleep_ms(1);
        xfer(to_child[1], &rtid, sizeof rtid, 1);
    }
    pid_t worker_tid, short_tid;
    xfer(to_root[0], &worker_tid, sizeof worker_tid, 0);
    xfer(to_root[0], &short_tid, sizeof short_tid, 0);
    int wfd = (int)syscall(SYS_pidfd_open, worker_tid, PIDFD_THREAD | O_NONBLOCK);
    int sfd = (int)syscall(SYS_pidfd_open, short_tid, PIDFD_THREAD);
    if (wfd < 0 || sfd < 0) {
        perror("pidfd_open of a thread");
        return 3;
    }
    int wdup = dup(wfd);
    char b = 'e';
    xfer(to_child[1], &b, 1, 1);
    if (!readable(sfd, 10000)) {
        fprintf(stderr, "the pidfd of the ended thread is not readable\n");
        return 4;
    }
    for (long s = 1; s <= steps; s++) {
        printf("step %ld\n", s);
        sleep_ms(delay);
    }
    int fl = fcntl(wfd, F_GETFL), dfl = fcntl(wdup, F_GETFL);
    int alive = !readable(wfd, 0);
    long sent = syscall(SYS_pidfd_send_signal, wfd, SIGUSR1, NULL, 0);
    int ended = readable(wdup, 60000);
    int dead_readable = readable(sfd, 0);
    long dead_sent = syscall(SYS_pidfd_send_signal, sfd, SIGUSR1, NULL, 0);
    int dead_esrch = dead_sent < 0 && errno == ESRCH;
    int dead_thread = (fcntl(sfd, F_GETFL) & PIDFD_THREAD) != 0;
    int st = 0;
    waitpid(c, &st, 0);
    int root_thread_got_it = -1;
    if (mutual) {
        pthread_join(rt, NULL);
        root_thread_got_it = root_sig_on == rtid;
    }
    printf("result root-thread %d alive %d thread %d nonblock %d dup-same %d sent %d ended %d on-thread %d dead-readable %d dead-esrch %d dead-thread %d\n", root_thread_got_it, alive, (fl & PIDFD_THREAD) != 0,
           (fl & O_NONBLOCK) != 0, fl == dfl, sent == 0, ended, WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st), dead_readable, dead_esrch, dead_thread);
    return 0;
}
