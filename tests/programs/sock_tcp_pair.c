/* TCP connections whose two ends are both in the program (loopback): bytes unread in both
 * directions, one connection shut down one way, and one whose receiver's buffer is full (the
 * sender's send queue holds the rest). After a restart every byte arrives, in order, once. */
#include "files_common.h"
#include "port_common.h"
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>

/* The byte at position p of the full connection's stream. */
static char at(long p) {
    return (char)(p * 7 + p / 4093);
}

/* Read fd to its end: whether it is the stream of `expect` bytes, each once, in order. */
static int read_stream(int fd, long expect) {
    static char buf[65536];
    long pos = 0;
    int ok = 1;
    for (;;) {
        int n = read(fd, buf, sizeof buf);
        if (n <= 0) break;
        for (int i = 0; i < n; i++)
            if (buf[i] != at(pos + i)) ok = 0;
        pos += n;
    }
    return ok && pos == expect;
}

int main(void) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    if (bind_free_port(l, &a, sizeof a) || listen(l, 8) || getsockname(l, (struct sockaddr *)&a, &al)) return 2;
    int c1 = socket(AF_INET, SOCK_STREAM, 0);
    connect_from_free_port(c1, &a, sizeof a);
    int s1 = accept(l, NULL, NULL);
    write(c1, "hello server", 12);
    write(s1, "hello client", 12);
    int c2 = socket(AF_INET, SOCK_STREAM, 0);
    connect_from_free_port(c2, &a, sizeof a);
    int s2 = accept(l, NULL, NULL);
    write(c2, "bye", 3);
    shutdown(c2, SHUT_WR);
    /* A full one: write until it would block. */
    int c3 = socket(AF_INET, SOCK_STREAM, 0);
    connect_from_free_port(c3, &a, sizeof a);
    int s3 = accept(l, NULL, NULL);
    fcntl(c3, F_SETFL, O_NONBLOCK);
    static char chunk[4096];
    long sent = 0;
    for (;;) {
        for (int k = 0; k < (int)sizeof chunk; k++) chunk[k] = at(sent + k);
        int n = write(c3, chunk, sizeof chunk);
        if (n <= 0) break;
        sent += n;
    }
    close(l);
    ready();

    char b[32];
    int n = read(s1, b, sizeof b);
    printf("s1: '%.*s'", n > 0 ? n : 0, b);
    n = read(c1, b, sizeof b);
    printf(" c1: '%.*s'\n", n > 0 ? n : 0, b);
    n = read(s2, b, sizeof b);
    printf("s2: '%.*s' then %d\n", n > 0 ? n : 0, b, (int)read(s2, b, sizeof b));
    printf("c2 can still read: %s\n", write(s2, "ok", 2) == 2 && read(c2, b, 2) == 2 ? "yes" : "no");
    shutdown(c3, SHUT_WR);
    printf("full: every byte once, in order: %s\n", read_stream(s3, sent) ? "yes" : "no");
    return finish();
}
