/* UNIX listeners (stream and seqpacket) with connections not yet accepted, bytes in them: from
 * a client the program still holds (non-blocking, close-on-exec), from a client that has closed
 * since, and none from a second client it holds. The bytes sit in the waiting sockets, which
 * nothing can read without accepting them. After the cut each connection is accepted in the
 * order the clients connected, with the same bytes (seqpacket: the same records), the closed
 * client's connection ends after its bytes, and the held clients still talk to their accepted
 * ends both ways. (zdtm's sk-unix-listen02 and -04.) */
#include "files_common.h"
#include <sys/socket.h>
#include <sys/un.h>

static struct sockaddr_un addr(const char *name) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strcpy(a.sun_path, name);
    return a;
}

static int client(struct sockaddr_un *a, int type) {
    int c = socket(AF_UNIX, type, 0);
    if (c < 0 || connect(c, (struct sockaddr *)a, sizeof *a)) exit(3);
    return c;
}

static void show(const char *what, int s) {
    char b[64];
    printf("%s:", what);
    for (int i = 0; i < 4; i++) {
        int n = recv(s, b, sizeof b, MSG_DONTWAIT);
        if (n < 0 && errno == EAGAIN) {
            printf(" (nothing more)");
            break;
        }
        if (n <= 0) {
            printf(" (end)");
            break;
        }
        printf(" '%.*s'", n, b);
    }
    printf("\n");
}

static void talk(const char *what, int c, int s) {
    char b[8] = {0};
    int ok = write(c, "ping", 4) == 4 && recv(s, b, 4, 0) == 4 && !strcmp(b, "ping");
    ok = ok && write(s, "pong", 4) == 4 && recv(c, b, 4, 0) == 4 && !strcmp(b, "pong");
    printf("%s talks both ways: %s\n", what, ok ? "yes" : "no");
}

struct setup {
    const char *name;
    int l, held, quiet;
};

static struct setup make(const char *name, int type) {
    struct sockaddr_un a = addr(name);
    unlink(name);
    int l = socket(AF_UNIX, type, 0);
    if (bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 8)) exit(2);
    int held = client(&a, type);
    write(held, "first", 5);
    write(held, "second", 6);
    int gone = client(&a, type);
    write(gone, "last words", 10);
    close(gone);
    int quiet = client(&a, type);
    fcntl(held, F_SETFL, O_NONBLOCK);
    fcntl(held, F_SETFD, FD_CLOEXEC);
    return (struct setup){name, l, held, quiet};
}

static void check(struct setup *t) {
    printf("%s held client: non-blocking %s, close-on-exec %s\n", t->name, fcntl(t->held, F_GETFL) & O_NONBLOCK ? "yes" : "no",
           fcntl(t->held, F_GETFD) & FD_CLOEXEC ? "yes" : "no");
    fcntl(t->held, F_SETFL, 0);
    int s1 = accept(t->l, NULL, NULL), s2 = accept(t->l, NULL, NULL), s3 = accept(t->l, NULL, NULL);
    CHECK(s1 >= 0 && s2 >= 0 && s3 >= 0, "accept");
    show("held client's", s1);
    show("closed client's", s2);
    show("quiet client's", s3);
    talk("held client", t->held, s1);
    talk("quiet client", t->quiet, s3);
    close(s1), close(s2), close(s3), close(t->held), close(t->quiet), close(t->l);
    unlink(t->name);
}

int main(void) {
    struct setup st = make("stream.sock", SOCK_STREAM), sp = make("seqpacket.sock", SOCK_SEQPACKET);
    ready();
    check(&st);
    check(&sp);
    return finish();
}
