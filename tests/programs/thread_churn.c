/*
 * thread_churn: a thread that creates and joins threads all the time (a thread pool that grows
 * and shrinks, a task per thread). During a background snapshot clone waits until the image is
 * written; the snapshot must still be taken in the background (a clone waiting through the
 * instant kept the thread from stopping, and the checkpoint fell back to a fork).
 *
 * Usage: thread_churn [STEPS=40]   (compile with -pthread)
 * The churn thread starts 500 STEPS short threads one after the other (50 us apart), thread i
 * adding i to a sum; main prints "step N" when 500 N have run, then "result <sum>" (n(n+1)/2 when no thread
 * ran twice or not at all). 32 MiB of memory are written once, to give the snapshot some to
 * protect.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static long total;
static long done;
static long sum;

static void *task(void *arg)
{
    __atomic_fetch_add(&sum, (long)arg, __ATOMIC_RELAXED);
    return NULL;
}

static void *churn(void *arg)
{
    (void)arg;
    for (long i = 1; i <= total; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, task, (void *)i) != 0 || pthread_join(t, NULL) != 0) {
            printf("FAIL thread %ld\n", i);
            fflush(stdout);
            exit(1);
        }
        __atomic_store_n(&done, i, __ATOMIC_RELEASE);
        usleep(50);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int steps = argc > 1 ? atoi(argv[1]) : 40;
    total = 500L * steps;
    printf("start thread_churn steps=%d\n", steps);
    fflush(stdout);
    size_t n = 32UL << 20;
    char *mem = malloc(n);
    for (size_t i = 0; i < n; i += 4096)
        mem[i] = (char)(i >> 12);
    pthread_t c;
    pthread_create(&c, NULL, churn, NULL);
    for (int s = 1; s <= steps; s++) {
        while (__atomic_load_n(&done, __ATOMIC_ACQUIRE) < 500L * s)
            usleep(2000);
        printf("step %d\n", s);
        fflush(stdout);
    }
    pthread_join(c, NULL);
    long check = 0;
    for (size_t i = 0; i < n; i += 4096)
        check += mem[i] != (char)(i >> 12);
    printf("result %ld\n", check == 0 ? sum : -1);
    return 0;
}
