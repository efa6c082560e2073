/* Shared by the files_*.c programs (one behaviour each, in the style of CRIU's zdtm tests):
 * set up state, print READY, wait for the file "go" in the directory the program started in,
 * then check the state and print one line per check; the output of a restarted run must equal
 * an uninterrupted run's. CHECK lines name the failed condition. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char go_path[4096];
static int failures;

__attribute__((constructor)) static void find_go(void) {
    if (!getcwd(go_path, sizeof go_path - 8)) exit(2);
    strcat(go_path, "/go");
}

static void ready(void) {
    printf("READY\n");
    fflush(stdout);
    struct timespec ts = {0, 20 * 1000 * 1000};
    while (access(go_path, F_OK) != 0) nanosleep(&ts, NULL);
}

#define CHECK(cond, ...)                                       \
    do {                                                       \
        if (!(cond)) {                                         \
            printf("FAIL line %d (%s): ", __LINE__, #cond);    \
            printf(__VA_ARGS__);                               \
            printf(" (errno %d)\n", errno);                    \
            failures++;                                        \
        }                                                      \
    } while (0)

static int finish(void) {
    printf(failures ? "failed\n" : "done\n");
    return failures ? 1 : 0;
}

/* The "Pid:" line of fd's fdinfo: a pidfd's process or thread (-1: it exited; 0: no such line). */
__attribute__((unused)) static int fdinfo_pid(int fd) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
    FILE *f = fopen(path, "r");
    int pid = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "Pid: %d", &pid) == 1) break;
    if (f) fclose(f);
    return pid;
}

/* Data runs of an fd's file (SEEK_DATA/SEEK_HOLE) and an FNV hash of its bytes, as one line. */
__attribute__((unused)) static void describe_file(const char *what, int fd) {
    struct stat st;
    if (fstat(fd, &st)) {
        printf("%s: fstat failed\n", what);
        failures++;
        return;
    }
    printf("%s: size %lld mode %o nlink %ld mtime %lld.%09ld extents", what, (long long)st.st_size, st.st_mode & 07777,
           (long)st.st_nlink, (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    off_t pos = 0;
    unsigned long long h = 1469598103934665603ULL;
    static char buf[1 << 16];
    while (pos < st.st_size) {
        off_t d = lseek(fd, pos, SEEK_DATA);
        if (d < 0) break;
        off_t e = lseek(fd, d, SEEK_HOLE);
        printf(" %lld-%lld", (long long)d, (long long)e);
        for (off_t o = d; o < e;) {
            ssize_t n = pread(fd, buf, (size_t)(e - o) < sizeof buf ? (size_t)(e - o) : sizeof buf, o);
            if (n <= 0) break;
            for (ssize_t i = 0; i < n; i++) h = (h ^ (unsigned char)buf[i]) * 1099511628211ULL;
            o += n;
        }
        pos = e;
    }
    printf(" hash %llx\n", h);
}
