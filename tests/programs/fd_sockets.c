/* Listening TCP and UNIX sockets, a bound UDP socket and a TCP connection to an outside peer
 * (port in argv[1]). Prints READY, waits for the file "go", then connects to its own listeners
 * and exchanges a message over each, and reports what the outside connection looks like. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include "port_common.h"

static void wait_go(void) {
    struct timespec ts = {0, 20 * 1000 * 1000};
    while (access("go", F_OK) != 0) nanosleep(&ts, NULL);
}

static int exchange(int lst, struct sockaddr *a, socklen_t alen, int family, int type) {
    int c = socket(family, type, 0);
    if (c < 0 || connect(c, a, alen) < 0) return -1;
    int s = accept(lst, NULL, NULL);
    if (s < 0) return -2;
    char b[8] = {0};
    write(c, "ping", 4);
    if (read(s, b, 4) != 4 || memcmp(b, "ping", 4)) return -3;
    close(c);
    close(s);
    return 0;
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int tl = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(tl, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    if (bind_free_port(tl, &in, sizeof in) || listen(tl, 8)) return 2;
    socklen_t len = sizeof in;
    getsockname(tl, (struct sockaddr *)&in, &len);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    strcpy(un.sun_path, "listen.sock");
    int ul = socket(AF_UNIX, SOCK_STREAM, 0);
    if (bind(ul, (struct sockaddr *)&un, sizeof un) || listen(ul, 8)) return 3;
    struct sockaddr_in ud = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    bind_free_port(u, &ud, sizeof ud);
    len = sizeof ud;
    getsockname(u, (struct sockaddr *)&ud, &len);
    int out = -1;
    if (argc > 1) {
        struct sockaddr_in peer = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK), .sin_port = htons(atoi(argv[1]))};
        out = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(out, (struct sockaddr *)&peer, sizeof peer)) return 4;
    }
    printf("READY\n");
    fflush(stdout);
    wait_go();
    int ka = 0;
    socklen_t kl = sizeof ka;
    getsockopt(tl, SOL_SOCKET, SO_KEEPALIVE, &ka, &kl);
    printf("listener keepalive: %d\n", ka);
    printf("tcp listener: %d\n", exchange(tl, (struct sockaddr *)&in, sizeof in, AF_INET, SOCK_STREAM));
    printf("unix listener: %d\n", exchange(ul, (struct sockaddr *)&un, sizeof un, AF_UNIX, SOCK_STREAM));
    int c = socket(AF_INET, SOCK_DGRAM, 0);
    sendto(c, "dgram", 5, 0, (struct sockaddr *)&ud, sizeof ud);
    char b[16] = {0};
    int n = recv(u, b, sizeof b, 0);
    printf("udp: %d %.*s\n", n, n > 0 ? n : 0, b);
    if (out >= 0) {
        n = read(out, b, 5);
        printf("outside unread: %.*s\n", n > 0 ? n : 0, b);
        n = read(out, b, sizeof b);
        int e = errno;
        printf("outside read: %s\n", n == 0 ? "EOF" : n < 0 ? strerror(e) : "data");
        n = write(out, "x", 1);
        e = errno;
        printf("outside write: %s\n", n < 0 ? strerror(e) : "ok");
    }
    unlink("listen.sock");
    return 0;
}
