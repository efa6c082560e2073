/* Process and thread attributes set with prctl and friends: child subreaper, THP disable,
 * oom_score_adj (raised), and per thread no_new_privs (set on the main thread after a worker
 * was created, so the worker has none), personality, parent-death signal and timer slack.
 * Prints READY, waits for "go", then each attribute (the worker's first). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

static int dir;

static void wait_go(void) {
    struct timespec ts = {0, 20 * 1000 * 1000};
    while (faccessat(dir, "go", F_OK, 0) != 0) nanosleep(&ts, NULL);
}

static void thread_attrs(const char *who) {
    int sig = -1;
    prctl(PR_GET_PDEATHSIG, &sig);
    printf("%s: no_new_privs %d, personality %#x, pdeathsig %d, timerslack %d ns\n", who, prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0),
           personality(0xffffffff), sig, prctl(PR_GET_TIMERSLACK));
}

static void *worker(void *arg) {
    (void)arg;
    prctl(PR_SET_TIMERSLACK, 77000);
    wait_go();
    thread_attrs("worker");
    return NULL;
}

int main(void) {
    dir = open(".", O_RDONLY | O_DIRECTORY);
    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0);
    FILE *f = fopen("/proc/self/oom_score_adj", "w");
    if (f) {
        fprintf(f, "500\n");
        fclose(f);
    }
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    personality(personality(0xffffffff) | ADDR_NO_RANDOMIZE);
    prctl(PR_SET_PDEATHSIG, SIGUSR1);
    prctl(PR_SET_TIMERSLACK, 250000);
    printf("READY\n");
    fflush(stdout);
    pthread_join(t, NULL);
    int sub = -1;
    prctl(PR_GET_CHILD_SUBREAPER, &sub);
    printf("child subreaper %d\n", sub);
    printf("THP disabled %d\n", prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0));
    char buf[32] = "?";
    f = fopen("/proc/self/oom_score_adj", "r");
    if (f && fgets(buf, sizeof buf, f)) printf("oom_score_adj %s", buf);
    if (f) fclose(f);
    thread_attrs("main");
    return 0;
}
