/* Names of deleted files: a file unlinked under one name but still linked under another in the
 * same directory is still that file after a restart (same inode, one link, writes through the fd
 * seen through the other name); a file deleted for good still shows its old name in
 * /proc/self/fd ("NAME (deleted)"), as programs that check it (or print it) expect. */
#include "files_common.h"

static void link_text(int fd, char *out, size_t len) {
    char p[64];
    snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(p, out, len - 1);
    out[n > 0 ? n : 0] = 0;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    int a = open("linked", O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK(a >= 0, "open linked");
    CHECK(link("linked", "linked.other") == 0, "link");
    CHECK(unlink("linked") == 0, "unlink");
    CHECK(write(a, "before", 6) == 6, "write");
    struct stat before;
    fstat(a, &before);

    int d = open("gone", O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(d >= 0, "open gone");
    CHECK(write(d, "data", 4) == 4, "write gone");
    CHECK(unlink("gone") == 0, "unlink gone");
    char gone_link[4096];
    link_text(d, gone_link, sizeof gone_link);
    ready();

    struct stat now;
    fstat(a, &now);
    printf("unlinked, other name: same inode %d, links %ld, size %lld\n", now.st_ino == before.st_ino && now.st_dev == before.st_dev,
           (long)now.st_nlink, (long long)now.st_size);
    CHECK(write(a, "+after", 6) == 6, "write after");
    char buf[64] = "";
    int o = open("linked.other", O_RDONLY);
    ssize_t n = read(o, buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    printf("through the other name: %s\n", buf);
    char now_link[4096];
    link_text(d, now_link, sizeof now_link);
    CHECK(strcmp(now_link, gone_link) == 0, "deleted file shows %s, was %s", now_link, gone_link);
    fstat(d, &now);
    printf("deleted: links %ld, size %lld, name kept %d\n", (long)now.st_nlink, (long long)now.st_size, strcmp(now_link, gone_link) == 0);
    unlink("linked.other");
    return finish();
}
