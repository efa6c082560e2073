/* A pidfd of a process that is not in the image (its parent; ckpt-run --no-namespace, so ids
 * are not kept): after a restart it is not there again as such, so the restart must not
 * give the program something else at that fd without a word; it refuses in one line naming the
 * fd, and goes on only with --ignore-missing-files (/dev/null, with a warning). After "go":
 * checks that the fd still is a pidfd. */
#include "files_common.h"
#include <sys/syscall.h>

int main(void) {
    int fd = (int)syscall(SYS_pidfd_open, getppid(), 0);
    if (fd < 0) return 2;
    ready();
    char link[64], target[256] = {0};
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    CHECK(readlink(link, target, sizeof target - 1) > 0 && strcmp(target, "anon_inode:[pidfd]") == 0, "fd %d is %s", fd, target);
    return finish();
}
