/* A deleted-but-open file of more than 1 GiB apparent size (sparse: holes must stay holes),
 * with its permission bits and modification time, opened twice (two open file descriptions of one inode must stay
 * one inode), and a small deleted file with holes at the start and in the middle. */
#include "files_common.h"

static void pattern(int fd, off_t at, size_t len, int seed) {
    char *b = malloc(len);
    for (size_t i = 0; i < len; i++) b[i] = (char)(i * 31 + seed + (i >> 12));
    if (pwrite(fd, b, len, at) != (ssize_t)len) exit(2);
    free(b);
}

int main(void) {
    int big = open("big.tmp", O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (big < 0) return 2;
    pattern(big, 0, 1 << 20, 1);
    pattern(big, 3LL << 29, 8192, 2); /* at 1.5 GiB */
    if (ftruncate(big, (2LL << 30) + 12345) || fchmod(big, 0640)) return 2;
    int again = open("big.tmp", O_RDONLY);
    int small = open("holes.tmp", O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (again < 0 || small < 0) return 2;
    pattern(small, 8192, 4096, 3);
    pattern(small, 20480, 1000, 4);
    if (ftruncate(small, 32768) || fchmod(small, 0604)) return 2;
    struct timespec times[2] = {{1000000000, 5}, {1234567890, 123456789}};
    if (futimens(big, times) || futimens(small, times)) return 2;
    lseek(big, 777, SEEK_SET);
    lseek(again, 3 * 4096, SEEK_SET);
    lseek(small, 9000, SEEK_SET);
    if (unlink("big.tmp") || unlink("holes.tmp")) return 2;
    ready();

    printf("offsets %lld %lld %lld\n", (long long)lseek(big, 0, SEEK_CUR), (long long)lseek(again, 0, SEEK_CUR),
           (long long)lseek(small, 0, SEEK_CUR));
    describe_file("big", big);
    describe_file("holes", small);
    struct stat a, b;
    CHECK(fstat(big, &a) == 0 && fstat(again, &b) == 0, "fstat");
    CHECK(a.st_ino == b.st_ino && a.st_dev == b.st_dev, "the two opens of big are different inodes now");
    CHECK(a.st_nlink == 0, "big has %ld names", (long)a.st_nlink);
    char c = 0;
    CHECK(pwrite(big, "Z", 1, 100) == 1 && pread(again, &c, 1, 100) == 1 && c == 'Z', "a write through one open is not seen through the other");
    CHECK((fcntl(again, F_GETFL) & O_ACCMODE) == O_RDONLY, "access mode of the second open");
    return finish();
}
