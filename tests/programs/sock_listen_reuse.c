/* A listener (without SO_REUSEADDR) whose accepted connection the program closed first, after
 * setting SO_REUSEADDR on it: that connection lingers in TIME_WAIT on the listener's port. A
 * restart must listen on the port again (listen checks the port more strictly than bind).
 * After a restart the listener accepts a new connection on its old address. */
#include "files_common.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

int main(void) {
    struct sockaddr_in ta = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY)};
    socklen_t tl = sizeof ta;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    if (bind(l, (struct sockaddr *)&ta, sizeof ta) || listen(l, 8) || getsockname(l, (struct sockaddr *)&ta, &tl)) return 2;
    ta.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(c, (struct sockaddr *)&ta, sizeof ta)) return 3;
    int a = accept(l, NULL, NULL);
    int one = 1;
    setsockopt(a, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    close(a); /* the server side closes first: its end goes to TIME_WAIT */
    char b[8];
    int eof = read(c, b, sizeof b) == 0;
    close(c);
    ready();
    printf("client saw end of file: %s\n", eof ? "yes" : "no");

    int v = -1;
    socklen_t vl = sizeof v;
    getsockopt(l, SOL_SOCKET, SO_REUSEADDR, &v, &vl);
    printf("listener SO_REUSEADDR %d\n", v);
    int c2 = socket(AF_INET, SOCK_STREAM, 0);
    printf("connect again: %s\n", connect(c2, (struct sockaddr *)&ta, sizeof ta) == 0 ? "ok" : strerror(errno));
    int a2 = accept(l, NULL, NULL);
    printf("accept: %s\n", a2 >= 0 ? "ok" : strerror(errno));
    if (a2 >= 0) {
        write(c2, "hello", 5);
        int n = read(a2, b, sizeof b);
        printf("read '%.*s'\n", n > 0 ? n : 0, b);
    }
    printf("done\n");
    return 0;
}
