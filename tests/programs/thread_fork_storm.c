/*
 * thread_fork_storm: several threads fork all the time, while the others are inside hooks of
 * the runtime that take its locks (inotify_add_watch and close take the gate and the table of
 * inotify watch numbers), and each child takes them too before it exits or execs itself to
 * exit. A lock of the runtime another thread held at the fork (a program thread in a hook, the
 * checkpoint thread reading the tables) was copied held into the child, whose first hook then
 * waited for it forever: the parent's waitpid never returned.
 *
 * One more thread does nothing but those hooks, so that at most forks one of the locks is held.
 *
 * Usage: thread_fork_storm [STEPS=30] [PER_STEP=8] [THREADS=4]
 * Each step, every thread forks PER_STEP children one after the other and waits for each,
 * mixing its wait status into its state; then the main thread prints "step i". At the end:
 * "result <state>". Deterministic.
 */
#define _GNU_SOURCE
#include "tree_common.h"
#include <pthread.h>
#include <sys/inotify.h>

#define MAX_THREADS 16

extern char **environ;
static const char *self;
static int ifd;
static long steps, per, nthreads;
static pthread_barrier_t step_done, step_go;
static uint64_t states[MAX_THREADS];
static volatile int done;

/* Hooks that take the runtime's locks. */
static void touch_locks(uint32_t mask)
{
    if (inotify_add_watch(ifd, ".", mask) < 0) {
        perror("inotify_add_watch");
        _exit(97);
    }
    int d = dup(ifd);
    if (d < 0 || close(d) != 0) {
        perror("dup/close");
        _exit(98);
    }
}

static void child(long k, char *code)
{
    touch_locks(IN_CREATE);
    if (k % 2) {
        char *argv[] = { (char *)self, "exit", code, NULL };
        execve(self, argv, environ);
        _exit(99);
    }
    _exit(atoi(code));
}

static void *worker(void *arg)
{
    long t = (long)arg;
    for (long i = 1; i <= steps; i++) {
        for (long j = 0; j < per; j++) {
            long k = (t * steps + i) * per + j;
            char code[16];
            snprintf(code, sizeof code, "%ld", k % 61);
            pid_t pid = fork();
            if (pid < 0) {
                perror("fork");
                exit(3);
            }
            if (pid == 0)
                child(k, code);
            int st;
            while (waitpid(pid, &st, 0) < 0) {
                if (errno != EINTR) {
                    perror("waitpid");
                    exit(4);
                }
            }
            if (!WIFEXITED(st) || WEXITSTATUS(st) != k % 61)
                fprintf(stderr, "thread_fork_storm: child %ld ended with status %#x\n", k, st);
            states[t] = mix(states[t] ^ (uint64_t)st ^ ((uint64_t)k << 20));
            touch_locks(IN_DELETE);
        }
        pthread_barrier_wait(&step_done);
        pthread_barrier_wait(&step_go);
    }
    return NULL;
}

static void *hammer(void *arg)
{
    (void)arg;
    while (!done)
        touch_locks(IN_MODIFY);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[1], "exit") == 0)
        return atoi(argv[2]);
    self = argv[0];
    steps = argc > 1 ? atol(argv[1]) : 30;
    per = argc > 2 ? atol(argv[2]) : 8;
    nthreads = argc > 3 ? atol(argv[3]) : 4;
    if (nthreads < 1 || nthreads > MAX_THREADS)
        return 2;
    setvbuf(stdout, NULL, _IONBF, 0);
    printf("start thread_fork_storm %ld %ld %ld\n", steps, per, nthreads);
    ifd = inotify_init1(IN_CLOEXEC);
    if (ifd < 0) {
        perror("inotify_init1");
        return 2;
    }
    pthread_barrier_init(&step_done, NULL, (unsigned)nthreads + 1);
    pthread_barrier_init(&step_go, NULL, (unsigned)nthreads + 1);
    pthread_t th[MAX_THREADS];
    for (long t = 0; t < nthreads; t++)
        if (pthread_create(&th[t], NULL, worker, (void *)t) != 0)
            return 2;
    pthread_t hm;
    if (pthread_create(&hm, NULL, hammer, NULL) != 0)
        return 2;
    uint64_t state = 0x5eed;
    for (long i = 1; i <= steps; i++) {
        pthread_barrier_wait(&step_done);
        for (long t = 0; t < nthreads; t++)
            state = mix(state ^ states[t]);
        printf("step %ld\n", i);
        fprintf(stderr, "state after step %ld: %016llx\n", i, (unsigned long long)state);
        pthread_barrier_wait(&step_go);
    }
    for (long t = 0; t < nthreads; t++)
        pthread_join(th[t], NULL);
    done = 1;
    pthread_join(hm, NULL);
    printf("result %016llx\n", (unsigned long long)state);
    return 0;
}
