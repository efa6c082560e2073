/* Shared by the tree_*.c programs: a sleep that survives signals, a 64-bit mixer for the
 * deterministic results, a whole read or write that says what failed, a line read from a pipe
 * and a child's exit status. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

/* The end of a program with one child: kill and reap the child, print the result. */
static inline void end_with_child(pid_t child, uint64_t state)
{
    int status;
    kill(child, SIGKILL);
    waitpid(child, &status, 0);
    printf("result %016llx\n", (unsigned long long)state);
}

/* Read or write (`out`) exactly n bytes of fd, through EINTR; else say why and exit 90. */
static inline void xfer(int fd, void *b, size_t n, int out)
{
    char *p = b;
    while (n > 0) {
        ssize_t k = out ? write(fd, p, n) : read(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            fprintf(stderr, "%s fd %d: %s\n", out ? "write" : "read", fd, k == 0 ? "end of file" : strerror(errno));
            exit(90);
        }
        p += k;
        n -= (size_t)k;
    }
}

/* Read one line from fd into buf (byte by byte: the rest stays in the pipe). */
static inline int read_line_fd(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    while (n + 1 < cap) {
        char c;
        ssize_t k = read(fd, &c, 1);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        if (c == '\n')
            break;
        buf[n++] = c;
    }
    buf[n] = 0;
    return (int)n;
}

/* Reap child pid, which must have exited with status `want`: else say what came and exit 1. */
static inline int reap_exited(pid_t pid, int want)
{
    int st = 0;
    pid_t r = waitpid(pid, &st, 0);
    if (r != pid || !WIFEXITED(st) || WEXITSTATUS(st) != want) {
        printf("error: waitpid(%d) = %d (%s), status %#x\n", (int)pid, (int)r, r < 0 ? strerror(errno) : "ok", st);
        exit(1);
    }
    return WEXITSTATUS(st);
}

/* Whether process `pid` has parent `ppid`, process group `pgrp` and session `sid` now (from
 * /proc/PID/stat). */
static inline int ids_now(pid_t pid, pid_t ppid, pid_t pgrp, pid_t sid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *q = strrchr(buf, ')');
    int pp = 0, pg = 0, s = 0;
    if (!q || sscanf(q + 2, "%*c %d %d %d", &pp, &pg, &s) != 3)
        return 0;
    return pp == ppid && pg == pgrp && s == sid;
}

/* The rounds `members` processes report through pipe `fd` (records { who, value, ok bits (7:
 * all), round }; they run ahead of each other): "step r v=.. bad=N" once every process's value
 * of round r is in (N: the values so far with a bit missing). Returns the hash of them all. */
static inline uint64_t report_rounds(int fd, long rounds, long members, long *bad)
{
    /* Per round: the sum of its values and how many. */
    uint64_t *acc = calloc((size_t)rounds + 2, sizeof *acc);
    long *count = calloc((size_t)rounds + 2, sizeof *count);
    if (!acc || !count)
        exit(2);
    uint64_t h = 0;
    *bad = 0;
    for (long next = 1; next <= rounds;) {
        uint64_t w[4];
        xfer(fd, w, sizeof w, 0);
        if (w[3] < 1 || w[3] > (uint64_t)rounds)
            exit(2);
        *bad += w[2] != 7;
        acc[w[3]] += mix(w[0] << 48 ^ w[1] ^ w[2] << 40);
        count[w[3]]++;
        for (; next <= rounds && count[next] == members; next++) {
            h = mix(h ^ acc[next]);
            printf("step %ld v=%llu bad=%ld\n", next, (unsigned long long)(h % 1000003), *bad);
        }
    }
    free(acc);
    free(count);
    return h;
}
