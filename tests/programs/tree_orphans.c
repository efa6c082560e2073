/*
 * tree_orphans: a process whose parent exited, reparented to the namespace's init (a daemon
 * started with a double fork), keeps running across a checkpoint with its parent, session and
 * process group (issue 13).
 *
 * Usage: tree_orphans MODE [STEPS=60] [DELAY_MS=40]
 * MODE plain:  the root forks a helper that forks the orphan and exits; the orphan stays in the
 *              root's session and group.
 * MODE daemon: the helper calls setsid() before it forks the orphan (the classic daemon): the
 *              orphan's session and group are those of a process that no longer exists.
 * MODE group:  the helper calls setpgid(0, 0) before it forks the orphan: the orphan's process
 *              group is that of a process that no longer exists.
 * MODE zombie: as group, but the root reaps the helper only at the end: the orphan's group
 *              leader is a zombie (whose group the root checks at every step).
 * MODE child:  the root forks a child that forks a grandchild and only then calls setsid():
 *              the grandchild stays in the root's session while its parent leads another.
 * The root reaps the helper, then drives the other process step by step through a shared
 * anonymous page: for step s it posts s, the other process mixes s into its accumulator, checks
 * that its parent, session and group are still what they were before step 1 (a restart that
 * gives them back wrong is counted) and acknowledges. The root prints "step s" and at the end
 * "result <hex>" from the accumulator and the count of wrong ids. Deterministic.
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tree_common.h"

struct shared {
    volatile uint64_t post, ack, acc, wrong;
    volatile int ready;
};

static void follower(struct shared *sh, int orphan, pid_t helper)
{
    /* An orphan waits until its parent (the helper) has exited and it was reparented. */
    while (orphan && getppid() == helper)
        sleep_ms(1);
    pid_t ppid = getppid(), sid = getsid(0), pgid = getpgrp();
    sh->ready = 1;
    for (uint64_t seen = 0;;) {
        uint64_t s = __atomic_load_n(&sh->post, __ATOMIC_ACQUIRE);
        if (s == seen) {
            sleep_ms(2);
            continue;
        }
        seen = s;
        if (getppid() != ppid || getsid(0) != sid || getpgrp() != pgid)
            sh->wrong++;
        if (s == UINT64_MAX)
            _exit(0);
        sh->acc = mix(sh->acc + s);
        __atomic_store_n(&sh->ack, s, __ATOMIC_RELEASE);
    }
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "plain";
    long steps = argc > 2 ? atol(argv[2]) : 60, delay = argc > 3 ? atol(argv[3]) : 40;
    setvbuf(stdout, NULL, _IONBF, 0);
    printf("start tree_orphans %s %ld\n", mode, steps);
    struct shared *sh = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        return 2;
    int child_mode = strcmp(mode, "child") == 0, zombie_mode = strcmp(mode, "zombie") == 0;
    uint64_t zombie_wrong = 0;
    pid_t h = fork();
    if (h == 0) {
        if (strcmp(mode, "daemon") == 0 && setsid() < 0)
            _exit(3);
        if ((strcmp(mode, "group") == 0 || zombie_mode) && setpgid(0, 0) < 0)
            _exit(3);
        pid_t self = getpid(), o = fork();
        if (o == 0)
            follower(sh, !child_mode, self);
        if (o < 0)
            _exit(4);
        if (!child_mode)
            _exit(0);
        while (!sh->ready)
            sleep_ms(1);
        if (setsid() < 0)
            _exit(5);
        for (;;)
            pause();
    }
    int st = 0;
    if (!child_mode && !zombie_mode && (waitpid(h, &st, 0) != h || !WIFEXITED(st) || WEXITSTATUS(st) != 0)) {
        printf("helper failed %d\n", st);
        return 1;
    }
    while (!sh->ready)
        sleep_ms(1);
    sleep_ms(20);
    for (long s = 1; s <= steps; s++) {
        __atomic_store_n(&sh->post, (uint64_t)s, __ATOMIC_RELEASE);
        while (__atomic_load_n(&sh->ack, __ATOMIC_ACQUIRE) != (uint64_t)s)
            sleep_ms(1);
        siginfo_t si;
        memset(&si, 0, sizeof si);
        if (zombie_mode && (getpgid(h) != h || waitid(P_PID, (id_t)h, &si, WEXITED | WNOWAIT | WNOHANG) != 0 || si.si_pid != h))
            zombie_wrong++;
        printf("step %ld\n", s);
        sleep_ms(delay);
    }
    __atomic_store_n(&sh->post, UINT64_MAX, __ATOMIC_RELEASE);
    if (child_mode) {
        sleep_ms(50);
        kill(h, SIGKILL);
        waitpid(h, NULL, 0);
    }
    if (zombie_mode && (waitpid(h, &st, 0) != h || !WIFEXITED(st) || WEXITSTATUS(st) != 0))
        zombie_wrong += 1000;
    printf("result %016llx-%llu-%llu\n", (unsigned long long)sh->acc, (unsigned long long)sh->wrong, (unsigned long long)zombie_wrong);
    return 0;
}
