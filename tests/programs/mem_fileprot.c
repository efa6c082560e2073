/* Shared file mappings and mprotect: a file opened read-write and mapped MAP_SHARED read-only
 * may later be made writable (VM_MAYWRITE); a file opened read-only and mapped shared may not
 * (EACCES). Both fds are closed before the checkpoint. Prints READY, waits for "go", then tries
 * both mprotects and, for the writable one, whether a write through it reaches the file. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PG 4096

static void wait_go(int dir) {
    struct timespec ts = {0, 20 * 1000 * 1000};
    while (faccessat(dir, "go", F_OK, 0) != 0) nanosleep(&ts, NULL);
}

static char *map(const char *path, int oflags) {
    int fd = open(path, oflags);
    char *p = mmap(NULL, PG, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    return p;
}

int main(void) {
    int dir = open(".", O_RDONLY | O_DIRECTORY);
    for (int i = 0; i < 2; i++) {
        int fd = open(i ? "ro.bin" : "rw.bin", O_RDWR | O_CREAT | O_TRUNC, 0644);
        char page[PG];
        memset(page, 'a' + i, PG);
        if (write(fd, page, PG) != PG) return 2;
        close(fd);
    }
    char *rw = map("rw.bin", O_RDWR);
    char *ro = map("ro.bin", O_RDONLY);
    printf("READY\n");
    fflush(stdout);
    wait_go(dir);
    int r = mprotect(rw, PG, PROT_READ | PROT_WRITE);
    printf("read-write file, mapped read-only: mprotect(PROT_WRITE) %s\n", r ? strerror(errno) : "ok");
    if (!r) {
        rw[0] = 'W';
        msync(rw, PG, MS_SYNC);
        int fd = open("rw.bin", O_RDONLY);
        char c = 0;
        if (pread(fd, &c, 1, 0) != 1) c = '?';
        close(fd);
        printf("write through it reaches the file: %s\n", c == 'W' ? "yes" : "no");
    }
    r = mprotect(ro, PG, PROT_READ | PROT_WRITE);
    printf("read-only file: mprotect(PROT_WRITE) %s\n", r ? strerror(errno) : "ok");
    printf("contents: %c %c\n", rw[1], ro[1]);
    return 0;
}
