/* A pidfd of one of the program's threads (pidfd_open(tid, PIDFD_THREAD), zdtm pidfd_of_thread),
 * and a dup of it: after a restart they still name that thread: pidfd_send_signal with
 * PIDFD_SIGNAL_THREAD through either reaches the thread itself (its handler sees its own tid),
 * fdinfo names the thread, and the flags and the dup's shared open file are kept. */
#include "files_common.h"
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>

#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL
#endif
#ifndef PIDFD_SIGNAL_THREAD
#define PIDFD_SIGNAL_THREAD 1
#endif

static volatile pid_t worker_tid, handled_by;
static volatile sig_atomic_t got;
static void on_usr1(int s) { (void)s; handled_by = syscall(SYS_gettid); got++; }

static void *worker(void *arg) {
    (void)arg;
    worker_tid = syscall(SYS_gettid);
    for (;;) pause();
    return NULL;
}

static int pidfd_open(pid_t pid, unsigned flags) { return syscall(SYS_pidfd_open, pid, flags); }
static int send_thread(int fd, int sig) { return syscall(SYS_pidfd_send_signal, fd, sig, NULL, PIDFD_SIGNAL_THREAD); }

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGUSR1, on_usr1);
    /* Only the worker takes SIGUSR1 sent to the process: a thread-directed one must reach it. */
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, worker, NULL) == 0, "pthread_create");
    pthread_sigmask(SIG_BLOCK, &usr1, NULL);
    while (!worker_tid) usleep(1000);
    pid_t tid = worker_tid;
    int a = pidfd_open(tid, PIDFD_THREAD | O_NONBLOCK);
    CHECK(a >= 0, "pidfd_open(thread)");
    int b = fcntl(a, F_DUPFD_CLOEXEC, 40);
    CHECK(b == 40, "dup");
    CHECK(send_thread(a, 0) == 0, "signal 0 before");
    ready();

    CHECK(send_thread(a, 0) == 0, "signal 0 through the thread's pidfd");
    CHECK(send_thread(a, SIGUSR1) == 0, "SIGUSR1 through the thread's pidfd");
    for (int i = 0; got < 1 && i < 5000; i++) usleep(1000);
    CHECK(send_thread(b, SIGUSR1) == 0, "SIGUSR1 through its dup");
    for (int i = 0; got < 2 && i < 5000; i++) usleep(1000);
    printf("handled by the thread: %d, times %d\n", handled_by == tid, got);
    printf("fdinfo names the thread: a %d, b %d\n", fdinfo_pid(a) == tid, fdinfo_pid(b) == tid);
    printf("flags: a thread %d nonblock %d cloexec %d, b cloexec %d\n", !!(fcntl(a, F_GETFL) & PIDFD_THREAD),
           !!(fcntl(a, F_GETFL) & O_NONBLOCK), !!(fcntl(a, F_GETFD) & FD_CLOEXEC), !!(fcntl(b, F_GETFD) & FD_CLOEXEC));
    fcntl(a, F_SETFL, PIDFD_THREAD);
    printf("one open file: %d\n", !(fcntl(b, F_GETFL) & O_NONBLOCK));
    return finish();
}
