/*
 * tree_shared_objects: a parent and a forked child that keep working through one kernel object
 * they share, for the tests of objects a tree's restart gives back shared or refuses
 * (process_trees, process_trees_shared).
 *
 * Usage: tree_shared_objects MODE [ROUNDS=200] [DELAY_MS=20]
 * MODE socketpair, socketpair-stream, socketpair-dgram, socketpair-seqpacket: the parent makes a
 *   UNIX socketpair (stream for the first two) and forks; the child answers each request r with
 *   f(r) from its private running state. The parent sends the next request before it sleeps, so
 *   an answer is queued unread most of the time, and prints "step r" each round. With
 *   socketpair-stream both processes keep both ends open (one socket held by two processes);
 *   with the others each closes the end it does not use. At the end the child sends its state
 *   and exits 7; the parent reaps it and prints "result <hex>". With socketpair-stdin (stream)
 *   the child's end is its fd 0.
 * MODE tcp: as socketpair, over a loopback TCP connection the parent accepted from its
 *   listener (which it keeps open) and the child holds the client end of.
 * MODE tcp-mapped: as tcp, the listener an IPv6 one on [::] (dual-stack) and the child's client
 *   end an IPv4 socket: the parent's end is named by the v4-mapped address.
 * MODE file: the parent opens tree_shared_objects.data (O_RDWR|O_CREAT|O_TRUNC) before the fork,
 *   so both processes write through one open file (one offset); they take turns through two
 *   pipes, each appending a 16-byte record with a plain write(). At the end the parent reads the
 *   file back from offset 0 and prints a hash of it (separate offsets would overwrite records).
 * MODE inflight-file: as file, but the parent keeps its copy in flight: between its turns the
 *   file sits in a message (SCM_RIGHTS) queued in a socketpair of its own, and its fd is closed.
 * MODE eventfd: the parent makes an event fd and forks; each round it passes a token to the
 *   child through a pipe and the child adds r to the event fd, which the parent reads back (one
 *   counter for both; a parent left with its own waits 5 s, says so and exits 92).
 * MODE timerfd: as eventfd, but through a timer fd: each round the child arms it (one shot, r
 *   ms) and the parent waits for its expiration and reads it (one expiration), then checks that
 *   the timer is disarmed.
 * MODE signalfd: as eventfd, but through a signal fd for SIGUSR1 (blocked in both): each round
 *   the child sets the signal fd's O_NONBLOCK (odd rounds) or clears it (even rounds), then
 *   sends SIGUSR1 to the parent, which checks the flag (one open file: the child's change is
 *   its own) and reads the signal from the signal fd.
 * MODE epoll: as eventfd, but through an epoll instance watching the read end of a pipe both
 *   hold: each round the child changes the entry's data to r (EPOLL_CTL_MOD) and writes a byte
 *   into the pipe; the parent waits on the epoll instance, which must report the pipe with data
 *   r (one interest list for both), and reads the byte.
 * MODE inotify: as eventfd, but through an inotify instance: the parent makes the directory
 *   tree_shared_objects.<pid>.d and watches it (IN_CREATE) before the fork; each round the child
 *   creates file r there, adds a watch on it (IN_MODIFY) and writes it; the parent reads the
 *   IN_CREATE and IN_MODIFY events from the instance (one instance: the child's watch is its
 *   watch too), removes the file's watch and reads its IN_IGNORED.
 * MODE listener-tcp, listener-unix, listener-abstract: the parent makes a listening socket (TCP
 *   on 127.0.0.1, a UNIX one at tree_shared_objects.<pid>.sock in the working directory (the
 *   uninterrupted run shares it), or at an abstract name) and forks; both keep it. Round r: one process connects to the listener's
 *   address and sends r, the other accepts from its own fd of the listener (the parent on even
 *   rounds, the child on odd ones), answers mix(r) and closes. Two separate listeners would
 *   leave one side's connections unaccepted (that side says so after 5 s and exits 92).
 * Deterministic.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <stddef.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tree_common.h"
#include "port_common.h"
#include "tree_fdpass.h"

static void reap(pid_t child)
{
    int st;
    if (waitpid(child, &st, 0) != child || !WIFEXITED(st) || WEXITSTATUS(st) != 7) {
        fprintf(stderr, "child: %s\n", strerror(errno));
        exit(91);
    }
}

static int file_mode(int rounds, int delay)
{
    int fd = open("tree_shared_objects.data", O_RDWR | O_CREAT | O_TRUNC, 0600);
    int to_child[2], to_parent[2];
    if (fd < 0 || pipe(to_child) != 0 || pipe(to_parent) != 0)
        return perror("setup"), 1;
    char rec[17];
    char token = 't';
    pid_t child = fork();
    if (child == 0) {
        for (int r = 1; r <= rounds; r++) {
            xfer(to_child[0], &token, 1, 0);
            snprintf(rec, sizeof rec, "c%014d\n", r);
            xfer(fd, rec, 16, 1);
            xfer(to_parent[1], &token, 1, 1);
        }
        _exit(7);
    }
    for (int r = 1; r <= rounds; r++) {
        snprintf(rec, sizeof rec, "p%014d\n", r);
        xfer(fd, rec, 16, 1);
        xfer(to_child[1], &token, 1, 1);
        xfer(to_parent[0], &token, 1, 0);
        step(r);
        sleep_ms(delay);
    }
    reap(child);
    return print_file_result(fd);
}

static int eventfd_mode(int rounds, int delay)
{
    int efd = eventfd(0, EFD_NONBLOCK);
    int to_child[2];
    if (efd < 0 || pipe(to_child) != 0)
        return perror("setup"), 1;
    char token = 't';
    pid_t child = fork();
    if (child == 0) {
        for (int r = 1; r <= rounds; r++) {
            xfer(to_child[0], &token, 1, 0);
            uint64_t v = (uint64_t)r;
            xfer(efd, &v, sizeof v, 1);
        }
        _exit(7);
    }
    uint64_t h = 0;
    for (int r = 1; r <= rounds; r++) {
        xfer(to_child[1], &token, 1, 1);
        wait_readable(efd, r, "event fd");
        uint64_t v;
        xfer(efd, &v, sizeof v, 0);
        if (v != (uint64_t)r) {
            fprintf(stderr, "round %d: the event fd held %llu\n", r, (unsigned long long)v);
            exit(93);
        }
        h = mix(h + v);
        step(r);
        sleep_ms(delay);
    }
    reap(child);
    printf("result %016llx\n", (unsigned long long)h);
    return 0;
}

/* The object of the timerfd, signalfd and listener modes (one fd, shared by fork). */
static int obj;

/* Rounds in turns: the parent hands the child a token, and while the child does child_turn(r)
 * on `obj` the parent does parent_turn(r); the child hands the token back. The values both
 * return make the result (the child's sent at the end). */
static int take_turns(int rounds, int delay, uint64_t (*child_turn)(int), uint64_t (*parent_turn)(int))
{
    int to_child[2], to_parent[2];
    if (obj < 0 || pipe(to_child) != 0 || pipe(to_parent) != 0)
        return perror("setup"), 1;
    char token = 't';
    pid_t child = fork();
    if (child == 0) {
        uint64_t acc = 0;
        for (int r = 1; r <= rounds; r++) {
            xfer(to_child[0], &token, 1, 0);
            acc = mix(acc ^ child_turn(r));
            xfer(to_parent[1], &token, 1, 1);
        }
        xfer(to_parent[1], &acc, sizeof acc, 1);
        _exit(7);
    }
    uint64_t h = 0;
    for (int r = 1; r <= rounds; r++) {
        xfer(to_child[1], &token, 1, 1);
        h = mix(h + parent_turn(r));
        xfer(to_parent[0], &token, 1, 0);
        step(r);
        sleep_ms(delay);
    }
    uint64_t theirs;
    xfer(to_parent[0], &theirs, sizeof theirs, 0);
    reap(child);
    printf("result %016llx\n", (unsigned long long)mix(h ^ theirs));
    return 0;
}

static uint64_t arm_timer(int r)
{
    struct itimerspec its = {.it_value = {0, (long)(r % 50 + 1) * 1000000L}};
    if (timerfd_settime(obj, 0, &its, NULL) != 0) {
        perror("timerfd_settime");
        exit(1);
    }
    return 0;
}

static uint64_t read_timer(int r)
{
    wait_readable(obj, r, "timer fd");
    uint64_t v;
    xfer(obj, &v, sizeof v, 0);
    struct itimerspec now;
    if (v != 1 || timerfd_gettime(obj, &now) != 0 || now.it_value.tv_sec != 0 || now.it_value.tv_nsec != 0) {
        fprintf(stderr, "round %d: the timer fd gave %llu expirations\n", r, (unsigned long long)v);
        exit(93);
    }
    return (uint64_t)r * v;
}

static pid_t parent_pid;

static uint64_t flag_and_signal(int r)
{
    int fl = fcntl(obj, F_GETFL);
    fl = r % 2 ? fl | O_NONBLOCK : fl & ~O_NONBLOCK;
    if (fcntl(obj, F_SETFL, fl) != 0 || kill(parent_pid, SIGUSR1) != 0) {
        perror("child");
        exit(1);
    }
    return 0;
}

static uint64_t read_signal(int r)
{
    /* (The child sets the flag before it signals.) */
    wait_readable(obj, r, "signal fd");
    int nonblock = (fcntl(obj, F_GETFL) & O_NONBLOCK) != 0;
    if (nonblock != r % 2) {
        fprintf(stderr, "round %d: the child's O_NONBLOCK on the signal fd is not seen here (%d)\n", r, nonblock);
        exit(93);
    }
    struct signalfd_siginfo si;
    xfer(obj, &si, sizeof si, 0);
    if (si.ssi_signo != SIGUSR1 || si.ssi_pid == (uint32_t)parent_pid) {
        fprintf(stderr, "round %d: signal %u from %u\n", r, si.ssi_signo, si.ssi_pid);
        exit(93);
    }
    return (uint64_t)r + si.ssi_signo;
}

static int timerfd_mode(int rounds, int delay)
{
    obj = timerfd_create(CLOCK_MONOTONIC, 0);
    return take_turns(rounds, delay, arm_timer, read_timer);
}

static int signalfd_mode(int rounds, int delay)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, NULL);
    parent_pid = getpid();
    obj = signalfd(-1, &set, 0);
    return take_turns(rounds, delay, flag_and_signal, read_signal);
}

/* The epoll mode's pipe. */
static int epipe[2];

static uint64_t mod_and_write(int r)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)r};
    char b = 'e';
    if (epoll_ctl(obj, EPOLL_CTL_MOD, epipe[0], &ev) != 0) {
        perror("epoll_ctl");
        exit(1);
    }
    xfer(epipe[1], &b, 1, 1);
    return 0;
}

static uint64_t wait_epoll(int r)
{
    wait_epoll_data(obj, r, "the epoll instance", 93);
    char b;
    xfer(epipe[0], &b, 1, 0);
    return (uint64_t)r * 3;
}

static int epoll_mode(int rounds, int delay)
{
    obj = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0};
    if (obj < 0 || pipe(epipe) != 0 || epoll_ctl(obj, EPOLL_CTL_ADD, epipe[0], &ev) != 0)
        return perror("epoll"), 1;
    return take_turns(rounds, delay, mod_and_write, wait_epoll);
}

/* The inotify mode's directory. */
static char idir[4096];

static uint64_t create_and_watch(int r)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%d", idir, r);
    /* (The checkpointed run, which goes on until it is killed, may have made it already.) */
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || inotify_add_watch(obj, path, IN_MODIFY) < 0) {
        perror("inotify child");
        exit(1);
    }
    xfer(fd, "x", 1, 1);
    close(fd);
    return 0;
}

/* The next event of the inotify instance, which must be `mask` (waiting at most 5 s). */
static struct inotify_event *next_event(int r, uint32_t mask)
{
    /* What one read gave (several events at once, perhaps), and how far it is taken. */
    static char buf[8192] __attribute__((aligned(8)));
    static ssize_t len, at;
    if (at >= len) {
        wait_readable(obj, r, "inotify instance");
        len = read(obj, buf, sizeof buf);
        at = 0;
    }
    struct inotify_event *e = (struct inotify_event *)(buf + at);
    if (len - at < (ssize_t)sizeof *e || (e->mask & mask) == 0) {
        fprintf(stderr, "round %d: inotify gave %zd bytes, mask %x (expected %x)\n", r, len - at, len - at >= (ssize_t)sizeof *e ? e->mask : 0, mask);
        exit(93);
    }
    at += (ssize_t)sizeof *e + e->len;
    return e;
}

static uint64_t read_events(int r)
{
    struct inotify_event *e = next_event(r, IN_CREATE);
    uint64_t v = (uint64_t)atoi(e->name);
    int wd = next_event(r, IN_MODIFY)->wd;
    if (v != (uint64_t)r || inotify_rm_watch(obj, wd) != 0) {
        fprintf(stderr, "round %d: file %llu, watch %d\n", r, (unsigned long long)v, wd);
        exit(93);
    }
    next_event(r, IN_IGNORED);
    return v * 7;
}

static int inotify_mode(int rounds, int delay)
{
    if (getcwd(idir, sizeof idir - 64) == NULL)
        return perror("getcwd"), 1;
    snprintf(idir + strlen(idir), 64, "/tree_shared_objects.%d.d", (int)getpid());
    obj = inotify_init1(0);
    if (obj < 0 || mkdir(idir, 0700) != 0 || inotify_add_watch(obj, idir, IN_CREATE) < 0)
        return perror("inotify"), 1;
    return take_turns(rounds, delay, create_and_watch, read_events);
}

static int inflight_file(int rounds, int delay)
{
    int fd = open("tree_shared_objects.data", O_RDWR | O_CREAT | O_TRUNC, 0600);
    int to_child[2], to_parent[2];
    if (fd < 0 || pipe(to_child) != 0 || pipe(to_parent) != 0)
        return perror("setup"), 1;
    char rec[17];
    char token = 't';
    pid_t child = fork();
    if (child == 0) {
        for (int r = 1; r <= rounds; r++) {
            xfer(to_child[0], &token, 1, 0);
            snprintf(rec, sizeof rec, "c%014d\n", r);
            xfer(fd, rec, 16, 1);
            xfer(to_parent[1], &token, 1, 1);
        }
        _exit(7);
    }
    /* The parent's mailbox: made after the fork, so only the parent holds it. */
    int box[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, box) != 0)
        return perror("socketpair"), 1;
    send_fd(box[0], fd);
    close(fd);
    for (int r = 1; r <= rounds; r++) {
        fd = recv_fd(box[1]);
        snprintf(rec, sizeof rec, "p%014d\n", r);
        xfer(fd, rec, 16, 1);
        send_fd(box[0], fd);
        close(fd);
        xfer(to_child[1], &token, 1, 1);
        xfer(to_parent[0], &token, 1, 0);
        step(r);
        sleep_ms(delay);
    }
    reap(child);
    fd = recv_fd(box[1]);
    return print_file_result(fd);
}

/* The tcp mode's listener (the parent's only). */
static int listener = -1;
/* tcp-mapped: the listener is IPv6 (dual-stack), the client IPv4. */
static int mapped;

/* A loopback TCP connection: sv[0] accepted from a listener on 127.0.0.1 (a free port,
 * left open in the parent), sv[1] its client. */
static int tcp_pair(int sv[2])
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    int l;
    if (mapped) {
        struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_addr = in6addr_any };
        socklen_t len6 = sizeof a6;
        int off = 0;
        l = socket(AF_INET6, SOCK_STREAM, 0);
        if (l < 0 || setsockopt(l, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off) != 0 || bind_free_port(l, &a6, sizeof a6) != 0 || listen(l, 4) != 0
            || getsockname(l, (struct sockaddr *)&a6, &len6) != 0)
            return -1;
        a.sin_port = a6.sin6_port;
    } else {
        l = socket(AF_INET, SOCK_STREAM, 0);
        if (l < 0 || bind_free_port(l, &a, sizeof a) != 0 || listen(l, 4) != 0 || getsockname(l, (struct sockaddr *)&a, &len) != 0)
            return -1;
    }
    sv[1] = socket(AF_INET, SOCK_STREAM, 0);
    if (sv[1] < 0 || connect(sv[1], (struct sockaddr *)&a, sizeof a) != 0)
        return -1;
    sv[0] = accept(l, NULL, NULL);
    listener = l;
    return sv[0] < 0 ? -1 : 0;
}

/* socketpair-stdin: the child's end is its stdin (MPICH's hydra_pmi_proxy talks to mpiexec so). */
static int on_stdin;

static int socketpair_mode(int type, int keep_both, int rounds, int delay)
{
    int sv[2];
    if (type == -1 ? tcp_pair(sv) != 0 : socketpair(AF_UNIX, type, 0, sv) != 0)
        return perror("socketpair"), 1;
    pid_t child = fork();
    if (child == 0) {
        if (listener >= 0)
            close(listener);
        if (!keep_both)
            close(sv[0]);
        if (on_stdin) {
            dup2(sv[1], 0);
            close(sv[1]);
            sv[1] = 0;
        }
        uint64_t state = 1;
        for (;;) {
            uint64_t r;
            xfer(sv[1], &r, sizeof r, 0);
            if (r == 0)
                break;
            state = mix(state + r);
            xfer(sv[1], &state, sizeof state, 1);
        }
        xfer(sv[1], &state, sizeof state, 1);
        _exit(7);
    }
    if (!keep_both)
        close(sv[1]);
    uint64_t acc = 0, r = 1;
    xfer(sv[0], &r, sizeof r, 1);
    for (r = 1; r <= (uint64_t)rounds; r++) {
        uint64_t v;
        xfer(sv[0], &v, sizeof v, 0);
        acc = mix(acc ^ v);
        step((int)r);
        if (r < (uint64_t)rounds) {
            uint64_t next = r + 1;
            xfer(sv[0], &next, sizeof next, 1);
        }
        sleep_ms(delay);
    }
    uint64_t zero = 0, last;
    xfer(sv[0], &zero, sizeof zero, 1);
    xfer(sv[0], &last, sizeof last, 0);
    reap(child);
    printf("result %016llx\n", (unsigned long long)mix(acc ^ last));
    return 0;
}

/* The listener modes' address. */
static struct sockaddr_storage laddr;
static socklen_t laddr_len;

static int make_listener(const char *kind)
{
    int l;
    if (strcmp(kind, "tcp") == 0) {
        struct sockaddr_in *a = (struct sockaddr_in *)&laddr;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        laddr_len = sizeof *a;
        l = socket(AF_INET, SOCK_STREAM, 0);
        /* (As servers do: the killed tree's closed connections linger on the port.) */
        int one = 1;
        setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    } else {
        struct sockaddr_un *a = (struct sockaddr_un *)&laddr;
        a->sun_family = AF_UNIX;
        if (strcmp(kind, "unix") == 0) {
            snprintf(a->sun_path, sizeof a->sun_path, "tree_shared_objects.%d.sock", (int)getpid());
            unlink(a->sun_path);
            laddr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(a->sun_path) + 1);
        } else {
            int n = snprintf(a->sun_path + 1, sizeof a->sun_path - 1, "ckpt-tree-listener-%d", (int)getpid());
            laddr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
        }
        l = socket(AF_UNIX, SOCK_STREAM, 0);
    }
    int bound = strcmp(kind, "tcp") == 0 ? bind_free_port(l, &laddr, laddr_len) : bind(l, (struct sockaddr *)&laddr, laddr_len);
    if (l < 0 || bound != 0 || listen(l, 4) != 0)
        return -1;
    laddr_len = sizeof laddr;
    if (getsockname(l, (struct sockaddr *)&laddr, &laddr_len) != 0)
        return -1;
    return l;
}

/* One connection to the listener: sends r, returns the answer. */
static uint64_t connect_round(uint64_t r)
{
    return ask_listener((struct sockaddr *)&laddr, laddr_len, r);
}

/* One connection accepted from the listener (waiting at most 5 s): answers mix(r). */
static void accept_round(int r, const char *who)
{
    answer_listener(obj, r, who);
}

/* The child accepts on odd rounds and connects on even ones; the parent the other way round. */
static uint64_t child_listener_turn(int r)
{
    if (r % 2 == 0)
        return connect_round((uint64_t)r);
    accept_round(r, "the child's listener");
    return 0;
}

static uint64_t parent_listener_turn(int r)
{
    if (r % 2)
        return connect_round((uint64_t)r);
    accept_round(r, "the parent's listener");
    return 0;
}

static int listener_mode(const char *kind, int rounds, int delay)
{
    obj = make_listener(kind);
    return take_turns(rounds, delay, child_listener_turn, parent_listener_turn);
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "socketpair";
    int rounds = argc > 2 ? atoi(argv[2]) : 200;
    int delay = argc > 3 ? atoi(argv[3]) : 20;
    printf("start tree_shared_objects %s %d %d\n", mode, rounds, delay);
    fflush(stdout);
    if (strcmp(mode, "socketpair") == 0)
        return socketpair_mode(SOCK_STREAM, 0, rounds, delay);
    if (strcmp(mode, "socketpair-stdin") == 0) {
        on_stdin = 1;
        return socketpair_mode(SOCK_STREAM, 0, rounds, delay);
    }
    if (strcmp(mode, "socketpair-stream") == 0)
        return socketpair_mode(SOCK_STREAM, 1, rounds, delay);
    if (strcmp(mode, "socketpair-dgram") == 0)
        return socketpair_mode(SOCK_DGRAM, 0, rounds, delay);
    if (strcmp(mode, "socketpair-seqpacket") == 0)
        return socketpair_mode(SOCK_SEQPACKET, 0, rounds, delay);
    if (strcmp(mode, "tcp") == 0)
        return socketpair_mode(-1, 0, rounds, delay);
    if (strcmp(mode, "tcp-mapped") == 0) {
        mapped = 1;
        return socketpair_mode(-1, 0, rounds, delay);
    }
    if (strcmp(mode, "inflight-file") == 0)
        return inflight_file(rounds, delay);
    if (strcmp(mode, "eventfd") == 0)
        return eventfd_mode(rounds, delay);
    if (strcmp(mode, "inotify") == 0)
        return inotify_mode(rounds, delay);
    if (strcmp(mode, "epoll") == 0)
        return epoll_mode(rounds, delay);
    if (strcmp(mode, "timerfd") == 0)
        return timerfd_mode(rounds, delay);
    if (strcmp(mode, "signalfd") == 0)
        return signalfd_mode(rounds, delay);
    if (strncmp(mode, "listener-", 9) == 0)
        return listener_mode(mode + 9, rounds, delay);
    if (strcmp(mode, "file") == 0)
        return file_mode(rounds, delay);
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
}
