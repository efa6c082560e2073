/* Pending signals keep their siginfo across a restart: queued real-time signals with their
 * values and codes (process-wide, on the main thread, on another thread), a standard signal
 * from kill() (SI_USER, the sender's pid and uid) and one from tgkill() (SI_TKILL). After the
 * restart both threads unblock them and print what each handler received, in delivery order;
 * the count of each must be what was sent (not one per number). */
#include "files_common.h"
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>

struct got {
    int sig, code, pid_ok, uid_ok, value;
};
static struct got main_got[32], worker_got[32];
static int main_n, worker_n;
static pid_t main_tid, worker_tid;
static pthread_mutex_t hold = PTHREAD_MUTEX_INITIALIZER;

static void on_sig(int sig, siginfo_t *si, void *u) {
    (void)u;
    int mine = gettid() == main_tid;
    struct got *g = mine ? &main_got[main_n < 32 ? main_n++ : 31] : &worker_got[worker_n < 32 ? worker_n++ : 31];
    g->sig = sig;
    g->code = si->si_code;
    g->pid_ok = si->si_pid == getpid();
    g->uid_ok = si->si_uid == getuid();
    g->value = si->si_code == SI_QUEUE || si->si_code < -6 ? si->si_value.sival_int : -1;
}

static int queue_to(pid_t tid, int sig, int code, int value) {
    siginfo_t si;
    memset(&si, 0, sizeof si);
    si.si_signo = sig;
    si.si_code = code;
    si.si_pid = getpid();
    si.si_uid = getuid();
    si.si_value.sival_int = value;
    return syscall(SYS_rt_tgsigqueueinfo, getpid(), tid, sig, &si);
}

static void *worker(void *arg) {
    (void)arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    worker_tid = gettid();
    pthread_mutex_lock(&hold);
    pthread_sigmask(SIG_UNBLOCK, &all, NULL);
    pthread_mutex_unlock(&hold);
    return NULL;
}

static void print(const char *who, struct got *g, int n) {
    for (int i = 0; i < n; i++)
        printf("%s: sig %d code %d pid %d uid %d value %d\n", who, g[i].sig, g[i].code, g[i].pid_ok, g[i].uid_ok, g[i].value);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    main_tid = gettid();
    struct sigaction sa = {.sa_sigaction = on_sig, .sa_flags = SA_SIGINFO | SA_RESTART};
    sigfillset(&sa.sa_mask);
    int sigs[] = {SIGHUP, SIGUSR1, SIGURG, SIGRTMIN + 3, SIGRTMIN + 4};
    for (unsigned i = 0; i < sizeof sigs / sizeof *sigs; i++) sigaction(sigs[i], &sa, NULL);
    sigset_t m;
    sigfillset(&m);
    sigdelset(&m, SIGTERM);
    sigdelset(&m, SIGUSR2); /* the checkpoint signal */
    pthread_sigmask(SIG_BLOCK, &m, NULL);
    pthread_mutex_lock(&hold);
    pthread_t th;
    pthread_create(&th, NULL, worker, NULL);
    while (!__atomic_load_n(&worker_tid, __ATOMIC_ACQUIRE)) sched_yield();

    union sigval v;
    for (int i = 0; i < 3; i++) {
        v.sival_int = 100 + i;
        CHECK(sigqueue(getpid(), SIGRTMIN + 3, v) == 0, "sigqueue");
    }
    for (int i = 0; i < 3; i++) CHECK(queue_to(main_tid, SIGRTMIN + 4, -10 - i, 200 + i) == 0, "queue to main");
    for (int i = 0; i < 2; i++) CHECK(queue_to(worker_tid, SIGRTMIN + 4, -20 - i, 300 + i) == 0, "queue to worker");
    v.sival_int = 400;
    CHECK(queue_to(worker_tid, SIGUSR1, SI_QUEUE, 400) == 0, "queue USR1 to worker");
    CHECK(kill(getpid(), SIGURG) == 0, "kill");
    CHECK(syscall(SYS_tgkill, getpid(), main_tid, SIGHUP) == 0, "tgkill");
    ready();

    pthread_mutex_unlock(&hold);
    pthread_join(th, NULL);
    sigprocmask(SIG_UNBLOCK, &m, NULL);
    print("main", main_got, main_n);
    print("worker", worker_got, worker_n);
    /* Process-wide signals may be taken by either thread: the worker unblocked first. */
    int rt3 = 0, rt4m = 0, rt4w = 0;
    for (int i = 0; i < main_n; i++) rt3 += main_got[i].sig == SIGRTMIN + 3, rt4m += main_got[i].sig == SIGRTMIN + 4;
    for (int i = 0; i < worker_n; i++) rt3 += worker_got[i].sig == SIGRTMIN + 3, rt4w += worker_got[i].sig == SIGRTMIN + 4;
    CHECK(rt3 == 3 && rt4m == 3 && rt4w == 2, "counts %d %d %d", rt3, rt4m, rt4w);
    return finish();
}
