/* Per-thread scheduling: a worker in SCHED_BATCH at nice 5 with the idle I/O class, another in
 * SCHED_IDLE with SCHED_RESET_ON_FORK and best-effort I/O priority 6, the main thread at nice 3.
 * Prints READY, waits for "go", then what each thread has (the workers first, in order). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define IOPRIO(class, level) (((class) << 13) | (level))
static int dir;
static pthread_barrier_t ready;
static sem_t shown;

static void wait_go(void) {
    struct timespec ts = {0, 20 * 1000 * 1000};
    while (faccessat(dir, "go", F_OK, 0) != 0) nanosleep(&ts, NULL);
}

static void show(const char *who) {
    int policy = sched_getscheduler(0);
    int prio = syscall(SYS_ioprio_get, 1 /* IOPRIO_WHO_PROCESS */, 0);
    printf("%s: policy %d%s, nice %d, io class %d level %d\n", who, policy & ~SCHED_RESET_ON_FORK, policy & SCHED_RESET_ON_FORK ? " (reset on fork)" : "",
           getpriority(PRIO_PROCESS, 0), prio >> 13, prio & 0x1fff);
    fflush(stdout);
}

static void *batch(void *arg) {
    (void)arg;
    struct sched_param p = {0};
    sched_setscheduler(0, SCHED_BATCH, &p);
    setpriority(PRIO_PROCESS, 0, 5);
    syscall(SYS_ioprio_set, 1, 0, IOPRIO(3 /* IDLE */, 0));
    pthread_barrier_wait(&ready);
    wait_go();
    show("batch worker");
    sem_post(&shown);
    return NULL;
}

static void *idle(void *arg) {
    (void)arg;
    struct sched_param p = {0};
    sched_setscheduler(0, SCHED_IDLE | SCHED_RESET_ON_FORK, &p);
    syscall(SYS_ioprio_set, 1, 0, IOPRIO(2 /* BE */, 6));
    pthread_barrier_wait(&ready);
    wait_go();
    while (sem_wait(&shown)) {
    }
    show("idle worker");
    return NULL;
}

int main(void) {
    dir = open(".", O_RDONLY | O_DIRECTORY);
    pthread_barrier_init(&ready, NULL, 3);
    sem_init(&shown, 0, 0);
    pthread_t a, b;
    pthread_create(&a, NULL, batch, NULL);
    pthread_create(&b, NULL, idle, NULL);
    setpriority(PRIO_PROCESS, 0, 3);
    pthread_barrier_wait(&ready);
    printf("READY\n");
    fflush(stdout);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    show("main");
    return 0;
}
