/*
 * tree_pidfd: a parent holds a pidfd of its child across a checkpoint and uses it at the end
 * (issue 13: pidfds of processes of the tree).
 *
 * Usage: tree_pidfd [STEPS=60] [DELAY_MS=30] [dead-shared]
 * With "dead-shared" (zdtm pidfd_diffdead): the root and its child both hold a pidfd of the
 * child's child, which the root kills through its pidfd and the child reaps before step 1: two
 * pidfds in two processes of one dead process. At the end the child sends its pidfd's inode to
 * the root, which prints whether it is its own one's (one pidfs inode per process), and whether
 * a signal through its pidfd gets ESRCH.
 * The root forks a child that counts in a shared anonymous page until it is signalled, and
 * opens a pidfd of it (pidfd_open, non-blocking) before step 1. It prints "step s" every
 * DELAY_MS. At the end it sends SIGUSR1 through the pidfd (pidfd_send_signal), polls the pidfd
 * until the child has exited, reaps it through the pidfd (waitid P_PIDFD) and prints
 * "result <hex>" from the child's exit status and what each call returned: a pidfd that did not
 * come back as a pidfd of the same child changes it. Deterministic.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tree_common.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

static volatile sig_atomic_t stop;

static void on_usr1(int sig)
{
    (void)sig;
    stop = 1;
}

static int pidfd_open(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

static ino_t ino_of(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 ? st.st_ino : 0;
}

/* "dead-shared": see the usage. */
static int dead_shared(long steps, long delay)
{
    int to_root[2], to_child[2];
    if (pipe(to_root) || pipe(to_child))
        return 2;
    pid_t c = fork();
    if (c == 0) {
        pid_t g = fork();
        if (g == 0) {
            for (;;)
                pause();
        }
        int pfd = pidfd_open(g);
        xfer(to_root[1], &g, sizeof g, 1);
        int st = 0;
        if (pfd < 0 || waitpid(g, &st, 0) != g || !WIFSIGNALED(st))
            _exit(3);
        char b = 'r';
        xfer(to_root[1], &b, 1, 1);
        xfer(to_child[0], &b, 1, 0); /* the root asks for the inode */
        ino_t ino = ino_of(pfd);
        xfer(to_root[1], &ino, sizeof ino, 1);
        _exit(0);
    }
    pid_t g;
    xfer(to_root[0], &g, sizeof g, 0);
    int pfd = pidfd_open(g);
    if (pfd < 0 || syscall(SYS_pidfd_send_signal, pfd, SIGKILL, NULL, 0) != 0) {
        perror("pidfd of the grandchild");
        return 3;
    }
    char b;
    xfer(to_root[0], &b, 1, 0); /* reaped by the child */
    for (long s = 1; s <= steps; s++) {
        printf("step %ld\n", s);
        sleep_ms(delay);
    }
    xfer(to_child[1], &b, 1, 1);
    ino_t theirs;
    xfer(to_root[0], &theirs, sizeof theirs, 0);
    int st = 0;
    waitpid(c, &st, 0);
    long sent = syscall(SYS_pidfd_send_signal, pfd, SIGUSR1, NULL, 0);
    printf("result same-inode %d esrch %d child %d\n", theirs != 0 && theirs == ino_of(pfd), sent < 0 && errno == ESRCH, st);
    return 0;
}

int main(int argc, char **argv)
{
    long steps = argc > 1 ? atol(argv[1]) : 60, delay = argc > 2 ? atol(argv[2]) : 30;
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc > 3 && !strcmp(argv[3], "dead-shared")) {
        printf("start tree_pidfd %ld dead-shared\n", steps);
        return dead_shared(steps, delay);
    }
    printf("start tree_pidfd %ld\n", steps);
    volatile uint64_t *count = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (count == MAP_FAILED)
        return 2;
    signal(SIGUSR1, on_usr1);
    pid_t c = fork();
    if (c == 0) {
        while (!stop) {
            (*count)++;
            sleep_ms(5);
        }
        _exit(42);
    }
    int pfd = (int)syscall(SYS_pidfd_open, c, O_NONBLOCK);
    if (pfd < 0) {
        perror("pidfd_open");
        return 3;
    }
    for (long s = 1; s <= steps; s++) {
        printf("step %ld\n", s);
        sleep_ms(delay);
    }
    uint64_t r = 0;
    long sent = syscall(SYS_pidfd_send_signal, pfd, SIGUSR1, NULL, 0);
    r = mix(r + (uint64_t)(sent == 0 ? 1 : 100 + errno));
    struct pollfd p = { .fd = pfd, .events = POLLIN };
    int polled = poll(&p, 1, 10000);
    r = mix(r + (uint64_t)(polled == 1 && (p.revents & POLLIN) ? 2 : 200 + errno));
    siginfo_t si = { 0 };
    int waited = waitid((idtype_t)P_PIDFD, (id_t)pfd, &si, WEXITED);
    r = mix(r + (uint64_t)(waited == 0 && si.si_pid == c ? 3 : 300 + errno));
    r = mix(r + (uint64_t)si.si_status);
    if (waited != 0) { /* no pidfd of the child any more: end it the old way */
        kill(c, SIGUSR1);
        waitpid(c, NULL, 0);
    }
    printf("result %016llx-%d-%d-%d-%d\n", (unsigned long long)r, sent == 0, polled, waited, si.si_status);
    return 0;
}
