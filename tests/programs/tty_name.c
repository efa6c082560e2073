/* The name of the terminal the program was started from: ttyname(0), ttyname_r(1) and
 * ptsname(0) (none: a slave is no master) before READY, then again after a line typed on the
 * terminal (after a restart from another terminal: that terminal's name, as a program started
 * there sees). With an argument K it first makes a pair of its own at index K (opening
 * /dev/ptmx until it gets K) and, at the end, says whether /dev/pts/K opened by its name is
 * that pair's slave. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static void names(const char *when) {
    const char *a = ttyname(0);
    char b[256];
    int rb = ttyname_r(1, b, sizeof b);
    const char *c = ptsname(0);
    printf("%s: ttyname(0) %s, ttyname_r(1) %s, ptsname(0) %s\r\n", when, a ? a : strerror(errno), rb ? strerror(rb) : b, c ? c : "none");
    fflush(stdout);
}

/* A master of index k (the lower ones are closed again); -1 if it cannot be had. */
static int pair_at(int k) {
    int lower[256], n = 0, m = -1;
    while (n < 256) {
        m = posix_openpt(O_RDWR | O_NOCTTY);
        int idx;
        if (m < 0 || ioctl(m, TIOCGPTN, &idx)) return -1;
        if (idx == k) break;
        lower[n++] = m;
        m = -1;
        if (idx > k) break;
    }
    while (n > 0) close(lower[--n]);
    if (m >= 0) unlockpt(m);
    return m;
}

/* Whether /dev/pts/K opened by its name is the slave of master m: bytes written there arrive. */
static const char *same_pair(int m) {
    char name[64];
    if (ptsname_r(m, name, sizeof name)) return "no ptsname";
    int s = open(name, O_RDWR | O_NOCTTY);
    if (s < 0) return strerror(errno);
    write(s, "z", 1);
    /* What is written to a slave is on its master at once; another terminal's never is. */
    struct pollfd p = {.fd = m, .events = POLLIN};
    char c = 0;
    if (poll(&p, 1, 10000) == 1) read(m, &c, 1);
    close(s);
    return c == 'z' ? "its own pair" : "another terminal";
}

int main(int argc, char **argv) {
    int pair = argc > 1 ? pair_at(atoi(argv[1])) : -1;
    names("before");
    if (argc > 1) printf("pair at %s: %s\r\n", argv[1], pair >= 0 ? ptsname(pair) : "none");
    printf("READY\r\n");
    fflush(stdout);
    char key;
    for (;;) {
        ssize_t r = read(0, &key, 1);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return 3;
        if (key == '\n') break;
    }
    names("after");
    if (pair >= 0) printf("pair: %s, by its name: %s\r\n", ptsname(pair), same_pair(pair));
    return 0;
}
