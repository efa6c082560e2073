/* Shared by the test programs of a step's tasks that talk over UDP (step_udp.c,
 * step_udpcut.c): a task's UDP socket bound and published, a task's published address as a
 * sockaddr, an address shown, two compared.
 * Needs step_common.h and port_common.h first. */
#ifndef UDP_COMMON_H
#define UDP_COMMON_H
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

/* DIR/udp.RANK as a sockaddr, read now; waits for it to be published. */
__attribute__((unused)) static struct sockaddr_in published(const char *dir, long rank)
{
    char addr[64];
    int port = read_published(dir, "udp", rank, addr);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    if (inet_pton(AF_INET, addr, &a.sin_addr) != 1)
        die("inet_pton");
    return a;
}

__attribute__((unused)) static const char *show(const struct sockaddr_in *a)
{
    static char buf[4][64];
    static int next;
    char *b = buf[next++ % 4];
    snprintf(b, 64, "%s:%d", inet_ntoa(a->sin_addr), ntohs(a->sin_port));
    return b;
}

__attribute__((unused)) static int same(const struct sockaddr_in *a, const struct sockaddr_in *b)
{
    return a->sin_addr.s_addr == b->sin_addr.s_addr && a->sin_port == b->sin_port;
}

/* A UDP socket bound at a port of its own on every address, published as "NODE PORT" in
 * DIR/udp.RANK. */
__attribute__((unused)) static int udp_published(const char *dir, long rank, const char *node)
{
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in ua = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY) };
    socklen_t ulen = sizeof ua;
    if (u < 0 || bind_free_port(u, &ua, sizeof ua) != 0 || getsockname(u, (struct sockaddr *)&ua, &ulen) != 0)
        die("udp");
    char line[128];
    snprintf(line, sizeof line, "%s %d\n", node, ntohs(ua.sin_port));
    publish(dir, "udp", rank, line);
    return u;
}
#endif
