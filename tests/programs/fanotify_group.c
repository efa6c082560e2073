/* A fanotify group an ordinary user can make (FAN_REPORT_FID, Linux 5.13): inode marks on a
 * file of the program's directory (by a relative name, with an ignored mask besides) and on a
 * file marked through a directory fd. After the restart the group's fdinfo (flags, event flags,
 * every mark with its inode, masks and file handle) is what it was, and writing to both files
 * queues one FAN_MODIFY event each, with the file's handle. Exit 0 with a note when the kernel
 * refuses unprivileged fanotify (the test then skips). */
#include "files_common.h"
#include "fanotify_common.h"

/* The group's fdinfo lines about itself and its marks. */
static void group_lines(int fa, char *out, size_t size) {
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fa);
    FILE *f = fopen(path, "r");
    out[0] = 0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "fanotify ", 9) && strlen(out) + strlen(line) < size) strcat(out, line);
    if (f) fclose(f);
}

int main(void) {
    int fa = fanotify_init(FAN_CLASS_NOTIF | FAN_REPORT_FID | FAN_NONBLOCK, O_RDONLY);
    if (fa < 0) {
        printf("no fanotify here\n");
        return 0;
    }
    int f = open("watched", O_CREAT | O_RDWR, 0600);
    CHECK(mkdir("sub", 0700) == 0, "mkdir sub");
    int g = open("sub/inner", O_CREAT | O_RDWR, 0600);
    int dir = open("sub", O_RDONLY | O_DIRECTORY);
    if (f < 0 || g < 0 || dir < 0) return 2;
    CHECK(fanotify_mark(fa, FAN_MARK_ADD, FAN_MODIFY, AT_FDCWD, "watched") == 0, "mark watched");
    CHECK(fanotify_mark(fa, FAN_MARK_ADD | FAN_MARK_IGNORED_MASK | FAN_MARK_IGNORED_SURV_MODIFY, FAN_ACCESS, AT_FDCWD, "watched") == 0,
          "ignored mask");
    CHECK(fanotify_mark(fa, FAN_MARK_ADD, FAN_MODIFY | FAN_CLOSE_WRITE, dir, "inner") == 0, "mark inner");
    close(dir);
    char before[4096], after[4096];
    group_lines(fa, before, sizeof before);
    ready();
    group_lines(fa, after, sizeof after);
    CHECK(strcmp(before, after) == 0, "the group differs:\n%s-- now:\n%s", before, after);
    CHECK(write(f, "x", 1) == 1, "write watched");
    CHECK(write(g, "y", 1) == 1, "write inner");
    char buf[4096] __attribute__((aligned(8)));
    ssize_t n = read(fa, buf, sizeof buf);
    int watched = 0, inner = 0, other = 0;
    for (struct fanotify_event_metadata *m = (void *)buf; n > 0 && FAN_EVENT_OK(m, n); m = FAN_EVENT_NEXT(m, n)) {
        if (m->mask == FAN_MODIFY && names(m, "watched"))
            watched++;
        else if (m->mask == FAN_MODIFY && names(m, "sub/inner"))
            inner++;
        else
            other++;
    }
    printf("events: watched %d, inner %d, other %d\n", watched, inner, other);
    CHECK(watched == 1 && inner == 1 && other == 0, "one FAN_MODIFY event for each file");
    return finish();
}
