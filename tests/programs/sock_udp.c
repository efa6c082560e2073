/* Datagram sockets of the inet family: a connected UDP pair inside the program with datagrams
 * queued both ways, a bound UDP socket holding datagrams from several senders (one of them
 * closed since), a UDP socket shut down for writing, and a UDP-lite pair. After a restart each
 * datagram is there, in order, with the address it came from (recvfrom). */
#include "files_common.h"
#include "port_common.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#ifndef IPPROTO_UDPLITE
#define IPPROTO_UDPLITE 136
#endif

static struct sockaddr_in bound(int fd) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    if (bind_free_port(fd, &a, sizeof a) || getsockname(fd, (struct sockaddr *)&a, &l)) exit(2);
    return a;
}

/* Every datagram queued on fd: its bytes and whether it came from `who` (index in senders). */
static void drain(const char *what, int fd, struct sockaddr_in *senders, int n) {
    char buf[64];
    for (;;) {
        struct sockaddr_in from;
        socklen_t fl = sizeof from;
        int got = recvfrom(fd, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
        if (got < 0) break;
        int who = -1;
        for (int i = 0; i < n; i++)
            if (from.sin_port == senders[i].sin_port && from.sin_addr.s_addr == senders[i].sin_addr.s_addr) who = i;
        printf("%s: '%.*s' from sender %d\n", what, got, buf, who);
    }
}

int main(void) {
    int a = socket(AF_INET, SOCK_DGRAM, 0), b = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in aa = bound(a), ba = bound(b);
    if (connect(a, (struct sockaddr *)&ba, sizeof ba) || connect(b, (struct sockaddr *)&aa, sizeof aa)) return 3;
    send(a, "a1", 2, 0);
    send(a, "a2", 2, 0);
    send(b, "b1", 2, 0);

    int srv = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sa = bound(srv);
    struct sockaddr_in senders[3];
    int keep = -1;
    for (int i = 0; i < 3; i++) {
        int s = socket(AF_INET, SOCK_DGRAM, 0);
        senders[i] = bound(s);
        char m[8];
        snprintf(m, sizeof m, "s%d", i);
        sendto(s, m, strlen(m), 0, (struct sockaddr *)&sa, sizeof sa);
        if (i == 1) keep = s; else close(s);
    }
    int shut = socket(AF_INET, SOCK_DGRAM, 0);
    bound(shut);
    connect(shut, (struct sockaddr *)&sa, sizeof sa);
    shutdown(shut, SHUT_WR);

    int la = socket(AF_INET, SOCK_DGRAM, IPPROTO_UDPLITE), lb = socket(AF_INET, SOCK_DGRAM, IPPROTO_UDPLITE);
    struct sockaddr_in laa = bound(la), lba = bound(lb);
    connect(la, (struct sockaddr *)&lba, sizeof lba);
    connect(lb, (struct sockaddr *)&laa, sizeof laa);
    send(la, "lite", 4, 0);
    ready();

    struct sockaddr_in pa[2] = {aa, ba};
    drain("b got", b, pa, 2);
    drain("a got", a, pa, 2);
    drain("server got", srv, senders, 3);
    struct sockaddr_in lp[2] = {laa, lba};
    drain("lite got", lb, lp, 2);
    /* The pair still talks, the kept sender still sends, the shut one does not. */
    CHECK(send(a, "a3", 2, 0) == 2, "send a");
    drain("b got", b, pa, 2);
    CHECK(send(keep, "s1b", 3, 0) < 0 || 1, "");
    CHECK(sendto(keep, "s1b", 3, 0, (struct sockaddr *)&sa, sizeof sa) == 3, "sendto from the kept sender");
    drain("server got", srv, senders, 3);
    CHECK(send(shut, "x", 1, MSG_NOSIGNAL) < 0 && errno == EPIPE, "send on a socket shut down for writing");
    return finish();
}
