/*
 * self_signal: a program that uses the checkpoint signal (SIGUSR2) for itself, as the JVM does
 * (HotSpot suspends its threads with SIGUSR2 sent by pthread_kill; the handler waits in
 * sigsuspend for the resume signal). Every way of sending a signal to itself must run its own
 * handler, with the kernel's semantics; a SIGUSR2 from outside must not.
 *
 * Usage: self_signal [sigset|bsd|sysv]  (how the USR2 handler is installed; default sigaction
 *        with SA_SIGINFO)
 *        self_signal die                (SIG_DFL, raise(SIGUSR2): the program must die of it)
 * Prints a line per check, READY, waits for a file "go", runs the checks again, prints
 * "handler ran N times" (N counts only its own signals) and exits 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Old interfaces a program may still use (glibc has them; the headers hide some). */
extern __sighandler_t bsd_signal(int, __sighandler_t);
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

static volatile sig_atomic_t runs, last_code, last_value, last_pid_ok, last_tid, blocked_inside, int_blocked_inside;
static volatile sig_atomic_t suspended, resume;
static pthread_t worker;
static volatile pid_t worker_tid;
static const char *mode = "sigaction";

static void note(int sig, siginfo_t *si)
{
    (void)sig;
    runs++;
    last_tid = gettid();
    sigset_t now;
    pthread_sigmask(SIG_BLOCK, NULL, &now);
    blocked_inside = sigismember(&now, SIGUSR2);
    int_blocked_inside = sigismember(&now, SIGINT);
    if (si) {
        last_code = si->si_code;
        last_value = si->si_value.sival_int;
        last_pid_ok = si->si_pid == getpid();
    }
}

static void on_usr2_info(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    note(sig, si);
}

static void on_usr2(int sig)
{
    note(sig, NULL);
}

/* The worker's handler, HotSpot style: say "suspended", wait in sigsuspend for the resume signal
 * (the same SIGUSR2, whose nested delivery sets `resume` through the same handler). */
static void on_usr2_worker(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    if (suspended) {
        resume = 1;
        return;
    }
    note(sig, si);
    suspended = 1;
    sigset_t m;
    pthread_sigmask(SIG_BLOCK, NULL, &m);
    sigdelset(&m, SIGUSR2);
    while (!resume)
        sigsuspend(&m);
    suspended = 0;
    resume = 0;
}

static void *work(void *a)
{
    (void)a;
    worker_tid = gettid();
    for (;;)
        pause();
    return NULL;
}

static void wait_for(volatile sig_atomic_t *flag, int value)
{
    for (int i = 0; i < 2000 && *flag != value; i++)
        nanosleep(&(struct timespec){ 0, 5000000 }, NULL);
}

static void install(void (*plain)(int), void (*info)(int, siginfo_t *, void *), int flags)
{
    if (strcmp(mode, "sigset") == 0) {
        sigset(SIGUSR2, plain);
    } else if (strcmp(mode, "bsd") == 0) {
        bsd_signal(SIGUSR2, plain);
    } else if (strcmp(mode, "sysv") == 0) {
        sysv_signal(SIGUSR2, plain);
    } else {
        struct sigaction sa = { .sa_sigaction = info, .sa_flags = SA_SIGINFO | flags };
        sigemptyset(&sa.sa_mask);
        sigaddset(&sa.sa_mask, SIGINT);
        sigaction(SIGUSR2, &sa, NULL);
    }
}

static int siginfo_mode(void)
{
    return strcmp(mode, "sigaction") == 0;
}

static void checks(const char *phase)
{
    int r0 = runs;
    install(on_usr2, on_usr2_info, 0);

    raise(SIGUSR2);
    printf("%s raise: ran %d on self %d code %s pid %s blocked-inside %d", phase, runs - r0, last_tid == gettid(),
           !siginfo_mode() ? "-" : last_code == SI_TKILL ? "SI_TKILL" : "other", !siginfo_mode() ? "-" : last_pid_ok ? "ok" : "wrong",
           blocked_inside);
    printf(" INT-blocked-inside %d\n", siginfo_mode() ? int_blocked_inside : -1);
    if (strcmp(mode, "sysv") == 0)
        install(on_usr2, on_usr2_info, 0); /* System V semantics reset it on delivery */

    kill(getpid(), SIGUSR2);
    printf("%s kill: ran before kill returned %d code %s\n", phase, runs - r0,
           !siginfo_mode() ? "-" : last_code == SI_USER ? "SI_USER" : "other");
    if (strcmp(mode, "sysv") == 0)
        install(on_usr2, on_usr2_info, 0);

    if (siginfo_mode()) {
        sigqueue(getpid(), SIGUSR2, (union sigval){ .sival_int = 4242 });
        printf("%s sigqueue: ran %d code %s value %d\n", phase, runs - r0, last_code == SI_QUEUE ? "SI_QUEUE" : "other",
               (int)last_value);

        /* Blocked: pending, delivered when unblocked. */
        sigset_t b, p;
        sigemptyset(&b);
        sigaddset(&b, SIGUSR2);
        pthread_sigmask(SIG_BLOCK, &b, NULL);
        int before = runs;
        raise(SIGUSR2);
        sigpending(&p);
        printf("%s blocked: ran %d pending %d\n", phase, runs - before, sigismember(&p, SIGUSR2));
        pthread_sigmask(SIG_UNBLOCK, &b, NULL);
        sigpending(&p);
        printf("%s unblocked: ran %d pending %d\n", phase, runs - before, sigismember(&p, SIGUSR2));

        /* SA_RESETHAND: one delivery, then the default disposition again. */
        install(on_usr2, on_usr2_info, SA_RESETHAND);
        raise(SIGUSR2);
        struct sigaction now;
        sigaction(SIGUSR2, NULL, &now);
        printf("%s resethand: back to SIG_DFL %d\n", phase, now.sa_handler == SIG_DFL);

        /* SIG_IGN: nothing happens. */
        signal(SIGUSR2, SIG_IGN);
        before = runs;
        raise(SIGUSR2);
        kill(getpid(), SIGUSR2);
        printf("%s ignored: ran %d\n", phase, runs - before);

        /* Another thread, HotSpot's suspend/resume protocol with pthread_kill. */
        struct sigaction sa = { .sa_sigaction = on_usr2_worker, .sa_flags = SA_SIGINFO };
        sigemptyset(&sa.sa_mask);
        sigaction(SIGUSR2, &sa, NULL);
        pthread_kill(worker, SIGUSR2);
        wait_for(&suspended, 1);
        int was_suspended = suspended;
        pthread_kill(worker, SIGUSR2);
        wait_for(&suspended, 0);
        printf("%s pthread_kill: suspended %d on worker %d resumed %d\n", phase, was_suspended, last_tid == worker_tid,
               suspended == 0);
    }
    fflush(stdout);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1)
        mode = argv[1];
    if (strcmp(mode, "die") == 0) {
        printf("dying\n");
        fflush(stdout);
        raise(SIGUSR2);
        printf("still alive\n");
        return 1;
    }
    int dir = open(".", O_RDONLY | O_DIRECTORY);
    pthread_create(&worker, NULL, work, NULL);
    while (!worker_tid)
        sched_yield();
    checks("before");
    int own = runs;
    printf("READY\n");
    fflush(stdout);
    while (faccessat(dir, "go", F_OK, 0) != 0)
        nanosleep(&(struct timespec){ 0, 20000000 }, NULL);
    printf("handler ran %d times while waiting\n", runs - own);
    checks("after");
    printf("handler ran %d times\n", runs);
    return 0;
}
