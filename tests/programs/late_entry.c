/*
 * late_entry: a thread enters its wait after the checkpoint thread looked at it (/proc showed it
 * running) and before the stop signal reaches it, at the program's first checkpoint: the stop
 * signal interrupts a call that /proc never named, at a call site never seen blocked before.
 * (Under load, a thread woken from a short poll() but not yet on a CPU shows "running" while
 * it is still in the call: busy_sleepers saw EINTR so, once in the full suite.)
 *
 * Made deterministic: the thread blocks every signal with a raw system call (no hook sees it),
 * says READY, spins (running) until a signal other than the trigger (SIGUSR2) is pending for
 * it, then waits 1 s in glibc's ppoll() with its old mask, where that signal is delivered at
 * once. Prints "ppoll 0" when the wait went on as if no checkpoint had come, "ppoll EINTR" else.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static volatile int armed;

/* rt_sigprocmask without libc (whose wrapper the runtime hooks): nothing is kept unblocked. */
static long raw_sigprocmask(int how, const unsigned long *set, unsigned long *old)
{
    long r;
    register long r10 __asm__("r10") = 8;
    __asm__ volatile("syscall" : "=a"(r) : "0"(SYS_rt_sigprocmask), "D"(how), "S"(set), "d"(old), "r"(r10) : "rcx", "r11", "memory");
    return r;
}

static unsigned long raw_sigpending(void)
{
    unsigned long set = 0;
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "0"(SYS_rt_sigpending), "D"(&set), "S"(8L) : "rcx", "r11", "memory");
    return r == 0 ? set : 0;
}

static void *waiter(void *a)
{
    (void)a;
    unsigned long all = ~0UL, old = 0;
    raw_sigprocmask(SIG_SETMASK, &all, &old);
    armed = 1;
    unsigned long trigger = 1UL << (SIGUSR2 - 1);
    time_t t0 = time(NULL);
    while (!(raw_sigpending() & ~trigger)) {
        if (time(NULL) - t0 > 60) {
            printf("no stop signal came\n");
            fflush(stdout);
            _exit(1);
        }
    }
    sigset_t mask;
    memset(&mask, 0, sizeof mask);
    memcpy(&mask, &old, sizeof old);
    struct timespec ts = { 1, 0 };
    int r = ppoll(NULL, 0, &ts, &mask);
    printf("ppoll %s\n", r == 0 ? "0" : errno == EINTR ? "EINTR" : "error");
    fflush(stdout);
    return NULL;
}

int main(void)
{
    pthread_t t;
    pthread_create(&t, NULL, waiter, NULL);
    while (!armed)
        usleep(1000);
    printf("READY\n");
    fflush(stdout);
    pthread_join(t, NULL);
    return 0;
}
