/* Threads that share a seccomp filter which forbids set_robust_list (issue 12: state a thread
 * cannot take back under its filters is not lost silently). The worker has the robust futex
 * list glibc registers for every thread; then the main thread, with no_new_privs, installs with
 * TSYNC a filter under which set_robust_list fails with EPERM, so both threads share it. After
 * a restart the worker cannot register its list again: ckpt-restart must say so (the test reads
 * its stderr); the program's own checks (the filter in force in both threads) are the same as
 * in an uninterrupted run. */
#include "files_common.h"
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

static volatile int state;

static void *worker(void *arg) {
    (void)arg;
    __atomic_store_n(&state, 1, __ATOMIC_RELEASE);
    struct timespec ts = {0, 1000 * 1000};
    while (__atomic_load_n(&state, __ATOMIC_ACQUIRE) != 2) nanosleep(&ts, NULL);
    long r = syscall(SYS_set_robust_list, NULL, 0);
    printf("worker: set_robust_list %s\n", r == 0 ? "ok" : errno == EPERM ? "EPERM" : "other error");
    return NULL;
}

int main(void) {
    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
    struct timespec ts = {0, 1000 * 1000};
    while (__atomic_load_n(&state, __ATOMIC_ACQUIRE) != 1) nanosleep(&ts, NULL);
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_set_robust_list, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog p = {4, f};
    long r = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &p);
    ready();
    printf("TSYNC %s\n", r == 0 ? "took" : "failed");
    r = syscall(SYS_set_robust_list, NULL, 0);
    printf("main: set_robust_list %s\n", r == 0 ? "ok" : errno == EPERM ? "EPERM" : "other error");
    fflush(stdout);
    __atomic_store_n(&state, 2, __ATOMIC_RELEASE);
    pthread_join(t, NULL);
    printf("done\n");
    return 0;
}
