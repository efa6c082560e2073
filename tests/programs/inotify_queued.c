/* Events queued unread in an inotify instance when the checkpoint is taken (issue 12, zdtm
 * inotify_system): a directory of its own (wd 1) and a file in it (wd 2) are watched, a file is
 * created, renamed (a pair of events with one cookie), written and its mode changed; the events
 * stay queued. READY, "go", then the program must find them all, as an uninterrupted run does:
 * FIONREAD counts them, poll and epoll say the fd is readable, a buffer too small for the next
 * event gives EINVAL, a buffer for one event gets exactly that one, and the rest follow in order
 * with their wd, mask, cookie and name; then an event made after them, and nothing more (the
 * fd is no longer readable, a non-blocking read gives EAGAIN). The fd is blocking, so a read
 * that finds nothing would hang. */
#include "files_common.h"
#include <poll.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/uio.h>

#define MASK (IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE)

static const char *name(unsigned m) {
    static const struct { unsigned bit; const char *name; } names[] = {
        {IN_CREATE, "IN_CREATE"}, {IN_DELETE, "IN_DELETE"}, {IN_MOVED_FROM, "IN_MOVED_FROM"},
        {IN_MOVED_TO, "IN_MOVED_TO"}, {IN_MODIFY, "IN_MODIFY"}, {IN_ATTRIB, "IN_ATTRIB"},
        {IN_CLOSE_WRITE, "IN_CLOSE_WRITE"}, {IN_IGNORED, "IN_IGNORED"},
    };
    for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++)
        if (m & names[i].bit) return names[i].name;
    return "other";
}

static unsigned moved_from;

/* Print the n bytes of events in buf: wd, mask, name; a rename's two events must share one
 * cookie (its value differs between runs), every other event has none. */
static void show(const char *what, const char *buf, ssize_t n) {
    printf("%s: %zd bytes\n", what, n);
    for (ssize_t off = 0; off < n;) {
        const struct inotify_event *e = (const struct inotify_event *)(buf + off);
        const char *cookie = "no cookie";
        if (e->mask & IN_MOVED_FROM) {
            moved_from = e->cookie;
            cookie = e->cookie ? "cookie" : "no cookie (wrong)";
        } else if (e->mask & IN_MOVED_TO) {
            cookie = e->cookie && e->cookie == moved_from ? "same cookie" : "other cookie (wrong)";
        } else if (e->cookie) {
            cookie = "a cookie (wrong)";
        }
        printf("  wd %d: %s%s%s, %s, len %u\n", e->wd, name(e->mask), e->len ? " " : "", e->len ? e->name : "", cookie, e->len);
        off += sizeof *e + e->len;
    }
}

static int queued(int in) {
    int q = -1;
    CHECK(ioctl(in, FIONREAD, &q) == 0, "FIONREAD");
    return q;
}

int main(void) {
    char buf[4096] __attribute__((aligned(8)));
    mkdir("w", 0755);
    int fd = open("w/f", O_CREAT | O_TRUNC | O_RDWR, 0644);
    int in = inotify_init1(0);
    CHECK(in >= 0 && fd >= 0, "inotify_init1, open");
    int w1 = inotify_add_watch(in, "w", MASK);
    int w2 = inotify_add_watch(in, "w/f", MASK);
    int a = open("w/a", O_CREAT | O_WRONLY, 0644);
    CHECK(a >= 0 && close(a) == 0, "create w/a");
    CHECK(rename("w/a", "w/b") == 0, "rename");
    CHECK(write(fd, "x", 1) == 1, "write");
    CHECK(fchmod(fd, 0600) == 0, "fchmod");
    int before = queued(in);
    ready();
    printf("watches %d %d, %d bytes queued\n", w1, w2, before);

    printf("FIONREAD %d\n", queued(in));
    struct pollfd p = {in, POLLIN, 0};
    printf("poll: %d\n", poll(&p, 1, 0));
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = 7}, got = {0};
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, in, &ev) == 0, "epoll_ctl");
    int n = epoll_wait(ep, &got, 1, 10000);
    printf("epoll: %d, data %u\n", n, got.data.u32);
    errno = 0;
    ssize_t r = read(in, buf, sizeof(struct inotify_event));
    printf("small read: %zd, %s\n", r, errno == EINVAL ? "EINVAL" : "no EINVAL");
    show("one event", buf, read(in, buf, sizeof(struct inotify_event) + 16));
    struct iovec iov[2] = {{buf, sizeof(struct inotify_event) + 24}, {buf + 2048, 2048}};
    show("readv, first buffer", buf, readv(in, iov, 2));
    int dup_in = dup(in);
    show("the rest, through a dup", buf, read(dup_in, buf, sizeof buf));
    close(dup_in);
    printf("FIONREAD %d, poll: %d\n", queued(in), poll(&p, 1, 0));
    int c = open("w/c", O_CREAT | O_WRONLY, 0644);
    CHECK(c >= 0 && close(c) == 0, "create w/c");
    show("after them", buf, read(in, buf, sizeof buf));
    CHECK(fcntl(in, F_SETFL, O_NONBLOCK) == 0, "O_NONBLOCK");
    errno = 0;
    r = read(in, buf, sizeof buf);
    printf("then: %zd, %s; poll: %d\n", r, errno == EAGAIN ? "EAGAIN" : "no EAGAIN", poll(&p, 1, 0));
    close(fd);
    unlink("w/f");
    unlink("w/b");
    unlink("w/c");
    rmdir("w");
    return finish();
}
