/* A TSYNC after a restart (issue 12, zdtm seccomp_filter_tsync). With no_new_privs set, the main
 * thread installs filter 1 (getppid fails with EPERM) and then creates a worker, which inherits
 * it: both run under one filter, shared. Prints READY, waits for "go", then installs filter 2
 * (getcpu and getpid fail with EDOM) with SECCOMP_FILTER_FLAG_TSYNC, which the kernel allows
 * only if every other thread runs under an ancestor of the caller's filter, and prints what it
 * gave and what getppid, getcpu and getpid give in each thread; then leaves with a raw exit
 * (the process must end). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int dir;
static volatile int synced;

/* A filter under which system calls nr and nr2 fail with err. */
static long install(int nr, int nr2, int err, unsigned flags) {
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr, 1, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr2, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | err),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog p = {5, f};
    return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &p);
}

static const char *res(long r) {
    if (r >= 0) return "ok";
    return errno == EPERM ? "EPERM" : errno == EDOM ? "EDOM" : "other error";
}

static void report(const char *who) {
    unsigned cpu;
    const char *p = res(syscall(SYS_getppid));
    const char *c = res(syscall(SYS_getcpu, &cpu, NULL, NULL));
    const char *g = res(syscall(SYS_getpid));
    printf("%s: getppid %s, getcpu %s, getpid %s\n", who, p, c, g);
}

static void *worker(void *arg) {
    (void)arg;
    struct timespec ts = {0, 1000 * 1000};
    while (!__atomic_load_n(&synced, __ATOMIC_ACQUIRE)) nanosleep(&ts, NULL);
    report("worker");
    return NULL;
}

int main(void) {
    dir = open(".", O_RDONLY | O_DIRECTORY);
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    if (install(SYS_getppid, SYS_getppid, EPERM, 0) != 0) perror("seccomp");
    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
    printf("READY\n");
    fflush(stdout);
    struct timespec ts = {0, 20 * 1000 * 1000};
    while (faccessat(dir, "go", F_OK, 0) != 0) nanosleep(&ts, NULL);
    long r = install(SYS_getcpu, SYS_getpid, EDOM, SECCOMP_FILTER_FLAG_TSYNC);
    printf("TSYNC %s\n", r == 0 ? "took" : r > 0 ? "refused by another thread" : strerror(errno));
    report("main");
    fflush(stdout);
    __atomic_store_n(&synced, 1, __ATOMIC_RELEASE);
    pthread_join(t, NULL);
    fflush(stdout);
    /* As CRIU's seccomp tests end: the last thread leaves with a raw exit, and the process must
     * end although getpid fails in every thread (the runtime's too: TSYNC gave it the filter). */
    syscall(SYS_exit, 0);
    return 1;
}
