/*
 * outlive_pair: processes that outlive the program (DMTCP's shared-fd2 shape, issue 13).
 *
 *   outlive_pair pair FILE COUNT PERIOD_MS
 *     The parent makes a socketpair, forks two children that share it and exits at once with
 *     status 3. Child 1 (the writer) sends "N\n" for N = 1..COUNT on its end every PERIOD_MS
 *     and exits with status 5; child 2 (the reader) reads the other end and appends each line
 *     to FILE as it comes (one write each), until the writer's end closes, then exits 0. A
 *     number lost, repeated or out of order in FILE (a restart that started over or lost the
 *     socket's unread data) shows there. The children write nothing to stdout or stderr (they
 *     are put on /dev/null, as a daemon's are).
 *
 *   outlive_pair pair FILE COUNT PERIOD_MS keep
 *     The same, but the children keep the stdio they were given.
 *
 *   outlive_pair loop FILE COUNT PERIOD_MS
 *     Appends "N\n" to FILE every PERIOD_MS for N = 1..COUNT, then exits 0 (a background job).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void pause_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static int open_out(const char *file)
{
    int fd = open(file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        perror(file);
        _exit(2);
    }
    return fd;
}

static void quiet(void)
{
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        if (null > 2)
            close(null);
    }
}

static int write_all(int fd, const char *b, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

static void writer(int sock, long count, long period)
{
    char line[32];
    for (long n = 1; n <= count; n++) {
        int len = snprintf(line, sizeof line, "%ld\n", n);
        if (write_all(sock, line, (size_t)len) != 0)
            _exit(4);
        pause_ms(period);
    }
    _exit(5);
}

static void reader(int sock, int out)
{
    char buf[4096], line[64];
    size_t have = 0;
    for (;;) {
        ssize_t r = read(sock, buf, sizeof buf);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            _exit(r == 0 ? 0 : 6);
        for (ssize_t i = 0; i < r; i++) {
            if (have < sizeof line)
                line[have++] = buf[i];
            if (buf[i] == '\n') {
                if (write_all(out, line, have) != 0)
                    _exit(7);
                have = 0;
            }
        }
    }
}

int main(int argc, char **argv)
{
    if (argc != 5 && !(argc == 6 && strcmp(argv[5], "keep") == 0)) {
        fprintf(stderr, "usage: outlive_pair pair|loop FILE COUNT PERIOD_MS [keep]\n");
        return 2;
    }
    const char *file = argv[2];
    int keep = argc == 6;
    long count = atol(argv[3]), period = atol(argv[4]);
    if (strcmp(argv[1], "loop") == 0) {
        int out = open_out(file);
        char line[32];
        for (long n = 1; n <= count; n++) {
            int len = snprintf(line, sizeof line, "%ld\n", n);
            if (write_all(out, line, (size_t)len) != 0)
                return 4;
            pause_ms(period);
        }
        return 0;
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
        perror("socketpair");
        return 2;
    }
    pid_t w = fork();
    if (w == 0) {
        if (!keep)
            quiet();
        close(sv[1]);
        writer(sv[0], count, period);
    }
    pid_t r = fork();
    if (r == 0) {
        if (!keep)
            quiet();
        close(sv[0]);
        reader(sv[1], open_out(file));
    }
    if (w < 0 || r < 0) {
        perror("fork");
        return 2;
    }
    printf("children %d %d\n", (int)w, (int)r);
    fflush(stdout);
    return 3;
}
