/* Signals directed at one thread, with values, while checkpoints run: a POSIX timer aimed at a
 * worker thread (SIGEV_THREAD_ID) fires every millisecond, so its signals reach the worker's own
 * queue after the checkpoint has stopped it, and the main thread pthread_sigqueue()s numbered
 * values to the worker until the file "go" appears and a while after. Every signal the worker
 * gets, before and after a restart, must carry its siginfo: the timer's (SI_TIMER, the timer's
 * address) or a sigqueue's (SI_QUEUE, the next number in order, none lost or repeated). One
 * queued again by number (SI_TKILL, no value) used to arrive after a restart. */
#include "files_common.h"
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>

static timer_t timer;
static volatile pid_t worker_tid;
static volatile sig_atomic_t fired, bad, next_value, stop;
/* The first bad signals: which handler, si_code, value, the value expected. */
static volatile int seen[8][4];

static void note_bad(int which, siginfo_t *si, int want) {
    if (bad < 8) {
        seen[bad][0] = which;
        seen[bad][1] = si->si_code;
        seen[bad][2] = si->si_value.sival_int;
        seen[bad][3] = want;
    }
    bad++;
}

static void on_timer(int sig, siginfo_t *si, void *u) {
    (void)sig, (void)u;
    if (si->si_code != SI_TIMER || si->si_value.sival_ptr != &timer || syscall(SYS_gettid) != worker_tid) note_bad(1, si, 0);
    fired++;
}

static void on_value(int sig, siginfo_t *si, void *u) {
    (void)sig, (void)u;
    if (si->si_code != SI_QUEUE || si->si_value.sival_int != next_value || syscall(SYS_gettid) != worker_tid) note_bad(2, si, next_value);
    next_value = si->si_value.sival_int + 1;
}

static void *work(void *arg) {
    pthread_sigmask(SIG_UNBLOCK, arg, NULL);
    worker_tid = syscall(SYS_gettid);
    struct sigevent ev = {.sigev_notify = SIGEV_THREAD_ID, .sigev_signo = SIGRTMIN + 1, .sigev_value.sival_ptr = &timer};
    ev._sigev_un._tid = worker_tid;
    if (timer_create(CLOCK_MONOTONIC, &ev, &timer)) exit(3);
    struct itimerspec its = {.it_value = {0, 1000000}, .it_interval = {0, 1000000}};
    if (timer_settime(timer, 0, &its, NULL)) exit(3);
    struct timespec ts = {0, 1000000};
    while (!stop) nanosleep(&ts, NULL);
    return NULL;
}

int main(void) {
    struct sigaction sa = {.sa_sigaction = on_timer, .sa_flags = SA_SIGINFO | SA_RESTART};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGRTMIN + 1, &sa, NULL);
    sa.sa_sigaction = on_value;
    sigaction(SIGRTMIN, &sa, NULL);
    /* Only the worker takes these signals. */
    sigset_t rt;
    sigemptyset(&rt);
    sigaddset(&rt, SIGRTMIN);
    sigaddset(&rt, SIGRTMIN + 1);
    pthread_sigmask(SIG_BLOCK, &rt, NULL);
    pthread_t w;
    if (pthread_create(&w, NULL, work, &rt)) return 2;
    while (!worker_tid) sched_yield();
    (void)ready; /* (its wait would not send) */
    printf("READY\n");
    fflush(stdout);
    int sent = 0, after_go = 0;
    struct timespec ts = {0, 200000};
    while (after_go < 2000) {
        union sigval v = {.sival_int = sent};
        /* At most 256 values in flight: the runtime records up to 4096 queued signals (more
         * refuse the checkpoint), and the kernel's limit is per user, shared with every other
         * program of the user. */
        if (sent - next_value < 256 && pthread_sigqueue(w, SIGRTMIN, v) == 0)
            sent++;
        else
            nanosleep(&ts, NULL);
        if (after_go || access(go_path, F_OK) == 0) after_go++;
    }
    while (next_value < sent) nanosleep(&ts, NULL);
    sig_atomic_t at_end = fired;
    while (fired - at_end < 20) nanosleep(&ts, NULL);
    stop = 1;
    pthread_join(w, NULL);
    for (int i = 0; i < bad && i < 8; i++)
        printf("bad signal %d: %s, si_code %d, value %d, expected %d\n", i, seen[i][0] == 1 ? "timer" : "value", seen[i][1], seen[i][2], seen[i][3]);
    CHECK(bad == 0, "%d signals came without their siginfo, out of order or to another thread", (int)bad);
    CHECK(next_value == sent, "values received up to %d of %d", (int)next_value, sent);
    printf("every value arrived in order at the worker, and the timer's signals with their value\n");
    return finish();
}
