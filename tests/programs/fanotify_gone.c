/* A fanotify group (an ordinary user's: FAN_REPORT_FID) with an inode mark on a file moved to
 * another directory since: only open_by_handle_at, which needs CAP_DAC_READ_SEARCH, finds it
 * again, so an ordinary user's restart refuses in one line; with --ignore-missing-files the
 * group comes back without that mark. Exit 0 with a note when the kernel refuses unprivileged
 * fanotify (the test then skips). */
#include "files_common.h"
#include <sys/fanotify.h>

int main(void) {
    int fa = fanotify_init(FAN_CLASS_NOTIF | FAN_REPORT_FID | FAN_NONBLOCK, O_RDONLY);
    if (fa < 0) {
        printf("no fanotify here\n");
        return 0;
    }
    close(open("gone", O_CREAT | O_RDWR, 0600));
    CHECK(mkdir("elsewhere", 0700) == 0, "mkdir");
    CHECK(fanotify_mark(fa, FAN_MARK_ADD, FAN_MODIFY, AT_FDCWD, "gone") == 0, "mark");
    CHECK(rename("gone", "elsewhere/moved") == 0, "rename");
    ready();
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fa);
    FILE *f = fopen(path, "r");
    int marks = 0;
    while (f && fgets(line, sizeof line, f)) marks += !strncmp(line, "fanotify ino:", 13);
    printf("marks: %d\n", marks);
    return finish();
}
