/* CPU-time clock ids, which name a process or thread: of the process (clock_getcpuclockid of
 * getpid()), of the main thread and of a worker (pthread_getcpuclockid), taken before the
 * checkpoint, and a POSIX timer on the process's. Prints READY, waits for "go", then whether
 * each still reads (clock_gettime, clock_getres), whether asking again gives the same id,
 * whether the timer is still there and whether a new timer can be made on the old id. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int dir;
static volatile int stop;

static void wait_go(void) {
    struct timespec ts = {0, 20 * 1000 * 1000};
    while (faccessat(dir, "go", F_OK, 0) != 0) nanosleep(&ts, NULL);
}

static void *worker(void *arg) {
    (void)arg;
    while (!stop) usleep(1000);
    return NULL;
}

static void show(const char *what, clockid_t c) {
    struct timespec ts;
    int r1 = clock_gettime(c, &ts);
    int e1 = errno;
    int r2 = clock_getres(c, &ts);
    printf("%s: clock_gettime %s, clock_getres %s\n", what, r1 ? strerror(e1) : "ok", r2 ? strerror(errno) : "ok");
}

int main(void) {
    dir = open(".", O_RDONLY | O_DIRECTORY);
    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
    clockid_t proc, self, other;
    if (clock_getcpuclockid(getpid(), &proc) || pthread_getcpuclockid(pthread_self(), &self) || pthread_getcpuclockid(t, &other)) return 2;
    struct sigevent ev = {.sigev_notify = SIGEV_NONE};
    timer_t timer, later;
    struct itimerspec its = {.it_value = {1000, 0}, .it_interval = {1000, 0}};
    if (timer_create(proc, &ev, &timer) || timer_settime(timer, 0, &its, NULL)) return 3;
    printf("READY\n");
    fflush(stdout);
    wait_go();
    show("process", proc);
    show("main thread", self);
    show("worker", other);
    clockid_t again;
    int r = clock_getcpuclockid(getpid(), &again);
    printf("clock_getcpuclockid(getpid()) again: %s\n", r ? strerror(r) : again == proc ? "the same id" : "another id");
    r = pthread_getcpuclockid(t, &again);
    printf("pthread_getcpuclockid(worker) again: %s\n", r ? strerror(r) : again == other ? "the same id" : "another id");
    struct itimerspec left;
    printf("timer on the process's CPU clock: %s\n", timer_gettime(timer, &left) ? strerror(errno) : left.it_value.tv_sec > 900 ? "armed" : "not armed");
    printf("new timer on the old id: %s\n", timer_create(proc, &ev, &later) ? strerror(errno) : "made");
    stop = 1;
    pthread_join(t, NULL);
    return 0;
}
