/*
 * tree_stopped: a parent and a forked child that the parent stops by job control for a while
 * (a checkpoint is taken while the child is stopped; after the restart it must still be).
 *
 * Usage: tree_stopped STOP|TSTP [ROUNDS=300] [DELAY_MS=20] [STOP_AT=5] [CONT_AT=ROUNDS-40] [PIN=0]
 * The child leads a process group of its own in the parent's session (not orphaned, so SIGTSTP
 * stops it) and counts in shared memory: it waits for a byte on a pipe, then counts every 2 ms.
 * At round STOP_AT (0: right after the fork, before the child's runtime can join the tree) the
 * parent sends the signal and waits until the child is stopped (waitid WSTOPPED|WNOWAIT:
 * CLD_STOPPED with that signal), then writes the byte. In every round until
 * CONT_AT it checks that the child is stopped: state T in /proc, the count at 0, and waitid
 * (WSTOPPED|WNOHANG|WNOWAIT) reporting CLD_STOPPED with the signal. At CONT_AT it sends SIGCONT
 * and waitid(WCONTINUED) must report CLD_CONTINUED; later rounds check that the child counts.
 * Each check that fails prints "bad ..." on stderr and counts; the parent prints "step r" each
 * round and "result <hex>" (the rounds mixed with the failures) at the end. Deterministic.
 * PIN=1 with STOP_AT=0: the parent forks pinned to one CPU (the child too) and sends the signal
 * before it yields it, so that the child has not run yet: a SIGSTOP stops it at its first
 * instruction, inside the fork handlers (after the stop report both go back to every CPU).
 */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tree_common.h"

static char state_of(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return '?';
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    return p && p[1] && p[2] ? p[2] : '?';
}

/* Stop the child with `sig` and wait for its stop report; then let it go on (once continued). */
static long stop_child(pid_t child, int sig, int go)
{
    siginfo_t si;
    long bad = 0;
    kill(child, sig);
    memset(&si, 0, sizeof si);
    if (waitid(P_PID, child, &si, WSTOPPED | WNOWAIT) != 0 || si.si_code != CLD_STOPPED || si.si_status != sig) {
        fprintf(stderr, "bad: no stop report (code %d, status %d)\n", si.si_code, si.si_status);
        bad++;
    }
    if (write(go, "g", 1) != 1)
        bad++;
    return bad;
}

int main(int argc, char **argv)
{
    if (argc < 2 || (strcmp(argv[1], "STOP") && strcmp(argv[1], "TSTP"))) {
        fprintf(stderr, "usage: tree_stopped STOP|TSTP [ROUNDS] [DELAY_MS] [STOP_AT] [CONT_AT] [PIN]\n");
        return 2;
    }
    int sig = strcmp(argv[1], "STOP") ? SIGTSTP : SIGSTOP;
    long rounds = argc > 2 ? atol(argv[2]) : 300, delay = argc > 3 ? atol(argv[3]) : 20;
    long stop_at = argc > 4 ? atol(argv[4]) : 5, cont_at = argc > 5 ? atol(argv[5]) : rounds - 40;
    int pin = argc > 6 && atol(argv[6]) == 1 && stop_at <= 0;
    cpu_set_t all, one;
    if (pin) {
        if (sched_getaffinity(0, sizeof all, &all) != 0) {
            perror("sched_getaffinity");
            return 1;
        }
        CPU_ZERO(&one);
        for (int c = 0; c < CPU_SETSIZE; c++)
            if (CPU_ISSET(c, &all)) {
                CPU_SET(c, &one);
                break;
            }
        if (sched_setaffinity(0, sizeof one, &one) != 0) {
            perror("sched_setaffinity");
            return 1;
        }
    }
    volatile long *count = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    int go[2];
    if (count == MAP_FAILED || pipe(go) != 0) {
        perror("setup");
        return 1;
    }
    pid_t child = fork();
    if (child < 0) {
        perror("fork");
        return 1;
    }
    if (child == 0) {
        setpgid(0, 0);
        close(go[1]);
        char b;
        if (read(go[0], &b, 1) != 1)
            _exit(3);
        for (;;) {
            (*count)++;
            sleep_ms(2);
        }
    }
    if (pin) {
        /* First the signal, then anything that may yield the CPU to the child. */
        kill(child, sig);
    }
    setpgid(child, child);
    close(go[0]);
    long bad = stop_at <= 0 ? stop_child(child, sig, go[1]) : 0;
    if (pin && (sched_setaffinity(child, sizeof all, &all) != 0 || sched_setaffinity(0, sizeof all, &all) != 0)) {
        perror("sched_setaffinity");
        bad++;
    }
    uint64_t state = 1;
    for (long r = 1; r <= rounds; r++) {
        siginfo_t si;
        if (r == stop_at)
            bad += stop_child(child, sig, go[1]);
        if (r >= stop_at && r < cont_at) {
            memset(&si, 0, sizeof si);
            char st = state_of(child);
            int w = waitid(P_PID, child, &si, WSTOPPED | WNOHANG | WNOWAIT);
            if (st != 'T' || *count != 0 || w != 0 || si.si_code != CLD_STOPPED || si.si_status != sig) {
                fprintf(stderr, "bad: round %ld: child state %c, count %ld, waitid %d code %d status %d\n", r, st, *count, w, si.si_code, si.si_status);
                bad++;
            }
        }
        if (r == cont_at) {
            kill(child, SIGCONT);
            memset(&si, 0, sizeof si);
            if (waitid(P_PID, child, &si, WCONTINUED) != 0 || si.si_code != CLD_CONTINUED) {
                fprintf(stderr, "bad: round %ld: no continue report (code %d)\n", r, si.si_code);
                bad++;
            }
        }
        if (r == rounds && *count == 0) {
            fprintf(stderr, "bad: the child did not count after SIGCONT\n");
            bad++;
        }
        state = mix(state + (uint64_t)r + ((uint64_t)bad << 32));
        printf("step %ld\n", r);
        fflush(stdout);
        sleep_ms(delay);
    }
    end_with_child(child, state);
    return bad != 0;
}
