/* The program's own view of its fd table (issue 12, zdtm fd): it holds a directory fd and a pipe,
 * prints READY, waits for a file named "go", then lists its fds three ways (readdir on
 * /proc/self/fd, getdents64 on /proc/self/fdinfo, readdir_r on /proc/<pid>/fd), closes every fd
 * above 2 that it found, and lists /proc/self/fd again. The lists must be what it opened, and
 * nothing once it closed everything: the runtime's own fds (its /proc directory, control
 * socket...) must not show. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int fds[256], nfds;

static void add(const char *name, int skip) {
    if (name[0] < '0' || name[0] > '9') return;
    int fd = atoi(name);
    if (fd != skip && nfds < 256) fds[nfds++] = fd;
}

static int cmp(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

static void print(const char *how) {
    qsort(fds, nfds, sizeof fds[0], cmp);
    printf("%s:", how);
    for (int i = 0; i < nfds; i++) printf(" %d", fds[i]);
    printf("\n");
}

static void by_readdir(const char *path) {
    nfds = 0;
    DIR *d = opendir(path);
    if (!d) { perror(path); exit(1); }
    struct dirent *e;
    while ((e = readdir(d))) add(e->d_name, dirfd(d));
    closedir(d);
}

static void by_getdents(const char *path) {
    nfds = 0;
    int fd = open(path, O_RDONLY | O_DIRECTORY);
    if (fd < 0) { perror(path); exit(1); }
    char buf[512];
    ssize_t n;
    while ((n = getdents64(fd, buf, sizeof buf)) > 0)
        for (ssize_t off = 0; off < n;) {
            struct dirent64 *e = (struct dirent64 *)(buf + off);
            add(e->d_name, fd);
            off += e->d_reclen;
        }
    close(fd);
}

static void by_readdir_r(const char *path) {
    nfds = 0;
    DIR *d = opendir(path);
    if (!d) { perror(path); exit(1); }
    struct dirent ent, *e;
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    while (readdir_r(d, &ent, &e) == 0 && e) add(e->d_name, dirfd(d));
    closedir(d);
}

int main(void) {
    int dir = open(".", O_RDONLY | O_DIRECTORY);
    int p[2];
    if (dir < 0 || pipe(p) != 0) return 1;
    printf("READY\n");
    fflush(stdout);
    struct timespec ts = {0, 20 * 1000 * 1000};
    while (faccessat(dir, "go", F_OK, 0) != 0) nanosleep(&ts, NULL);
    by_readdir("/proc/self/fd");
    print("readdir");
    by_getdents("/proc/self/fdinfo");
    print("getdents64");
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", getpid());
    by_readdir_r(path);
    print("readdir_r");
    int mine[256], n = nfds;
    memcpy(mine, fds, sizeof mine);
    for (int i = 0; i < n; i++)
        if (mine[i] > 2) close(mine[i]);
    by_readdir("/proc/self/fd");
    print("after closing all");
    return 0;
}
