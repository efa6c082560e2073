/* Shared by the test programs that bind a TCP listener or a UDP socket and are restarted: a
 * port outside the kernel's ephemeral range (net.ipv4.ip_local_port_range, 32768-60999 by
 * default). With port 0 the kernel picks one inside it, and once the program is killed a
 * connection of another program (a test running beside it) may get that port as its own
 * local port, or leave it in TIME_WAIT, so the restart rightly cannot bind it again. A random
 * port below the range (above it where there is no room below) is tried until bind takes it.
 * The same holds for a client's port, which a restart binds again for a connection whose two
 * ends are in the program: such clients bind one before they connect. */
#ifndef PORT_COMMON_H
#define PORT_COMMON_H
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* The ports to choose from, [*lo, *hi): none the kernel hands out for port 0 or connect. */
static void outside_ephemeral(int *lo, int *hi) {
    int first = 32768, last = 60999;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f) {
        if (fscanf(f, "%d %d", &first, &last) != 2) first = 32768, last = 60999;
        fclose(f);
    }
    *lo = 10000, *hi = first < 32001 ? first : 32001;
    if (*hi - *lo < 2000) *lo = last + 1, *hi = 65536;
    if (*hi - *lo < 2000) *lo = 1024, *hi = first; /* the range is nearly everything: below it */
}

/* Bind fd to addr (a struct sockaddr_in or sockaddr_in6 of len bytes, its port set here) at
 * a free port outside the ephemeral range: 0, or -1 with errno. SO_REUSEADDR is off while it
 * binds (and set back after), so a port any socket holds, even in TIME_WAIT, is passed over
 * (with it, bind would take a TIME_WAIT port that listen then refuses). */
__attribute__((unused)) static int bind_free_port(int fd, void *addr, socklen_t len) {
    static uint32_t seed;
    if (seed == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        seed = ((uint32_t)getpid() * 2654435761u) ^ (uint32_t)ts.tv_nsec ^ 0x9e3779b9u;
        if (seed == 0) seed = 1;
    }
    int lo, hi, reuse = 0, off = 0;
    outside_ephemeral(&lo, &hi);
    socklen_t rl = sizeof reuse;
    getsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &reuse, &rl);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &off, sizeof off);
    in_port_t *port = ((struct sockaddr *)addr)->sa_family == AF_INET6 ? &((struct sockaddr_in6 *)addr)->sin6_port : &((struct sockaddr_in *)addr)->sin_port;
    int r = -1;
    for (int tries = 0; tries < 10000; tries++) {
        seed ^= seed << 13, seed ^= seed >> 17, seed ^= seed << 5; /* xorshift32 */
        *port = htons((uint16_t)(lo + seed % (uint32_t)(hi - lo)));
        r = bind(fd, (struct sockaddr *)addr, len);
        if (r == 0 || errno != EADDRINUSE) break;
    }
    int e = errno;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &reuse, sizeof reuse);
    errno = e;
    return r;
}

/* Connect fd to `to` (a struct sockaddr_in or sockaddr_in6 of len bytes: the program's own
 * listener on this machine) from a free port outside the ephemeral range at to's address.
 * 0, or -1 with errno. */
__attribute__((unused)) static int connect_from_free_port(int fd, const void *to, socklen_t len) {
    struct sockaddr_storage me;
    memcpy(&me, to, len);
    if (bind_free_port(fd, &me, len) != 0) return -1;
    return connect(fd, (const struct sockaddr *)to, len);
}
#endif
