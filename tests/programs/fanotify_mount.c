/* A fanotify group only root can make (zdtm fanotify00's kind): no FAN_REPORT_FID (events carry
 * an fd of the file), FAN_UNLIMITED_QUEUE, a mount mark with an ignored mask besides and a
 * filesystem mark, both on the tmpfs the test mounted at "mnt". After the restart the group's
 * fdinfo is what it was (mount ids aside: a restart's mount namespace numbers its mounts
 * anew), an event queued unread at checkpoint time is read first, with an fd of its file, and
 * writing to and closing a file of the tmpfs queues FAN_MODIFY (the mount mark) and
 * FAN_CLOSE_WRITE (the filesystem mark) with an fd of that file. An inode mark on a file moved
 * to another directory since comes back by its file handle. */
#include "files_common.h"
#include <sys/fanotify.h>

/* The group's fdinfo lines about itself and its marks, without mount ids. */
static void group_lines(int fa, char *out, size_t size) {
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fa);
    FILE *f = fopen(path, "r");
    out[0] = 0;
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, "fanotify ", 9)) continue;
        char *id = strstr(line, "mnt_id:"), *end = id ? strchr(id, ' ') : NULL;
        if (end) memmove(id, end + 1, strlen(end + 1) + 1);
        if (strlen(out) + strlen(line) < size) strcat(out, line);
    }
    if (f) fclose(f);
}

int main(void) {
    int fa = fanotify_init(FAN_CLASS_NOTIF | FAN_NONBLOCK | FAN_UNLIMITED_QUEUE, O_RDONLY | O_LARGEFILE);
    if (fa < 0) return 2;
    int f = open("mnt/file", O_CREAT | O_RDWR, 0600), early = open("mnt/early", O_CREAT | O_RDWR, 0600);
    if (f < 0 || early < 0) return 2;
    /* An inode mark on a file moved to another directory since: only its file handle finds it
     * again. */
    close(open("mnt/gone", O_CREAT | O_RDWR, 0600));
    CHECK(mkdir("mnt/elsewhere", 0700) == 0, "mkdir");
    CHECK(fanotify_mark(fa, FAN_MARK_ADD, FAN_MODIFY, AT_FDCWD, "mnt/gone") == 0, "inode mark");
    CHECK(rename("mnt/gone", "mnt/elsewhere/moved") == 0, "rename");
    CHECK(fanotify_mark(fa, FAN_MARK_ADD | FAN_MARK_MOUNT, FAN_MODIFY, AT_FDCWD, "mnt") == 0, "mount mark");
    CHECK(fanotify_mark(fa, FAN_MARK_ADD | FAN_MARK_MOUNT | FAN_MARK_IGNORED_MASK | FAN_MARK_IGNORED_SURV_MODIFY, FAN_ACCESS,
                        AT_FDCWD, "mnt") == 0,
          "ignored mask");
    CHECK(fanotify_mark(fa, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, FAN_CLOSE_WRITE, AT_FDCWD, "mnt") == 0, "filesystem mark");
    char before[4096], after[4096];
    group_lines(fa, before, sizeof before);
    CHECK(write(early, "x", 1) == 1, "write early");
    close(early);
    ready();
    group_lines(fa, after, sizeof after);
    CHECK(strcmp(before, after) == 0, "the group differs:\n%s-- now:\n%s", before, after);
    CHECK(write(f, "x", 1) == 1, "write");
    close(f);
    char buf[4096] __attribute__((aligned(8)));
    ssize_t n = read(fa, buf, sizeof buf);
    int early_events = 0, modify = 0, close_write = 0, other = 0;
    for (struct fanotify_event_metadata *m = (void *)buf; n > 0 && FAN_EVENT_OK(m, n); m = FAN_EVENT_NEXT(m, n)) {
        char link[64], target[4096] = "";
        snprintf(link, sizeof link, "/proc/self/fd/%d", m->fd);
        ssize_t k = readlink(link, target, sizeof target - 1);
        int ours = k > 9 && !strcmp(target + k - 9, "/mnt/file");
        if (m->fd >= 0) close(m->fd);
        /* Queued before the checkpoint, with an fd of its file (merged: a write and a close). */
        if (k > 10 && !strcmp(target + k - 10, "/mnt/early") && m->mask == (FAN_MODIFY | FAN_CLOSE_WRITE) && !modify) {
            early_events++;
            continue;
        }
        /* (The kernel merges the two events of one file while both are queued.) */
        modify += ours && (m->mask & FAN_MODIFY);
        close_write += ours && (m->mask & FAN_CLOSE_WRITE);
        other += !ours || (m->mask & ~(FAN_MODIFY | FAN_CLOSE_WRITE));
    }
    printf("events: early %d, modify %d, close_write %d, other %d\n", early_events, modify, close_write, other);
    CHECK(early_events == 1 && modify == 1 && close_write == 1 && other == 0, "the early event first, then one of each mark");
    return finish();
}
