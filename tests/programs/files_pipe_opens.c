/* One pipe opened three times: pipe(2) and two reopens through /proc/self/fd (one O_NONBLOCK
 * read end, one O_RDWR). Each open file description keeps its own flags and access mode. */
#include "files_common.h"

static const char *desc(int fd) {
    int fl = fcntl(fd, F_GETFL);
    static char out[4][32];
    static int k;
    char *o = out[k++ % 4];
    snprintf(o, 32, "%s%s", (fl & O_ACCMODE) == O_RDONLY ? "rdonly" : (fl & O_ACCMODE) == O_WRONLY ? "wronly" : "rdwr",
             (fl & O_NONBLOCK) ? "+nonblock" : "");
    return o;
}

int main(void) {
    int p[2];
    char path[64];
    if (pipe(p)) return 2;
    snprintf(path, sizeof path, "/proc/self/fd/%d", p[0]);
    int nb = open(path, O_RDONLY | O_NONBLOCK);
    int rw = open(path, O_RDWR);
    if (nb < 0 || rw < 0 || write(p[1], "unread bytes", 12) != 12) return 2;
    ready();

    printf("flags: %s %s %s %s\n", desc(p[0]), desc(p[1]), desc(nb), desc(rw));
    char buf[64] = {0};
    CHECK(read(nb, buf, sizeof buf - 1) == 12, "read the unread bytes");
    printf("read: %s\n", buf);
    CHECK(read(nb, buf, 1) < 0 && errno == EAGAIN, "an empty non-blocking read");
    CHECK(write(rw, "via rdwr", 8) == 8, "write through the O_RDWR open");
    memset(buf, 0, sizeof buf);
    CHECK(read(p[0], buf, sizeof buf - 1) == 8, "read what the O_RDWR open wrote");
    printf("read: %s\n", buf);
    return finish();
}
