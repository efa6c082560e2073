/* UNIX socket names and their files: a listener bound to a relative name from a directory the
 * program has left since (chdir), a socket file whose mode the program changed, a datagram
 * server (with a connected client) in a directory removed since, and a name whose file was
 * replaced by a FIFO. After a restart the names are the same, the files as they were. */
#include "files_common.h"
#include <sys/socket.h>
#include <stddef.h>
#include <sys/un.h>

static socklen_t name(struct sockaddr_un *a, const char *n) {
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    strcpy(a->sun_path, n);
    return offsetof(struct sockaddr_un, sun_path) + strlen(n);
}

static const char *res(int r) {
    return r >= 0 ? "ok" : strerror(errno);
}

int main(void) {
    char top[4096];
    if (!getcwd(top, sizeof top)) return 2;
    mkdir("sub", 0755);
    mkdir("gone", 0755);
    struct sockaddr_un ra, ma, ga, fa;
    if (chdir("sub")) return 3;
    unlink("rel.sock");
    socklen_t rl = name(&ra, "rel.sock");
    int rel = socket(AF_UNIX, SOCK_STREAM, 0);
    if (bind(rel, (struct sockaddr *)&ra, rl) || listen(rel, 2)) return 4;
    if (chdir(top)) return 5;

    unlink("mode.sock");
    socklen_t ml = name(&ma, "mode.sock");
    int moded = socket(AF_UNIX, SOCK_STREAM, 0);
    if (bind(moded, (struct sockaddr *)&ma, ml) || listen(moded, 2) || chmod("mode.sock", 0640)) return 6;

    socklen_t gl = name(&ga, "gone/srv.sock");
    int gsrv = socket(AF_UNIX, SOCK_DGRAM, 0), gcli = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (bind(gsrv, (struct sockaddr *)&ga, gl) || connect(gcli, (struct sockaddr *)&ga, gl)) return 7;
    send(gcli, "queued", 6, 0);
    unlink("gone/srv.sock");
    rmdir("gone");

    unlink("fifo.sock");
    socklen_t fl = name(&fa, "fifo.sock");
    int fsrv = socket(AF_UNIX, SOCK_DGRAM, 0), fcli = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (bind(fsrv, (struct sockaddr *)&fa, fl) || connect(fcli, (struct sockaddr *)&fa, fl)) return 8;
    unlink("fifo.sock");
    if (mkfifo("fifo.sock", 0600)) return 9;
    if (chdir("/")) return 10;
    ready();
    if (chdir(top)) return 11;

    struct sockaddr_un got;
    socklen_t gotl = sizeof got;
    getsockname(rel, (struct sockaddr *)&got, &gotl);
    printf("relative: name %.*s", (int)(gotl - offsetof(struct sockaddr_un, sun_path)), got.sun_path);
    struct stat st;
    printf(", file in sub %s\n", stat("sub/rel.sock", &st) == 0 && S_ISSOCK(st.st_mode) ? "yes" : "no");
    if (chdir("sub")) return 12;
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    printf("relative: connect %s", res(connect(c, (struct sockaddr *)&ra, rl)));
    printf(" accept %s\n", res(accept(rel, NULL, NULL)));
    if (chdir(top)) return 13;
    CHECK(stat("mode.sock", &st) == 0, "stat mode.sock");
    printf("mode: %o\n", st.st_mode & 07777);
    c = socket(AF_UNIX, SOCK_STREAM, 0);
    printf("mode: connect %s\n", res(connect(c, (struct sockaddr *)&ma, ml)));
    char b[16];
    int n = recv(gsrv, b, sizeof b, MSG_DONTWAIT);
    printf("gone dir: '%.*s', directory %s", n > 0 ? n : 0, b, access("gone", F_OK) ? "still gone" : "back");
    printf(", send %s", res(send(gcli, "more", 4, 0)));
    n = recv(gsrv, b, sizeof b, MSG_DONTWAIT);
    printf(" '%.*s'\n", n > 0 ? n : 0, b);
    CHECK(lstat("fifo.sock", &st) == 0 && S_ISFIFO(st.st_mode), "fifo.sock is still a FIFO");
    printf("fifo: send %s", res(send(fcli, "over", 4, 0)));
    n = recv(fsrv, b, sizeof b, MSG_DONTWAIT);
    gotl = sizeof got;
    getsockname(fsrv, (struct sockaddr *)&got, &gotl);
    printf(" '%.*s', name %s\n", n > 0 ? n : 0, b, got.sun_path);
    unlink("sub/rel.sock");
    unlink("mode.sock");
    unlink("fifo.sock");
    return finish();
}
