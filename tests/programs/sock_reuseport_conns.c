/* Two TCP listeners sharing one port with SO_REUSEPORT (the first one has it turned off since,
 * as zdtm socket-tcp-reuseport does), and a connection accepted through each, both ends kept in
 * the program. The kernel spreads connections over a port's listeners by their addresses: a
 * restart that makes such a connection again through the port must take it from the listener
 * the kernel queued it in, whichever that is (it waited for ever on the first one). After a
 * restart: each listener's SO_REUSEPORT as before, data both ways on each connection, and a new
 * connection to the port accepted by one of them. */
#include "files_common.h"
#include "port_common.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

static int l[2];
static struct sockaddr_in addr;

/* Connect a client to the port and accept it on whichever listener got it: its index. */
static int connect_one(int *client, int *server) {
    *client = socket(AF_INET, SOCK_STREAM, 0);
    if (*client < 0 || connect_from_free_port(*client, &addr, sizeof addr)) exit(3);
    struct pollfd p[2] = {{l[0], POLLIN, 0}, {l[1], POLLIN, 0}};
    if (poll(p, 2, -1) <= 0) exit(4);
    int i = (p[0].revents & POLLIN) ? 0 : 1;
    *server = accept(l[i], NULL, NULL);
    if (*server < 0) exit(5);
    return i;
}

static void both_ways(const char *what, int client, int server) {
    char b[16] = {0};
    int ok = write(server, "ping", 4) == 4 && read(client, b, sizeof b) == 4 && memcmp(b, "ping", 4) == 0;
    ok = ok && write(client, "pong", 4) == 4 && read(server, b, sizeof b) == 4 && memcmp(b, "pong", 4) == 0;
    printf("%s: data both ways %s\n", what, ok ? "ok" : "FAILED");
}

static int reuseport(int fd) {
    int v = -1;
    socklen_t vl = sizeof v;
    getsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &v, &vl);
    return v;
}

int main(void) {
    int one = 1, zero = 0;
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < 2; i++) {
        l[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (l[i] < 0 || setsockopt(l[i], SOL_SOCKET, SO_REUSEPORT, &one, sizeof one)) exit(2);
    }
    if (bind_free_port(l[0], &addr, sizeof addr) || bind(l[1], (struct sockaddr *)&addr, sizeof addr)) exit(2);
    if (listen(l[0], 8) || listen(l[1], 8)) exit(2);
    setsockopt(l[0], SOL_SOCKET, SO_REUSEPORT, &zero, sizeof zero);
    /* A connection through each listener (the client's port decides which). */
    int client[2] = {-1, -1}, server[2] = {-1, -1};
    for (int tries = 0; tries < 200 && (client[0] < 0 || client[1] < 0); tries++) {
        int c, s, i = connect_one(&c, &s);
        if (client[i] < 0) {
            client[i] = c, server[i] = s;
        } else {
            close(c);
            close(s);
        }
    }
    if (client[0] < 0 || client[1] < 0) exit(6);
    ready();
    printf("first listener SO_REUSEPORT %d, second %d\n", reuseport(l[0]), reuseport(l[1]));
    both_ways("connection through the first listener", client[0], server[0]);
    both_ways("connection through the second listener", client[1], server[1]);
    int c, s;
    connect_one(&c, &s);
    both_ways("a new connection to the port", c, s);
    printf("done\n");
    return 0;
}
