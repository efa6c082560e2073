/*
 * tree_pidfd: a parent holds a pidfd of its child across a checkpoint and uses it at the end
 * (issue 13: pidfds of processes of the tree).
 *
 * Usage: tree_pidfd [STEPS=60] [DELAY_MS=30]
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
#include <sys/mman.h>
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

int main(int argc, char **argv)
{
    long steps = argc > 1 ? atol(argv[1]) : 60, delay = argc > 2 ? atol(argv[2]) : 30;
    setvbuf(stdout, NULL, _IONBF, 0);
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
