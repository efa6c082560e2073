/*
 * masked_workers: worker threads that block every signal, the usual way of leaving signals to
 * one thread (glibc's own helper threads do the same). A background snapshot dispatches every
 * system call of the program through SIGSYS (syscall user dispatch), which these threads block;
 * the program must neither die of it nor see its mask changed.
 *
 * Usage: masked_workers [STEPS=40]   (compile with -pthread)
 * Worker A sleeps 10 ms per round (nanosleep, interrupted by every stop); worker B waits 1 ms
 * per round in sigtimedwait for a signal that never comes, then hashes. Each round both check
 * that their mask, as pthread_sigmask reports it, still blocks every signal they blocked; at the
 * end, that the kernel's mask (SigBlk in /proc/thread-self/status) still blocks SIGSYS. Main
 * prints "step N" when A has done 10 N rounds, then "result <A's sum + B's hash>".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long rounds;
static volatile long a_done;

static void block_all(void)
{
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
}

/* The mask as the program sees it still blocks what it blocked. */
static void check_mask(const char *who, long r)
{
    sigset_t cur;
    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    int sigs[] = { SIGSYS, SIGUSR1, SIGTERM, SIGALRM, SIGCHLD, SIGRTMIN + 1 };
    for (unsigned i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        if (!sigismember(&cur, sigs[i])) {
            printf("FAIL %s round %ld: signal %d no longer blocked\n", who, r, sigs[i]);
            fflush(stdout);
            exit(1);
        }
}

/* The kernel's mask of this thread blocks SIGSYS. */
static void check_kernel_mask(const char *who)
{
    FILE *f = fopen("/proc/thread-self/status", "r");
    char line[256];
    unsigned long long blk = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "SigBlk: %llx", &blk) == 1)
            break;
    if (f)
        fclose(f);
    if (!(blk & (1ULL << (SIGSYS - 1)))) {
        printf("FAIL %s: the kernel's mask %llx does not block SIGSYS\n", who, blk);
        fflush(stdout);
        exit(1);
    }
}

static void *worker_a(void *arg)
{
    (void)arg;
    block_all();
    long sum = 0;
    for (long r = 1; r <= rounds; r++) {
        usleep(10000);
        check_mask("A", r);
        sum += r * r;
        __atomic_store_n(&a_done, r, __ATOMIC_RELEASE);
    }
    check_kernel_mask("A");
    return (void *)sum;
}

static void *worker_b(void *arg)
{
    (void)arg;
    block_all();
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    unsigned long h = 1469598103934665603UL;
    for (long r = 1; r <= rounds; r++) {
        struct timespec ts = { 0, 1000000 };
        if (sigtimedwait(&usr1, NULL, &ts) != -1 || errno != EAGAIN) {
            printf("FAIL B round %ld: sigtimedwait: %s\n", r, strerror(errno));
            fflush(stdout);
            exit(1);
        }
        check_mask("B", r);
        for (long i = 0; i < 20000; i++)
            h = (h ^ (unsigned long)(r * 20000 + i)) * 1099511628211UL;
    }
    check_kernel_mask("B");
    return (void *)(h & 0xffffffffUL);
}

int main(int argc, char **argv)
{
    int steps = argc > 1 ? atoi(argv[1]) : 40;
    rounds = 10L * steps;
    printf("start masked_workers steps=%d\n", steps);
    fflush(stdout);
    pthread_t a, b;
    pthread_create(&a, NULL, worker_a, NULL);
    pthread_create(&b, NULL, worker_b, NULL);
    for (int s = 1; s <= steps; s++) {
        while (__atomic_load_n(&a_done, __ATOMIC_ACQUIRE) < 10L * s)
            usleep(5000);
        printf("step %d\n", s);
        fflush(stdout);
    }
    void *ra, *rb;
    pthread_join(a, &ra);
    pthread_join(b, &rb);
    printf("result %ld\n", (long)ra + (long)rb);
    return 0;
}
