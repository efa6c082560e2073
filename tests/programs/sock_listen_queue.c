/* Listeners with connections not yet accepted, UNIX and TCP: clients of the program still
 * waiting (and a client that closed, for UNIX), next to connections already accepted with
 * bytes unread both ways. After a restart accept returns the waiting connections, which carry
 * data both ways; the accepted ones have their bytes. */
#include "files_common.h"
#include "port_common.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

static const char *res(int r) {
    return r >= 0 ? "ok" : strerror(errno);
}

static void talk(const char *what, int a, int b) {
    char buf[16] = "";
    int w = write(a, "hi", 2);
    int r = read(b, buf, sizeof buf);
    printf("%s: write %d read %d '%.*s'\n", what, w, r, r > 0 ? r : 0, buf);
}

int main(void) {
    struct sockaddr_un ua = {.sun_family = AF_UNIX};
    strcpy(ua.sun_path, "queue.sock");
    unlink("queue.sock");
    int ul = socket(AF_UNIX, SOCK_STREAM, 0);
    if (bind(ul, (struct sockaddr *)&ua, sizeof ua) || listen(ul, 8)) return 2;
    int uacc_c = socket(AF_UNIX, SOCK_STREAM, 0);
    connect(uacc_c, (struct sockaddr *)&ua, sizeof ua);
    int uacc_s = accept(ul, NULL, NULL);
    write(uacc_c, "to server", 9);
    write(uacc_s, "to client", 9);
    int uwait = socket(AF_UNIX, SOCK_STREAM, 0);
    connect(uwait, (struct sockaddr *)&ua, sizeof ua);
    int uclosed = socket(AF_UNIX, SOCK_STREAM, 0);
    connect(uclosed, (struct sockaddr *)&ua, sizeof ua);
    close(uclosed);

    struct sockaddr_in ta = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t tl = sizeof ta;
    int tlis = socket(AF_INET, SOCK_STREAM, 0);
    if (bind_free_port(tlis, &ta, sizeof ta) || listen(tlis, 8) || getsockname(tlis, (struct sockaddr *)&ta, &tl)) return 3;
    int tacc_c = socket(AF_INET, SOCK_STREAM, 0);
    connect_from_free_port(tacc_c, &ta, sizeof ta);
    int tacc_s = accept(tlis, NULL, NULL);
    write(tacc_c, "tcp to server", 13);
    write(tacc_s, "tcp to client", 13);
    int twait = socket(AF_INET, SOCK_STREAM, 0);
    connect_from_free_port(twait, &ta, sizeof ta);
    ready();

    char b[32];
    int n = read(uacc_s, b, sizeof b);
    printf("unix accepted: '%.*s'", n > 0 ? n : 0, b);
    n = read(uacc_c, b, sizeof b);
    printf(" '%.*s'\n", n > 0 ? n : 0, b);
    int a1 = accept(ul, NULL, NULL);
    int a2 = accept(ul, NULL, NULL);
    printf("unix waiting: accept %s %s\n", res(a1), res(a2));
    /* One of them is the waiting client's, the other's client has closed (queue order aside). */
    int mine = -1, closed = -1;
    for (int i = 0; i < 2; i++) {
        int a = i ? a2 : a1;
        if (a < 0) continue;
        write(uwait, "", 0);
        n = recv(a, b, 1, MSG_DONTWAIT);
        if (n == 0) closed = a; else mine = a;
    }
    printf("unix waiting: one closed %s\n", closed >= 0 ? "yes" : "no");
    if (mine >= 0) talk("unix waiting", uwait, mine);
    n = read(tacc_s, b, sizeof b);
    printf("tcp accepted: '%.*s'", n > 0 ? n : 0, b);
    n = read(tacc_c, b, sizeof b);
    printf(" '%.*s'\n", n > 0 ? n : 0, b);
    int t1 = accept(tlis, NULL, NULL);
    printf("tcp waiting: accept %s\n", res(t1));
    if (t1 >= 0) {
        talk("tcp waiting", twait, t1);
        talk("tcp waiting back", t1, twait);
    }
    unlink("queue.sock");
    return finish();
}
