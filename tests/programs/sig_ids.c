/* Signals, timers and identity: per-thread masks, pending signals (per thread and process-wide),
 * sigaltstack, setitimer, a POSIX timer, getpid/gettid kept and signals sent by them arriving,
 * cwd/umask/rlimit, thread names, CPU affinity, and a program that blocks and handles the
 * checkpoint signal (SIGUSR2) itself. Prints READY, waits for "go", prints one line per check. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t got_usr1, got_hup, got_urg, got_usr2, got_rt;
static volatile pid_t winch_tid;
static volatile long rt_value;
static volatile pid_t worker_tid;
static char altstack[65536];
static char worker_report[512];

static void on_usr1(int s) { (void)s; got_usr1++; }
static void on_hup(int s) { (void)s; got_hup++; }
static void on_urg(int s) { (void)s; got_urg++; }
static void on_usr2(int s) { (void)s; got_usr2++; }
static void on_winch(int s) { (void)s; winch_tid = gettid(); }
static void on_rt(int s, siginfo_t *si, void *u) { (void)s; (void)u; got_rt++; rt_value = (long)si->si_value.sival_ptr; }

static int startdir = -1;
static void wait_go(void) {
    struct timespec ts = {0, 20 * 1000 * 1000};
    while (faccessat(startdir, "go", F_OK, 0) != 0) nanosleep(&ts, NULL);
}

static void *worker(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "ckpt-worker");
    worker_tid = gettid();
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGTERM);
    sigaddset(&m, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &m, NULL);
    sigemptyset(&m);
    sigaddset(&m, SIGWINCH);
    pthread_sigmask(SIG_UNBLOCK, &m, NULL);
    stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack};
    sigaltstack(&ss, NULL);
    wait_go();
    sigset_t now;
    pthread_sigmask(SIG_BLOCK, NULL, &now);
    stack_t cur;
    sigaltstack(NULL, &cur);
    char name[32];
    pthread_getname_np(pthread_self(), name, sizeof name);
    snprintf(worker_report, sizeof worker_report, "worker: mask TERM %d USR1 %d INT %d, altstack %d, name %s, tid same %d\n",
             sigismember(&now, SIGTERM), sigismember(&now, SIGUSR1), sigismember(&now, SIGINT),
             cur.ss_sp == altstack && cur.ss_size == sizeof altstack && !(cur.ss_flags & SS_DISABLE), name, gettid() == worker_tid);
    struct timespec ts = {0, 300 * 1000 * 1000};
    while (!winch_tid) nanosleep(&ts, NULL);
    return NULL;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    startdir = open(".", O_RDONLY | O_DIRECTORY);
    signal(SIGUSR1, on_usr1);
    signal(SIGHUP, on_hup);
    signal(SIGURG, on_urg);
    signal(SIGWINCH, on_winch);
    signal(SIGUSR2, on_usr2); /* the checkpoint signal: the program's handler must not take it */
    struct sigaction sa = {.sa_sigaction = on_rt, .sa_flags = SA_SIGINFO};
    sigaction(SIGRTMIN + 2, &sa, NULL);
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGUSR1);
    sigaddset(&m, SIGHUP);
    sigaddset(&m, SIGUSR2);
    sigaddset(&m, SIGWINCH);
    pthread_sigmask(SIG_BLOCK, &m, NULL);
    pthread_t th;
    pthread_create(&th, NULL, worker, NULL);
    pid_t pid = getpid(), tid = gettid();
    raise(SIGUSR1);      /* pending on the main thread */
    kill(pid, SIGHUP);   /* pending process-wide: both threads block it */
    mkdir("sub", 0700);
    chdir("sub");
    umask(027);
    struct rlimit rl = {200, 4096};
    setrlimit(RLIMIT_NOFILE, &rl);
    prctl(PR_SET_NAME, "ckpt-main");
    cpu_set_t cs;
    CPU_ZERO(&cs);
    CPU_SET(0, &cs);
    sched_setaffinity(0, sizeof cs, &cs);
    struct itimerval it = {{7, 0}, {100, 0}};
    setitimer(ITIMER_REAL, &it, NULL);
    signal(SIGALRM, SIG_IGN);
    timer_t pt;
    struct sigevent se = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGRTMIN + 2, .sigev_value.sival_ptr = (void *)0x1234};
    timer_create(CLOCK_MONOTONIC, &se, &pt);
    struct itimerspec its = {{5, 0}, {100, 0}};
    timer_settime(pt, 0, &its, NULL);
    while (!worker_tid) sched_yield();
    printf("READY\n");
    fflush(stdout);
    wait_go();

    sigset_t pend;
    sigpending(&pend);
    printf("pending: USR1 %d HUP %d\n", sigismember(&pend, SIGUSR1), sigismember(&pend, SIGHUP));
    printf("ids same: pid %d tid %d\n", getpid() == pid, gettid() == tid);
    kill(pid, SIGURG); /* process-directed: may be handled by either thread */
    for (int i = 0; i < 500 && !got_urg; i++) nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    printf("kill(getpid()) arrived: %d\n", got_urg);
    sigemptyset(&m);
    sigaddset(&m, SIGUSR1);
    sigaddset(&m, SIGHUP);
    pthread_sigmask(SIG_UNBLOCK, &m, NULL);
    printf("delivered after unblock: USR1 %d HUP %d\n", got_usr1, got_hup);
    tgkill(pid, worker_tid, SIGWINCH);
    pthread_join(th, NULL);
    printf("%s", worker_report);
    printf("tgkill(pid, worker tid) arrived in the worker: %d\n", winch_tid == worker_tid);
    struct itimerval cur;
    getitimer(ITIMER_REAL, &cur);
    printf("itimer: interval %ld, remaining in (50,100]: %d\n", (long)cur.it_interval.tv_sec, cur.it_value.tv_sec > 50 && cur.it_value.tv_sec <= 100);
    struct itimerspec pcur;
    printf("posix timer: gettime %d", timer_gettime(pt, &pcur));
    printf(", interval %ld, remaining in (50,100]: %d\n", (long)pcur.it_interval.tv_sec, pcur.it_value.tv_sec > 50 && pcur.it_value.tv_sec <= 100);
    struct itimerspec soon = {{0, 0}, {0, 20 * 1000 * 1000}};
    timer_settime(pt, 0, &soon, NULL);
    struct timespec ts = {0, 20 * 1000 * 1000};
    for (int i = 0; i < 500 && !got_rt; i++) nanosleep(&ts, NULL);
    printf("posix timer fired: %d value %lx\n", got_rt, rt_value);
    char cwd[4096];
    getcwd(cwd, sizeof cwd);
    mode_t um = umask(0);
    getrlimit(RLIMIT_NOFILE, &rl);
    printf("cwd ends in /sub: %d, umask %03o, nofile %ld/%ld\n", strlen(cwd) > 4 && !strcmp(cwd + strlen(cwd) - 4, "/sub"), um, (long)rl.rlim_cur, (long)rl.rlim_max);
    char name[32];
    prctl(PR_GET_NAME, name);
    sched_getaffinity(0, sizeof cs, &cs);
    printf("name %s, affinity count %d cpu0 %d\n", name, CPU_COUNT(&cs), CPU_ISSET(0, &cs));
    sigpending(&pend);
    printf("usr2: handler calls %d, pending %d\n", got_usr2, sigismember(&pend, SIGUSR2));
    return 0;
}
