/* tree_fds: a tree of N processes that all hold the same M socketpairs (2M fds, made before the
 * first fork; zdtm session03's shape: about 250 processes of 341 socketpairs), which then sleep
 * until killed. Process k forks processes 2k+1 and 2k+2 (below N). Prints "ready" once every
 * process is there. Used by scripts/bench-tree-fds. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static int n, ready[2];

static void grow(int k)
{
    for (int c = 2 * k + 1; c <= 2 * k + 2 && c < n; c++) {
        if (fork() == 0) {
            grow(c);
            write(ready[1], "x", 1);
            for (;;)
                pause();
        }
    }
}

int main(int argc, char **argv)
{
    n = argc > 1 ? atoi(argv[1]) : 64;
    int m = argc > 2 ? atoi(argv[2]) : 341;
    if (pipe(ready) != 0)
        return 1;
    for (int i = 0; i < m; i++) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
            perror("socketpair");
            return 1;
        }
    }
    grow(0);
    for (int k = 1; k < n; k++) {
        char c;
        read(ready[0], &c, 1);
    }
    printf("ready\n");
    fflush(stdout);
    for (;;)
        pause();
}
