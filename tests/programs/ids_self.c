/* The program's own ids across restarts: raw getpid()/gettid() of the main thread and of three
 * worker threads equal their values at start; /proc/self/task lists exactly the same thread ids
 * (plus the checkpointer's one thread, whose id is not the program's to know);
 * /proc/<getpid()>/status names the same process; kill(getpid()) and tgkill(getpid(), tid)
 * reach the program's handler on the right thread.
 * usage: ids_self STEPS MS. Output: start, step N (with a hash of the check results), result. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define WORKERS 3
static pid_t pid0, tids[WORKERS + 1];
static volatile pid_t seen_tid;
static volatile int got_usr1;
static volatile int stop_workers;

static pid_t raw_getpid(void) { return (pid_t)syscall(SYS_getpid); }
static pid_t raw_gettid(void) { return (pid_t)syscall(SYS_gettid); }

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void on_usr1(int s) {
    (void)s;
    seen_tid = raw_gettid();
    got_usr1++;
}

static void *worker(void *arg) {
    int k = (int)(intptr_t)arg;
    tids[k] = raw_gettid();
    while (!stop_workers) {
        if (raw_gettid() != tids[k] || raw_getpid() != pid0) {
            printf("FAIL worker %d: gettid %d (was %d), getpid %d (was %d)\n", k, raw_gettid(), tids[k], raw_getpid(), pid0);
            exit(1);
        }
        sleep_ms(5);
    }
    return NULL;
}

/* Every program thread id must be listed in /proc/self/task; at most one more may be. */
static int task_check(void) {
    DIR *d = opendir("/proc/self/task");
    if (!d) return 0;
    int found = 0, others = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        pid_t t = atoi(e->d_name);
        int mine = 0;
        for (int k = 0; k <= WORKERS; k++) mine |= t == tids[k];
        if (mine) found++;
        else others++;
    }
    closedir(d);
    return found == WORKERS + 1 && others <= 1;
}

static int proc_pid_check(void) {
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/status", getpid());
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strstr(buf, "\nPid:");
    return p && atoi(p + 5) == pid0;
}

static int signal_check(void) {
    int before = got_usr1;
    seen_tid = 0;
    if (kill(getpid(), SIGUSR1) != 0) return 0;
    for (int i = 0; i < 1000 && got_usr1 == before; i++) sleep_ms(1);
    if (got_usr1 == before) return 0;
    before = got_usr1;
    seen_tid = 0;
    if (syscall(SYS_tgkill, getpid(), tids[2], SIGUSR1) != 0) return 0;
    for (int i = 0; i < 1000 && got_usr1 == before; i++) sleep_ms(1);
    return got_usr1 != before && seen_tid == tids[2];
}

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 60;
    int ms = argc > 2 ? atoi(argv[2]) : 30;
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGUSR1, on_usr1);
    pid0 = raw_getpid();
    tids[0] = raw_gettid();
    printf("start ids_self n=%d\n", steps);
    pthread_t w[WORKERS];
    for (int k = 1; k <= WORKERS; k++) pthread_create(&w[k - 1], NULL, worker, (void *)(intptr_t)k);
    for (int k = 1; k <= WORKERS; k++)
        while (!tids[k]) sleep_ms(1);
    uint64_t hash = 1469598103934665603ULL;
    for (int i = 1; i <= steps; i++) {
        sleep_ms(ms);
        int ok_ids = raw_getpid() == pid0 && getpid() == pid0 && raw_gettid() == tids[0] && gettid() == tids[0];
        int ok_task = task_check(), ok_proc = proc_pid_check(), ok_sig = signal_check();
        if (!(ok_ids && ok_task && ok_proc && ok_sig))
            printf("FAIL step %d: ids %d, /proc/self/task %d, /proc/<getpid()> %d, signals %d\n", i, ok_ids, ok_task, ok_proc, ok_sig);
        hash = (hash ^ (uint64_t)(ok_ids | ok_task << 1 | ok_proc << 2 | ok_sig << 3)) * 1099511628211ULL;
        hash = (hash ^ (uint64_t)i) * 1099511628211ULL;
        printf("step %d hash=%016llx\n", i, (unsigned long long)hash);
    }
    stop_workers = 1;
    for (int k = 0; k < WORKERS; k++) pthread_join(w[k], NULL);
    printf("result %016llx\n", (unsigned long long)hash);
    return 0;
}
