/* The slave of a pseudo-terminal whose master the program closed (zdtm pty04): hung up, its
 * /dev/pts node gone. After a restart it is a hung-up terminal again, not another file: a
 * terminal (isatty), reads give what they gave before the checkpoint (end of file or EIO),
 * writes fail with EIO. */
#define _XOPEN_SOURCE 600
#include "files_common.h"
#include <signal.h>

static void probe(int fd, char *out, size_t cap) {
    char c;
    errno = 0;
    ssize_t r = read(fd, &c, 1);
    int re = errno;
    errno = 0;
    ssize_t w = write(fd, "x", 1);
    snprintf(out, cap, "tty=%d read=%zd/%d write=%zd/%d", isatty(fd), r, r < 0 ? re : 0, w, w < 0 ? errno : 0);
}

int main(void) {
    signal(SIGHUP, SIG_IGN);
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    if (m < 0 || grantpt(m) || unlockpt(m)) return 2;
    int s = open(ptsname(m), O_RDWR | O_NOCTTY);
    if (s < 0) return 2;
    close(m);
    char before[128], after[128];
    probe(s, before, sizeof before);
    ready();
    probe(s, after, sizeof after);
    CHECK(strcmp(before, after) == 0, "before: %s, after: %s", before, after);
    printf("%s\n", after);
    return finish();
}
