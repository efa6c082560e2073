/* TCP connections that have ended with the program still holding both sockets: both ends shut
 * down for writing (one side then in TIME_WAIT, whose remains hold its port for a minute), and
 * one end with unread bytes before the end. After a restart reads give the unread bytes, then
 * EOF, and writes fail with EPIPE, as before. */
#include "files_common.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>

static int pair(int *srv, int *cli) {
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 1) || getsockname(l, (struct sockaddr *)&a, &len)) return -1;
    *cli = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(*cli, (struct sockaddr *)&a, sizeof a)) return -1;
    *srv = accept(l, NULL, NULL);
    close(l);
    return *srv < 0 ? -1 : 0;
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
    ready();

    check_end("first server", s1);
    check_end("first client", c1);
    check_end("second server", s2);
    check_end("second client", c2);
    return finish();
}
