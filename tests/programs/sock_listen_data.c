/* A UNIX listener with a connection not yet accepted whose client (the program's own socket,
 * held at two fds) has sent bytes into it: those bytes cannot be read without accepting the
 * connection, which is given back at the cut only when its client has one fd (the new client
 * takes that fd's place), so a restart must not go on silently without them. */
#include "files_common.h"
#include <sys/socket.h>
#include <sys/un.h>

int main(void) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strcpy(a.sun_path, "data.sock");
    unlink("data.sock");
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    if (bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 2)) return 2;
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    if (connect(c, (struct sockaddr *)&a, sizeof a)) return 3;
    int again = dup(c);
    write(c, "early bytes", 11);
    ready();
    int s = accept(l, NULL, NULL);
    char b[16];
    int n = recv(s, b, sizeof b, MSG_DONTWAIT);
    printf("accepted, read: '%.*s'\n", n > 0 ? n : 0, b);
    close(again);
    unlink("data.sock");
    return finish();
}
