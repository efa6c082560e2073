/* A terminal device the program opened by a name of its own (a device node in its directory
 * with /dev/console's numbers, as a program that opens a console, a virtual terminal or a
 * serial line by name): after a restart the fd is that device again, through the same node,
 * with the same access mode, and still a terminal; not ckpt-restart's terminal. Needs root to
 * make the node (mknod); nothing is written to or set on the device.
 * With the argument "vt": the node "vt-node" the test made (a VT's numbers), opened as a
 * session leader without a controlling terminal, which makes it the controlling terminal (zdtm's
 * vt test): after a restart from no terminal it is still the controlling terminal. */
#include "files_common.h"
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <termios.h>

static int is_ctty(int fd) {
    pid_t sid;
    /* TIOCGSID answers only for the caller's controlling terminal. */
    return ioctl(fd, TIOCGSID, &sid) == 0;
}

int main(int argc, char **argv) {
    int vt = argc > 1 && !strcmp(argv[1], "vt");
    const char *name = vt ? "vt-node" : "console-node";
    int fd;
    if (vt) {
        if (getsid(0) != getpid() && setsid() < 0) return 2;
        fd = open(name, O_RDONLY);
        if (fd < 0 || !is_ctty(fd)) return 3;
    } else {
        unlink(name);
        if (mknod(name, S_IFCHR | 0600, makedev(5, 1))) return 2;
        fd = open(name, O_RDONLY | O_NOCTTY);
        if (fd < 0) return 3;
    }
    struct stat a, node;
    if (fstat(fd, &a)) return 4;
    ready();

    struct stat b;
    if (fstat(fd, &b) || stat(name, &node)) return 5;
    printf("same device: %s\n", a.st_rdev == b.st_rdev ? "yes" : "no");
    printf("through the node: %s\n", b.st_ino == node.st_ino && b.st_dev == node.st_dev ? "yes" : "no");
    printf("read-only: %s\n", (fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDONLY ? "yes" : "no");
    printf("a terminal: %s\n", isatty(fd) ? "yes" : "no");
    if (vt) printf("controlling terminal: %s\n", is_ctty(fd) ? "yes" : "no");
    unlink(name);
    printf("done\n");
    return 0;
}
