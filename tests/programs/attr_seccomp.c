/* Seccomp filters per thread (issue 12). With no_new_privs set, the main thread installs
 * filter 1 (getppid fails with EPERM) through prctl after creating "early"; it then creates
 * "late", which installs filter 2 (getcpu fails with EDOM) through syscall(SYS_seccomp) and
 * creates "later", which inherits both and adds filter 3 (prctl fails with EDOM: the runtime's
 * own prctl calls in that thread fail too). Prints READY, waits for "go", then for each thread
 * what getppid and getcpu give and its Seccomp mode and filter count. Built with -DTSYNC
 * (attr_seccomp_tsync.c): two threads are created first, then the main thread installs
 * filter 1 with SECCOMP_FILTER_FLAG_TSYNC | SECCOMP_FILTER_FLAG_LOG for all of them. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int dir;
static char lines[4][160];

/* Set by the main thread when every filter is in place (before READY). */
static volatile int set_up;

static void wait_go(void) {
    struct timespec ts = {0, 20 * 1000 * 1000};
    while (!__atomic_load_n(&set_up, __ATOMIC_ACQUIRE) || faccessat(dir, "go", F_OK, 0) != 0) nanosleep(&ts, NULL);
}

static void make_filter(struct sock_fprog *p, struct sock_filter *f, int nr, int err) {
    struct sock_filter prog[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | err),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    memcpy(f, prog, sizeof prog);
    p->len = 4;
    p->filter = f;
}

static const char *res(long r) {
    if (r >= 0) return "ok";
    return errno == EPERM ? "EPERM" : errno == EDOM ? "EDOM" : "other error";
}

/* This thread's line: getppid, getcpu, prctl, Seccomp mode and filter count. */
static void report(int i, const char *who) {
    long p = syscall(SYS_getppid);
    const char *pr = res(p);
    unsigned cpu;
    long c = syscall(SYS_getcpu, &cpu, NULL, NULL);
    const char *cr = res(c);
    const char *xr = res(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0));
    char buf[4096] = "";
    int fd = open("/proc/thread-self/status", O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (n > 0) buf[n] = 0;
    if (fd >= 0) close(fd);
    int mode = -1, count = -1;
    char *m = strstr(buf, "\nSeccomp:");
    char *k = strstr(buf, "\nSeccomp_filters:");
    if (m) mode = atoi(m + 9);
    if (k) count = atoi(k + 17);
    snprintf(lines[i], sizeof lines[i], "%s: getppid %s, getcpu %s, prctl %s, Seccomp %d, filters %d", who, pr, cr, xr, mode, count);
}

static void *early(void *arg) {
    (void)arg;
    wait_go();
    report(0, "early");
    return NULL;
}

static volatile int later_ready;

static void *later(void *arg) {
    (void)arg;
#ifndef TSYNC
    struct sock_filter f[4];
    struct sock_fprog p;
    make_filter(&p, f, SYS_prctl, EDOM);
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &p) != 0) perror("seccomp");
    __atomic_store_n(&later_ready, 1, __ATOMIC_RELEASE);
#endif
    wait_go();
    report(3, "later");
    return NULL;
}

static volatile int late_ready;

__attribute__((unused)) static void *late(void *arg) {
    (void)arg;
    struct sock_filter f[4];
    struct sock_fprog p;
    make_filter(&p, f, SYS_getcpu, EDOM);
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &p) != 0) perror("seccomp");
    pthread_t t;
    pthread_create(&t, NULL, later, NULL);
    struct timespec ts = {0, 1000 * 1000};
    while (!__atomic_load_n(&later_ready, __ATOMIC_ACQUIRE)) nanosleep(&ts, NULL);
    __atomic_store_n(&late_ready, 1, __ATOMIC_RELEASE);
    wait_go();
    report(2, "late");
    pthread_join(t, NULL);
    return NULL;
}

/* Every filter is in place: READY, "go", then each thread's line (lines[2] only without TSYNC). */
static int finish(pthread_t *t) {
    __atomic_store_n(&set_up, 1, __ATOMIC_RELEASE);
    printf("READY\n");
    fflush(stdout);
    wait_go();
    report(1, "main");
    pthread_join(t[0], NULL);
    pthread_join(t[1], NULL);
    for (int i = 0; i < 4; i++)
        if (lines[i][0]) printf("%s\n", lines[i]);
    return 0;
}

int main(void) {
    dir = open(".", O_RDONLY | O_DIRECTORY);
    pthread_t t[2];
    pthread_create(&t[0], NULL, early, NULL);
#ifdef TSYNC
    pthread_create(&t[1], NULL, later, NULL);
#endif
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    struct sock_filter f[4];
    struct sock_fprog p;
    make_filter(&p, f, SYS_getppid, EPERM);
#ifdef TSYNC
    long r = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC | SECCOMP_FILTER_FLAG_LOG, &p);
    if (r != 0) printf("TSYNC failed: %ld\n", r);
#else
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &p, 0, 0) != 0) perror("prctl");
    pthread_create(&t[1], NULL, late, NULL);
    struct timespec ts = {0, 1000 * 1000};
    while (!__atomic_load_n(&late_ready, __ATOMIC_ACQUIRE)) nanosleep(&ts, NULL);
#endif
    return finish(t);
}
