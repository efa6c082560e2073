/* Two listeners (without SO_REUSEADDR) whose accepted connection the program closed first: that
 * connection lingers in TIME_WAIT on the listener's port. On the first the program set
 * SO_REUSEADDR on the accepted connection before closing it, on the second it never set it (so
 * SO_REUSEADDR on a new socket does not let it bind: the kernel wants it on both). A restart
 * must listen on both ports again (listen checks the port more strictly than bind), at once.
 * After a restart each listener still says SO_REUSEADDR 0 and accepts a new connection on its
 * old address. */
#include "files_common.h"
#include "port_common.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

struct lingering {
    int l, eof;
    struct sockaddr_in a;
};

static struct lingering lingering(int reuse_on_accepted) {
    struct lingering r = {.a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY)}};
    socklen_t tl = sizeof r.a;
    r.l = socket(AF_INET, SOCK_STREAM, 0);
    if (bind_free_port(r.l, &r.a, sizeof r.a) || listen(r.l, 8) || getsockname(r.l, (struct sockaddr *)&r.a, &tl)) exit(2);
    r.a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(c, (struct sockaddr *)&r.a, sizeof r.a)) exit(3);
    int a = accept(r.l, NULL, NULL);
    int one = 1;
    if (reuse_on_accepted) setsockopt(a, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    close(a); /* the server side closes first: its end goes to TIME_WAIT */
    char b[8];
    r.eof = read(c, b, sizeof b) == 0;
    close(c);
    return r;
}

static void check(struct lingering *x) {
    printf("client saw end of file: %s\n", x->eof ? "yes" : "no");
    int v = -1;
    socklen_t vl = sizeof v;
    getsockopt(x->l, SOL_SOCKET, SO_REUSEADDR, &v, &vl);
    printf("listener SO_REUSEADDR %d\n", v);
    int c2 = socket(AF_INET, SOCK_STREAM, 0);
    printf("connect again: %s\n", connect(c2, (struct sockaddr *)&x->a, sizeof x->a) == 0 ? "ok" : strerror(errno));
    int a2 = accept(x->l, NULL, NULL);
    printf("accept: %s\n", a2 >= 0 ? "ok" : strerror(errno));
    if (a2 >= 0) {
        char b[8];
        write(c2, "hello", 5);
        int n = read(a2, b, sizeof b);
        printf("read '%.*s'\n", n > 0 ? n : 0, b);
    }
}

int main(void) {
    struct lingering with = lingering(1), without = lingering(0);
    ready();
    check(&with);
    check(&without);
    printf("done\n");
    return 0;
}
