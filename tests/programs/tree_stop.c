/*
 * tree_stop: a parent and a forked child that writes numbered lines to stdout (a pipe to the
 * test, outside the image) all the time, for the tree's checkpoint with the stop signal: after
 * the cut no process of the tree may run on (a line written then would be written again by the
 * restart), so the lines of the stopped run and of its restart together are 1..LINES, each once.
 *
 * Usage: tree_stop [LINES=20000] [DELAY_US=200] [alone|clone|clone-nosig[-threaded]|clone-parent|raw-clone|execl]
 * With "alone" there is no child: the program writes the lines itself (a single process). With
 * "clone" the child is made by glibc's clone() (SIGCHLD, its own stack) instead of fork: no fork
 * handler runs in it. With "clone-parent" a forked middle process makes the child with clone()
 * and CLONE_PARENT (the child is the program's, its sibling) and exits; the program waits for
 * both. With "raw-clone" the child is made by the clone system call through libc's syscall()
 * (SIGCHLD, no new stack: it goes on like a forked child), which glibc does not see at all.
 * With "clone-nosig" the child is made by clone() with exit signal 0: the parent gets no SIGCHLD
 * for it and a wait without __WCLONE or __WALL does not see it (ECHILD); the parent polls both
 * while it runs, waits for it with __WCLONE and prints what it saw in its result line.
 * "clone-nosig-threaded" is the same from a process with a second thread (glibc's own clone:
 * the child does not run ckpt's runtime, and the tree's checkpoint is refused naming it).
 * With "execl" the forked child execs this program again with execl() (mode "exec-child":
 * it writes the lines and exits with the state, as the forked child does).
 * The child prints "start tree_stop", then "step i" for i = 1..LINES, each in one write, with a
 * short sleep between them; the parent waits for it and prints "result <hex>" of the child's
 * running state (its exit status: the state's low byte). Deterministic.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tree_common.h"

static void say(const char *s)
{
    size_t len = strlen(s), off = 0;
    while (off < len) {
        ssize_t n = write(1, s + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            _exit(3);
        off += (size_t)n;
    }
}

static uint64_t write_lines(long lines, long delay_us)
{
    uint64_t state = 1;
    char buf[64];
    for (long i = 1; i <= lines; i++) {
        state = mix(state + (uint64_t)i);
        snprintf(buf, sizeof buf, "step %ld\n", i);
        say(buf);
        struct timespec ts = { 0, delay_us * 1000 };
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
    }
    return state;
}

static long clone_lines, clone_delay;
static volatile sig_atomic_t sigchlds;

static void *idle_thread(void *arg)
{
    (void)arg;
    for (;;)
        pause();
    return NULL;
}

static void on_sigchld(int sig)
{
    (void)sig;
    sigchlds++;
}

/* "clone-nosig": wait for `child` (exit signal 0) with __WCLONE, checking meanwhile that a plain
 * wait never sees it; prints the result line. */
static int wait_quiet_child(pid_t child)
{
    int status = 0, plain_seen = 0;
    for (;;) {
        int st;
        pid_t r = waitpid(-1, &st, WNOHANG);
        if (!(r < 0 && errno == ECHILD))
            plain_seen++;
        r = waitpid(child, &status, __WCLONE | WNOHANG);
        if (r == child)
            break;
        if (r < 0 && errno != EINTR) {
            perror("waitpid __WCLONE");
            return 1;
        }
        struct timespec ts = { 0, 2000000 };
        nanosleep(&ts, NULL);
    }
    if (!WIFEXITED(status)) {
        fprintf(stderr, "tree_stop: the child did not exit: status %#x\n", status);
        return 1;
    }
    printf("result %x plain-waits-seeing-it %d sigchld %d\n", WEXITSTATUS(status), plain_seen, (int)sigchlds);
    return 0;
}

static int clone_child(void *arg)
{
    (void)arg;
    return (int)(write_lines(clone_lines, clone_delay) & 0x7f);
}

int main(int argc, char **argv)
{
    long lines = argc > 1 ? atol(argv[1]) : 20000, delay_us = argc > 2 ? atol(argv[2]) : 200;
    if (argc > 3 && !strcmp(argv[3], "exec-child"))
        return (int)(write_lines(lines, delay_us) & 0x7f);
    say("start tree_stop\n");
    if (argc > 3 && !strcmp(argv[3], "alone")) {
        printf("result %x\n", (unsigned)(write_lines(lines, delay_us) & 0x7f));
        return 0;
    }
    pid_t child;
    const char *mode = argc > 3 ? argv[3] : "";
    static char stack[256 * 1024] __attribute__((aligned(16)));
    clone_lines = lines;
    clone_delay = delay_us;
    if (!strcmp(mode, "clone")) {
        child = clone(clone_child, stack + sizeof stack, SIGCHLD, NULL);
    } else if (!strcmp(mode, "clone-nosig") || !strcmp(mode, "clone-nosig-threaded")) {
        pthread_t idle;
        if (!strcmp(mode, "clone-nosig-threaded") && pthread_create(&idle, NULL, idle_thread, NULL) != 0) {
            fprintf(stderr, "tree_stop: pthread_create failed\n");
            return 1;
        }
        signal(SIGCHLD, on_sigchld);
        child = clone(clone_child, stack + sizeof stack, 0, NULL);
        if (child > 0)
            return wait_quiet_child(child);
    } else if (!strcmp(mode, "clone-parent")) {
        pid_t middle = fork();
        if (middle == 0)
            _exit(clone(clone_child, stack + sizeof stack, CLONE_PARENT | SIGCHLD, NULL) > 0 ? 0 : 1);
        int st = 0;
        while (waitpid(middle, &st, 0) < 0 && errno == EINTR) {
        }
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "tree_stop: the middle process could not clone: status %#x\n", st);
            return 1;
        }
        child = -1; /* the clone, our child now */
    } else if (!strcmp(mode, "raw-clone")) {
        child = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    } else {
        child = fork();
    }
    if (child < 0 && strcmp(mode, "clone-parent") != 0) {
        perror("fork or clone");
        return 1;
    }
    if (child == 0 && !strcmp(mode, "execl")) {
        execl("/proc/self/exe", "tree_stop", argv[1], argv[2], "exec-child", (char *)NULL);
        _exit(99);
    }
    if (child == 0)
        _exit((int)(write_lines(lines, delay_us) & 0x7f));
    int status = 0;
    while (waitpid(child, &status, 0) < 0) {
        if (errno != EINTR) {
            perror("waitpid");
            return 1;
        }
    }
    if (!WIFEXITED(status)) {
        fprintf(stderr, "tree_stop: the child did not exit: status %#x\n", status);
        return 1;
    }
    printf("result %x\n", WEXITSTATUS(status));
    return 0;
}
