/* fds on the program's own /proc directory, opened as /proc/self/... and as /proc/<pid>/...,
 * and a working directory in it: after a restart they are the restarted process's. */
#include "files_common.h"

/* The Tgid: line of a status file read from `fd` (at offset 0). */
static long tgid_of(int fd) {
    char buf[4096];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0) return -1;
    buf[n] = 0;
    char *t = strstr(buf, "\nTgid:");
    return t ? atol(t + 6) : -1;
}

static long own_pid(void) {
    char buf[64];
    ssize_t n = readlink("/proc/self", buf, sizeof buf - 1);
    if (n <= 0) return -2;
    buf[n] = 0;
    return atol(buf);
}

int main(void) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", getpid());
    int status = open("/proc/self/status", O_RDONLY);
    int stat = open(path, O_RDONLY);
    int dir = open("/proc/self", O_RDONLY | O_DIRECTORY);
    if (status < 0 || stat < 0 || dir < 0 || chdir("/proc/self/fdinfo")) return 2;
    ready();

    long me = own_pid();
    CHECK(tgid_of(status) == me, "/proc/self/status fd shows %ld, not %ld", tgid_of(status), me);
    char buf[256] = {0};
    CHECK(pread(stat, buf, sizeof buf - 1, 0) > 0 && atol(buf) == me, "/proc/<pid>/stat fd shows %ld", atol(buf));
    int s2 = openat(dir, "status", O_RDONLY);
    CHECK(s2 >= 0 && tgid_of(s2) == me, "/proc/self dir fd");
    snprintf(path, sizeof path, "%d", status);
    int rel = open(path, O_RDONLY); /* fdinfo of the status fd, in the working directory */
    CHECK(rel >= 0 && pread(rel, buf, sizeof buf - 1, 0) > 0 && strstr(buf, "flags:") != NULL, "working directory /proc/self/fdinfo");
    printf("proc fds and working directory are the process's own\n");
    return finish();
}
