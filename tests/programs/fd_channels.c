/* Pipes, socketpairs, eventfd, timerfd, signalfd, epoll, inotify, dup, deleted file: set up
 * state, print READY, wait for the file "go" in the cwd, then check that every object still
 * holds what it held and print one line per object. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

static void wait_go(void) {
    struct timespec ts = {0, 20 * 1000 * 1000};
    while (access("go", F_OK) != 0) nanosleep(&ts, NULL);
}

int main(void) {
    int p[2], sv[2], dg[2];
    char buf[256];
    if (pipe(p) || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) || socketpair(AF_UNIX, SOCK_DGRAM, 0, dg)) return 2;
    write(p[1], "pipe-bytes", 10);
    write(sv[0], "to-one", 6);
    write(sv[1], "to-zero", 7);
    send(dg[0], "msg1", 4, 0);
    send(dg[0], "message2", 8, 0);
    int efd = eventfd(7, EFD_NONBLOCK);
    int tfd = timerfd_create(CLOCK_MONOTONIC, 0);
    struct itimerspec its = {.it_interval = {3, 0}, .it_value = {0, 300 * 1000 * 1000}};
    timerfd_settime(tfd, 0, &its, NULL);
    sigset_t ss;
    sigemptyset(&ss);
    sigaddset(&ss, SIGUSR1);
    sigprocmask(SIG_BLOCK, &ss, NULL);
    int sfd = signalfd(-1, &ss, SFD_NONBLOCK);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0xabcdef};
    epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev);
    mkdir("watched", 0700);
    int in = inotify_init1(IN_NONBLOCK);
    mkdir("gone1", 0700);
    mkdir("gone2", 0700);
    int w1 = inotify_add_watch(in, "gone1", IN_CREATE);
    int w2 = inotify_add_watch(in, "gone2", IN_CREATE);
    int wd = inotify_add_watch(in, "watched", IN_CREATE); /* wd 3, after a gap: 1 and 2 removed */
    inotify_rm_watch(in, w1);
    inotify_rm_watch(in, w2);
    char ign[256];
    while (read(in, ign, sizeof ign) > 0) {} /* their IN_IGNORED events */
    int dupfd = dup(p[0]);
    int ep2 = epoll_create1(0); /* watches a dup'd fd */
    struct epoll_event ev2 = {.events = EPOLLIN, .data.u64 = 0x77};
    epoll_ctl(ep2, EPOLL_CTL_ADD, dupfd, &ev2);
    int tmp = open("scratch.tmp", O_RDWR | O_CREAT | O_TRUNC, 0600);
    write(tmp, "deleted-but-open", 16);
    unlink("scratch.tmp");
    int half[2], deaf[2];
    pipe(half);
    write(half[1], "tail", 4);
    close(half[1]); /* read end only: its bytes, then EOF */
    pipe(deaf);
    close(deaf[0]); /* write end only: EPIPE */
    signal(SIGPIPE, SIG_IGN);
    printf("READY\n");
    fflush(stdout);
    wait_go();

    struct epoll_event out2;
    int n = epoll_wait(ep2, &out2, 1, 5000);
    printf("epoll on a dup: %d %lx\n", n, (unsigned long)out2.data.u64);
    n = read(dupfd, buf, 4);
    n += read(p[0], buf + n, sizeof buf - n);
    printf("pipe: %.*s\n", n, buf);
    n = read(sv[1], buf, sizeof buf);
    printf("sock1: %.*s\n", n, buf);
    n = read(sv[0], buf, sizeof buf);
    printf("sock0: %.*s\n", n, buf);
    n = recv(dg[1], buf, sizeof buf, 0);
    printf("dgram: %.*s\n", n, buf);
    n = recv(dg[1], buf, sizeof buf, 0);
    printf("dgram: %.*s\n", n, buf);
    struct epoll_event out;
    n = epoll_wait(ep, &out, 1, 5000);
    printf("epoll: %d %lx\n", n, (unsigned long)out.data.u64);
    uint64_t v = 0;
    read(efd, &v, 8);
    printf("eventfd: %lu\n", (unsigned long)v);
    errno = 0;
    n = read(efd, &v, 8);
    printf("eventfd again: %d %s\n", n, errno == EAGAIN ? "EAGAIN" : "?");
    read(tfd, &v, 8);
    printf("timerfd fired\n");
    struct itimerspec cur;
    timerfd_gettime(tfd, &cur);
    printf("timerfd interval: %ld\n", (long)cur.it_interval.tv_sec);
    kill(getpid(), SIGUSR1);
    struct signalfd_siginfo si;
    n = read(sfd, &si, sizeof si);
    printf("signalfd: %d %u\n", n, si.ssi_signo);
    close(open("watched/new", O_CREAT | O_WRONLY, 0600));
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
    n = read(in, buf, sizeof buf);
    struct inotify_event *ie = (struct inotify_event *)buf;
    printf("inotify: %d %d %d %s\n", n > 0, wd, ie->wd == wd, n > 0 ? ie->name : "");
    n = pread(tmp, buf, sizeof buf, 0);
    printf("deleted: %.*s\n", n, buf);
    write(tmp, "+more", 5);
    n = pread(tmp, buf, sizeof buf, 0);
    printf("deleted: %.*s\n", n, buf);
    close(p[1]);
    n = read(p[0], buf, sizeof buf);
    printf("pipe eof: %d\n", n);
    n = read(half[0], buf, sizeof buf);
    printf("read end only: %.*s", n > 0 ? n : 0, buf);
    printf(" then %d\n", (int)read(half[0], buf, sizeof buf));
    errno = 0;
    n = write(deaf[1], "x", 1);
    printf("write end only: %d %s\n", n, errno == EPIPE ? "EPIPE" : "?");
    return 0;
}
