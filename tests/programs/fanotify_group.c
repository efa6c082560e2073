/* A fanotify group with an inode mark on a file of the program's directory (unprivileged:
 * FAN_REPORT_FID, as Linux 5.13 allows). Its marks are not made again at a restart, so a restart
 * must not give the program a silently dead fd: it refuses in one line. Exit 0 with a note when
 * the kernel refuses unprivileged fanotify (the test then skips). */
#include "files_common.h"
#include <sys/fanotify.h>

int main(void) {
    int fa = fanotify_init(FAN_CLASS_NOTIF | FAN_REPORT_FID | FAN_NONBLOCK, O_RDONLY);
    if (fa < 0) {
        printf("no fanotify here\n");
        return 0;
    }
    int f = open("watched", O_CREAT | O_RDWR, 0600);
    if (f < 0 || fanotify_mark(fa, FAN_MARK_ADD, FAN_MODIFY, AT_FDCWD, "watched")) return 2;
    ready();
    write(f, "x", 1);
    char buf[4096];
    ssize_t n = read(fa, buf, sizeof buf);
    printf("event after the restart: %s\n", n > 0 ? "yes" : "no");
    return finish();
}
