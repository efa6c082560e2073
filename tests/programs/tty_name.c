/* The name of the terminal the program was started from: ttyname(0), ttyname_r(1) and
 * ptsname(0) (none: a slave is no master) before READY, then again after a line typed on the
 * terminal (after a restart from another terminal: that terminal's name, as a program started
 * there sees). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void names(const char *when) {
    const char *a = ttyname(0);
    char b[256];
    int rb = ttyname_r(1, b, sizeof b);
    const char *c = ptsname(0);
    printf("%s: ttyname(0) %s, ttyname_r(1) %s, ptsname(0) %s\r\n", when, a ? a : strerror(errno), rb ? strerror(rb) : b, c ? c : "none");
    fflush(stdout);
}

int main(void) {
    names("before");
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
    return 0;
}
