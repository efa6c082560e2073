/* A fanotify group an ordinary user can make (FAN_REPORT_FID, inode marks) with an event
 * queued unread at checkpoint time: after the restart (and in the program that goes on) the fd
 * is readable, FIONREAD counts it, and a read gives it, with its file's handle, before an event
 * queued afterwards. Exit 0 with a note when the kernel refuses unprivileged fanotify (the test
 * then skips). */
#include "files_common.h"
#include <poll.h>
#include "fanotify_common.h"
#include <sys/ioctl.h>

int main(void) {
    int fa = fanotify_init(FAN_CLASS_NOTIF | FAN_REPORT_FID | FAN_NONBLOCK, O_RDONLY);
    if (fa < 0) {
        printf("no fanotify here\n");
        return 0;
    }
    int early = open("early", O_CREAT | O_RDWR, 0600), late = open("late", O_CREAT | O_RDWR, 0600);
    if (early < 0 || late < 0) return 2;
    CHECK(fanotify_mark(fa, FAN_MARK_ADD, FAN_MODIFY, AT_FDCWD, "early") == 0, "mark early");
    CHECK(fanotify_mark(fa, FAN_MARK_ADD, FAN_MODIFY, AT_FDCWD, "late") == 0, "mark late");
    CHECK(write(early, "x", 1) == 1, "write early");
    ready();
    struct pollfd p = {fa, POLLIN, 0};
    printf("readable: %s\n", poll(&p, 1, 0) == 1 && (p.revents & POLLIN) ? "yes" : "no");
    int queued = -1;
    CHECK(ioctl(fa, FIONREAD, &queued) == 0, "FIONREAD");
    printf("queued: %d\n", queued);
    CHECK(write(late, "y", 1) == 1, "write late");
    char buf[4096] __attribute__((aligned(8)));
    int order[4], k = 0, other = 0;
    ssize_t n;
    while ((n = read(fa, buf, sizeof buf)) > 0)
        for (struct fanotify_event_metadata *m = (void *)buf; FAN_EVENT_OK(m, n); m = FAN_EVENT_NEXT(m, n)) {
            int which = m->mask != FAN_MODIFY ? 0 : names(m, "early") ? 1 : names(m, "late") ? 2 : 0;
            if (which && k < 4)
                order[k++] = which;
            else
                other++;
        }
    printf("events:");
    for (int i = 0; i < k; i++) printf(" %s", order[i] == 1 ? "early" : "late");
    printf(", other %d\n", other);
    CHECK(k == 2 && order[0] == 1 && order[1] == 2 && other == 0, "early's event, then late's");
    p.revents = 0;
    printf("readable after: %s\n", poll(&p, 1, 0) == 1 ? "yes" : "no");
    return finish();
}
