/* INET sockets between a parent and its child.
 *
 * Usage: tree_inet MODE ROUNDS DELAY_MS
 * MODE buffers: the parent listens on 127.0.0.1 (a free port, kept open), forks; the child
 *   connects and the parent accepts. Each side writes its own deterministic byte stream
 *   (nonblocking, until the connection takes no more) and, every round, reads up to 1000 bytes
 *   of the other's stream, checks each byte, and writes again until it takes no more. The parent
 *   prints "step r" each round. At the end each side tells the other through a pipe how many
 *   bytes it wrote, shuts the connection down for writing, reads the rest of the other's stream
 *   to its end and checks its length: a byte lost, doubled or changed by a restart fails (exit
 *   93; the child's failure makes the parent exit 91). As CRIU's zdtm socket-tcpbuf.
 * MODE udp: the parent makes a UDP socket bound to 127.0.0.1 (a free port) and another,
 *   unbound, to send from, and forks: both processes hold both (one socket each, inherited).
 *   Round r: one process (the parent on even rounds, the child on odd ones) sends datagram r to
 *   the bound socket's address, waits DELAY_MS and passes a token through a pipe; the other then
 *   takes the datagram from its fd of the bound socket (without waiting: it must be queued) and
 *   checks its number and sender (the sending socket's address). Two separate sockets would
 *   not both be bound to the port; a datagram read twice or lost fails (exit 93).
 * MODE fin-wait1, closing, last-ack: TCP closing states with megabytes behind a FIN, as CRIU's
 *   zdtm socket-tcp-fin-wait1, -closing, -last-ack leave them. The parent fills the connection
 *   (nonblocking, until it takes no more) and shuts it down for writing: its FIN waits behind
 *   the bytes its child has not read (FIN_WAIT1). closing: the child has filled it too and shut
 *   it down first, and the parent then reads the child's stream to its end (CLOSING). last-ack:
 *   the child has shut it down first, without writing, and the parent has read its end
 *   (CLOSE_WAIT, then LAST_ACK). Then the parent counts the rounds; at the end it tells the
 *   child how many bytes it wrote, and the child reads the stream to its end and checks every
 *   byte and the length. fin-wait1: the child then writes 300000 bytes of its own stream
 *   through the direction still open, shuts it down, and the parent checks them likewise.
 *   fin-wait1-locked: as fin-wait1, the child's receive buffer sized small by the program
 *   (SO_RCVBUF 16 KiB, which locks it): the bytes behind the FIN can never all be in it.
 * MODE v6only: the parent listens on [::] with IPV6_V6ONLY (a free port) and on 0.0.0.0 at the
 *   same port (which only IPV6_V6ONLY on the first allows), and forks: both processes hold both
 *   listeners. Round r: one process (the parent on even rounds, the child on odd ones) connects
 *   to [::1] and to 127.0.0.1 at that port, sends r on each and reads r + 1000 back; the other
 *   accepts from the [::] listener then from the 0.0.0.0 one, checks each client's family and
 *   number and answers. Each closes its connection once done (the client first).
 * Deterministic result.
 */
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "tree_common.h"
#include "port_common.h"

static void step(int r)
{
    char line[32];
    int n = snprintf(line, sizeof line, "step %d\n", r);
    xfer(1, line, (size_t)n, 1);
}

static uint8_t pattern(uint64_t k, int side)
{
    return (uint8_t)((k * 131 + (k >> 9) + (uint64_t)side * 71) & 0xff);
}

struct end {
    int fd;
    int side;
    uint64_t sent, got;
};

/* Write our stream until the connection takes no more. */
static void fill(struct end *e)
{
    uint8_t buf[4096];
    for (;;) {
        for (size_t i = 0; i < sizeof buf; i++)
            buf[i] = pattern(e->sent + i, e->side);
        ssize_t n = write(e->fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            fprintf(stderr, "side %d: write: %s\n", e->side, strerror(errno));
            exit(93);
        }
        e->sent += (uint64_t)n;
    }
}

/* Read up to `max` bytes of the other's stream (all there is with max 0, until its end, then
 * return 0); check them. Returns the bytes read. */
static size_t drain(struct end *e, size_t max, int to_end)
{
    uint8_t buf[4096];
    size_t total = 0;
    while (to_end || total < max) {
        size_t want = to_end ? sizeof buf : (max - total < sizeof buf ? max - total : sizeof buf);
        ssize_t n = read(e->fd, buf, want);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            if (!to_end)
                return total;
            struct pollfd p = { .fd = e->fd, .events = POLLIN };
            if (poll(&p, 1, 10000) == 0) {
                fprintf(stderr, "side %d: nothing more after %llu bytes\n", e->side, (unsigned long long)e->got);
                exit(93);
            }
            continue;
        }
        if (n < 0) {
            fprintf(stderr, "side %d: read: %s\n", e->side, strerror(errno));
            exit(93);
        }
        if (n == 0)
            return total;
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] != pattern(e->got + (uint64_t)i, !e->side)) {
                fprintf(stderr, "side %d: byte %llu of the other's stream is wrong\n", e->side, (unsigned long long)(e->got + (uint64_t)i));
                exit(93);
            }
        }
        e->got += (uint64_t)n;
        total += (size_t)n;
    }
    return total;
}

/* The last exchange: tell our count, learn the other's, shut down, read the rest. */
static void finish(struct end *e, int tell, int learn)
{
    uint64_t theirs;
    xfer(tell, &e->sent, sizeof e->sent, 1);
    xfer(learn, &theirs, sizeof theirs, 0);
    if (shutdown(e->fd, SHUT_WR) != 0) {
        fprintf(stderr, "side %d: shutdown: %s\n", e->side, strerror(errno));
        exit(93);
    }
    drain(e, 0, 1);
    if (e->got != theirs) {
        fprintf(stderr, "side %d: read %llu bytes of the other's stream, it wrote %llu\n", e->side, (unsigned long long)e->got, (unsigned long long)theirs);
        exit(93);
    }
}

/* The parent's end: its child must have checked everything (exit 7); the result. */
static int end_tree(pid_t child, uint64_t state)
{
    int st;
    if (waitpid(child, &st, 0) != child || !WIFEXITED(st) || WEXITSTATUS(st) != 7) {
        fprintf(stderr, "child failed (status %d)\n", st);
        return 91;
    }
    printf("result %016llx\n", (unsigned long long)state);
    return 0;
}

static int buffers(int rounds, int delay)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    int p2c[2], c2p[2];
    if (l < 0 || bind_free_port(l, &a, sizeof a) != 0 || listen(l, 4) != 0 || getsockname(l, (struct sockaddr *)&a, &len) != 0 || pipe(p2c) != 0 || pipe(c2p) != 0) {
        perror("setup");
        return 1;
    }
    pid_t child = fork();
    if (child == 0) {
        struct end e = { .fd = socket(AF_INET, SOCK_STREAM, 0), .side = 1 };
        if (e.fd < 0 || connect(e.fd, (struct sockaddr *)&a, sizeof a) != 0) {
            perror("connect");
            _exit(1);
        }
        fcntl(e.fd, F_SETFL, O_NONBLOCK);
        fill(&e);
        /* Until the parent says it is done: read a little, write again. */
        for (;;) {
            struct pollfd p = { .fd = p2c[0], .events = POLLIN };
            if (poll(&p, 1, delay) > 0)
                break;
            drain(&e, 1000, 0);
            fill(&e);
        }
        finish(&e, c2p[1], p2c[0]);
        _exit(7);
    }
    struct end e = { .fd = accept(l, NULL, NULL), .side = 0 };
    if (e.fd < 0) {
        perror("accept");
        return 1;
    }
    /* A larger receive buffer of the program's own (zdtm's socket-tcpbuf sets both). */
    int big = 1 << 20;
    setsockopt(e.fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    fcntl(e.fd, F_SETFL, O_NONBLOCK);
    fill(&e);
    uint64_t state = 0;
    for (int r = 0; r < rounds; r++) {
        step(r);
        sleep_ms(delay);
        drain(&e, 1000, 0);
        fill(&e);
        state = mix(state + (uint64_t)r);
    }
    finish(&e, p2c[1], c2p[0]);
    return end_tree(child, state);
}

/* Write `n` more bytes of our stream, waiting for room. */
static void send_more(struct end *e, uint64_t n)
{
    uint64_t until = e->sent + n;
    while (e->sent < until) {
        uint8_t buf[4096];
        size_t k = until - e->sent < sizeof buf ? (size_t)(until - e->sent) : sizeof buf;
        for (size_t i = 0; i < k; i++)
            buf[i] = pattern(e->sent + i, e->side);
        ssize_t w = write(e->fd, buf, k);
        if (w < 0 && (errno == EINTR || errno == EAGAIN)) {
            struct pollfd p = { .fd = e->fd, .events = POLLOUT };
            poll(&p, 1, 1000);
            continue;
        }
        if (w <= 0) {
            fprintf(stderr, "side %d: write: %s\n", e->side, strerror(errno));
            exit(93);
        }
        e->sent += (uint64_t)w;
    }
}

/* Learn the other's count through `learn`, read its stream to its end, compare. */
static void read_rest(struct end *e, int learn)
{
    uint64_t theirs;
    xfer(learn, &theirs, sizeof theirs, 0);
    drain(e, 0, 1);
    if (e->got != theirs) {
        fprintf(stderr, "side %d: read %llu bytes of the other's stream, it wrote %llu\n", e->side, (unsigned long long)e->got, (unsigned long long)theirs);
        exit(93);
    }
}

static void shut(struct end *e)
{
    if (shutdown(e->fd, SHUT_WR) != 0) {
        fprintf(stderr, "side %d: shutdown: %s\n", e->side, strerror(errno));
        exit(93);
    }
}

/* The closing states (`kind`, see the usage): the parent is the server, side 0. */
static int closing(const char *kind, int rounds, int delay)
{
    int locked = strcmp(kind, "fin-wait1-locked") == 0;
    int fw1 = strcmp(kind, "fin-wait1") == 0 || locked, both = strcmp(kind, "closing") == 0, lack = strcmp(kind, "last-ack") == 0;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    int p2c[2], c2p[2];
    /* As zdtm's servers: CLOSING ends in TIME_WAIT at both ends, which without it would hold
     * the listener's port for a minute after the kill (see README, Known limits). */
    int one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (l < 0 || bind_free_port(l, &a, sizeof a) != 0 || listen(l, 4) != 0 || getsockname(l, (struct sockaddr *)&a, &len) != 0 || pipe(p2c) != 0 || pipe(c2p) != 0) {
        perror("setup");
        return 1;
    }
    pid_t child = fork();
    if (child == 0) {
        struct end e = { .fd = socket(AF_INET, SOCK_STREAM, 0), .side = 1 };
        int small = 16384;
        if (locked)
            setsockopt(e.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
        if (e.fd < 0 || connect(e.fd, (struct sockaddr *)&a, sizeof a) != 0) {
            perror("connect");
            _exit(1);
        }
        fcntl(e.fd, F_SETFL, O_NONBLOCK);
        if (both)
            fill(&e);
        if (both || lack) {
            shut(&e);
            xfer(c2p[1], &e.sent, sizeof e.sent, 1);
        }
        /* The parent's stream, behind its FIN, to its end. */
        read_rest(&e, p2c[0]);
        if (fw1) {
            /* The other direction is still open: a stream of ours to the parent. */
            send_more(&e, 300000);
            shut(&e);
            xfer(c2p[1], &e.sent, sizeof e.sent, 1);
        }
        _exit(7);
    }
    struct end e = { .fd = accept(l, NULL, NULL), .side = 0 };
    if (e.fd < 0) {
        perror("accept");
        return 1;
    }
    fcntl(e.fd, F_SETFL, O_NONBLOCK);
    if (lack)
        read_rest(&e, c2p[0]); /* the child's end first: CLOSE_WAIT */
    fill(&e);
    shut(&e); /* FIN_WAIT1 (LAST_ACK after the child's end) behind the bytes it has not read */
    if (both)
        read_rest(&e, c2p[0]); /* the child's stream and end: CLOSING */
    uint64_t state = 0;
    for (int r = 0; r < rounds; r++) {
        step(r);
        sleep_ms(delay);
        state = mix(state + (uint64_t)r);
    }
    xfer(p2c[1], &e.sent, sizeof e.sent, 1);
    if (fw1)
        read_rest(&e, c2p[0]);
    return end_tree(child, state);
}

static int udp(int rounds, int delay)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    int u = socket(AF_INET, SOCK_DGRAM, 0), from = socket(AF_INET, SOCK_DGRAM, 0);
    int p2c[2], c2p[2];
    if (u < 0 || from < 0 || bind_free_port(u, &a, sizeof a) != 0 || getsockname(u, (struct sockaddr *)&a, &len) != 0 || pipe(p2c) != 0 || pipe(c2p) != 0) {
        perror("setup");
        return 1;
    }
    /* The sender, bound to a port of its own. */
    struct sockaddr_in sender = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (bind_free_port(from, &sender, sizeof sender) != 0 || getsockname(from, (struct sockaddr *)&sender, &len) != 0) {
        perror("bind sender");
        return 1;
    }
    pid_t child = fork();
    int me = child == 0; /* 1: the child */
    int tell = me ? c2p[1] : p2c[1], learn = me ? p2c[0] : c2p[0];
    uint64_t state = 0;
    for (int r = 0; r < rounds; r++) {
        if (!me) {
            step(r);
        }
        int32_t token = r;
        if (r % 2 == me) {
            if (sendto(from, &token, sizeof token, 0, (struct sockaddr *)&a, sizeof a) != sizeof token) {
                fprintf(stderr, "round %d: sendto: %s\n", r, strerror(errno));
                exit(93);
            }
            sleep_ms(delay);
            xfer(tell, &token, sizeof token, 1);
        } else {
            int32_t got = -1, t;
            struct sockaddr_in who = { 0 };
            socklen_t wl = sizeof who;
            xfer(learn, &t, sizeof t, 0);
            ssize_t n;
            while ((n = recvfrom(u, &got, sizeof got, MSG_DONTWAIT, (struct sockaddr *)&who, &wl)) < 0 && errno == EINTR)
                ;
            if (n != sizeof got || got != r || t != r || who.sin_port != sender.sin_port) {
                fprintf(stderr, "round %d (%s): got datagram %d (%zd bytes, %s) from port %d, token %d\n", r, me ? "child" : "parent", got, n, n < 0 ? strerror(errno) : "", ntohs(who.sin_port), t);
                exit(93);
            }
        }
        state = mix(state + (uint64_t)r);
    }
    if (me)
        _exit(7);
    return end_tree(child, state);
}

/* Round r's two connections (to [::1] and 127.0.0.1 at port) from the connecting process. */
static void v6only_connect(int r, uint16_t port)
{
    for (int k = 0; k < 2; k++) {
        struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = IN6ADDR_LOOPBACK_INIT };
        struct sockaddr_in a4 = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        int c = socket(k == 0 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
        int rc = k == 0 ? connect_from_free_port(c, &a6, sizeof a6) : connect_from_free_port(c, &a4, sizeof a4);
        if (c < 0 || rc != 0) {
            fprintf(stderr, "round %d: connect to %s: %s\n", r, k == 0 ? "[::1]" : "127.0.0.1", strerror(errno));
            exit(93);
        }
        int32_t t = r * 2 + k, back = -1;
        xfer(c, &t, sizeof t, 1);
        xfer(c, &back, sizeof back, 0);
        if (back != t + 1000) {
            fprintf(stderr, "round %d: answer %d from %s\n", r, back, k == 0 ? "[::1]" : "127.0.0.1");
            exit(93);
        }
        close(c);
    }
}

/* Round r's two connections accepted, from the [::] listener then the 0.0.0.0 one. */
static void v6only_accept(int r, int l6, int l4)
{
    for (int k = 0; k < 2; k++) {
        struct sockaddr_storage from;
        socklen_t fl = sizeof from;
        int c;
        while ((c = accept(k == 0 ? l6 : l4, (struct sockaddr *)&from, &fl)) < 0 && errno == EINTR)
            ;
        int32_t t = -1;
        if (c >= 0)
            xfer(c, &t, sizeof t, 0);
        if (c < 0 || t != r * 2 + k || from.ss_family != (k == 0 ? AF_INET6 : AF_INET)) {
            fprintf(stderr, "round %d: accepted %d (family %d) on the %s listener: %s\n", r, t, from.ss_family, k == 0 ? "[::]" : "0.0.0.0", c < 0 ? strerror(errno) : "");
            exit(93);
        }
        t += 1000;
        xfer(c, &t, sizeof t, 1);
        char b;
        while (read(c, &b, 1) < 0 && errno == EINTR) /* the client closes first */
            ;
        close(c);
    }
}

static int v6only(int rounds, int delay)
{
    int one = 1;
    struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT };
    socklen_t len = sizeof a6;
    int l6 = socket(AF_INET6, SOCK_STREAM, 0), l4 = socket(AF_INET, SOCK_STREAM, 0);
    if (l6 < 0 || l4 < 0 || setsockopt(l6, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0 || bind_free_port(l6, &a6, sizeof a6) != 0 || getsockname(l6, (struct sockaddr *)&a6, &len) != 0) {
        perror("v6only listener");
        return 1;
    }
    uint16_t port = ntohs(a6.sin6_port);
    struct sockaddr_in a4 = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_ANY) };
    if (bind(l4, (struct sockaddr *)&a4, sizeof a4) != 0 || listen(l6, 8) != 0 || listen(l4, 8) != 0) {
        perror("0.0.0.0 listener at the same port");
        return 1;
    }
    pid_t child = fork();
    int me = child == 0; /* 1: the child */
    uint64_t state = 0;
    for (int r = 0; r < rounds; r++) {
        if (!me)
            step(r);
        if (r % 2 == me)
            v6only_connect(r, port);
        else
            v6only_accept(r, l6, l4);
        state = mix(state + (uint64_t)r * 3);
        sleep_ms(delay);
    }
    if (me)
        _exit(7);
    return end_tree(child, state);
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "buffers";
    int rounds = argc > 2 ? atoi(argv[2]) : 200;
    int delay = argc > 3 ? atoi(argv[3]) : 20;
    printf("start tree_inet %s %d %d\n", mode, rounds, delay);
    fflush(stdout);
    if (strcmp(mode, "buffers") == 0)
        return buffers(rounds, delay);
    if (strcmp(mode, "udp") == 0)
        return udp(rounds, delay);
    if (strncmp(mode, "fin-wait1", 9) == 0 || strcmp(mode, "closing") == 0 || strcmp(mode, "last-ack") == 0)
        return closing(mode, rounds, delay);
    if (strcmp(mode, "v6only") == 0)
        return v6only(rounds, delay);
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
}
