/* fake_ctl_server PATH DELAY_MS ANSWER: a stand-in for a program's control socket, for tests of
 * ckpt-ctl (a socket squatted by another user, a server that is slow or sends control
 * characters). Listens on the UNIX socket PATH (mode 0777, so any user can connect), prints
 * "listening", and answers every connection, DELAY_MS after its request arrived, with ANSWER
 * verbatim (control characters included), one child process per connection. Runs until killed. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: fake_ctl_server PATH DELAY_MS ANSWER\n");
        return 2;
    }
    long delay = atol(argv[2]);
    const char *answer = argv[3];
    signal(SIGCHLD, SIG_IGN);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    if (s < 0 || strlen(argv[1]) >= sizeof a.sun_path) {
        fprintf(stderr, "fake_ctl_server: bad socket path\n");
        return 1;
    }
    strcpy(a.sun_path, argv[1]);
    unlink(argv[1]);
    if (bind(s, (struct sockaddr *)&a, sizeof a) != 0 || listen(s, 16) != 0) {
        perror("fake_ctl_server: bind");
        return 1;
    }
    chmod(argv[1], 0777);
    printf("listening\n");
    fflush(stdout);
    for (;;) {
        int c = accept(s, NULL, NULL);
        if (c < 0)
            continue;
        if (fork() == 0) {
            char buf[256];
            if (read(c, buf, sizeof buf) < 0)
                _exit(1);
            struct timespec ts = { delay / 1000, (delay % 1000) * 1000000L };
            nanosleep(&ts, NULL);
            if (write(c, answer, strlen(answer)) < 0)
                _exit(1);
            _exit(0);
        }
        close(c);
    }
}
