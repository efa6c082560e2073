/* A parent that passes an object it keeps to its child over a socketpair (SCM_RIGHTS), the
 * message still queued at every moment: the object is in flight in the child's end of the
 * socketpair and held by the parent as an fd, so a checkpoint always finds it so. Usage:
 *   tree_inflight MODE ROUNDS DELAY_MS
 * The parent forks, then makes the object (the child gets it only through the socketpair) and
 * sends it once; each round it sends it again (the next round's message), lets the child
 * receive this round's copy, and both use the one object; the child closes its copy. After
 * each round the parent prints "step r"; at the end "result HASH" of both sides' values.
 * MODE pipe: the object is the read end of a pipe whose both ends the parent keeps. Round r:
 *   the parent writes two values; the child reads the first through its copy and sets (odd
 *   rounds) or clears (even rounds) O_NONBLOCK on it; the parent checks that its own read end
 *   has the child's flag (one open file) and reads the second value through it. A child with a
 *   pipe of its own finds nothing in it (5 s) and exits 92.
 * MODE socketpair: the object is one end of a socketpair whose both ends the parent keeps.
 *   Round r: the parent writes a value into the other end; the child reads it through its copy
 *   and answers mix(value) through it; the parent reads the answer. A child with a socket of its
 *   own finds nothing in it (5 s: exit 92).
 * MODE listener: the object is a TCP listener on 127.0.0.1. Round r: on odd rounds the parent
 *   connects and the child accepts through its copy; on even rounds the child connects (to the
 *   address of its copy) and the parent accepts through its own fd; the accepting side answers
 *   mix(r). Two listeners would leave one side's connection unaccepted (5 s: exit 92).
 * MODE file: the object is the file tree_inflight.<pid>.data opened read-write (by pid: the
 *   uninterrupted run of a test runs at the same time in the same directory); each round the child
 *   writes a record through its copy, then the parent through its own fd: one offset, so the
 *   records follow each other (two open files would write over each other). At the end the
 *   parent prints the hash and size of the file's content.
 * MODE memfd: as file, with a memfd (a file without a name) made by memfd_create.
 * MODE deleted: as file, with the file removed once opened.
 * MODE eventfd: the object is an event fd (non-blocking). Round r: the parent adds r, the child
 *   adds 1000 + r through its copy, the parent reads the sum through its fd (two event fds:
 *   the parent reads r only, says so and exits 95).
 * MODE timerfd: the object is a timer fd; the child sets its interval to r seconds (and a
 *   value far off) through its copy, the parent finds that interval through its fd (else 95).
 * MODE signalfd: the object is a signal fd; the child sets its mask to SIGURG (odd rounds) or
 *   SIGWINCH (even rounds) through its copy, the parent finds that mask in its fd's fdinfo
 *   (else 95).
 * MODE epoll: the object is an epoll instance watching (EPOLLIN) the read end of a pipe that only
 *   the parent holds. Round r: the parent writes a value into the pipe; the child waits on its
 *   copy, which must report the pipe with data r (else 5 s: exit 92), and sets (odd rounds) or
 *   clears (even rounds) O_NONBLOCK on it; the parent checks that its epoll fd has the child's
 *   flag (one open file, else 95), reads the value, finds the instance quiet, and sets the
 *   entry's data to r + 1 (EPOLL_CTL_MOD).
 * MODE inotify: the object is an inotify instance watching (IN_CREATE) the directory
 *   tree_inflight.<pid>.d. Round r: the parent makes the directory f<r> there; the child reads
 *   the IN_CREATE event of f<r> through its copy (else 5 s: exit 92) and sets or clears
 *   O_NONBLOCK on it as above; the parent checks the flag and that no event is left in its fd
 *   (one queue: a second instance would still hold it; else 95), and removes f<r>.
 * Suffix -flying (file-flying, memfd-flying, deleted-flying, eventfd-flying, ...): as the mode, but between
 *   rounds the parent's copy is in flight too, in a socketpair of its own (it receives it for
 *   its turn and sends it back), so that the object is held by no fd at all, only in flight in
 *   two processes.
 * Suffix -early (epoll-early-baton, inotify-early-baton): the object, its pipe or watch are made
 *   before the fork; each child closes its inherited fd of the object (it keeps the pipe's ends).
 * Suffix -baton (memfd-baton, deleted-baton, epoll..., inotify...): the object is held by no fd between turns, only in
 *   flight: the parent sends it and closes its fd; the child receives it, writes its record,
 *   sends it back and closes its copy; the parent receives it, writes, sends it again and
 *   closes it. Between rounds it is in flight in the child's end of the socketpair only.
 * Suffix -twice (file-twice, memfd-twice, eventfd-twice): two children, each with its own
 *   socketpair; the parent keeps the object and sends it to both, so it is in flight in two
 *   processes' sockets at once; the children take their turns one after the other (records
 *   'c' and 'd'; the event fd's sum counts both).
 * Deterministic. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>

#include "tree_common.h"
#include "port_common.h"
#include "tree_fdpass.h"

static const char *mode;
/* The parent's object, the pipe's write end or the socketpair's other end, and the epoll
 * mode's read end of its pipe. */
static int obj = -1, wr = -1, rd = -1;
/* Suffixes of MODE (-baton, -twice, -early), and the number of children. */
static int baton, twice, early, kids = 1;
/* The inotify mode's directory. */
static char idir[64];
static struct sockaddr_in laddr;

static int make_object(void)
{
    if (strcmp(mode, "pipe") == 0) {
        int p[2];
        if (pipe(p) != 0)
            return -1;
        wr = p[1];
        return p[0];
    }
    if (strcmp(mode, "socketpair") == 0) {
        int q[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, q) != 0)
            return -1;
        wr = q[0];
        return q[1];
    }
    if (strcmp(mode, "listener") == 0) {
        int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
        /* (The killed tree's accepted ends linger in TIME_WAIT on the port: the restart would
         * wait a minute for it without SO_REUSEADDR.) */
        setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        laddr.sin_family = AF_INET;
        laddr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (l < 0 || bind_free_port(l, &laddr, sizeof laddr) != 0 || listen(l, 4) != 0)
            return -1;
        return l;
    }
    char data[64];
    snprintf(data, sizeof data, "tree_inflight.%d.data", (int)getpid());
    if (strcmp(mode, "file") == 0)
        return open(data, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (strcmp(mode, "memfd") == 0)
        return memfd_create("tree_inflight", 0);
    if (strcmp(mode, "deleted") == 0) {
        int fd = open(data, O_RDWR | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0 && unlink(data) != 0)
            return -1;
        return fd;
    }
    if (strcmp(mode, "eventfd") == 0)
        return eventfd(0, EFD_NONBLOCK);
    if (strcmp(mode, "epoll") == 0) {
        int p[2], ep = epoll_create1(0);
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 1};
        if (ep < 0 || pipe(p) != 0 || epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev) != 0)
            return -1;
        rd = p[0];
        wr = p[1];
        return ep;
    }
    if (strcmp(mode, "inotify") == 0) {
        snprintf(idir, sizeof idir, "tree_inflight.%d.d", (int)getpid());
        int in = inotify_init1(0);
        if (in < 0 || mkdir(idir, 0700) != 0 || inotify_add_watch(in, idir, IN_CREATE) < 0)
            return -1;
        return in;
    }
    if (strcmp(mode, "timerfd") == 0)
        return timerfd_create(CLOCK_MONOTONIC, 0);
    if (strcmp(mode, "signalfd") == 0) {
        sigset_t m;
        sigemptyset(&m);
        sigaddset(&m, SIGWINCH);
        return signalfd(-1, &m, 0);
    }
    return -1;
}

static void write_record(int fd, char who, int r)
{
    char rec[17];
    snprintf(rec, sizeof rec, "%c%014d\n", who, r);
    xfer(fd, rec, 16, 1);
}

/* The signal a signal fd's mask holds in round r. */
static int round_signal(int r)
{
    return r % 2 ? SIGURG : SIGWINCH;
}

/* Set (odd rounds) or clear (even rounds) O_NONBLOCK on `fd`. */
static void round_flag(int fd, int r)
{
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, r % 2 ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
}

/* Whether the parent's `fd` has the flag of round r (`what` names it; else exit 95). */
static void check_round_flag(int fd, int r, const char *what)
{
    if (((fcntl(fd, F_GETFL) & O_NONBLOCK) != 0) != r % 2) {
        fprintf(stderr, "round %d: the parent's %s does not have the child's O_NONBLOCK: two open files\n", r, what);
        exit(95);
    }
}

/* The file of round r in the inotify mode's directory. */
static void round_file(char *path, size_t n, int r)
{
    snprintf(path, n, "%s/f%d", idir, r);
}

/* The child's part of round r with its copy `fd` of the object (`who`: its records' mark). */
static uint64_t child_turn(int fd, int r, char who)
{
    if (strcmp(mode, "epoll") == 0) {
        wait_epoll_data(fd, r, "the child's copy of the epoll instance", 92);
        round_flag(fd, r);
        return (uint64_t)r;
    }
    if (strcmp(mode, "inotify") == 0) {
        char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
        char want[16];
        snprintf(want, sizeof want, "f%d", r);
        wait_readable(fd, r, "child's copy of the inotify instance");
        ssize_t n = read(fd, buf, sizeof buf);
        struct inotify_event *e = (struct inotify_event *)buf;
        if (n < (ssize_t)sizeof *e || n != (ssize_t)(sizeof *e + e->len) || !(e->mask & IN_CREATE) || strcmp(e->name, want) != 0) {
            fprintf(stderr, "round %d: the child's copy of the inotify instance gave %zd bytes (mask %x, not f%d's creation)\n", r, n, n >= (ssize_t)sizeof *e ? e->mask : 0, r);
            exit(92);
        }
        round_flag(fd, r);
        return mix((uint64_t)r);
    }
    if (strcmp(mode, "eventfd") == 0) {
        uint64_t v = 1000 + (uint64_t)r;
        xfer(fd, &v, sizeof v, 1);
        return v;
    }
    if (strcmp(mode, "timerfd") == 0) {
        struct itimerspec it = {{r, 0}, {100000, 0}};
        if (timerfd_settime(fd, 0, &it, NULL) != 0) {
            perror("timerfd_settime");
            exit(94);
        }
        return (uint64_t)r;
    }
    if (strcmp(mode, "signalfd") == 0) {
        sigset_t m;
        sigemptyset(&m);
        sigaddset(&m, round_signal(r));
        if (signalfd(fd, &m, 0) != fd) {
            perror("signalfd");
            exit(94);
        }
        return (uint64_t)r;
    }
    if (strcmp(mode, "pipe") == 0) {
        uint64_t v;
        wait_readable(fd, r, "child's copy of the pipe");
        xfer(fd, &v, sizeof v, 0);
        round_flag(fd, r);
        return v;
    }
    if (strcmp(mode, "socketpair") == 0) {
        uint64_t v;
        wait_readable(fd, r, "child's copy of the socketpair end");
        xfer(fd, &v, sizeof v, 0);
        v = mix(v);
        xfer(fd, &v, sizeof v, 1);
        return v;
    }
    if (strcmp(mode, "listener") == 0) {
        if (r % 2) {
            answer_listener(fd, r, "child's copy of the listener");
            return 0;
        }
        struct sockaddr_in a;
        socklen_t len = sizeof a;
        if (getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
            perror("getsockname");
            exit(94);
        }
        return ask_listener((struct sockaddr *)&a, sizeof a, (uint64_t)r);
    }
    write_record(fd, who, r);
    return 0;
}

/* The mask of our signal fd `fd`, from its fdinfo. */
static uint64_t signalfd_mask(int fd)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
    FILE *f = fopen(path, "r");
    unsigned long long m = 0;
    while (f && fgets(buf, sizeof buf, f))
        if (sscanf(buf, "sigmask: %llx", &m) == 1)
            break;
    if (f)
        fclose(f);
    return m;
}

/* The parent's part of round r: before the child's (`phase` 1), while the child takes its
 * turn (2), after it (0). */
static uint64_t parent_turn(int r, int phase)
{
    if (strcmp(mode, "pipe") == 0) {
        if (phase == 2)
            return 0;
        if (phase == 1) {
            uint64_t v[2] = {mix((uint64_t)r), mix((uint64_t)r + 1000)};
            xfer(wr, v, sizeof v, 1);
            return 0;
        }
        check_round_flag(obj, r, "read end");
        uint64_t v;
        wait_readable(obj, r, "parent's read end");
        xfer(obj, &v, sizeof v, 0);
        return v;
    }
    if (strcmp(mode, "socketpair") == 0) {
        uint64_t v = mix((uint64_t)r + 7);
        if (phase == 1)
            xfer(wr, &v, sizeof v, 1);
        if (phase != 0)
            return 0;
        wait_readable(wr, r, "parent's end of the socketpair");
        xfer(wr, &v, sizeof v, 0);
        return v;
    }
    if (strcmp(mode, "listener") == 0) {
        if (phase != 2)
            return 0;
        if (r % 2)
            return ask_listener((struct sockaddr *)&laddr, sizeof laddr, (uint64_t)r);
        answer_listener(obj, r, "parent's listener");
        return 0;
    }
    if (strcmp(mode, "epoll") == 0) {
        uint64_t v = mix((uint64_t)r);
        if (phase == 1)
            xfer(wr, &v, sizeof v, 1);
        if (phase != 0)
            return 0;
        check_round_flag(obj, r, "epoll fd");
        struct epoll_event ev;
        xfer(rd, &v, sizeof v, 0);
        if (epoll_wait(obj, &ev, 1, 0) != 0) {
            fprintf(stderr, "round %d: the parent's epoll instance reports a drained pipe\n", r);
            exit(95);
        }
        ev.events = EPOLLIN;
        ev.data.u64 = (uint64_t)r + 1;
        if (epoll_ctl(obj, EPOLL_CTL_MOD, rd, &ev) != 0) {
            perror("epoll_ctl");
            exit(94);
        }
        return v;
    }
    if (strcmp(mode, "inotify") == 0) {
        char path[96];
        round_file(path, sizeof path, r);
        /* A directory, made without an fd (a file made with open would be held at a cut between
         * open and close, and removed by the killed run). (Left by a run killed after the image
         * was taken: removed first.) */
        if (phase == 1 && (rmdir(path), mkdir(path, 0700)) != 0) {
            perror(path);
            exit(94);
        }
        if (phase != 0)
            return 0;
        check_round_flag(obj, r, "inotify fd");
        int left = -1;
        if (ioctl(obj, FIONREAD, &left) != 0 || left != 0) {
            fprintf(stderr, "round %d: %d bytes of events left in the parent's inotify instance: two instances\n", r, left);
            exit(95);
        }
        rmdir(path);
        return mix((uint64_t)r);
    }
    if (strcmp(mode, "eventfd") == 0) {
        uint64_t v = (uint64_t)r;
        if (phase == 1)
            xfer(obj, &v, sizeof v, 1);
        if (phase != 0)
            return 0;
        uint64_t want = (uint64_t)r + (uint64_t)kids * (1000 + (uint64_t)r);
        if (read(obj, &v, sizeof v) != sizeof v || v != want) {
            fprintf(stderr, "round %d: the parent's event fd does not count the child's: two event fds\n", r);
            exit(95);
        }
        return v;
    }
    if (strcmp(mode, "timerfd") == 0) {
        struct itimerspec it;
        if (phase != 0)
            return 0;
        if (timerfd_gettime(obj, &it) != 0 || it.it_interval.tv_sec != r) {
            fprintf(stderr, "round %d: the parent's timer fd does not have the child's interval: two timer fds\n", r);
            exit(95);
        }
        return (uint64_t)r;
    }
    if (strcmp(mode, "signalfd") == 0) {
        if (phase != 0)
            return 0;
        if (signalfd_mask(obj) != 1ULL << (round_signal(r) - 1)) {
            fprintf(stderr, "round %d: the parent's signal fd does not have the child's mask: two signal fds\n", r);
            exit(95);
        }
        return (uint64_t)r;
    }
    if (phase == 0)
        write_record(obj, 'p', r);
    return 0;
}

/* A child's rounds: its end `s` of its socketpair, its token pipes, its records' mark. */
static void child_main(int s, int tin, int tout, int rounds, char who)
{
    char token;
    uint64_t acc = 0;
    for (int r = 1; r <= rounds; r++) {
        xfer(tin, &token, 1, 0);
        int fd = recv_fd(s);
        acc = mix(acc ^ child_turn(fd, r, who));
        if (baton)
            send_fd(s, fd);
        close(fd);
        xfer(tout, &token, 1, 1);
    }
    xfer(tout, &acc, sizeof acc, 1);
    _exit(7);
}

int main(int argc, char **argv)
{
    mode = argc > 1 ? argv[1] : "pipe";
    int rounds = argc > 2 ? atoi(argv[2]) : 200;
    int delay = argc > 3 ? atoi(argv[3]) : 20;
    printf("start tree_inflight %s %d %d\n", mode, rounds, delay);
    fflush(stdout);
    /* -flying: the parent's copy is in flight in a mailbox of its own between rounds. */
    int flying = strstr(mode, "-flying") != NULL, box[2];
    static char base[32];
    snprintf(base, sizeof base, "%s", mode);
    char *dash = strchr(base, '-');
    if (dash != NULL) {
        baton = strstr(dash, "-baton") != NULL;
        twice = strstr(dash, "-twice") != NULL;
        early = strstr(dash, "-early") != NULL;
        *dash = 0;
    }
    mode = base;
    kids = twice ? 2 : 1;
    int sp[2][2], to_child[2][2], to_parent[2][2];
    pid_t child[2];
    char token = 't';
    if (early && (obj = make_object()) < 0)
        return perror(mode), 1;
    for (int k = 0; k < kids; k++) {
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp[k]) != 0 || pipe(to_child[k]) != 0 || pipe(to_parent[k]) != 0)
            return perror("setup"), 1;
        child[k] = fork();
        if (child[k] == 0) {
            for (int j = 0; j <= k; j++)
                close(sp[j][0]);
            close(to_child[k][1]);
            close(to_parent[k][0]);
            if (early)
                close(obj);
            child_main(sp[k][1], to_child[k][0], to_parent[k][1], rounds, (char)('c' + k));
        }
        /* (The other side of a child that exits ends: its pipes' reads end.) */
        close(sp[k][1]);
        close(to_child[k][0]);
        close(to_parent[k][1]);
    }
    if (flying && socketpair(AF_UNIX, SOCK_STREAM, 0, box) != 0)
        return perror("socketpair"), 1;
    if (!early && (obj = make_object()) < 0)
        return perror(mode), 1;
    for (int k = 0; k < kids; k++)
        send_fd(sp[k][0], obj);
    if (flying) {
        send_fd(box[0], obj);
        close(obj);
    }
    if (baton)
        close(obj);
    uint64_t h = 0;
    for (int r = 1; r <= rounds; r++) {
        if (flying)
            obj = recv_fd(box[1]);
        /* The next round's message first: one is always queued (but the baton's). */
        for (int k = 0; k < kids && !baton; k++)
            send_fd(sp[k][0], obj);
        h = mix(h + parent_turn(r, 1));
        for (int k = 0; k < kids; k++) {
            xfer(to_child[k][1], &token, 1, 1);
            h = mix(h + parent_turn(r, 2));
            xfer(to_parent[k][0], &token, 1, 0);
        }
        if (baton)
            obj = recv_fd(sp[0][0]);
        h = mix(h + parent_turn(r, 0));
        if (flying) {
            send_fd(box[0], obj);
            close(obj);
        }
        if (baton && r < rounds) {
            send_fd(sp[0][0], obj);
            close(obj);
        }
        step(r);
        sleep_ms(delay);
    }
    uint64_t theirs = 0;
    for (int k = 0; k < kids; k++) {
        uint64_t t;
        xfer(to_parent[k][0], &t, sizeof t, 0);
        theirs = mix(theirs ^ t);
        int st;
        if (waitpid(child[k], &st, 0) != child[k] || !WIFEXITED(st) || WEXITSTATUS(st) != 7) {
            fprintf(stderr, "child: wait status %#x\n", st);
            return 91;
        }
    }
    if (flying)
        obj = recv_fd(box[1]);
    if (strcmp(mode, "file") == 0 || strcmp(mode, "memfd") == 0 || strcmp(mode, "deleted") == 0)
        return print_file_result(obj);
    if (strcmp(mode, "inotify") == 0)
        rmdir(idir);
    printf("result %016llx\n", (unsigned long long)mix(h ^ theirs));
    return 0;
}
