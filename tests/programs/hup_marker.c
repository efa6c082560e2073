/* A program that cleans up on SIGHUP, as vim does (it removes its swap file): its handler creates
 * the file given as its argument and exits. It prints "step N" every 50 ms until killed.
 *
 *   hup_marker MARKER
 *
 * Natively, when it leads its terminal's session and is killed with SIGKILL, its handler never
 * runs. Under ckpt-run the outer process leads the session instead; SIGKILL of the outer process
 * must end the program as abruptly, without the hangup the kernel sends the foreground process
 * group when a session leader dies. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *marker;

static void on_hup(int sig) {
    (void)sig;
    int fd = open(marker, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd >= 0) close(fd);
    _exit(1);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: hup_marker MARKER\n");
        return 2;
    }
    marker = argv[1];
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_hup;
    sigaction(SIGHUP, &sa, NULL);
    struct timespec t = {0, 50000000};
    for (unsigned long i = 1;; i++) {
        printf("step %lu\n", i);
        fflush(stdout);
        nanosleep(&t, NULL);
    }
}
