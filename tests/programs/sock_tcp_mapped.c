/* TCP connections between an IPv4 and an IPv6 socket of the program (loopback): an IPv6
 * listener on [::] (dual-stack) accepts an IPv4 client, whose end it names by the v4-mapped
 * address [::ffff:127.0.0.1]; an IPv6 client connects to an IPv4 listener through the
 * v4-mapped address (that listener then closed). Bytes unread in both directions of each. After
 * a restart each pair is one connection again: every byte arrives once, in order, and each end
 * keeps its family and names. */
#include "files_common.h"
#include "port_common.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

static int family(int fd) {
    struct sockaddr_storage a;
    socklen_t l = sizeof a;
    return getsockname(fd, (struct sockaddr *)&a, &l) == 0 ? a.ss_family : -1;
}

/* The port of fd's peer, as the peer sees its own name (family-independent). */
static int peer_port(int fd) {
    struct sockaddr_storage a;
    socklen_t l = sizeof a;
    if (getpeername(fd, (struct sockaddr *)&a, &l) != 0) return -1;
    return ntohs(a.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&a)->sin6_port : ((struct sockaddr_in *)&a)->sin_port);
}

static int own_port(int fd) {
    struct sockaddr_storage a;
    socklen_t l = sizeof a;
    if (getsockname(fd, (struct sockaddr *)&a, &l) != 0) return -1;
    return ntohs(a.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&a)->sin6_port : ((struct sockaddr_in *)&a)->sin_port);
}

static void show(const char *what, int fd, int peer) {
    char b[64];
    int n = read(fd, b, sizeof b);
    printf("%s: family %s, '%.*s', names match: %s\n", what, family(fd) == AF_INET6 ? "inet6" : "inet", n > 0 ? n : 0, b,
           peer_port(fd) == own_port(peer) && own_port(fd) == peer_port(peer) ? "yes" : "no");
}

int main(void) {
    /* A dual-stack IPv6 listener and an IPv4 client. */
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_addr = in6addr_any};
    socklen_t l6 = sizeof a6;
    int off = 0;
    int l1 = socket(AF_INET6, SOCK_STREAM, 0);
    setsockopt(l1, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
    if (bind_free_port(l1, &a6, sizeof a6) || listen(l1, 8) || getsockname(l1, (struct sockaddr *)&a6, &l6)) return 2;
    struct sockaddr_in to1 = {.sin_family = AF_INET, .sin_port = a6.sin6_port, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int c1 = socket(AF_INET, SOCK_STREAM, 0);
    if (connect_from_free_port(c1, &to1, sizeof to1)) return 3;
    int s1 = accept(l1, NULL, NULL);
    write(c1, "from the IPv4 client", 20);
    write(s1, "from the IPv6 server", 20);

    /* An IPv4 listener and an IPv6 client through the v4-mapped address; the listener closed. */
    struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l4 = sizeof a4;
    int l2 = socket(AF_INET, SOCK_STREAM, 0);
    if (bind_free_port(l2, &a4, sizeof a4) || listen(l2, 8) || getsockname(l2, (struct sockaddr *)&a4, &l4)) return 4;
    struct sockaddr_in6 to2 = {.sin6_family = AF_INET6, .sin6_port = a4.sin_port};
    inet_pton(AF_INET6, "::ffff:127.0.0.1", &to2.sin6_addr);
    int c2 = socket(AF_INET6, SOCK_STREAM, 0);
    if (connect_from_free_port(c2, &to2, sizeof to2)) return 5;
    int s2 = accept(l2, NULL, NULL);
    close(l2);
    write(c2, "from the IPv6 client", 20);
    write(s2, "from the IPv4 server", 20);
    ready();

    show("IPv6 server reads", s1, c1);
    show("IPv4 client reads", c1, s1);
    show("IPv4 server reads", s2, c2);
    show("IPv6 client reads", c2, s2);
    printf("the IPv6 listener still accepts IPv4: %s\n", (close(c1), 1) && connect(c1 = socket(AF_INET, SOCK_STREAM, 0), (struct sockaddr *)&to1, sizeof to1) == 0 && accept(l1, NULL, NULL) >= 0 ? "yes" : "no");
    return finish();
}
