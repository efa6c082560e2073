/*
 * tree_unix_names: a parent and forked children that talk over UNIX sockets that reach each
 * other by name (not socketpairs), for the tests of a tree's restart (process_trees_unix).
 *
 * Usage: tree_unix_names MODE [ROUNDS=200] [DELAY_MS=20]
 * MODE stream, stream-deleted, seqpacket: the parent binds a listener at
 *   tree_unix_names.<pid>.sock (a relative name, in the working directory) and forks; the child
 *   connects, the parent accepts. With stream-deleted the parent then closes the listener and
 *   removes its file (CRIU's deleted_unix_sock); otherwise it keeps the listener open and, at
 *   the end, checks that a new client can still connect to it and be accepted. Round r: the
 *   parent sends request r+1 before it sleeps and reads answer r after; the child, started half
 *   a period late, reads a request, answers f(r) from its private running state and sleeps: an
 *   answer waits unread in the parent's socket and a request in the child's most of the time.
 *   Every round both check the names: the parent's accepted end is named like the listener
 *   (getsockname), the child's peer too (getpeername), even when the file is gone (else exit 93).
 * MODE dgram: the parent binds a datagram socket at tree_unix_names.<pid>.dgram and forks two
 *   children, each connects a datagram socket to it; then the parent removes the file (a
 *   "ghost" name: CRIU's sk-unix-dgram-ghost). Round r: each child sends (child, r, state) and
 *   sleeps; the parent sleeps, then reads two datagrams, so datagrams wait unread most of the
 *   time. Names checked as above (the children's getpeername).
 * At the end the children send their state (stream) or exit 7; the parent reaps them and
 * prints "result <hex>". Deterministic.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tree_common.h"

static struct sockaddr_un addr;
static socklen_t addr_len;

static void die(const char *what, int code)
{
    fprintf(stderr, "%s: %s\n", what, strerror(errno));
    exit(code);
}

/* The name of `fd` (peer: its peer's) must be the listener's. */
static void check_name(int fd, int peer, int r)
{
    struct sockaddr_un a;
    socklen_t len = sizeof a;
    memset(&a, 0, sizeof a);
    if ((peer ? getpeername(fd, (struct sockaddr *)&a, &len) : getsockname(fd, (struct sockaddr *)&a, &len)) != 0)
        die(peer ? "getpeername" : "getsockname", 93);
    if (len != addr_len || strcmp(a.sun_path, addr.sun_path) != 0) {
        fprintf(stderr, "round %d: %s is \"%s\" (%u bytes), not \"%s\"\n", r, peer ? "the peer's name" : "the name", a.sun_path, (unsigned)len, addr.sun_path);
        exit(93);
    }
}

static void step(int r)
{
    printf("step %d\n", r);
    fflush(stdout);
}

static void reap(pid_t child)
{
    int st;
    if (waitpid(child, &st, 0) != child || !WIFEXITED(st) || WEXITSTATUS(st) != 7) {
        fprintf(stderr, "child %d: status %x\n", (int)child, st);
        exit(91);
    }
}

static int bound(int type, const char *suffix)
{
    addr.sun_family = AF_UNIX;
    snprintf(addr.sun_path, sizeof addr.sun_path, "tree_unix_names.%d.%s", (int)getpid(), suffix);
    unlink(addr.sun_path);
    addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(addr.sun_path) + 1);
    int s = socket(AF_UNIX, type, 0);
    if (s < 0 || bind(s, (struct sockaddr *)&addr, addr_len) != 0)
        die("bind", 1);
    return s;
}

static int connected(int type)
{
    int c = socket(AF_UNIX, type, 0);
    if (c < 0 || connect(c, (struct sockaddr *)&addr, addr_len) != 0)
        die("connect", 94);
    return c;
}

static int stream_mode(int type, int deleted, int rounds, int delay)
{
    int l = bound(type, "sock");
    if (listen(l, 4) != 0)
        die("listen", 1);
    pid_t child = fork();
    if (child == 0) {
        close(l);
        int c = connected(type);
        uint64_t state = 1;
        sleep_ms(delay / 2);
        for (int r = 1;; r++) {
            uint64_t q;
            xfer(c, &q, sizeof q, 0);
            check_name(c, 1, r);
            if (q == 0)
                break;
            state = mix(state + q);
            xfer(c, &state, sizeof state, 1);
            sleep_ms(delay);
        }
        xfer(c, &state, sizeof state, 1);
        _exit(7);
    }
    int s = accept(l, NULL, NULL);
    if (s < 0)
        die("accept", 1);
    if (deleted) {
        close(l);
        if (unlink(addr.sun_path) != 0)
            die("unlink", 1);
    }
    uint64_t acc = 0, q = 1;
    xfer(s, &q, sizeof q, 1);
    for (int r = 1; r <= rounds; r++) {
        if (r < rounds) {
            q = (uint64_t)r + 1;
            xfer(s, &q, sizeof q, 1);
        }
        sleep_ms(delay);
        uint64_t v;
        xfer(s, &v, sizeof v, 0);
        check_name(s, 0, r);
        acc = mix(acc ^ v);
        step(r);
    }
    uint64_t zero = 0, last;
    xfer(s, &zero, sizeof zero, 1);
    xfer(s, &last, sizeof last, 0);
    reap(child);
    if (!deleted) {
        /* The listener still serves its name. */
        int c = connected(type), a = accept(l, NULL, NULL);
        uint64_t x = 42;
        if (a < 0)
            die("accept again", 95);
        xfer(c, &x, sizeof x, 1);
        xfer(a, &x, sizeof x, 0);
        close(c);
        close(a);
        unlink(addr.sun_path);
    }
    printf("result %016llx\n", (unsigned long long)mix(acc ^ last));
    return 0;
}

struct dgram {
    uint64_t child, round, state;
};

static int dgram_mode(int rounds, int delay)
{
    int srv = bound(SOCK_DGRAM, "dgram");
    pid_t kids[2];
    int ready[2];
    if (pipe(ready) != 0)
        die("pipe", 1);
    for (int i = 0; i < 2; i++) {
        kids[i] = fork();
        if (kids[i] == 0) {
            close(srv);
            int c = connected(SOCK_DGRAM);
            xfer(ready[1], "r", 1, 1);
            uint64_t state = (uint64_t)i + 1;
            for (int r = 1; r <= rounds; r++) {
                state = mix(state + (uint64_t)r);
                struct dgram d = { (uint64_t)i, (uint64_t)r, state };
                check_name(c, 1, r);
                if (send(c, &d, sizeof d, 0) != (ssize_t)sizeof d)
                    die("send", 96);
                sleep_ms(delay);
            }
            _exit(7);
        }
    }
    char b[2];
    xfer(ready[0], b, 2, 0);
    if (unlink(addr.sun_path) != 0)
        die("unlink", 1);
    uint64_t acc[2] = { 0, 0 };
    uint64_t next[2] = { 1, 1 };
    for (int r = 1; r <= rounds; r++) {
        sleep_ms(delay);
        for (int k = 0; k < 2; k++) {
            struct dgram d;
            ssize_t n;
            while ((n = recv(srv, &d, sizeof d, 0)) < 0 && errno == EINTR)
                ;
            if (n != (ssize_t)sizeof d || d.child > 1 || d.round != next[d.child]) {
                fprintf(stderr, "round %d: datagram of %zd bytes, child %llu round %llu\n", r, n, (unsigned long long)d.child, (unsigned long long)d.round);
                exit(92);
            }
            next[d.child]++;
            acc[d.child] = mix(acc[d.child] ^ d.state);
        }
        check_name(srv, 0, r);
        step(r);
    }
    reap(kids[0]);
    reap(kids[1]);
    printf("result %016llx\n", (unsigned long long)mix(acc[0] + 3 * acc[1]));
    return 0;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "stream";
    int rounds = argc > 2 ? atoi(argv[2]) : 200;
    int delay = argc > 3 ? atoi(argv[3]) : 20;
    printf("start tree_unix_names %s %d %d\n", mode, rounds, delay);
    fflush(stdout);
    if (strcmp(mode, "stream") == 0)
        return stream_mode(SOCK_STREAM, 0, rounds, delay);
    if (strcmp(mode, "stream-deleted") == 0)
        return stream_mode(SOCK_STREAM, 1, rounds, delay);
    if (strcmp(mode, "seqpacket") == 0)
        return stream_mode(SOCK_SEQPACKET, 0, rounds, delay);
    if (strcmp(mode, "dgram") == 0)
        return dgram_mode(rounds, delay);
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
}
