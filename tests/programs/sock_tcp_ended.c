/* TCP connections that have ended with the program still holding both sockets: both ends shut
 * down for writing (one side then in TIME_WAIT, whose remains hold its port for a minute), and
 * one end with unread bytes before the end. After a restart reads give the unread bytes, then
 * EOF, and writes fail with EPIPE, as before; getsockname and SO_PEERNAME (which answers for a
 * closed socket, unlike getpeername) give the same addresses (zdtm socket-tcp-closed). */
#include "files_common.h"
#include "port_common.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>

static int pair(int *srv, int *cli) {
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (bind_free_port(l, &a, sizeof a) || listen(l, 1) || getsockname(l, (struct sockaddr *)&a, &len)) return -1;
    *cli = socket(AF_INET, SOCK_STREAM, 0);
    if (connect_from_free_port(*cli, &a, sizeof a)) return -1;
    *srv = accept(l, NULL, NULL);
    close(l);
    return *srv < 0 ? -1 : 0;
}

struct addrs {
    struct sockaddr_in name, peer;
};

static struct addrs addrs_of(int fd) {
    struct addrs a;
    memset(&a, 0, sizeof a);
    socklen_t len = sizeof a.name;
    if (getsockname(fd, (struct sockaddr *)&a.name, &len) != 0) a.name.sin_family = 0xffff;
    len = sizeof a.peer;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERNAME, &a.peer, &len) != 0) a.peer.sin_family = 0xffff;
    return a;
}

static void check_addrs(const char *what, int fd, const struct addrs *before) {
    struct addrs now = addrs_of(fd);
    printf("%s: getsockname %s, SO_PEERNAME %s\n", what, memcmp(&now.name, &before->name, sizeof now.name) ? "changed" : "same",
           now.peer.sin_family == 0xffff ? strerror(errno) : memcmp(&now.peer, &before->peer, sizeof now.peer) ? "changed" : "same");
}

static void check_end(const char *what, int fd) {
    char buf[16] = "";
    ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n > 0) {
        buf[n] = 0;
        printf("%s: unread \"%s\"\n", what, buf);
        n = read(fd, buf, sizeof buf);
    }
    printf("%s: read %zd", what, n);
    errno = 0;
    ssize_t w = write(fd, "x", 1);
    printf(", write %zd errno %s\n", w, errno == EPIPE ? "EPIPE" : strerror(errno));
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    int s1, c1, s2, c2;
    CHECK(pair(&s1, &c1) == 0, "first connection");
    CHECK(pair(&s2, &c2) == 0, "second connection");
    /* The first ends cleanly: the client first (it goes through TIME_WAIT). */
    shutdown(c1, SHUT_WR);
    shutdown(s1, SHUT_WR);
    /* The second: the server says "bye" and both shut down; the client does not read it. */
    CHECK(write(s2, "bye", 3) == 3, "write bye");
    shutdown(s2, SHUT_WR);
    shutdown(c2, SHUT_WR);
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL); /* let the FINs and ACKs go through loopback */
    struct addrs a_s1 = addrs_of(s1), a_c1 = addrs_of(c1), a_s2 = addrs_of(s2), a_c2 = addrs_of(c2);
    ready();

    check_addrs("first server", s1, &a_s1);
    check_addrs("first client", c1, &a_c1);
    check_addrs("second server", s2, &a_s2);
    check_addrs("second client", c2, &a_c2);

    check_end("first server", s1);
    check_end("first client", c1);
    check_end("second server", s2);
    check_end("second client", c2);
    return finish();
}
