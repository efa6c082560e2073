/* Shared by the tree_*.c programs that pass files with SCM_RIGHTS and take turns: a "step r"
 * line, a wait for an fd to be readable or an epoll instance's event (5 s at most), one fd sent or received with one byte
 * over a UNIX socket, one round of a connection to a listener (asked r, answered mix(r)), and
 * the result line of a file's content. Include after tree_common.h. */
#ifndef TREE_FDPASS_H
#define TREE_FDPASS_H
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>

static inline void step(int r)
{
    char line[64];
    int n = snprintf(line, sizeof line, "step %d\n", r);
    xfer(1, line, (size_t)n, 1);
}

/* Wait up to 5 s for `fd` to be readable (else say so and exit 92). */
static inline void wait_readable(int fd, int r, const char *what)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int n;
    while ((n = poll(&p, 1, 5000)) < 0 && errno == EINTR)
        ;
    if (n == 0) {
        fprintf(stderr, "round %d: nothing came through the %s\n", r, what);
        exit(92);
    }
}

/* Wait up to 5 s for epoll instance `ep` to report one event with data r (else say so, naming
 * `what`, and exit `code`). */
static inline void wait_epoll_data(int ep, int r, const char *what, int code)
{
    struct epoll_event ev;
    int n;
    while ((n = epoll_wait(ep, &ev, 1, 5000)) < 0 && errno == EINTR)
        ;
    if (n != 1 || ev.data.u64 != (uint64_t)r) {
        fprintf(stderr, "round %d: %s gave %d events, data %llu\n", r, what, n, n == 1 ? (unsigned long long)ev.data.u64 : 0ULL);
        exit(code);
    }
}

/* Send fd `fd` with one byte on socket `s`. */
static inline void send_fd(int s, int fd)
{
    char b = 'f';
    struct iovec iov = { &b, 1 };
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } c;
    memset(&c, 0, sizeof c);
    struct msghdr m = { 0 };
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = c.buf;
    m.msg_controllen = sizeof c.buf;
    struct cmsghdr *h = CMSG_FIRSTHDR(&m);
    h->cmsg_level = SOL_SOCKET;
    h->cmsg_type = SCM_RIGHTS;
    h->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(h), &fd, sizeof fd);
    while (sendmsg(s, &m, 0) != 1) {
        if (errno != EINTR) {
            perror("sendmsg");
            exit(92);
        }
    }
}

/* Receive the fd sent on socket `s`. */
static inline int recv_fd(int s)
{
    char b;
    struct iovec iov = { &b, 1 };
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } c;
    struct msghdr m = { 0 };
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = c.buf;
    m.msg_controllen = sizeof c.buf;
    ssize_t k;
    while ((k = recvmsg(s, &m, 0)) < 0 && errno == EINTR) {
    }
    struct cmsghdr *h = k == 1 ? CMSG_FIRSTHDR(&m) : NULL;
    if (h == NULL || h->cmsg_type != SCM_RIGHTS) {
        fprintf(stderr, "recvmsg: no file (%zd)\n", k);
        exit(93);
    }
    int fd;
    memcpy(&fd, CMSG_DATA(h), sizeof fd);
    return fd;
}

/* One connection to the listener at `a` (`len` bytes): sends r, returns the answer (exit 94
 * when it cannot connect). */
static inline uint64_t ask_listener(const struct sockaddr *a, socklen_t len, uint64_t r)
{
    int c = socket(a->sa_family, SOCK_STREAM, 0);
    if (c < 0 || connect(c, a, len) != 0) {
        perror("connect");
        exit(94);
    }
    uint64_t v;
    xfer(c, &r, sizeof r, 1);
    xfer(c, &v, sizeof v, 0);
    close(c);
    return v;
}

/* One connection accepted from listener `l` (waiting at most 5 s, `who` names it): answers
 * mix(r). */
static inline void answer_listener(int l, int r, const char *who)
{
    wait_readable(l, r, who);
    int c = accept(l, NULL, NULL);
    if (c < 0) {
        perror("accept");
        exit(94);
    }
    uint64_t q;
    xfer(c, &q, sizeof q, 0);
    q = mix(q);
    xfer(c, &q, sizeof q, 1);
    close(c);
}

/* "result <hash> <bytes>" of everything in the file open at `fd`, read from its start. */
static inline int print_file_result(int fd)
{
    char rec[64];
    uint64_t h = 0, n = 0;
    if (lseek(fd, 0, SEEK_SET) != 0)
        return perror("lseek"), 1;
    for (;;) {
        ssize_t k = read(fd, rec, sizeof rec);
        if (k <= 0)
            break;
        for (ssize_t i = 0; i < k; i++)
            h = mix(h + (unsigned char)rec[i]);
        n += (uint64_t)k;
    }
    printf("result %016llx %llu\n", (unsigned long long)h, (unsigned long long)n);
    return 0;
}

#endif
