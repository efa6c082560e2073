/* An fd of a kind ckpt cannot make again (an io_uring instance, which any user may create):
 * a restart must not give the program something else at its number without a word; it refuses
 * in one line naming the fd, and goes on only with --ignore-missing-files (/dev/null, with a
 * warning). After "go": checks that the fd is still an io_uring instance. Exit 0 with a note
 * when the kernel refuses io_uring (the test then skips). */
#include "files_common.h"
#include <linux/io_uring.h>
#include <sys/syscall.h>

int main(void) {
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    int fd = (int)syscall(SYS_io_uring_setup, 4, &p);
    if (fd < 0) {
        printf("no io_uring here\n");
        return 0;
    }
    ready();
    char link[64], target[256] = {0};
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    CHECK(readlink(link, target, sizeof target - 1) > 0 && strcmp(target, "anon_inode:[io_uring]") == 0, "fd %d is %s", fd, target);
    return finish();
}
