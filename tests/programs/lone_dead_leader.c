/* A program alone whose thread-group leader has exited (pthread_exit in main, as zdtm's
 * pthread02): its one other thread counts, writing "step N" every 100 ms and at the end
 * "result SUM" to stdout, the stdio ckpt-run (after a restart ckpt-restart) gave it.
 *
 *   lone_dead_leader STEPS */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static unsigned long steps;

static void *count(void *arg) {
    (void)arg;
    struct timespec t = {0, 100000000};
    unsigned long sum = 0;
    for (unsigned long i = 1; i <= steps; i++) {
        sum = sum * 31 + i;
        printf("step %lu\n", i);
        fflush(stdout);
        nanosleep(&t, NULL);
    }
    printf("result %lu\n", sum);
    fflush(stdout);
    exit(0);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: lone_dead_leader STEPS\n");
        return 2;
    }
    steps = strtoul(argv[1], NULL, 10);
    pthread_t th;
    if (pthread_create(&th, NULL, count, NULL) != 0) {
        perror("pthread_create");
        return 1;
    }
    pthread_exit(NULL);
}
