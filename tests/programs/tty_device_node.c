/* A terminal device the program opened by a name of its own (a device node in its directory
 * with /dev/console's numbers, as a program that opens a console, a virtual terminal or a
 * serial line by name): after a restart the fd is that device again, through the same node,
 * with the same access mode, and still a terminal; not ckpt-restart's terminal. Needs root to
 * make the node (mknod); nothing is written to or set on the device. */
#include "files_common.h"
#include <sys/stat.h>
#include <sys/sysmacros.h>

int main(void) {
    unlink("console-node");
    if (mknod("console-node", S_IFCHR | 0600, makedev(5, 1))) return 2;
    int fd = open("console-node", O_RDONLY | O_NOCTTY);
    if (fd < 0) return 3;
    struct stat a, node;
    if (fstat(fd, &a)) return 4;
    ready();

    struct stat b;
    if (fstat(fd, &b) || stat("console-node", &node)) return 5;
    printf("same device: %s\n", a.st_rdev == b.st_rdev ? "yes" : "no");
    printf("through the node: %s\n", b.st_ino == node.st_ino && b.st_dev == node.st_dev ? "yes" : "no");
    printf("read-only: %s\n", (fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDONLY ? "yes" : "no");
    printf("a terminal: %s\n", isatty(fd) ? "yes" : "no");
    unlink("console-node");
    printf("done\n");
    return 0;
}
