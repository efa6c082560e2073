/* Signals sent to ckpt-run (or ckpt-restart) reach the program, each once: counts SIGUSR1 and
 * SIGHUP (it sends itself one SIGHUP with kill(0, SIGHUP), to its whole process group) and
 * prints the counts whenever they change; SIGTERM ends it with status 7. With "die" as argument
 * SIGTERM keeps its default action. With "pause N" it waits for N steps of 20 ms, then pauses
 * (for a checkpoint). Prints "ready" first. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t usr1, hup, term;

static void on_sig(int s) {
    if (s == SIGUSR1) usr1++;
    if (s == SIGHUP) hup++;
    if (s == SIGTERM) term = 1;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sig;
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    if (!(argc > 1 && strcmp(argv[1], "die") == 0)) sigaction(SIGTERM, &sa, NULL);
    kill(0, SIGHUP);
    printf("ready\n");
    int last_u = -1, last_h = -1;
    for (;;) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
        if (usr1 != last_u || hup != last_h) {
            last_u = usr1;
            last_h = hup;
            printf("usr1=%d hup=%d\n", last_u, last_h);
        }
        if (term) {
            printf("term\n");
            return 7;
        }
    }
}
