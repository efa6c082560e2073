/* Socket options that getsockopt reads back, on bound, listening and connected sockets: they
 * come back after a restart (buffer sizes and their locks, linger, priority, timeouts, device
 * binding, IP and TCP options, a classic BPF filter read with SO_GET_FILTER). */
#include "files_common.h"
#include "port_common.h"
#include <arpa/inet.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>

#ifndef SO_BUF_LOCK
#define SO_BUF_LOCK 72
#endif

static int getint(int fd, int level, int name) {
    int v = -1;
    socklen_t l = sizeof v;
    if (getsockopt(fd, level, name, &v, &l)) return -100 - errno;
    return v;
}

int main(void) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1, cnt = 5, intvl = 9, prio = 5, ttl = 33, small = 8192;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(l, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    if (bind_free_port(l, &a, sizeof a) || listen(l, 4) || getsockname(l, (struct sockaddr *)&a, &al)) return 2;
    int c = socket(AF_INET, SOCK_STREAM, 0);
    struct linger lg = {1, 7};
    setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    setsockopt(c, SOL_SOCKET, SO_PRIORITY, &prio, sizeof prio);
    setsockopt(c, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    setsockopt(c, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    setsockopt(c, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    setsockopt(c, IPPROTO_IP, IP_TTL, &ttl, sizeof ttl);
    setsockopt(c, SOL_SOCKET, SO_BINDTODEVICE, "lo", 3);
    if (connect_from_free_port(c, &a, sizeof a)) return 3;
    int s = accept(l, NULL, NULL);
    setsockopt(s, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {3, 250000};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    /* A UDP socket that only takes datagrams of exactly 4 bytes (classic BPF). */
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_LEN, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 8 + 4, 0, 1), /* UDP header + 4 bytes */
        BPF_STMT(BPF_RET | BPF_K, 0xffff),
        BPF_STMT(BPF_RET | BPF_K, 0),
    };
    struct sock_fprog prog = {4, code};
    setsockopt(u, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog);
    int nolock = 0;
    setsockopt(u, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    setsockopt(u, SOL_SOCKET, SO_BUF_LOCK, &nolock, sizeof nolock);
    struct sockaddr_in ua = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t ul = sizeof ua;
    if (bind_free_port(u, &ua, sizeof ua) || getsockname(u, (struct sockaddr *)&ua, &ul)) return 4;
    ready();

    struct linger g;
    socklen_t gl = sizeof g;
    getsockopt(c, SOL_SOCKET, SO_LINGER, &g, &gl);
    printf("listener: reuseaddr %d keepalive %d\n", getint(l, SOL_SOCKET, SO_REUSEADDR), getint(l, SOL_SOCKET, SO_KEEPALIVE));
    printf("client: linger %d/%d priority %d sndbuf %d lock %d keepcnt %d keepintvl %d ttl %d\n", g.l_onoff, g.l_linger,
           getint(c, SOL_SOCKET, SO_PRIORITY), getint(c, SOL_SOCKET, SO_SNDBUF), getint(c, SOL_SOCKET, SO_BUF_LOCK),
           getint(c, IPPROTO_TCP, TCP_KEEPCNT), getint(c, IPPROTO_TCP, TCP_KEEPINTVL), getint(c, IPPROTO_IP, IP_TTL));
    char dev[16] = "";
    socklen_t dl = sizeof dev;
    getsockopt(c, SOL_SOCKET, SO_BINDTODEVICE, dev, &dl);
    printf("client: device %s\n", dev);
    struct timeval t;
    socklen_t tl = sizeof t;
    getsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &t, &tl);
    printf("accepted: rcvbuf %d lock %d nodelay %d rcvtimeo %ld.%06ld\n", getint(s, SOL_SOCKET, SO_RCVBUF), getint(s, SOL_SOCKET, SO_BUF_LOCK),
           getint(s, IPPROTO_TCP, TCP_NODELAY), (long)t.tv_sec, (long)t.tv_usec);
    printf("udp: rcvbuf %d lock %d\n", getint(u, SOL_SOCKET, SO_RCVBUF), getint(u, SOL_SOCKET, SO_BUF_LOCK));
    /* The filter: read back, and at work. */
    struct sock_filter back[8];
    socklen_t n = 8;
    CHECK(getsockopt(u, SOL_SOCKET, SO_GET_FILTER, back, &n) == 0 && n == 4 && memcmp(back, code, sizeof code) == 0, "filter read back: %u instructions", n);
    int w = socket(AF_INET, SOCK_DGRAM, 0);
    sendto(w, "12345", 5, 0, (struct sockaddr *)&ua, sizeof ua);
    sendto(w, "1234", 4, 0, (struct sockaddr *)&ua, sizeof ua);
    char buf[16];
    int got = recv(u, buf, sizeof buf, 0);
    CHECK(got == 4, "the filter let a %d-byte datagram through", got);
    /* The connection still works. */
    CHECK(write(c, "ping", 4) == 4 && read(s, buf, 4) == 4 && memcmp(buf, "ping", 4) == 0, "connection");
    return finish();
}
