/*
 * tree_lost_leaders: sessions and process groups whose leaders exited, with members under two
 * branches of the tree, and members handed up to a subreaper (zdtm session02's shape, made with
 * fork and child subreapers).
 *
 * Usage: tree_lost_leaders [ROUNDS=40] [DELAY_MS=40]
 * The root R is a child subreaper. R forks P1, P1 forks L2; L2 calls setsid, forks C3 and exits
 * while P1 is a subreaper (C3 is P1's, in L2's session and group). C3 forks X4, X4 forks P5; P5
 * forks C6 (L2's session) and L7; L7 calls setsid, forks C8 and X9 and exits while P5 is a
 * subreaper (both are P5's, in L7's session and group); X9 forks C10 and exits while P1 is a
 * subreaper (C10 is P1's). X4 exits: P5 is handed up to R. Then P1 and P5 call setsid:
 *   R ─┬ P1 (own session) ─┬ C3  (session and group of L2, exited)
 *      │                   └ C10 (session and group of L7, exited)
 *      └ P5 (own session) ─┬ C6  (L2's)
 *                          └ C8  (L7's)
 * R checks that shape once it is made ("error shape" else). Each of the six others records its
 * parent, session and process group, then each round computes a value from its private state
 * and sends it with a bit per id that is still the recorded one through a pipe; R prints
 * "step r v=.. bad=N" once it has every process's value of round r (N: the values so far with
 * an id that changed; the others may already be a round ahead), and at the end, once it
 * reaped P1 and P5 (which reaped theirs), "result <hex> bad=N". Deterministic.
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

enum { P1, L2, C3, X4, P5, C6, L7, C8, X9, C10, N };
/* The six that live on and report, in report order. */
static const int members[] = { P1, C3, C10, P5, C6, C8 };

struct shared {
    volatile pid_t pid[N];
    volatile int flag[16];
};
enum { MADE_C3, GO_L2, MADE_C8, GO_L7, L7_REAPED, MADE_C10, GO_X9, X9_REAPED, GO_X4, X4_REAPED, DONE_SETSID, START, SHAPE };

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

static void subreaper(int on)
{
    if (prctl(PR_SET_CHILD_SUBREAPER, on) != 0)
        _exit(3);
}

/* Record our ids once the tree is made, then report every round; exit 0. */
static void member(int who)
{
    wait_flag(START);
    pid_t ppid = getppid(), sid = getsid(0), pgid = getpgrp();
    uint64_t state = 0x1057 + (uint64_t)who;
    for (long r = 1; r <= rounds; r++) {
        state = mix(state + (uint64_t)r);
        uint64_t ok = (getppid() == ppid) | (getsid(0) == sid) << 1 | (getpgrp() == pgid) << 2;
        uint64_t w[4] = { (uint64_t)who, state, ok, (uint64_t)r };
        xfer(out_fd, w, sizeof w, 1);
        sleep_ms(delay);
    }
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

/* Fork `who`, which only reports. */
static void spawn_member(int who)
{
    if (spawn(who) == 0) {
        member(who);
        _exit(0);
    }
}

static void reap_all(void)
{
    int st;
    while (wait(&st) > 0)
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            _exit(4);
}

static void run_x9(void)
{
    spawn_member(C10);
    set_flag(MADE_C10);
    wait_flag(GO_X9);
    _exit(0);
}

static void run_l7(void)
{
    if (setsid() < 0)
        _exit(3);
    spawn_member(C8);
    if (spawn(X9) == 0)
        run_x9();
    set_flag(MADE_C8);
    wait_flag(GO_L7);
    _exit(0);
}

static void run_p5(void)
{
    spawn_member(C6);
    if (spawn(L7) == 0)
        run_l7();
    wait_flag(MADE_C8);
    subreaper(1);
    set_flag(GO_L7);
    reap_exited(sh->pid[L7], 0);
    subreaper(0);
    set_flag(L7_REAPED);
    /* X9 is ours now: reap it once P1 took C10. */
    wait_flag(GO_X9);
    reap_exited(sh->pid[X9], 0);
    set_flag(X9_REAPED);
    wait_flag(X4_REAPED);
    if (setsid() < 0)
        _exit(3);
    set_flag(DONE_SETSID);
    member(P5);
    reap_all();
    _exit(0);
}

static void run_c3(void)
{
    if (spawn(X4) == 0) {
        if (spawn(P5) == 0)
            run_p5();
        wait_flag(GO_X4);
        _exit(0);
    }
    wait_flag(GO_X4);
    reap_exited(sh->pid[X4], 0);
    set_flag(X4_REAPED);
    member(C3);
    _exit(0);
}

static void run_p1(void)
{
    if (spawn(L2) == 0) {
        if (setsid() < 0)
            _exit(3);
        if (spawn(C3) == 0)
            run_c3();
        set_flag(MADE_C3);
        wait_flag(GO_L2);
        _exit(0);
    }
    wait_flag(MADE_C3);
    subreaper(1);
    set_flag(GO_L2);
    reap_exited(sh->pid[L2], 0);
    subreaper(0);
    wait_flag(MADE_C10);
    wait_flag(L7_REAPED);
    subreaper(1);
    set_flag(GO_X9);
    wait_flag(X9_REAPED);
    subreaper(0);
    set_flag(GO_X4);
    wait_flag(X4_REAPED);
    if (setsid() < 0)
        _exit(3);
    wait_flag(DONE_SETSID);
    set_flag(SHAPE);
    member(P1);
    reap_all();
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
    printf("start tree_lost_leaders rounds=%ld\n", rounds);
    if (spawn(P1) == 0)
        run_p1();
    close(p[1]);
    wait_flag(SHAPE);
    /* (-1: us.) */
    int shape = ids_are(P1, -1, P1, P1) && ids_are(C3, P1, L2, L2) && ids_are(C10, P1, L7, L7) && ids_are(P5, -1, P5, P5) && ids_are(C6, P5, L2, L2) && ids_are(C8, P5, L7, L7);
    if (!shape) {
        printf("error shape\n");
        return 2;
    }
    set_flag(START);
    long nm = sizeof members / sizeof members[0];
    long bad;
    uint64_t h = report_rounds(p[0], rounds, nm, &bad);
    int st;
    for (int i = 0; i < 2; i++)
        if (wait(&st) <= 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            printf("error a child's status %#x\n", st);
            return 2;
        }
    printf("result %016llx bad=%ld\n", (unsigned long long)h, bad);
    return 0;
}
