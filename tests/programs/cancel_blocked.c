/*
 * cancel_blocked: a thread blocked in sleep(), whose wait a checkpoint re-issued through the
 * runtime, is cancelled with pthread_cancel: the unwinder must find its way from the runtime's
 * code back into the program's frames (its cleanup handler runs). Prints READY, waits for a
 * file "go", cancels, prints "canceled 1 cleanup 1".
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static volatile int cleaned, asleep;

static void cleanup(void *a)
{
    (void)a;
    cleaned = 1;
}

static void *sleeper(void *a)
{
    (void)a;
    pthread_cleanup_push(cleanup, NULL);
    asleep = 1;
    sleep(600);
    pthread_cleanup_pop(0);
    return NULL;
}

int main(void)
{
    int dir = open(".", O_RDONLY | O_DIRECTORY);
    pthread_t th;
    pthread_create(&th, NULL, sleeper, NULL);
    while (!asleep)
        usleep(1000);
    usleep(100000);
    printf("READY\n");
    fflush(stdout);
    while (faccessat(dir, "go", F_OK, 0) != 0)
        nanosleep(&(struct timespec){ 0, 20000000 }, NULL);
    pthread_cancel(th);
    void *r;
    pthread_join(th, &r);
    printf("canceled %d cleanup %d\n", r == PTHREAD_CANCELED, cleaned);
    return 0;
}
