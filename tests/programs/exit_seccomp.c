/* The program's only thread is killed by its own seccomp filter (SECCOMP_RET_KILL_THREAD, as
 * CRIU's seccomp_filter_inheritance's child): alone, the process dies of SIGSYS; under ckpt the
 * runtime's checkpoint thread was left and the process exited with status 0. Prints READY,
 * waits for "go", prints "filtering", installs a filter that kills a thread calling ptrace,
 * calls it, and must never print "survived". */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int main(void) {
    int dir = open(".", O_RDONLY | O_DIRECTORY);
    printf("READY\n");
    fflush(stdout);
    struct timespec ts = {0, 20 * 1000 * 1000};
    while (faccessat(dir, "go", F_OK, 0) != 0) nanosleep(&ts, NULL);
    printf("filtering\n");
    fflush(stdout);
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD + BPF_W + BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP + BPF_JEQ + BPF_K, SYS_ptrace, 0, 1),
        BPF_STMT(BPF_RET + BPF_K, SECCOMP_RET_KILL_THREAD),
        BPF_STMT(BPF_RET + BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof filter / sizeof filter[0], .filter = filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)) {
        perror("seccomp");
        return 1;
    }
    ptrace(PTRACE_TRACEME, 0, 0, 0);
    printf("survived\n");
    return 0;
}
