/*
 * tree_pty: a parent that reads its child's output through a pseudo-terminal, as mpirun reads
 * its ranks' (a process tree, issue 13): the parent holds the master, the child only the slave.
 *
 * Usage: tree_pty [ROUNDS=60] [DELAY_MS=40]
 * The parent opens /dev/ptmx (raw mode: no echo, no output processing) and forks the child,
 * which opens the slave by its name as its stdin and stdout. The child, for round r = 1..ROUNDS,
 * computes v from its private running state and writes the line "r v"; it runs ahead of the
 * parent (twice as fast), so lines wait in the terminal at any moment. Then it writes "0 <sum
 * of its v>", waits for one byte on its stdin (the parent's acknowledgement, through the master)
 * and exits with status 7. The parent prints "step r" for each line it reads, checking the
 * order; at the end it checks the child's sum, acknowledges, reaps it with waitpid (pid and
 * status) and prints "result <hex>" from everything it read. Deterministic.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "tree_common.h"

static void die(const char *what)
{
    printf("error %s\n", what);
    fflush(stdout);
    exit(2);
}

static void child(const char *slave, long rounds, long delay)
{
    int s = open(slave, O_RDWR | O_NOCTTY);
    if (s < 0 || dup2(s, 0) < 0 || dup2(s, 1) < 0)
        _exit(3);
    close(s);
    uint64_t state = 0x1234, sum = 0;
    char line[64];
    for (long r = 1; r <= rounds; r++) {
        state = mix(state + (uint64_t)r);
        uint64_t v = state % 1000003;
        sum += v;
        int n = snprintf(line, sizeof line, "%ld %llu\n", r, (unsigned long long)v);
        if (write(1, line, (size_t)n) != n)
            _exit(4);
        sleep_ms(delay / 2);
    }
    int n = snprintf(line, sizeof line, "0 %llu\n", (unsigned long long)sum);
    if (write(1, line, (size_t)n) != n)
        _exit(4);
    char ack;
    if (read(0, &ack, 1) != 1 || ack != 'x')
        _exit(5);
    _exit(7);
}

/* One line from the master (without its newline), buffered. */
static int read_line(int m, char *out, size_t cap)
{
    static char buf[4096];
    static size_t have;
    for (;;) {
        char *nl = memchr(buf, '\n', have);
        if (nl) {
            size_t len = (size_t)(nl - buf);
            if (len >= cap)
                return -1;
            memcpy(out, buf, len);
            out[len] = 0;
            memmove(buf, nl + 1, have - len - 1);
            have -= len + 1;
            return 0;
        }
        if (have == sizeof buf)
            return -1;
        ssize_t n = read(m, buf + have, sizeof buf - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        have += (size_t)n;
    }
}

int main(int argc, char **argv)
{
    long rounds = argc > 1 ? atol(argv[1]) : 60;
    long delay = argc > 2 ? atol(argv[2]) : 40;
    setvbuf(stdout, NULL, _IOLBF, 0);
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    if (m < 0 || grantpt(m) != 0 || unlockpt(m) != 0)
        die("posix_openpt");
    struct termios t;
    if (tcgetattr(m, &t) != 0)
        die("tcgetattr");
    cfmakeraw(&t);
    if (tcsetattr(m, TCSANOW, &t) != 0)
        die("tcsetattr");
    char slave[64];
    if (ptsname_r(m, slave, sizeof slave) != 0)
        die("ptsname");
    printf("start tree_pty rounds=%ld\n", rounds);
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        close(m);
        child(slave, rounds, delay);
    }
    uint64_t h = 0, sum = 0;
    char line[64];
    for (long r = 1; r <= rounds; r++) {
        if (read_line(m, line, sizeof line) != 0)
            die("reading the child's line");
        long got;
        unsigned long long v;
        if (sscanf(line, "%ld %llu", &got, &v) != 2 || got != r)
            die("a line out of order");
        sum += v;
        h = mix(h ^ v ^ ((uint64_t)r << 40));
        printf("step %ld v=%llu\n", r, v);
        sleep_ms(delay);
    }
    unsigned long long total;
    if (read_line(m, line, sizeof line) != 0 || sscanf(line, "0 %llu", &total) != 1)
        die("reading the child's sum");
    if (total != sum)
        die("the child's sum differs from what was read");
    if (write(m, "x", 1) != 1)
        die("acknowledging");
    int st;
    if (waitpid(pid, &st, 0) != pid)
        die("waitpid");
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 7) {
        printf("error the child's status: %s %d\n", WIFEXITED(st) ? "exit" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
        fflush(stdout);
        exit(2);
    }
    printf("result %016llx\n", (unsigned long long)mix(h ^ sum ^ (uint64_t)WEXITSTATUS(st)));
    return 0;
}
