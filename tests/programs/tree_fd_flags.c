/*
 * tree_fd_flags: a tree of processes that share one pipe and one socketpair, each with its own
 * state of them where the kernel keeps it per fd or per open file description: a tree's
 * restart that makes the shared objects once must still give each process its own.
 *
 * Usage: tree_fd_flags [PROCS=8] [STEPS=40] [DELAY_MS=50]
 * The root makes a pipe and a stream socketpair, sets O_NONBLOCK on the socketpair's end 1 (one
 * open file description: every process sees it), writes 4000 bytes into the pipe and 1000 into
 * socket end 0 that nobody reads until the end, and forks PROCS-1 children. Each process k then
 *   - opens the pipe again through /proc/self/fd (an open file description of its own) and
 *     sets O_NONBLOCK on it when k is even;
 *   - sets FD_CLOEXEC on its pipe write end when k % 3 == 0 (a flag of its fd alone).
 * Every step each process checks all of it (its own description, its fd flag, the pipe(2)
 * ends' blocking mode, the socket's shared O_NONBLOCK) and exits 92 at once, saying what
 * differs, when something does; the root prints "step N". At the end each child exits with
 * 10 + k; the root reaps them, reads the pipe and the socket back through its non-blocking
 * fds (exactly what was written, nothing more) and prints "result <hex>". Deterministic.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/socket.h>

#include "tree_common.h"

static int procs = 8;
static int pipefd[2], sock[2], own;

static void expect(int k, long step, const char *what, int got, int want)
{
    if (!got != !want) {
        fprintf(stderr, "process %d step %ld: %s is %s, expected %s\n", k, step, what, got ? "set" : "clear", want ? "set" : "clear");
        exit(92);
    }
}

static void check(int k, long step)
{
    expect(k, step, "O_NONBLOCK of its own open of the pipe", fcntl(own, F_GETFL) & O_NONBLOCK, k % 2 == 0);
    expect(k, step, "FD_CLOEXEC of its pipe write end", fcntl(pipefd[1], F_GETFD) & FD_CLOEXEC, k % 3 == 0);
    expect(k, step, "FD_CLOEXEC of its own open of the pipe", fcntl(own, F_GETFD) & FD_CLOEXEC, 0);
    expect(k, step, "O_NONBLOCK of the pipe's read end", fcntl(pipefd[0], F_GETFL) & O_NONBLOCK, 0);
    expect(k, step, "O_NONBLOCK of the pipe's write end", fcntl(pipefd[1], F_GETFL) & O_NONBLOCK, 0);
    expect(k, step, "O_NONBLOCK of socket end 1 (shared)", fcntl(sock[1], F_GETFL) & O_NONBLOCK, 1);
    expect(k, step, "O_NONBLOCK of socket end 0", fcntl(sock[0], F_GETFL) & O_NONBLOCK, 0);
}

/* Everything fd holds now (it does not block): its byte count and a hash of the bytes. */
static uint64_t drain(int fd, long *count)
{
    unsigned char b[1024];
    uint64_t h = 0;
    ssize_t n;
    *count = 0;
    while ((n = read(fd, b, sizeof b)) > 0) {
        for (ssize_t i = 0; i < n; i++)
            h = mix(h ^ b[i]);
        *count += n;
    }
    return h;
}

int main(int argc, char **argv)
{
    procs = argc > 1 ? atoi(argv[1]) : 8;
    long steps = argc > 2 ? atol(argv[2]) : 40;
    long delay = argc > 3 ? atol(argv[3]) : 50;
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("start tree_fd_flags procs=%d\n", procs);
    if (pipe(pipefd) != 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, sock) != 0) {
        perror("pipe or socketpair");
        return 1;
    }
    fcntl(sock[1], F_SETFL, fcntl(sock[1], F_GETFL) | O_NONBLOCK);
    unsigned char b[4000];
    for (int i = 0; i < 4000; i++)
        b[i] = (unsigned char)mix((uint64_t)i);
    xfer(pipefd[1], b, 4000, 1);
    xfer(sock[0], b, 1000, 1);
    int k = 0;
    pid_t kids[64];
    for (int i = 1; i < procs && i < 64; i++) {
        pid_t p = fork();
        if (p < 0) {
            perror("fork");
            return 1;
        }
        if (p == 0) {
            k = i;
            break;
        }
        kids[i] = p;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", pipefd[0]);
    own = open(path, O_RDONLY | (k % 2 == 0 ? O_NONBLOCK : 0));
    if (own < 0) {
        perror(path);
        return 1;
    }
    if (k % 3 == 0)
        fcntl(pipefd[1], F_SETFD, FD_CLOEXEC);
    for (long step = 1; step <= steps; step++) {
        check(k, step);
        if (k == 0)
            printf("step %ld\n", step);
        sleep_ms(delay);
    }
    if (k != 0)
        _exit(10 + k);
    uint64_t state = 0;
    for (int i = 1; i < procs && i < 64; i++) {
        int status;
        waitpid(kids[i], &status, 0);
        state = mix(state ^ (uint64_t)status);
    }
    long npipe, nsock;
    state = mix(state ^ drain(own, &npipe));
    state = mix(state ^ drain(sock[1], &nsock));
    if (npipe != 4000 || nsock != 1000) {
        fprintf(stderr, "the pipe held %ld bytes (4000 written), the socket %ld (1000 written)\n", npipe, nsock);
        return 93;
    }
    printf("result %016llx\n", (unsigned long long)state);
    return 0;
}
