/*
 * blocked_calls: one thread per blocking system call family, each blocked in its call while
 * the program is checkpointed; every EINTR the program did not cause and every early return is
 * fatal (exit 1 with a FAIL line).
 *
 * Usage: blocked_calls DIR [ROUNDS=4] [FAMILY...]   (compile with -pthread; DIR: a writable
 * directory for a UNIX socket; no FAMILY: all but the ones that need socket options restored)
 *
 * Round r: every family thread enters its call (a barrier, then the call); the main thread
 * waits 300 ms, prints "step r", sleeps 2.5 s (itself a blocked call: nanosleep without rem) and
 * then wakes the untimed families (writes a pipe, sends a signal, posts a semaphore...). Timed
 * families wait 1.5 s for something that never comes and must time out, not earlier
 * (CLOCK_MONOTONIC). The main thread waits for every thread to check its result, then starts the
 * next round. "result <n>" counts the calls that returned what they should.
 * The families "epoll" (an event loop that treats EINTR from epoll_wait as fatal) and "sleep"
 * (sleep(1) in a loop, fatal if it returns early) are the classic victims.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/select.h>
#include <sys/sem.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <linux/futex.h>

#define T_MS 1500
#define D_MS 2500
#define SIG_WAKE SIGUSR1
#define SIG_WAIT (SIGRTMIN + 2)
#define SIG_TWAIT (SIGRTMIN + 3)

static int rounds = 4;
static pthread_barrier_t start_b, end_b;
static long ok_calls;
static pthread_mutex_t ok_lock = PTHREAD_MUTEX_INITIALIZER;
static const char *dir;

static void fail(const char *fam, int round, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    printf("FAIL %s round %d: %s\n", fam, round, msg);
    fflush(stdout);
    _exit(1);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void good(void)
{
    pthread_mutex_lock(&ok_lock);
    ok_calls++;
    pthread_mutex_unlock(&ok_lock);
}

/* A timed wait returned r with errno e after started at t0: it must have timed out (r == want,
 * errno == want_errno when r == -1) and not before T_MS. */
static void timed_ok(const char *fam, int round, long r, long want, int e, int want_errno, int64_t t0)
{
    int64_t el = now_ms() - t0;
    if (r == -1 && e == EINTR)
        fail(fam, round, "EINTR after %lld ms", (long long)el);
    if (r != want || (r == -1 && e != want_errno))
        fail(fam, round, "returned %ld errno %d (%s), expected %ld", r, e, strerror(e), want);
    if (el < T_MS)
        fail(fam, round, "returned early, after %lld ms of %d", (long long)el, T_MS);
    good();
}

static void no_eintr(const char *fam, int round, long r, int e)
{
    if (r < 0 && e == EINTR)
        fail(fam, round, "EINTR");
    if (r < 0)
        fail(fam, round, "error %d (%s)", e, strerror(e));
}

/* ---- the families ---- */

struct fam {
    const char *name;
    void (*setup)(struct fam *);
    void (*wait)(struct fam *, int round);
    void (*wake)(struct fam *, int round);
    int restorable; /* survives a restart (socket timeouts do not) */
    pthread_t th;
    int fd[2], ep, id;
    volatile sig_atomic_t woken;
    sem_t sem;
    volatile uint32_t word;
};

static struct timespec ts_of(int ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    return ts;
}

static void setup_pipe(struct fam *f)
{
    if (pipe(f->fd) != 0) {
        perror("pipe");
        exit(2);
    }
}

static void wake_pipe(struct fam *f, int round)
{
    char c = (char)round;
    if (write(f->fd[1], &c, 1) != 1)
        fail(f->name, round, "write");
}

static void drain(struct fam *f, int round)
{
    char c;
    long r = read(f->fd[0], &c, 1);
    no_eintr(f->name, round, r, errno);
    if (r != 1 || c != (char)round)
        fail(f->name, round, "read %ld byte %d", r, c);
}

static void setup_epoll(struct fam *f)
{
    setup_pipe(f);
    f->ep = epoll_create1(0);
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 77 };
    epoll_ctl(f->ep, EPOLL_CTL_ADD, f->fd[0], &ev);
}

static void wait_epoll(struct fam *f, int round)
{
    struct epoll_event ev;
    int r = epoll_wait(f->ep, &ev, 1, -1);
    if (r < 0 && errno == EINTR)
        fail(f->name, round, "epoll_wait: EINTR is fatal for this event loop");
    no_eintr(f->name, round, r, errno);
    if (r != 1 || ev.data.u64 != 77)
        fail(f->name, round, "epoll_wait returned %d", r);
    drain(f, round);
    good();
}

static void wait_epoll_pwait(struct fam *f, int round)
{
    struct epoll_event ev;
    sigset_t m;
    sigemptyset(&m);
    int r = epoll_pwait(f->ep, &ev, 1, -1, &m);
    no_eintr(f->name, round, r, errno);
    if (r != 1)
        fail(f->name, round, "epoll_pwait returned %d", r);
    drain(f, round);
    good();
}

static void setup_empty_epoll(struct fam *f)
{
    setup_pipe(f);
    f->ep = epoll_create1(0);
    struct epoll_event ev = { .events = EPOLLIN };
    epoll_ctl(f->ep, EPOLL_CTL_ADD, f->fd[0], &ev);
}

static void wait_epoll_t(struct fam *f, int round)
{
    struct epoll_event ev;
    int64_t t0 = now_ms();
    int r = epoll_wait(f->ep, &ev, 1, T_MS);
    timed_ok(f->name, round, r, 0, errno, 0, t0);
}

static void wait_poll(struct fam *f, int round)
{
    struct pollfd p = { .fd = f->fd[0], .events = POLLIN };
    int r = poll(&p, 1, -1);
    no_eintr(f->name, round, r, errno);
    if (r != 1 || !(p.revents & POLLIN))
        fail(f->name, round, "poll returned %d", r);
    drain(f, round);
    good();
}

static void wait_poll_t(struct fam *f, int round)
{
    struct pollfd p = { .fd = f->fd[0], .events = POLLIN };
    int64_t t0 = now_ms();
    int r = poll(&p, 1, T_MS);
    timed_ok(f->name, round, r, 0, errno, 0, t0);
}

static void wait_ppoll_t(struct fam *f, int round)
{
    struct pollfd p = { .fd = f->fd[0], .events = POLLIN };
    struct timespec ts = ts_of(T_MS);
    int64_t t0 = now_ms();
    int r = ppoll(&p, 1, &ts, NULL);
    timed_ok(f->name, round, r, 0, errno, 0, t0);
}

static void wait_select(struct fam *f, int round)
{
    fd_set rd;
    FD_ZERO(&rd);
    FD_SET(f->fd[0], &rd);
    int r = select(f->fd[0] + 1, &rd, NULL, NULL, NULL);
    no_eintr(f->name, round, r, errno);
    if (r != 1 || !FD_ISSET(f->fd[0], &rd))
        fail(f->name, round, "select returned %d", r);
    drain(f, round);
    good();
}

static void wait_select_t(struct fam *f, int round)
{
    fd_set rd;
    FD_ZERO(&rd);
    FD_SET(f->fd[0], &rd);
    struct timeval tv = { T_MS / 1000, (T_MS % 1000) * 1000 };
    int64_t t0 = now_ms();
    int r = select(f->fd[0] + 1, &rd, NULL, NULL, &tv);
    timed_ok(f->name, round, r, 0, errno, 0, t0);
    if (tv.tv_sec != 0 || tv.tv_usec != 0)
        fail(f->name, round, "select left %ld.%06ld s in its timeval after timing out", (long)tv.tv_sec, (long)tv.tv_usec);
}

static void wait_pselect_t(struct fam *f, int round)
{
    fd_set rd;
    FD_ZERO(&rd);
    FD_SET(f->fd[0], &rd);
    struct timespec ts = ts_of(T_MS);
    int64_t t0 = now_ms();
    int r = pselect(f->fd[0] + 1, &rd, NULL, NULL, &ts, NULL);
    timed_ok(f->name, round, r, 0, errno, 0, t0);
}

static void wait_nanosleep(struct fam *f, int round)
{
    struct timespec ts = ts_of(T_MS), rem = { 99, 0 };
    int64_t t0 = now_ms();
    int r = nanosleep(&ts, &rem);
    timed_ok(f->name, round, r, 0, errno, 0, t0);
}

static void wait_usleep(struct fam *f, int round)
{
    int64_t t0 = now_ms();
    int r = usleep(T_MS * 1000);
    timed_ok(f->name, round, r, 0, errno, 0, t0);
}

static void wait_clock_abs(struct fam *f, int round)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t t0 = now_ms();
    ts.tv_sec += T_MS / 1000;
    ts.tv_nsec += (T_MS % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    int r = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
    if (r == EINTR)
        fail(f->name, round, "EINTR");
    timed_ok(f->name, round, r, 0, 0, 0, t0);
}

static void wait_sleep(struct fam *f, int round)
{
    int64_t t0 = now_ms();
    unsigned left = sleep(2);
    if (left != 0)
        fail(f->name, round, "sleep(2) returned early with %u s left", left);
    if (now_ms() - t0 < 2000)
        fail(f->name, round, "sleep(2) returned after %lld ms", (long long)(now_ms() - t0));
    good();
}

static void on_wake(int sig)
{
    (void)sig;
}

static void wait_pause(struct fam *f, int round)
{
    /* SIG_WAKE is unblocked here; its handler is on_wake (no flag: woken is set by the waker
     * before it sends the signal, so an EINTR without it is ours to report). */
    int r = pause();
    if (r != -1 || errno != EINTR)
        fail(f->name, round, "pause returned %d", r);
    if (!f->woken)
        fail(f->name, round, "pause returned EINTR before the program sent its signal");
    f->woken = 0;
    good();
}

static void wait_sigsuspend(struct fam *f, int round)
{
    sigset_t m;
    pthread_sigmask(SIG_BLOCK, NULL, &m);
    sigdelset(&m, SIG_WAKE);
    int r = sigsuspend(&m);
    if (r != -1 || errno != EINTR)
        fail(f->name, round, "sigsuspend returned %d", r);
    if (!f->woken)
        fail(f->name, round, "sigsuspend returned before the program sent its signal");
    f->woken = 0;
    good();
}

static void wake_signal(struct fam *f, int round)
{
    (void)round;
    f->woken = 1;
    pthread_kill(f->th, SIG_WAKE);
}

static void wait_sigwait(struct fam *f, int round)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIG_WAIT);
    siginfo_t si;
    int r = sigwaitinfo(&s, &si);
    no_eintr(f->name, round, r, errno);
    if (r != SIG_WAIT || si.si_value.sival_int != round)
        fail(f->name, round, "sigwaitinfo returned %d value %d", r, si.si_value.sival_int);
    good();
}

static void wake_sigqueue(struct fam *f, int round)
{
    union sigval v = { .sival_int = round };
    pthread_sigqueue(f->th, SIG_WAIT, v);
}

static void wait_sigtimedwait_t(struct fam *f, int round)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIG_TWAIT);
    struct timespec ts = ts_of(T_MS);
    int64_t t0 = now_ms();
    int r = sigtimedwait(&s, NULL, &ts);
    timed_ok(f->name, round, r, -1, errno, EAGAIN, t0);
}

static void wait_futex(struct fam *f, int round)
{
    while (f->word != (uint32_t)round) {
        long r = syscall(SYS_futex, &f->word, FUTEX_WAIT_PRIVATE, f->word, NULL, NULL, 0);
        if (r < 0 && errno == EAGAIN)
            continue;
        no_eintr(f->name, round, r, errno);
    }
    good();
}

static void wake_futex(struct fam *f, int round)
{
    __atomic_store_n(&f->word, (uint32_t)round, __ATOMIC_SEQ_CST);
    syscall(SYS_futex, &f->word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void wait_futex_t(struct fam *f, int round)
{
    struct timespec ts = ts_of(T_MS);
    int64_t t0 = now_ms();
    long r = syscall(SYS_futex, &f->word, FUTEX_WAIT_PRIVATE, f->word, &ts, NULL, 0);
    timed_ok(f->name, round, r, -1, errno, ETIMEDOUT, t0);
}

static void setup_sem(struct fam *f)
{
    sem_init(&f->sem, 0, 0);
}

static void wait_sem(struct fam *f, int round)
{
    int r = sem_wait(&f->sem);
    no_eintr(f->name, round, r, errno);
    good();
}

static void wake_sem(struct fam *f, int round)
{
    (void)round;
    sem_post(&f->sem);
}

/* A System V object: its id goes to DIR/ipc-ids, so that a test can remove it if we die. */
static int note_ipc(const char *kind, int id)
{
    if (id < 0) {
        perror(kind);
        exit(2);
    }
    char p[512];
    snprintf(p, sizeof p, "%s/ipc-ids", dir);
    FILE *o = fopen(p, "a");
    if (o) {
        fprintf(o, "%s %d\n", kind, id);
        fclose(o);
    }
    return id;
}

static void setup_sysv_sem(struct fam *f)
{
    f->id = note_ipc("sem", semget(IPC_PRIVATE, 1, 0600));
}

static void wait_semop(struct fam *f, int round)
{
    struct sembuf op = { 0, -1, 0 };
    int r = semop(f->id, &op, 1);
    no_eintr(f->name, round, r, errno);
    good();
}

static void wake_semop(struct fam *f, int round)
{
    struct sembuf op = { 0, 1, 0 };
    if (semop(f->id, &op, 1) != 0)
        fail(f->name, round, "semop +1: %s", strerror(errno));
}

static void wait_semtimedop_t(struct fam *f, int round)
{
    struct sembuf op = { 0, -1, 0 };
    struct timespec ts = ts_of(T_MS);
    int64_t t0 = now_ms();
    int r = semtimedop(f->id, &op, 1, &ts);
    timed_ok(f->name, round, r, -1, errno, EAGAIN, t0);
}

static void setup_msg(struct fam *f)
{
    f->id = note_ipc("msg", msgget(IPC_PRIVATE, 0600));
}

struct msg {
    long type;
    int round;
};

static void wait_msgrcv(struct fam *f, int round)
{
    struct msg m;
    long r = msgrcv(f->id, &m, sizeof m.round, 0, 0);
    no_eintr(f->name, round, r, errno);
    if (m.round != round)
        fail(f->name, round, "msgrcv got round %d", m.round);
    good();
}

static void wake_msgsnd(struct fam *f, int round)
{
    struct msg m = { 1, round };
    if (msgsnd(f->id, &m, sizeof m.round, 0) != 0)
        fail(f->name, round, "msgsnd: %s", strerror(errno));
}

static struct sockaddr_un accept_addr;

static void setup_accept(struct fam *f)
{
    f->fd[0] = socket(AF_UNIX, SOCK_STREAM, 0);
    accept_addr.sun_family = AF_UNIX;
    snprintf(accept_addr.sun_path, sizeof accept_addr.sun_path, "%s/accept-%d.sock", dir, (int)getpid());
    unlink(accept_addr.sun_path);
    if (bind(f->fd[0], (struct sockaddr *)&accept_addr, sizeof accept_addr) != 0 || listen(f->fd[0], 4) != 0) {
        perror("bind/listen");
        exit(2);
    }
}

static void wait_accept(struct fam *f, int round)
{
    int c = accept(f->fd[0], NULL, NULL);
    no_eintr(f->name, round, c, errno);
    char b;
    long r = read(c, &b, 1);
    if (r != 1 || b != (char)round)
        fail(f->name, round, "read from the accepted connection: %ld", r);
    close(c);
    good();
}

static void wake_connect(struct fam *f, int round)
{
    (void)f;
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    if (connect(s, (struct sockaddr *)&accept_addr, sizeof accept_addr) != 0)
        fail("accept", round, "connect: %s", strerror(errno));
    char b = (char)round;
    if (write(s, &b, 1) != 1)
        fail("accept", round, "write");
    close(s);
}

static void wait_read(struct fam *f, int round)
{
    drain(f, round);
    good();
}

static void setup_spair(struct fam *f)
{
    socketpair(AF_UNIX, SOCK_STREAM, 0, f->fd);
}

static void wait_recv(struct fam *f, int round)
{
    char c;
    long r = recv(f->fd[0], &c, 1, 0);
    no_eintr(f->name, round, r, errno);
    if (r != 1 || c != (char)round)
        fail(f->name, round, "recv %ld", r);
    good();
}

static void wake_recv(struct fam *f, int round)
{
    char c = (char)round;
    if (write(f->fd[1], &c, 1) != 1)
        fail(f->name, round, "send");
}

static void setup_spair_timeout(struct fam *f)
{
    setup_spair(f);
    struct timeval tv = { T_MS / 1000, (T_MS % 1000) * 1000 };
    setsockopt(f->fd[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

static void wait_recv_t(struct fam *f, int round)
{
    char c;
    int64_t t0 = now_ms();
    long r = recv(f->fd[0], &c, 1, 0);
    timed_ok(f->name, round, r, -1, errno, EAGAIN, t0);
}

static struct fam fams[] = {
    { "epoll", setup_epoll, wait_epoll, wake_pipe, 1 },
    { "epoll_pwait", setup_epoll, wait_epoll_pwait, wake_pipe, 1 },
    { "epoll_t", setup_empty_epoll, wait_epoll_t, NULL, 1 },
    { "poll", setup_pipe, wait_poll, wake_pipe, 1 },
    { "poll_t", setup_pipe, wait_poll_t, NULL, 1 },
    { "ppoll_t", setup_pipe, wait_ppoll_t, NULL, 1 },
    { "select", setup_pipe, wait_select, wake_pipe, 1 },
    { "select_t", setup_pipe, wait_select_t, NULL, 1 },
    { "pselect_t", setup_pipe, wait_pselect_t, NULL, 1 },
    { "nanosleep", NULL, wait_nanosleep, NULL, 1 },
    { "usleep", NULL, wait_usleep, NULL, 1 },
    { "clock_abs", NULL, wait_clock_abs, NULL, 1 },
    { "sleep", NULL, wait_sleep, NULL, 1 },
    { "pause", NULL, wait_pause, wake_signal, 1 },
    { "sigsuspend", NULL, wait_sigsuspend, wake_signal, 1 },
    { "sigwaitinfo", NULL, wait_sigwait, wake_sigqueue, 1 },
    { "sigtimedwait_t", NULL, wait_sigtimedwait_t, NULL, 1 },
    { "futex", NULL, wait_futex, wake_futex, 1 },
    { "futex_t", NULL, wait_futex_t, NULL, 1 },
    { "sem_wait", setup_sem, wait_sem, wake_sem, 1 },
    { "semop", setup_sysv_sem, wait_semop, wake_semop, 1 },
    { "semtimedop_t", setup_sysv_sem, wait_semtimedop_t, NULL, 1 },
    { "msgrcv", setup_msg, wait_msgrcv, wake_msgsnd, 1 },
    { "accept", setup_accept, wait_accept, wake_connect, 1 },
    { "read", setup_pipe, wait_read, wake_pipe, 1 },
    { "recv", setup_spair, wait_recv, wake_recv, 1 },
    { "recv_t", setup_spair_timeout, wait_recv_t, NULL, 0 },
};
#define NFAMS (sizeof fams / sizeof fams[0])

static int chosen[NFAMS];

static void *family(void *arg)
{
    struct fam *f = arg;
    for (int r = 1; r <= rounds; r++) {
        pthread_barrier_wait(&start_b);
        f->wait(f, r);
        pthread_barrier_wait(&end_b);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: blocked_calls DIR [ROUNDS] [FAMILY...]\n");
        return 2;
    }
    dir = argv[1];
    if (argc > 2)
        rounds = atoi(argv[2]);
    int n = 0;
    for (size_t i = 0; i < NFAMS; i++) {
        int want = argc <= 3 ? fams[i].restorable : 0;
        for (int a = 3; a < argc; a++)
            if (strcmp(argv[a], fams[i].name) == 0)
                want = 1;
        chosen[i] = want;
        n += want;
    }

    /* Every thread blocks the wake-up signals; pause/sigsuspend threads unblock SIG_WAKE. */
    struct sigaction sa = { 0 };
    sa.sa_handler = on_wake;
    sigaction(SIG_WAKE, &sa, NULL);
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIG_WAKE);
    sigaddset(&block, SIG_WAIT);
    sigaddset(&block, SIG_TWAIT);
    pthread_sigmask(SIG_BLOCK, &block, NULL);

    printf("start blocked_calls families=%d rounds=%d\n", n, rounds);
    fflush(stdout);
    pthread_barrier_init(&start_b, NULL, n + 1);
    pthread_barrier_init(&end_b, NULL, n + 1);
    for (size_t i = 0; i < NFAMS; i++) {
        if (!chosen[i])
            continue;
        if (fams[i].setup)
            fams[i].setup(&fams[i]);
        sigset_t m = block;
        if (fams[i].wait == wait_pause)
            sigdelset(&m, SIG_WAKE);
        pthread_sigmask(SIG_SETMASK, &m, NULL);
        pthread_create(&fams[i].th, NULL, family, &fams[i]);
        pthread_sigmask(SIG_SETMASK, &block, NULL);
    }
    for (int r = 1; r <= rounds; r++) {
        pthread_barrier_wait(&start_b);
        struct timespec settle = ts_of(300), d = ts_of(D_MS);
        nanosleep(&settle, NULL);
        printf("step %d blocked\n", r);
        fflush(stdout);
        int64_t t0 = now_ms();
        if (nanosleep(&d, NULL) != 0)
            fail("main", r, "nanosleep: %s", strerror(errno));
        if (now_ms() - t0 < D_MS)
            fail("main", r, "nanosleep returned early");
        for (size_t i = 0; i < NFAMS; i++)
            if (chosen[i] && fams[i].wake)
                fams[i].wake(&fams[i], r);
        pthread_barrier_wait(&end_b);
    }
    for (size_t i = 0; i < NFAMS; i++) {
        if (!chosen[i])
            continue;
        pthread_join(fams[i].th, NULL);
        if (fams[i].id > 0 && fams[i].setup == setup_sysv_sem)
            semctl(fams[i].id, 0, IPC_RMID);
        if (fams[i].id > 0 && fams[i].setup == setup_msg)
            msgctl(fams[i].id, IPC_RMID, NULL);
    }
    unlink(accept_addr.sun_path);
    printf("result %ld\n", ok_calls);
    return 0;
}
