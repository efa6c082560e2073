/*
 * tree_born_leaders: session leaders that were born in the session of a leader that exited
 * (forked there before their own setsid), with children that stayed in it (shapes of zdtm
 * session03's random trees that ckpt-restart refused).
 *
 * Usage: tree_born_leaders [ROUNDS=40] [DELAY_MS=40]
 * The root R is a child subreaper. R forks L; L calls setsid and forks A; A forks B; B forks C
 * and D; D forks E; then D and B call setsid and L exits (A is handed up to R):
 *   R ─ A (L's session and group, L exited) ─ B (own session) ─┬ C (L's)
 *                                                             └ D (own session) ─ E (L's)
 * R checks that shape once it is made ("error shape" else). A, B, C, D and E record their
 * parent, session and process group, then each round compute a value from their private state
 * and send it with a bit per id that is still the recorded one through a pipe; R prints
 * "step r v=.. bad=N" once it has every process's value of round r (N: the values so far with
 * an id that changed), and at the end, once it reaped A (which reaped B, which reaped C and D,
 * ...), "result <hex> bad=N". Deterministic.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tree_common.h"

enum { L, A, B, C, D, E, N };
/* The five that live on and report. */
enum { MEMBERS = 5 };

struct shared {
    volatile pid_t pid[N];
    volatile int flag[8];
};
enum { MADE, GO_L, START, D_SETSID };

static struct shared *sh;
static int out_fd;
static long rounds, delay;

static void wait_flag(int f)
{
    while (!sh->flag[f])
        sleep_ms(1);
}

static void set_flag(int f)
{
    __sync_synchronize();
    sh->flag[f] = 1;
}

static void bump_made(void)
{
    __sync_fetch_and_add(&sh->flag[MADE], 1);
}

/* Record our ids once the tree is made, report every round, reap our children; exit 0. */
static void member(int who)
{
    bump_made();
    wait_flag(START);
    pid_t ppid = getppid(), sid = getsid(0), pgid = getpgrp();
    uint64_t state = 0x5e55 + (uint64_t)who;
    for (long r = 1; r <= rounds; r++) {
        state = mix(state + (uint64_t)r);
        uint64_t ok = (getppid() == ppid) | (getsid(0) == sid) << 1 | (getpgrp() == pgid) << 2;
        uint64_t w[4] = { (uint64_t)who, state, ok, (uint64_t)r };
        xfer(out_fd, w, sizeof w, 1);
        sleep_ms(delay);
    }
    int st;
    while (wait(&st) > 0)
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            _exit(4);
    _exit(0);
}

static pid_t spawn(int who)
{
    pid_t p = fork();
    if (p < 0)
        _exit(3);
    if (p > 0)
        sh->pid[who] = p;
    return p;
}

static void run_d(void)
{
    if (spawn(E) == 0)
        member(E);
    if (setsid() < 0)
        _exit(3);
    set_flag(D_SETSID);
    member(D);
}

static void run_b(void)
{
    if (spawn(C) == 0)
        member(C);
    if (spawn(D) == 0)
        run_d();
    wait_flag(D_SETSID);
    if (setsid() < 0)
        _exit(3);
    member(B);
}

static void run_l(void)
{
    if (setsid() < 0)
        _exit(3);
    if (spawn(A) == 0) {
        if (spawn(B) == 0)
            run_b();
        member(A);
    }
    wait_flag(GO_L);
    _exit(0);
}

static int ids_are(int who, int parent, int session, int group)
{
    /* (-1: us.) */
    pid_t want_parent = parent < 0 ? getpid() : sh->pid[parent];
    return ids_now(sh->pid[who], want_parent, sh->pid[group], sh->pid[session]);
}

int main(int argc, char **argv)
{
    rounds = argc > 1 ? atol(argv[1]) : 40;
    delay = argc > 2 ? atol(argv[2]) : 40;
    setvbuf(stdout, NULL, _IOLBF, 0);
    sh = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    int p[2];
    if (sh == MAP_FAILED || pipe(p) != 0 || prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
        return 2;
    out_fd = p[1];
    printf("start tree_born_leaders rounds=%ld\n", rounds);
    if (spawn(L) == 0)
        run_l();
    close(p[1]);
    /* Every member is made (B and D after their setsid): L goes, A is ours. */
    while (sh->flag[MADE] < MEMBERS)
        sleep_ms(1);
    set_flag(GO_L);
    reap_exited(sh->pid[L], 0);
    /* (-1: us.) */
    int shape = ids_are(A, -1, L, L) && ids_are(B, A, B, B) && ids_are(C, B, L, L) && ids_are(D, B, D, D) && ids_are(E, D, L, L);
    if (!shape) {
        printf("error shape\n");
        return 2;
    }
    set_flag(START);
    long bad;
    uint64_t h = report_rounds(p[0], rounds, MEMBERS, &bad);
    reap_exited(sh->pid[A], 0);
    printf("result %016llx bad=%ld\n", (unsigned long long)h, bad);
    return 0;
}
