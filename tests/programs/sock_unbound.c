/* Sockets created and never bound, with options set on them: after a restart they are still
 * unbound (bind and connect work, and pick the addresses asked for) and keep their options.
 * (zdtm style: READY, wait for "go", checks, "done"; see files_common.h.) */
#include "files_common.h"
#include "port_common.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

static int getint(int fd, int level, int name) {
    int v = -1;
    socklen_t l = sizeof v;
    if (getsockopt(fd, level, name, &v, &l)) return -100 - errno;
    return v;
}

int main(void) {
    int tcp = socket(AF_INET, SOCK_STREAM, 0);
    int udp = socket(AF_INET, SOCK_DGRAM, 0);
    int tcp6 = socket(AF_INET6, SOCK_STREAM, 0);
    int one = 1, prio = 3, idle = 77, tos = 0x10;
    setsockopt(tcp, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    setsockopt(tcp, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(tcp, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(tcp, SOL_SOCKET, SO_PRIORITY, &prio, sizeof prio);
    setsockopt(udp, SOL_SOCKET, SO_BROADCAST, &one, sizeof one);
    setsockopt(udp, IPPROTO_IP, IP_TOS, &tos, sizeof tos);
    setsockopt(tcp6, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    /* A listener to connect the unbound TCP socket to after the restart. */
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int l = socket(AF_INET, SOCK_STREAM, 0);
    socklen_t al = sizeof a;
    if (bind_free_port(l, &a, sizeof a) || listen(l, 4) || getsockname(l, (struct sockaddr *)&a, &al)) return 2;
    ready();

    printf("keepalive %d idle %d nodelay %d priority %d\n", getint(tcp, SOL_SOCKET, SO_KEEPALIVE), getint(tcp, IPPROTO_TCP, TCP_KEEPIDLE),
           getint(tcp, IPPROTO_TCP, TCP_NODELAY), getint(tcp, SOL_SOCKET, SO_PRIORITY));
    printf("broadcast %d tos %#x v6only %d\n", getint(udp, SOL_SOCKET, SO_BROADCAST), getint(udp, IPPROTO_IP, IP_TOS), getint(tcp6, IPPROTO_IPV6, IPV6_V6ONLY));
    struct sockaddr_in n;
    socklen_t nl = sizeof n;
    CHECK(getsockname(tcp, (struct sockaddr *)&n, &nl) == 0 && n.sin_port == 0, "TCP socket is bound to port %d", ntohs(n.sin_port));
    /* Still unbound: connect works (and picks a port). */
    CHECK(connect(tcp, (struct sockaddr *)&a, sizeof a) == 0, "connect");
    int s = accept(l, NULL, NULL);
    CHECK(s >= 0 && write(tcp, "x", 1) == 1, "accept/write");
    char c = 0;
    CHECK(read(s, &c, 1) == 1 && c == 'x', "read");
    /* Still unbound: bind works. */
    struct sockaddr_in b = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(bind(udp, (struct sockaddr *)&b, sizeof b) == 0, "bind UDP");
    struct sockaddr_in6 b6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    CHECK(bind(tcp6, (struct sockaddr *)&b6, sizeof b6) == 0, "bind TCP6");
    return finish();
}
