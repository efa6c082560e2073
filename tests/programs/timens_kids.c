/*
 * timens_kids: the program makes a time namespace for its children (unshare(CLONE_NEWTIME),
 * their CLOCK_MONOTONIC 1000 s and CLOCK_BOOTTIME 500 s ahead of its own), then counts. At its
 * end it forks a child that reads both clocks and tells its parent, which compares them with its
 * own: the child's are ahead by the offsets (whole seconds) and in a namespace other than the
 * parent's. Prints "start timens_kids", "step i" and "result ahead=1000,500 other=1 <hex>".
 * Usage: timens_kids [STEPS=40] [DELAY_MS=50]. Needs CAP_SYS_ADMIN (root).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x80
#endif

static double now(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void ns_of(const char *path, char *out, size_t cap)
{
    ssize_t n = readlink(path, out, cap - 1);
    out[n > 0 ? n : 0] = 0;
}

int main(int argc, char **argv)
{
    long steps = argc > 1 ? atol(argv[1]) : 40, delay = argc > 2 ? atol(argv[2]) : 50;
    setvbuf(stdout, NULL, _IONBF, 0);
    if (unshare(CLONE_NEWTIME) != 0) {
        perror("unshare(CLONE_NEWTIME)");
        return 1;
    }
    int fd = open("/proc/self/timens_offsets", O_WRONLY);
    const char *offs = "monotonic 1000 0\nboottime 500 0\n";
    if (fd < 0 || write(fd, offs, strlen(offs)) != (ssize_t)strlen(offs)) {
        perror("timens_offsets");
        return 1;
    }
    close(fd);
    printf("start timens_kids\n");
    uint64_t state = 1;
    struct timespec d = {delay / 1000, (delay % 1000) * 1000000};
    for (long i = 1; i <= steps; i++) {
        state = state * 6364136223846793005ULL + (uint64_t)i;
        printf("step %ld\n", i);
        nanosleep(&d, NULL);
    }
    int p[2];
    if (pipe(p) != 0)
        return 1;
    pid_t c = fork();
    if (c == 0) {
        double v[2] = {now(CLOCK_MONOTONIC), now(CLOCK_BOOTTIME)};
        char ns[64];
        ns_of("/proc/self/ns/time", ns, sizeof ns);
        write(p[1], v, sizeof v);
        write(p[1], ns, sizeof ns);
        _exit(0);
    }
    double v[2];
    char kid_ns[64], own_ns[64];
    read(p[0], v, sizeof v);
    read(p[0], kid_ns, sizeof kid_ns);
    waitpid(c, NULL, 0);
    double mono = v[0] - now(CLOCK_MONOTONIC), boot = v[1] - now(CLOCK_BOOTTIME);
    ns_of("/proc/self/ns/time", own_ns, sizeof own_ns);
    printf("result ahead=%.0f,%.0f other=%d %llx\n", mono, boot, strcmp(kid_ns, own_ns) != 0, (unsigned long long)state);
    return 0;
}
