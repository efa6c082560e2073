/*
 * files_saved: holds a named file open (saved.dat in its working directory, 256 KiB of data and
 * a hole up to 1 MiB), rewrites a block of it each step through its fd, and at the end hashes
 * the file through that fd and removes it by name. Run under `ckpt-run --checkpoint-open-files`
 * and restarted after the file was removed, the restart must recreate it at its path with its
 * data at checkpoint time: the same hash as an uninterrupted run, and the unlink succeeds.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BLOCK 4096
#define DATA_BLOCKS 64

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 10;
    int fd = open("saved.dat", O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) { perror("open saved.dat"); return 1; }
    static unsigned char buf[BLOCK];
    for (int b = 0; b < DATA_BLOCKS; b++) {
        for (int i = 0; i < BLOCK; i++) buf[i] = (unsigned char)(((uint32_t)(b * BLOCK + i) * 2654435761u) >> 13);
        if (pwrite(fd, buf, BLOCK, (off_t)b * BLOCK) != BLOCK) { perror("pwrite"); return 1; }
    }
    if (ftruncate(fd, 1 << 20) != 0) { perror("ftruncate"); return 1; }
    printf("start files_saved steps=%d\n", steps);
    fflush(stdout);
    struct timespec ts = {0, 100 * 1000 * 1000};
    for (int s = 1; s <= steps; s++) {
        memset(buf, s, BLOCK);
        if (pwrite(fd, buf, BLOCK, (off_t)((s * 7) % DATA_BLOCKS) * BLOCK) != BLOCK) { perror("pwrite step"); return 1; }
        nanosleep(&ts, NULL);
        printf("step %d\n", s);
        fflush(stdout);
    }
    uint64_t h = 1469598103934665603ull;
    for (off_t off = 0; off < (1 << 20); off += BLOCK) {
        if (pread(fd, buf, BLOCK, off) != BLOCK) { perror("pread"); return 1; }
        for (int i = 0; i < BLOCK; i++) h = (h ^ buf[i]) * 1099511628211ull;
    }
    int rc = unlink("saved.dat");
    printf("result %016llx unlink %s\n", (unsigned long long)h, rc == 0 ? "ok" : "failed");
    return 0;
}
