/* A deleted file the program keeps writing while checkpoints are taken: the image must hold the
 * file as it was at the same instant as memory. The program keeps a copy of the file in memory,
 * writes both together without pause, and after a restart compares them. */
#include "files_common.h"

#define SIZE (64 << 20)

int main(void) {
    int fd = open("busy.tmp", O_RDWR | O_CREAT | O_TRUNC, 0600);
    unsigned long long *copy = malloc(SIZE);
    if (fd < 0 || !copy || unlink("busy.tmp")) return 2;
    unsigned long long x = 88172645463325252ULL;
    for (size_t i = 0; i < SIZE / 8; i++) copy[i] = i * 0x9E3779B97F4A7C15ULL;
    if (pwrite(fd, copy, SIZE, 0) != SIZE) return 2;
    printf("READY\n");
    fflush(stdout);
    long writes = 0;
    while (access(go_path, F_OK) != 0) {
        for (int k = 0; k < 64; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            size_t at = x % (SIZE / 8);
            copy[at] = x;
            if (pwrite(fd, &x, 8, at * 8) != 8) return 2;
            writes++;
        }
    }
    static unsigned long long buf[1 << 16];
    long bad = 0;
    for (off_t o = 0; o < SIZE; o += sizeof buf) {
        CHECK(pread(fd, buf, sizeof buf, o) == sizeof buf, "read back");
        for (size_t i = 0; i < sizeof buf / 8; i++) bad += buf[i] != copy[o / 8 + i];
    }
    CHECK(bad == 0, "%ld words of the file differ from what the program wrote (%ld writes)", bad, writes);
    printf("file and memory agree: %s\n", bad ? "no" : "yes");
    return finish();
}
