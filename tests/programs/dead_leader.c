/*
 * dead_leader: the main thread starts a worker and leaves with pthread_exit(); the process lives
 * on in the worker, its thread-group leader a zombie whose /proc/<pid> shows no memory and no
 * fds. The worker prints "start dead_leader", "step 1" .. "step N" (30 ms apart) and
 * "result <hash of the steps>".
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static int steps = 40;

static void *worker(void *a)
{
    (void)a;
    uint64_t h = 1469598103934665603ULL;
    printf("start dead_leader steps=%d\n", steps);
    fflush(stdout);
    for (int s = 1; s <= steps; s++) {
        nanosleep(&(struct timespec){ 0, 30000000 }, NULL);
        h = (h ^ (uint64_t)s) * 1099511628211ULL;
        printf("step %d %016llx\n", s, (unsigned long long)h);
        fflush(stdout);
    }
    printf("result %016llx\n", (unsigned long long)h);
    exit(0);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        steps = atoi(argv[1]);
    pthread_t th;
    pthread_create(&th, NULL, worker, NULL);
    pthread_exit(NULL);
}
