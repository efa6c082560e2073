/* O_PATH fds: one on a symlink itself (O_NOFOLLOW), one on a symlink removed since, one on a
 * regular file. They must come back as O_PATH fds on the same objects, symlinks not followed. */
#include "files_common.h"

int main(void) {
    int t = open("target", O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (t < 0 || write(t, "target data", 11) != 11 || symlink("target", "link")) return 2;
    close(t);
    int l = open("link", O_PATH | O_NOFOLLOW);
    int f = open("target", O_PATH);
    if (symlink("elsewhere", "gone-link")) return 2;
    int g = open("gone-link", O_PATH | O_NOFOLLOW);
    if (l < 0 || f < 0 || g < 0 || unlink("gone-link")) return 2;
    ready();

    struct stat st;
    CHECK(fstat(l, &st) == 0 && S_ISLNK(st.st_mode), "the O_PATH fd is not on the symlink");
    char buf[64] = {0};
    CHECK(readlinkat(l, "", buf, sizeof buf - 1) == 6, "readlinkat on the symlink fd");
    printf("symlink fd: %s -> %s, flags %s\n", S_ISLNK(st.st_mode) ? "symlink" : "not a symlink", buf,
           (fcntl(l, F_GETFL) & O_PATH) ? "O_PATH" : "not O_PATH");
    CHECK(fstat(f, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 11, "the O_PATH fd on the file");
    CHECK(read(f, buf, 1) < 0 && errno == EBADF, "an O_PATH fd reads");
    printf("file fd: regular %lld bytes, flags %s\n", (long long)st.st_size, (fcntl(f, F_GETFL) & O_PATH) ? "O_PATH" : "not O_PATH");
    memset(buf, 0, sizeof buf);
    CHECK(fstat(g, &st) == 0 && S_ISLNK(st.st_mode) && st.st_nlink == 0, "the removed symlink");
    CHECK(readlinkat(g, "", buf, sizeof buf - 1) == 9, "readlinkat on the removed symlink");
    printf("removed symlink fd: -> %s, nlink %ld\n", buf, (long)st.st_nlink);
    return finish();
}
