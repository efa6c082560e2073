/* The program's last thread leaves with a raw exit(2) (SYS_exit, which glibc does not count, as
 * CRIU's seccomp tests do): a worker thread does so first, then the main thread, once both have
 * printed. Prints READY, waits for "go", then "worker done" and "main done"; the process must end
 * (it lived on in the runtime's checkpoint thread). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int dir;

static void wait_go(void) {
    struct timespec ts = {0, 20 * 1000 * 1000};
    while (faccessat(dir, "go", F_OK, 0) != 0) nanosleep(&ts, NULL);
}

static void *worker(void *arg) {
    (void)arg;
    wait_go();
    printf("worker done\n");
    fflush(stdout);
    syscall(SYS_exit, 0);
    return NULL;
}

int main(void) {
    dir = open(".", O_RDONLY | O_DIRECTORY);
    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
    printf("READY\n");
    fflush(stdout);
    wait_go();
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
    printf("main done\n");
    fflush(stdout);
    syscall(SYS_exit, 0);
    return 1;
}
