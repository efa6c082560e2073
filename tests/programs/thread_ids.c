/*
 * thread_ids: threads of one process with user and group ids of their own. The raw system
 * calls (syscall(SYS_setresuid, ...), not glibc's setuid, which makes every thread take the
 * new ids) change only the calling thread's ids.
 *
 * Usage: thread_ids root  (as root) thread A: setgroups({1234, 5678}), setresgid(99, 99, 99),
 *                         setresuid(99, 99, 99); thread B: setfsgid(6) and
 *                         setresuid(0, 5, 0); the main thread last: setresgid(8, 8, 8),
 *                         setresuid(12, 12, 12) (as zdtm's thread_different_uid_gid)
 *        thread_ids same  each thread: setresuid(-1, -1, -1), setresgid(-1, -1, -1) (an
 *                         ordinary user's threads have one uid and one gid to choose from)
 *        thread_ids manygroups  (as root) thread A: setgroups with 40 groups of its own
 *                         (more than an image holds per thread: no checkpoint is taken)
 * Each thread notes its ids (raw calls) after its own calls. Prints what it did, READY, waits
 * for a file "go", then each thread reads its ids again and prints them, "same" if they are
 * those it noted, else "CHANGED".
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int dir = -1;
static int root, many;
static volatile int go, set_done;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char report[3][512];


/* The calling thread's ids, by raw system calls. */
static void ids(char *out, size_t n)
{
    unsigned r, e, s, gr, ge, gs, g[64];
    syscall(SYS_getresuid, &r, &e, &s);
    syscall(SYS_getresgid, &gr, &ge, &gs);
    unsigned fsu = syscall(SYS_setfsuid, -1), fsg = syscall(SYS_setfsgid, -1);
    long ng = syscall(SYS_getgroups, 64, g);
    int k = snprintf(out, n, "uid %u/%u/%u/%u gid %u/%u/%u/%u groups", r, e, s, fsu, gr, ge, gs, fsg);
    for (long i = 0; i < ng && k < (int)n; i++)
        k += snprintf(out + k, n - k, " %u", g[i]);
}

static void wait_go(void)
{
    while (faccessat(dir, "go", F_OK, 0) != 0)
        nanosleep(&(struct timespec){ 0, 20000000 }, NULL);
}

/* Thread `which`'s (1: A, 2: B) life: its own ids, noted; then after "go" the check. */
static int body(int which)
{
    int bad = 0;
    if (many) {
        unsigned g[40];
        for (int i = 0; i < 40; i++)
            g[i] = 1000 + i;
        if (which == 1)
            bad |= syscall(SYS_setgroups, 40, g) != 0;
    } else if (!root) {
        bad |= syscall(SYS_setresuid, -1, -1, -1) != 0;
        bad |= syscall(SYS_setresgid, -1, -1, -1) != 0;
    } else if (which == 1) {
        unsigned g[2] = { 1234, 5678 };
        bad |= syscall(SYS_setgroups, 2, g) != 0;
        bad |= syscall(SYS_setresgid, 99, 99, 99) != 0;
        bad |= syscall(SYS_setresuid, 99, 99, 99) != 0;
    } else {
        syscall(SYS_setfsgid, 6);
        bad |= syscall(SYS_setresuid, 0, 5, 0) != 0;
    }
    char before[256], after[256];
    ids(before, sizeof before);
    pthread_mutex_lock(&lock);
    set_done++;
    pthread_mutex_unlock(&lock);
    while (!go)
        nanosleep(&(struct timespec){ 0, 5000000 }, NULL);
    ids(after, sizeof after);
    snprintf(report[which], sizeof report[which], "%s %s%s", after, strcmp(before, after) ? "CHANGED" : "same", bad ? " (calls failed)" : "");
    return bad;
}

static void *thread(void *a)
{
    body((int)(long)a);
    return NULL;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    root = argc > 1 && strcmp(argv[1], "root") == 0;
    many = argc > 1 && strcmp(argv[1], "manygroups") == 0;
    dir = open(".", O_RDONLY | O_DIRECTORY);
    pthread_t th[2];
    for (long i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, thread, (void *)(i + 1));
    for (;;) {
        pthread_mutex_lock(&lock);
        int n = set_done;
        pthread_mutex_unlock(&lock);
        if (n == 2)
            break;
        nanosleep(&(struct timespec){ 0, 5000000 }, NULL);
    }
    /* The main thread's calls last: it then runs as another user than its threads. */
    int bad = 0;
    if (root) {
        bad |= syscall(SYS_setresgid, 8, 8, 8) != 0;
        bad |= syscall(SYS_setresuid, 12, 12, 12) != 0;
    } else if (!many) {
        bad |= syscall(SYS_setresuid, -1, -1, -1) != 0;
        bad |= syscall(SYS_setresgid, -1, -1, -1) != 0;
    }
    char noted[256];
    ids(noted, sizeof noted);
    printf("threads set their ids (%s)\n", argc > 1 ? argv[1] : "same");
    printf("READY\n");
    wait_go();
    go = 1;
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    char now[256];
    ids(now, sizeof now);
    printf("main: %s %s%s\n", now, strcmp(noted, now) ? "CHANGED" : "same", bad ? " (calls failed)" : "");
    printf("thread A: %s\n", report[1]);
    printf("thread B: %s\n", report[2]);
    return bad;
}
