/* The watch descriptors an inotify instance hands out after a restart (issue 12). The kernel
 * numbers watches 1, 2, 3... and never reuses a number it gave (until it wraps): a watch added
 * after the restart must get the number it gets in an uninterrupted run, after a gap (a watch
 * removed between two others) and after the highest watches were removed (wd 4 and 5 gone: the
 * next is 6, not 4). Also one instance with no watch left at all (its next is 3).
 * Prints READY, waits for "go", then adds watches and prints their numbers. */
#include "files_common.h"
#include <sys/inotify.h>

static void drain(int in) {
    char buf[4096] __attribute__((aligned(8)));
    while (read(in, buf, sizeof buf) > 0) {
    }
}

int main(void) {
    mkdir("d", 0755);
    const char *files[] = {"d/a", "d/b", "d/c", "d/e", "d/f", "d/g", "d/h", "d/i"};
    for (unsigned i = 0; i < sizeof files / sizeof files[0]; i++)
        close(open(files[i], O_CREAT | O_WRONLY, 0644));
    int in = inotify_init1(IN_NONBLOCK);
    int empty = inotify_init1(IN_NONBLOCK);
    CHECK(in >= 0 && empty >= 0, "inotify_init1");
    int w[5];
    for (int i = 0; i < 5; i++)
        w[i] = inotify_add_watch(in, files[i], IN_MODIFY);
    /* A gap (2) and the two highest (4, 5) removed. */
    CHECK(inotify_rm_watch(in, w[1]) == 0 && inotify_rm_watch(in, w[3]) == 0 && inotify_rm_watch(in, w[4]) == 0, "inotify_rm_watch");
    int e1 = inotify_add_watch(empty, files[0], IN_MODIFY), e2 = inotify_add_watch(empty, files[1], IN_MODIFY);
    CHECK(inotify_rm_watch(empty, e1) == 0 && inotify_rm_watch(empty, e2) == 0, "inotify_rm_watch");
    drain(in);
    drain(empty);
    ready();
    printf("before: %d %d %d %d %d, empty %d %d\n", w[0], w[1], w[2], w[3], w[4], e1, e2);
    int n1 = inotify_add_watch(in, files[5], IN_MODIFY);
    int n2 = inotify_add_watch(in, files[6], IN_MODIFY);
    int again = inotify_add_watch(in, files[0], IN_MODIFY | IN_ATTRIB);
    int n3 = inotify_add_watch(empty, files[7], IN_MODIFY);
    printf("after: %d %d, the same file again %d, empty %d\n", n1, n2, again, n3);
    /* A write to a watched file is reported under its number. */
    int fd = open(files[5], O_WRONLY);
    CHECK(fd >= 0 && write(fd, "x", 1) == 1, "write");
    close(fd);
    char buf[4096] __attribute__((aligned(8)));
    ssize_t n = read(in, buf, sizeof buf);
    CHECK(n >= (ssize_t)sizeof(struct inotify_event), "read");
    printf("event on wd %d\n", ((struct inotify_event *)buf)->wd);
    return finish();
}
