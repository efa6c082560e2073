/* Two POSIX timers (SIGEV_SIGNAL, one real-time signal, each with its own si_value: the
 * address of its timer_t, as DMTCP's timer1 does) fire every millisecond, so their signals
 * pile up in the process's queue while a checkpoint holds the threads. Every signal the handler
 * gets, before and after a restart, must be a timer's (SI_TIMER) carrying one of the two
 * addresses: the handler reads through it. A signal queued again by number (SI_USER, no value)
 * used to arrive after a restart and the program would dereference NULL. */
#include "files_common.h"
#include <signal.h>

static timer_t ids[2];
static volatile sig_atomic_t fired, bad;

static void on_timer(int sig, siginfo_t *si, void *u) {
    (void)sig, (void)u;
    timer_t *t = si->si_value.sival_ptr;
    if (si->si_code != SI_TIMER || (t != &ids[0] && t != &ids[1]) || timer_getoverrun(*t) < 0) bad++;
    fired++;
}

int main(void) {
    struct sigaction sa = {.sa_sigaction = on_timer, .sa_flags = SA_SIGINFO | SA_RESTART};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGRTMIN, &sa, NULL);
    for (int i = 0; i < 2; i++) {
        struct sigevent ev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGRTMIN, .sigev_value.sival_ptr = &ids[i]};
        if (timer_create(CLOCK_MONOTONIC, &ev, &ids[i])) return 2;
        struct itimerspec its = {.it_value = {0, 1000000}, .it_interval = {0, 1000000}};
        if (timer_settime(ids[i], 0, &its, NULL)) return 3;
    }
    ready();
    sig_atomic_t at_go = fired;
    struct timespec ts = {0, 1000000};
    while (fired - at_go < 100) nanosleep(&ts, NULL);
    struct itimerspec off = {0};
    timer_settime(ids[0], 0, &off, NULL);
    timer_settime(ids[1], 0, &off, NULL);
    CHECK(bad == 0, "%d signals were not a timer's", (int)bad);
    printf("timers fired on after go\n");
    return finish();
}
