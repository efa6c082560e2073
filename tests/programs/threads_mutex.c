/*
 * threads_mutex: 8 pthreads taking strict turns on a mutex + condition variable.
 *
 * Usage: threads_mutex [ROUNDS=25] [DELAY_MS=10]   (compile with -pthread)
 * Thread i runs turn t only when t % 8 == i. On its turn a thread updates its __thread
 * (thread-local) accumulator and the shared accumulator, prints
 * "step <t+1> thread <i> tls=<hex> acc=<hex>", releases the mutex, sleeps DELAY_MS, then passes
 * the turn on. Main prints "start threads_mutex threads=8 rounds=R" first and, after joining all
 * threads, "result <hex>" combining every thread's thread-local values and the shared
 * accumulator. The order of turns is fixed, so the output is deterministic.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define NTHREADS 8

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static long turn;        /* the turn being played; thread turn % NTHREADS plays it */
static long total_turns; /* NTHREADS * rounds */
static long delay_ms;
static uint64_t shared_acc = 1;
static uint64_t final_tls[NTHREADS];

static __thread uint64_t tls_acc;
static __thread long tls_turns;

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void *worker(void *arg)
{
    long id = (long)(intptr_t)arg;
    tls_acc = 0x1234567ULL + (uint64_t)id;
    tls_turns = 0;

    pthread_mutex_lock(&lock);
    for (;;) {
        while (turn < total_turns && turn % NTHREADS != id)
            pthread_cond_wait(&cond, &lock);
        if (turn >= total_turns)
            break;
        tls_acc = tls_acc * 6364136223846793005ULL + (uint64_t)turn + 1;
        tls_turns++;
        shared_acc = (shared_acc ^ tls_acc) * 1099511628211ULL;
        printf("step %ld thread %ld tls=%016llx acc=%016llx\n", turn + 1, id,
               (unsigned long long)tls_acc, (unsigned long long)shared_acc);
        fflush(stdout);

        /* Sleep without the lock (the others wait on the condition variable), then pass on. */
        pthread_mutex_unlock(&lock);
        sleep_ms(delay_ms);
        pthread_mutex_lock(&lock);
        turn++;
        pthread_cond_broadcast(&cond);
    }
    pthread_mutex_unlock(&lock);
    final_tls[id] = tls_acc ^ ((uint64_t)tls_turns << 56);
    return (void *)(intptr_t)tls_turns;
}

int main(int argc, char **argv)
{
    long rounds = argc > 1 ? atol(argv[1]) : 25;
    delay_ms = argc > 2 ? atol(argv[2]) : 10;
    total_turns = rounds * NTHREADS;
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("start threads_mutex threads=%d rounds=%ld\n", NTHREADS, rounds);
    fflush(stdout);

    pthread_t th[NTHREADS];
    for (long i = 0; i < NTHREADS; i++) {
        int e = pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i);
        if (e != 0) {
            fprintf(stderr, "threads_mutex: pthread_create failed (%d)\n", e);
            return 1;
        }
    }
    long turns = 0;
    for (int i = 0; i < NTHREADS; i++) {
        void *ret;
        pthread_join(th[i], &ret);
        turns += (long)(intptr_t)ret;
    }
    uint64_t result = shared_acc; /* only after every thread is done */
    for (int i = 0; i < NTHREADS; i++)
        result = (result ^ final_tls[i]) * 1099511628211ULL;
    result ^= (uint64_t)turns;
    printf("result %016llx\n", (unsigned long long)result);
    fflush(stdout);
    return turns == total_turns ? 0 : 2;
}
