/* An inotify watch on a file removed since, which the program still holds open (issue 12, zdtm
 * inotify00). Watches a directory of its own (wd 1) and a file in it (wd 2), removes the file,
 * reads the events that gives, prints READY, waits for "go", then writes to the file through its
 * fd, closes it, and prints every event that follows: the watch must still be on that file
 * (and the restart must have queued no event of its own). */
#include "files_common.h"
#include <poll.h>
#include <sys/inotify.h>

#define MASK (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_CREATE | IN_DELETE | IN_DELETE_SELF)

static const char *name(unsigned m) {
    static const struct { unsigned bit; const char *name; } names[] = {
        {IN_MODIFY, "IN_MODIFY"}, {IN_ATTRIB, "IN_ATTRIB"}, {IN_CLOSE_WRITE, "IN_CLOSE_WRITE"},
        {IN_CREATE, "IN_CREATE"}, {IN_DELETE, "IN_DELETE"}, {IN_DELETE_SELF, "IN_DELETE_SELF"},
        {IN_IGNORED, "IN_IGNORED"},
    };
    for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++)
        if (m & names[i].bit) return names[i].name;
    return "other";
}

/* Read the events until none comes for 300 ms; print them when `show`. */
static void events(int in, int show) {
    char buf[4096] __attribute__((aligned(8)));
    struct pollfd p = {in, POLLIN, 0};
    while (poll(&p, 1, 300) > 0) {
        ssize_t n = read(in, buf, sizeof buf);
        for (ssize_t off = 0; off < n;) {
            struct inotify_event *e = (struct inotify_event *)(buf + off);
            if (show) printf("wd %d: %s%s%s\n", e->wd, name(e->mask), e->len ? " " : "", e->len ? e->name : "");
            off += sizeof *e + e->len;
        }
    }
}

int main(void) {
    mkdir("w", 0755);
    int in = inotify_init1(IN_NONBLOCK);
    int fd = open("w/watched", O_CREAT | O_TRUNC | O_RDWR, 0644);
    CHECK(in >= 0 && fd >= 0, "inotify_init1, open");
    int w1 = inotify_add_watch(in, "w", MASK);
    int w2 = inotify_add_watch(in, "w/watched", MASK);
    CHECK(unlink("w/watched") == 0, "unlink");
    events(in, 0);
    ready();
    printf("watches %d %d\n", w1, w2);
    events(in, 1);
    printf("write and close\n");
    CHECK(write(fd, "x", 1) == 1, "write");
    close(fd);
    events(in, 1);
    rmdir("w");
    return finish();
}
