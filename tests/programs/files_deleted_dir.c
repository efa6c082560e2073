/* A removed directory held by an fd, a removed working directory that an fd also holds (they
 * must stay one directory), and (as root, where mknod works) a deleted device node. */
#include "files_common.h"
#include <sys/sysmacros.h>

int main(void) {
    char top[4096];
    if (!getcwd(top, sizeof top)) return 2;
    if (mkdir("gone", 0750) || mkdir("gone/sub", 0700) || mkdir("here", 0700)) return 2;
    int sub = open("gone/sub", O_RDONLY | O_DIRECTORY);
    int here = open("here", O_RDONLY | O_DIRECTORY);
    int dev = -1;
    if (mknod("null.dev", S_IFCHR | 0600, makedev(1, 3)) == 0) {
        dev = open("null.dev", O_RDWR);
        unlink("null.dev");
    }
    if (sub < 0 || here < 0 || chdir("here")) return 2;
    char path[8192];
    snprintf(path, sizeof path, "%s/here", top);
    if (rmdir("../gone/sub") || rmdir("../gone") || rmdir(path)) return 2;
    ready(); /* in a working directory that was removed */

    struct stat st, cw;
    CHECK(fstat(sub, &st) == 0 && S_ISDIR(st.st_mode) && st.st_nlink == 0, "the fd is not a removed directory");
    printf("dir fd: %s, nlink %ld\n", S_ISDIR(st.st_mode) ? "directory" : "not a directory", (long)st.st_nlink);
    CHECK(getcwd(path, sizeof path) == NULL && errno == ENOENT, "getcwd of a removed directory");
    CHECK(stat("/proc/self/cwd", &cw) == 0 && fstat(here, &st) == 0, "stat cwd");
    CHECK(cw.st_ino == st.st_ino && cw.st_dev == st.st_dev, "the working directory and the fd on it are different directories");
    ssize_t n = readlink("/proc/self/cwd", path, sizeof path - 1);
    path[n > 0 ? n : 0] = 0;
    char *base = strrchr(path, '/');
    printf("cwd: %s\n", base ? base + 1 : path);
    if (dev >= 0) {
        CHECK(fstat(dev, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3), "the device node changed");
        CHECK(write(dev, "x", 1) == 1, "write to the device");
        printf("device: char %u:%u, nlink %ld\n", major(st.st_rdev), minor(st.st_rdev), (long)st.st_nlink);
    } else {
        printf("device: mknod not allowed here\n");
    }
    if (chdir(top)) return 2;
    return finish();
}
