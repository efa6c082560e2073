/*
 * single_thread_calls: calls the kernel allows only in a single-threaded process, made before
 * and after checkpoints and restarts: under ckpt-run the runtime's checkpoint thread must leave
 * for each and come back.
 *
 * Mode "self" (needs CAP_SYS_ADMIN: root): the program itself enters a time namespace it made and
 * leaves it again, as CRIU's zdtm timens_nested does: unshare(CLONE_NEWTIME) with
 * CLOCK_MONOTONIC 100000 s ahead, a forked helper born in it, setns into the helper's time
 * namespace (its clock must be ahead then), setns back into its own (behind again, both its
 * namespaces the ones it had).
 * Mode "kids" (any user: unprivileged user namespaces): a forked child enters a user namespace
 * of its own (unshare(CLONE_NEWUSER): its uid is the overflow uid there), makes a time namespace
 * with the same offset, forks a helper in it and enters that (setns: its clock ahead), and
 * reports to its parent.
 * These rounds hold what no image can keep (a namespace fd, a helper, the program in another
 * namespace), so they are made where no checkpoint is asked: at step 1 and at the first step
 * after a restart (its stdout is another pipe then: ckpt-restart's).
 * Mode "noop" (any user): ROUNDS calls of unshare(CLONE_THREAD | CLONE_SIGHAND) at every step,
 * which a single-threaded process may make (it changes nothing): checkpoints come while the
 * checkpoint thread is away for them.
 * Each step: "step i"; at the end "result <hex>".
 * Usage: single_thread_calls MODE [STEPS=40] [ROUNDS=1] [DELAY_MS=50].
 * Built with -DWITH_THREAD -pthread: a thread of the program's own sleeps all along, so the
 * calls fail (as they would without ckpt): the program says so and exits with status 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef WITH_THREAD
#include <pthread.h>

static void *sleeper(void *arg)
{
    (void)arg;
    for (;;)
        pause();
    return NULL;
}
#endif

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x80
#endif

#define AHEAD 100000

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void ns_of(const char *path, char *out, size_t cap)
{
    ssize_t n = readlink(path, out, cap - 1);
    out[n > 0 ? n : 0] = 0;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

/* A new time namespace for our children, AHEAD seconds in front; a helper born in it; setns
 * into it: our clock must be ahead. Returns the helper's pid. */
static void end_helper(pid_t helper);

static pid_t enter_new_timens(void)
{
    if (unshare(CLONE_NEWTIME) != 0)
        die("unshare(CLONE_NEWTIME)");
    int fd = open("/proc/self/timens_offsets", O_WRONLY);
    char offs[64];
    int n = snprintf(offs, sizeof offs, "monotonic %d 0\n", AHEAD);
    if (fd < 0 || write(fd, offs, n) != n)
        die("timens_offsets");
    close(fd);
    pid_t helper = fork();
    if (helper < 0)
        die("fork");
    if (helper == 0) {
        for (;;)
            pause();
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/ns/time", helper);
    int ns = open(path, O_RDONLY);
    double before = now();
    if (ns < 0 || setns(ns, CLONE_NEWTIME) != 0) {
        int e = errno;
        end_helper(helper); /* not left paused once the program ends */
        errno = e;
        die("setns into the helper's time namespace");
    }
    close(ns);
    if (now() - before < AHEAD - 10) {
        fprintf(stderr, "the clock is not ahead in the new time namespace\n");
        exit(1);
    }
    return helper;
}

static void end_helper(pid_t helper)
{
    kill(helper, SIGKILL);
    waitpid(helper, NULL, 0);
}

/* The program itself: into a time namespace of its own and back. */
static void round_self(void)
{
    char time0[64], kids0[64], time1[64], kids1[64];
    ns_of("/proc/self/ns/time", time0, sizeof time0);
    ns_of("/proc/self/ns/time_for_children", kids0, sizeof kids0);
    int own = open("/proc/self/ns/time", O_RDONLY);
    if (own < 0)
        die("open /proc/self/ns/time");
    double before = now();
    pid_t helper = enter_new_timens();
    if (setns(own, CLONE_NEWTIME) != 0)
        die("setns back into the program's time namespace");
    close(own);
    if (now() - before > AHEAD / 2) {
        fprintf(stderr, "the clock is still ahead after setns back\n");
        exit(1);
    }
    ns_of("/proc/self/ns/time", time1, sizeof time1);
    ns_of("/proc/self/ns/time_for_children", kids1, sizeof kids1);
    if (strcmp(time0, time1) || strcmp(kids0, kids1)) {
        fprintf(stderr, "not back in the program's time namespaces: %s %s, was %s %s\n", time1, kids1, time0, kids0);
        exit(1);
    }
    end_helper(helper);
}

/* A child: a user namespace of its own, then a time namespace entered with setns. */
static void round_kids(void)
{
    int p[2];
    if (pipe(p) != 0)
        die("pipe");
    char user0[64];
    ns_of("/proc/self/ns/user", user0, sizeof user0);
    pid_t c = fork();
    if (c < 0)
        die("fork");
    if (c == 0) {
        char user1[64], ok = 0;
        if (unshare(CLONE_NEWUSER) != 0) {
            perror("unshare(CLONE_NEWUSER)");
        } else {
            ns_of("/proc/self/ns/user", user1, sizeof user1);
            if (getuid() == 65534 && strcmp(user0, user1) != 0) {
                end_helper(enter_new_timens());
                ok = 1;
            } else {
                fprintf(stderr, "uid %d, user namespace %s (was %s)\n", (int)getuid(), user1, user0);
            }
        }
        if (write(p[1], &ok, 1) != 1)
            _exit(2);
        _exit(0);
    }
    close(p[1]);
    char ok = 0;
    if (read(p[0], &ok, 1) != 1 || !ok) {
        fprintf(stderr, "the child's round failed\n");
        exit(1);
    }
    close(p[0]);
    int st;
    if (waitpid(c, &st, 0) != c || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        die("the child's end");
}

static void round_noop(void)
{
    if (unshare(CLONE_THREAD | CLONE_SIGHAND) != 0)
        die("unshare(CLONE_THREAD | CLONE_SIGHAND)");
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    void (*round)(void) = !strcmp(mode, "self") ? round_self : !strcmp(mode, "kids") ? round_kids : !strcmp(mode, "noop") ? round_noop : NULL;
    if (!round) {
        fprintf(stderr, "usage: single_thread_calls self|kids|noop [STEPS] [ROUNDS] [DELAY_MS]\n");
        return 2;
    }
    long steps = argc > 2 ? atol(argv[2]) : 40, rounds = argc > 3 ? atol(argv[3]) : 1, delay = argc > 4 ? atol(argv[4]) : 50;
    setvbuf(stdout, NULL, _IONBF, 0);
#ifdef WITH_THREAD
    pthread_t t;
    if (pthread_create(&t, NULL, sleeper, NULL) != 0)
        die("pthread_create");
#endif
    uint64_t state = 1;
    ino_t seen = 0;
    struct timespec d = {delay / 1000, (delay % 1000) * 1000000};
    for (long i = 1; i <= steps; i++) {
        struct stat out;
        ino_t now_out = fstat(1, &out) == 0 ? out.st_ino : 0;
        if (round == round_noop || now_out != seen) {
            for (long r = 0; r < rounds; r++)
                round();
            if (round != round_noop)
                fprintf(stderr, "rounds done at step %ld\n", i);
        }
        seen = now_out;
        state = state * 6364136223846793005ULL + (uint64_t)i;
        printf("step %ld\n", i);
        nanosleep(&d, NULL);
    }
    printf("result %llx\n", (unsigned long long)state);
    return 0;
}
