/*
 * tree_ptrace_sig: a child traced by its parent sits in a signal-delivery-stop for the whole of
 * the checkpoints (the shape of CRIU's zdtm ptrace_sig, written anew).
 *
 * Usage: tree_ptrace_sig [ROUNDS=120] [DELAY_MS=20] [CONT_AT=ROUNDS-20] [options|suspend|rawsuspend|ppoll]
 * With "options" the parent also sets PTRACE_O_TRACESYSGOOD on the stopped child (a restart
 * would not set it again: the checkpoint is refused in one line). With "suspend" (or "ppoll")
 * the child blocks SIGUSR1 and waits for it once in sigsuspend (with "rawsuspend" by the
 * system call through syscall(), a site the runtime cannot name; or ppoll watching a pipe nobody writes to)
 * with a mask that lets it through: it stops inside that call, and once let go its handler must
 * have run when the call returns -1/EINTR, and SIGUSR1 be blocked again (else it exits 4, 5 or 6).
 * The child installs a SA_SIGINFO handler for SIGUSR1 that writes the sender's pid (si_pid) to
 * a pipe, calls PTRACE_TRACEME, says it is ready and sleeps until its handler ran. The parent
 * forks a sender that sends the child SIGUSR1 and exits (a zombie, not reaped until the end),
 * waits for the sender's exit and for the child's stop with WNOWAIT (both reports stay). Every
 * round until CONT_AT it checks that the child is still in that stop: /proc state t, waitid
 * (WSTOPPED|WNOHANG|WNOWAIT) reporting CLD_TRAPPED with SIGUSR1, PTRACE_GETSIGINFO giving
 * SIGUSR1, SI_USER and the sender's pid, PTRACE_INTERRUPT failing with EIO (traced as TRACEME
 * made it, not seized); at CONT_AT it takes the stop report with wait(),
 * reads the siginfo again and lets the child go on with PTRACE_CONT(SIGUSR1): the child's handler
 * must write the sender's pid, and the child exit 0 (reaped with wait). Each check that fails
 * prints "bad ..." on stderr and counts; the parent prints "step r" each round and
 * "result <hex>" (the rounds mixed with the failures) at the end. Deterministic.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tree_common.h"

static int child_fd;
static volatile sig_atomic_t handled;

static void on_usr1(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    int pid = si->si_pid;
    if (write(child_fd, &pid, sizeof pid) != sizeof pid)
        _exit(3);
    handled = 1;
}

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

/* Whether the child is in its signal-delivery-stop for SIGUSR1 from `sender`. */
static long check_stop(pid_t child, pid_t sender, long r)
{
    long bad = 0;
    siginfo_t si;
    char st = state_of(child);
    if (st != 't') {
        fprintf(stderr, "bad %ld: the child's state is %c\n", r, st);
        bad++;
    }
    memset(&si, 0, sizeof si);
    if (waitid(P_PID, child, &si, WSTOPPED | WNOHANG | WNOWAIT) != 0 || si.si_pid != child || si.si_code != CLD_TRAPPED || si.si_status != SIGUSR1) {
        fprintf(stderr, "bad %ld: no stop report (pid %d, code %d, status %d)\n", r, si.si_pid, si.si_code, si.si_status);
        bad++;
    }
    memset(&si, 0, sizeof si);
    if (ptrace(PTRACE_GETSIGINFO, child, NULL, &si) != 0 || si.si_signo != SIGUSR1 || si.si_code != SI_USER || si.si_pid != sender) {
        fprintf(stderr, "bad %ld: siginfo (signo %d, code %d, pid %d, sender %d)\n", r, si.si_signo, si.si_code, si.si_pid, (int)sender);
        bad++;
    }
    /* Attached as PTRACE_TRACEME made it, not seized: PTRACE_INTERRUPT is for seized ones. */
    errno = 0;
    if (ptrace(PTRACE_INTERRUPT, child, NULL, NULL) == 0 || errno != EIO) {
        fprintf(stderr, "bad %ld: PTRACE_INTERRUPT did not fail with EIO (errno %d): the child is seized\n", r, errno);
        bad++;
    }
    return bad;
}

int main(int argc, char **argv)
{
    long rounds = argc > 1 ? atol(argv[1]) : 120, delay = argc > 2 ? atol(argv[2]) : 20;
    long cont_at = argc > 3 ? atol(argv[3]) : rounds - 20;
    int p[2];
    if (pipe(p) != 0) {
        perror("pipe");
        return 1;
    }
    pid_t child = fork();
    if (child < 0) {
        perror("fork");
        return 1;
    }
    if (child == 0) {
        close(p[0]);
        child_fd = p[1];
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_usr1;
        sa.sa_flags = SA_SIGINFO;
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGUSR1, &sa, NULL) != 0 || ptrace(PTRACE_TRACEME, 0, NULL, NULL) != 0) {
            perror("child");
            _exit(1);
        }
        const char *mode = argc > 4 ? argv[4] : "";
        int in_call = !strcmp(mode, "suspend") || !strcmp(mode, "rawsuspend") || !strcmp(mode, "ppoll");
        sigset_t usr1, inside, now;
        sigemptyset(&usr1);
        sigaddset(&usr1, SIGUSR1);
        if (in_call && sigprocmask(SIG_BLOCK, &usr1, &inside) != 0) {
            perror("sigprocmask");
            _exit(1);
        }
        int ready = 0;
        xfer(child_fd, &ready, sizeof ready, 1);
        if (in_call) {
            /* One call, no loop: a return without the handler, or another result, is wrong. */
            int r;
            if (!strcmp(mode, "suspend"))
                r = sigsuspend(&inside);
            else if (!strcmp(mode, "rawsuspend"))
                r = (int)syscall(SYS_rt_sigsuspend, &inside, (size_t)8);
            else {
                /* A pipe nobody writes to: a descriptor watched. */
                int q[2];
                if (pipe(q) != 0)
                    _exit(1);
                struct pollfd pfd = { q[0], POLLIN, 0 };
                r = ppoll(&pfd, 1, NULL, &inside);
            }
            if (r != -1 || errno != EINTR)
                _exit(6);
            if (!handled)
                _exit(4);
            if (sigprocmask(SIG_BLOCK, NULL, &now) != 0 || !sigismember(&now, SIGUSR1))
                _exit(5);
        }
        while (!handled)
            sleep_ms(10);
        _exit(0);
    }
    close(p[1]);
    int ready;
    xfer(p[0], &ready, sizeof ready, 0);
    pid_t sender = fork();
    if (sender < 0) {
        perror("fork");
        return 1;
    }
    if (sender == 0) {
        if (kill(child, SIGUSR1) != 0)
            _exit(1);
        _exit(0);
    }
    siginfo_t si;
    int options = argc > 4 && !strcmp(argv[4], "options");
    if (waitid(P_PID, sender, &si, WEXITED | WNOWAIT) != 0 || waitid(P_PID, child, &si, WSTOPPED | WNOWAIT) != 0) {
        perror("waitid");
        return 1;
    }
    if (options && ptrace(PTRACE_SETOPTIONS, child, NULL, (void *)(long)PTRACE_O_TRACESYSGOOD) != 0) {
        perror("PTRACE_SETOPTIONS");
        return 1;
    }
    uint64_t state = 1;
    long bad = 0;
    for (long r = 1; r <= rounds; r++) {
        if (r < cont_at) {
            bad += check_stop(child, sender, r);
        } else if (r == cont_at) {
            bad += check_stop(child, sender, r);
            int status = 0;
            pid_t w = waitpid(child, &status, 0);
            if (w != child || !WIFSTOPPED(status) || WSTOPSIG(status) != SIGUSR1) {
                fprintf(stderr, "bad %ld: wait gave %d status %#x\n", r, (int)w, status);
                bad++;
            }
            memset(&si, 0, sizeof si);
            if (ptrace(PTRACE_GETSIGINFO, child, NULL, &si) != 0 || si.si_pid != sender) {
                fprintf(stderr, "bad %ld: siginfo after wait (pid %d)\n", r, si.si_pid);
                bad++;
            }
            if (ptrace(PTRACE_CONT, child, NULL, (void *)(long)SIGUSR1) != 0) {
                perror("PTRACE_CONT");
                bad++;
            }
            int got = 0;
            xfer(p[0], &got, sizeof got, 0);
            if (got != sender) {
                fprintf(stderr, "bad %ld: the handler saw pid %d, not %d\n", r, got, (int)sender);
                bad++;
            }
            if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                fprintf(stderr, "bad %ld: the child ended with status %#x\n", r, status);
                bad++;
            }
            if (waitpid(sender, &status, 0) != sender || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                fprintf(stderr, "bad %ld: the sender ended with status %#x\n", r, status);
                bad++;
            }
        }
        state = mix(state + (uint64_t)r + (uint64_t)bad * 1000003u);
        printf("step %ld\n", r);
        fflush(stdout);
        sleep_ms(delay);
    }
    printf("result %016llx\n", (unsigned long long)state);
    return bad != 0;
}
