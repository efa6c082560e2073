/*
 * set_ids: a threaded program that calls the set*id family (glibc makes every thread, the
 * runtime's too, take the new ids through its SIGSETXID signal), then is checkpointed.
 *
 * Usage: set_ids same   setgroups with its own groups (as root: others may not call it),
 *                       setgid(getgid()), setuid(getuid()), setegid/seteuid,
 *                       setresgid/setresuid(-1,...): ids unchanged
 *        set_ids drop   (as root) setgroups({65534, 100}), setresgid(65534) and
 *                       setresuid(65534) for real: the process is no longer dumpable
 *        set_ids groups (as root) setgroups({1234, 5678}) only
 *        set_ids clone  right away, a child made with clone(2) (no fork handlers run in it)
 *                       calls setgid(getgid()) and setuid(getuid()); prints "child ok" and exits
 * Prints what it did, READY, waits for a file "go", then prints its ids, groups and dumpable
 * flag as seen from two threads.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <grp.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

static int dir = -1;
static volatile int go;
static char worker_view[256];

static void ids(char *out, size_t n)
{
    uid_t r, e, s;
    gid_t gr, ge, gs, g[64];
    getresuid(&r, &e, &s);
    getresgid(&gr, &ge, &gs);
    int ng = getgroups(64, g);
    int k = snprintf(out, n, "uid %u/%u/%u gid %u/%u/%u groups", r, e, s, gr, ge, gs);
    for (int i = 0; i < ng && k < (int)n; i++)
        k += snprintf(out + k, n - k, " %u", g[i]);
}

static void wait_go(void)
{
    while (faccessat(dir, "go", F_OK, 0) != 0)
        nanosleep(&(struct timespec){ 0, 20000000 }, NULL);
}

static void *worker(void *a)
{
    (void)a;
    while (!go)
        nanosleep(&(struct timespec){ 0, 5000000 }, NULL);
    /* The raw system call: this thread's own ids, not a process-wide cache. */
    ids(worker_view, sizeof worker_view);
    return NULL;
}

static int cloned(void *a)
{
    (void)a;
    return setgid(getgid()) != 0 || setuid(getuid()) != 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1 && strcmp(argv[1], "clone") == 0) {
        /* glibc's thread list, copied into the child, holds the runtime's thread too. */
        char *stack = malloc(1 << 20);
        int st;
        pid_t pid = clone(cloned, stack + (1 << 20), CLONE_FILES | SIGCHLD, NULL);
        if (pid < 0 || waitpid(pid, &st, 0) != pid || st != 0)
            return 1;
        printf("child ok\n");
        return 0;
    }
    dir = open(".", O_RDONLY | O_DIRECTORY);
    pthread_t th;
    pthread_create(&th, NULL, worker, NULL);
    int bad = 0;
    if (argc > 1 && strcmp(argv[1], "groups") == 0) {
        gid_t g[2] = { 1234, 5678 };
        bad |= setgroups(2, g) != 0;
    } else if (argc > 1 && strcmp(argv[1], "drop") == 0) {
        gid_t g[2] = { 65534, 100 };
        bad |= setgroups(2, g) != 0;
        bad |= setresgid(65534, 65534, 65534) != 0;
        bad |= setresuid(65534, 65534, 65534) != 0;
    } else {
        gid_t g[64];
        int ng = getgroups(64, g);
        if (geteuid() == 0)
            bad |= setgroups(ng, g) != 0;
        bad |= setgid(getgid()) != 0;
        bad |= setuid(getuid()) != 0;
        bad |= setegid(getegid()) != 0;
        bad |= seteuid(geteuid()) != 0;
        bad |= setresgid(-1, -1, -1) != 0;
        bad |= setresuid(-1, -1, -1) != 0;
    }
    printf("set*id calls %s\n", bad ? "failed" : "done");
    printf("READY\n");
    wait_go();
    go = 1;
    pthread_join(th, NULL);
    char mine[256];
    ids(mine, sizeof mine);
    printf("main: %s\n", mine);
    printf("worker: %s\n", worker_view);
    printf("dumpable %d\n", prctl(PR_GET_DUMPABLE));
    return bad;
}
