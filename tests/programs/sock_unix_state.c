/* UNIX sockets in states a restart must keep: socket pairs shut down one way or both ways
 * (stream and datagram), sockets never bound or connected (bind, listen and connect work
 * afterwards), a stream socket bound but not listening, an abstract name, a datagram socket
 * bound and connected to another, holding datagrams whose senders' names recvfrom reports, and
 * a socket pair whose other end is closed with bytes unread. */
#include "files_common.h"
#include <signal.h>
#include <sys/socket.h>
#include <stddef.h>
#include <sys/un.h>

static socklen_t name(struct sockaddr_un *a, const char *n, int abstract) {
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    strcpy(a->sun_path + (abstract ? 1 : 0), n);
    return offsetof(struct sockaddr_un, sun_path) + strlen(n) + (abstract ? 1 : 0);
}

static const char *res(int r) {
    return r >= 0 ? "ok" : strerror(errno);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    char abs_tag[32];
    snprintf(abs_tag, sizeof abs_tag, "ckpt-state-%d", getpid());
    int rd[2], wr[2], both[2], drd[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, rd);
    socketpair(AF_UNIX, SOCK_STREAM, 0, wr);
    socketpair(AF_UNIX, SOCK_SEQPACKET, 0, both);
    socketpair(AF_UNIX, SOCK_DGRAM, 0, drd);
    write(wr[0], "before", 6);
    shutdown(rd[0], SHUT_RD);
    shutdown(wr[0], SHUT_WR);
    shutdown(both[1], SHUT_RDWR);
    shutdown(drd[0], SHUT_RD);

    int never = socket(AF_UNIX, SOCK_STREAM, 0);
    int never_dg = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un la, aa, da, sa;
    socklen_t ll = name(&la, "later.sock", 0);
    unlink("later.sock");
    int bound_only = socket(AF_UNIX, SOCK_STREAM, 0);
    if (bind(bound_only, (struct sockaddr *)&la, ll)) return 2;
    socklen_t abl = name(&aa, abs_tag, 1);
    int abs_listen = socket(AF_UNIX, SOCK_STREAM, 0);
    if (bind(abs_listen, (struct sockaddr *)&aa, abl) || listen(abs_listen, 2)) return 3;

    /* Datagrams: a server bound to a path, a client bound and connected to it, two more
     * senders (one named, closed since; one unnamed). */
    unlink("dgram.sock");
    unlink("client.sock");
    socklen_t dl = name(&da, "dgram.sock", 0);
    socklen_t sl = name(&sa, "client.sock", 0);
    int srv = socket(AF_UNIX, SOCK_DGRAM, 0), cli = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (bind(srv, (struct sockaddr *)&da, dl) || bind(cli, (struct sockaddr *)&sa, sl) || connect(cli, (struct sockaddr *)&da, dl)) return 4;
    send(cli, "from client", 11, 0);
    struct sockaddr_un ga;
    char gone_tag[40];
    snprintf(gone_tag, sizeof gone_tag, "ckpt-gone-%d", getpid());
    socklen_t gl = name(&ga, gone_tag, 1);
    int gone = socket(AF_UNIX, SOCK_DGRAM, 0);
    bind(gone, (struct sockaddr *)&ga, gl);
    sendto(gone, "from gone", 9, 0, (struct sockaddr *)&da, dl);
    close(gone);
    int anon = socket(AF_UNIX, SOCK_DGRAM, 0);
    sendto(anon, "from anon", 9, 0, (struct sockaddr *)&da, dl);
    close(anon);

    int half[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, half);
    write(half[1], "last words", 10);
    close(half[1]);
    ready();

    char b[64];
    printf("shut rd: write %s", res(write(rd[1], "x", 1)));
    printf(", other way %s\n", res(write(rd[0], "y", 1)));
    int n = read(wr[1], b, sizeof b);
    printf("shut wr: read %d then %d", n, (int)read(wr[1], b, sizeof b));
    printf(", write %s\n", res(write(wr[0], "z", 1)));
    printf("shut both: %s %s\n", res(write(both[0], "p", 1)), res(write(both[1], "q", 1)));
    printf("dgram shut rd: send to it %s, from it %s\n", res(send(drd[1], "d", 1, 0)), res(send(drd[0], "e", 1, 0)));

    /* Never bound: they can be bound, listened on, connected. */
    struct sockaddr_un na;
    unlink("never.sock");
    socklen_t nl = name(&na, "never.sock", 0);
    printf("never: bind %s", res(bind(never, (struct sockaddr *)&na, nl)));
    printf(" listen %s", res(listen(never, 2)));
    printf(" connect %s\n", res(connect(never_dg, (struct sockaddr *)&da, dl)));
    printf("bound only: listen %s\n", res(listen(bound_only, 2)));
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    printf("abstract: connect %s", res(connect(c, (struct sockaddr *)&aa, abl)));
    printf(" accept %s\n", res(accept(abs_listen, NULL, NULL)));

    for (int i = 0; i < 3; i++) {
        struct sockaddr_un from;
        socklen_t fl = sizeof from;
        memset(&from, 0, sizeof from);
        n = recvfrom(srv, b, sizeof b, MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
        const char *who = fl <= offsetof(struct sockaddr_un, sun_path) ? "(unnamed)" : from.sun_path[0] ? from.sun_path : strncmp(from.sun_path + 1, "ckpt-gone-", 10) == 0 ? "@gone" : "@?";
        printf("dgram: '%.*s' from %s\n", n > 0 ? n : 0, b, who);
    }
    printf("dgram: client sends again %s\n", res(send(cli, "again", 5, 0)));
    n = read(half[0], b, sizeof b);
    printf("half: '%.*s' then %d\n", n > 0 ? n : 0, b, (int)read(half[0], b, sizeof b));
    unlink("later.sock");
    unlink("never.sock");
    unlink("dgram.sock");
    unlink("client.sock");
    return finish();
}
