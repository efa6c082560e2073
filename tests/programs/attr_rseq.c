/* rseq areas the program registers itself (librseq's way, and CRIU's rseq00): the main thread
 * and a worker drop glibc's registration and register an area of their own; another worker
 * keeps glibc's. Prints READY, waits for "go", then for each thread whether its area is
 * registered (registering it again gives EBUSY) and kept up to date by the kernel. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/rseq.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static __thread struct rseq own __attribute__((aligned(32)));
static int dir;
static pthread_barrier_t ready;

static void wait_go(void) {
    struct timespec ts = {0, 20 * 1000 * 1000};
    while (faccessat(dir, "go", F_OK, 0) != 0) nanosleep(&ts, NULL);
}

static struct rseq *glibc_area(void) { return (struct rseq *)((char *)__builtin_thread_pointer() + __rseq_offset); }

static void take_own(void) {
    struct rseq *g = glibc_area();
    unsigned size = __rseq_size < 32 ? 32 : __rseq_size;
    if (__rseq_size) syscall(SYS_rseq, g, size, RSEQ_FLAG_UNREGISTER, RSEQ_SIG);
    own.cpu_id = RSEQ_CPU_ID_UNINITIALIZED;
    if (syscall(SYS_rseq, &own, sizeof own, 0, RSEQ_SIG)) printf("register: %s\n", strerror(errno));
}

static void show(const char *who, struct rseq *area, int own_area) {
    int r = syscall(SYS_rseq, area, own_area ? sizeof own : (__rseq_size < 32 ? 32 : __rseq_size), 0, RSEQ_SIG);
    area->cpu_id = RSEQ_CPU_ID_UNINITIALIZED;
    sched_yield();
    usleep(1000);
    printf("%s: %s area %s, updated by the kernel: %s\n", who, own_area ? "own" : "glibc's", r == -1 && errno == EBUSY ? "registered" : "NOT registered",
           (int)area->cpu_id >= 0 ? "yes" : "no");
    fflush(stdout);
}

static void *own_worker(void *arg) {
    (void)arg;
    take_own();
    pthread_barrier_wait(&ready);
    wait_go();
    show("worker", &own, 1);
    return NULL;
}

static void *glibc_worker(void *arg) {
    (void)arg;
    pthread_barrier_wait(&ready);
    wait_go();
    usleep(100 * 1000); /* after the other worker */
    if (__rseq_size) show("glibc worker", glibc_area(), 0);
    else printf("glibc worker: glibc registers no rseq area\n");
    return NULL;
}

int main(void) {
    dir = open(".", O_RDONLY | O_DIRECTORY);
    pthread_barrier_init(&ready, NULL, 3);
    pthread_t a, b;
    pthread_create(&a, NULL, own_worker, NULL);
    pthread_create(&b, NULL, glibc_worker, NULL);
    take_own();
    pthread_barrier_wait(&ready);
    printf("READY\n");
    fflush(stdout);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    show("main", &own, 1);
    return 0;
}
