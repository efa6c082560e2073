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
