/*
 * seccomp_unseen: a thread named "sandboxed" sets no_new_privs and installs a seccomp filter
 * (getppid fails with EPERM) with a raw `syscall` instruction, which no libc function sees.
 * (Strict mode is checkpointed: tests/programs/seccomp_strict.c.) Prints "step 1" ..
 * "step N" (one per 100 ms) and "result N": a checkpoint must fail with a line naming that
 * thread (a restart would run it without its filter), and the program must go on unharmed.
 */
#define _GNU_SOURCE
#include <errno.h>
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

static volatile int ready;

static long raw_seccomp(long op, long flags, void *prog) {
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"((long)SYS_seccomp), "D"(op), "S"(flags), "d"(prog) : "rcx", "r11", "memory");
    return r;
}

static void *sandboxed(void *arg) {
    (void)arg;
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getppid, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog p = {4, f};
    if (raw_seccomp(SECCOMP_SET_MODE_FILTER, 0, &p) != 0) fprintf(stderr, "seccomp failed\n");
    __atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
    for (;;) pause();
    return NULL;
}

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 60;
    pthread_t t;
    pthread_create(&t, NULL, sandboxed, NULL);
    pthread_setname_np(t, "sandboxed");
    struct timespec ts = {0, 100 * 1000 * 1000};
    while (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) nanosleep(&ts, NULL);
    printf("start seccomp_unseen steps=%d\n", steps);
    for (int s = 1; s <= steps; s++) {
        nanosleep(&ts, NULL);
        printf("step %d\n", s);
        fflush(stdout);
    }
    printf("result %d\n", steps);
    return 0;
}
