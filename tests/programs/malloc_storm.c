/*
 * malloc_storm: 16 threads that allocate and free under one mutex, for the checkpoint load test.
 *
 * Usage: malloc_storm [MAXROUNDS=200] [STOPFILE]   (compile with -pthread)
 * Prints "start malloc_storm threads=16". Then, round after round: each thread does 64
 * iterations of { lock the mutex; malloc a block of a pseudo-random size (16 B .. 4 KiB, and
 * 1 in 32 a 160 KiB block that glibc serves with mmap); fill it with a pattern; put it in the
 * thread's ring of 48 slots, first checking and freeing the block that was there; add a hash of
 * it to the shared accumulator; unlock }. After every round all threads meet at a barrier and
 * main prints "step <r> acc=<hex>". It stops after MAXROUNDS rounds, or earlier when STOPFILE
 * exists (checked between rounds), checks and frees every block and prints
 * "result rounds=<r> acc=<hex>". The accumulator is a sum, so thread interleaving does not
 * matter: `malloc_storm R` always prints the same output for the same R. A damaged heap block
 * prints "corrupt ..." on stderr and exits 2.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NTHREADS 16
#define ITERS 64
#define SLOTS 48

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_barrier_t start_round, end_round;
static uint64_t acc;
static volatile int stop;

struct block {
    size_t len;
    uint8_t fill;
    uint8_t *p;
};

static uint64_t xorshift64(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static void check_free(struct block *b, long id)
{
    if (b->p == NULL)
        return;
    for (size_t i = 0; i < b->len; i += 61)
        if (b->p[i] != (uint8_t)(b->fill + i)) {
            fprintf(stderr, "corrupt block in thread %ld at byte %zu\n", id, i);
            exit(2);
        }
    free(b->p);
    b->p = NULL;
}

static void *worker(void *arg)
{
    long id = (long)(intptr_t)arg;
    uint64_t seed = 0x9E3779B97F4A7C15ULL ^ ((uint64_t)id * 0x100000001B3ULL);
    struct block ring[SLOTS];
    memset(ring, 0, sizeof ring);
    unsigned next = 0;
    for (;;) {
        pthread_barrier_wait(&start_round);
        if (stop)
            break;
        for (int k = 0; k < ITERS; k++) {
            uint64_t r = xorshift64(&seed);
            size_t len = (r & 31) == 0 ? 160 * 1024 : 16 + (size_t)((r >> 8) % 4080);
            uint8_t fill = (uint8_t)(r >> 40);
            pthread_mutex_lock(&lock);
            struct block *b = &ring[next++ % SLOTS];
            check_free(b, id);
            b->p = malloc(len);
            if (b->p == NULL) {
                fprintf(stderr, "malloc failed\n");
                exit(3);
            }
            b->len = len;
            b->fill = fill;
            for (size_t i = 0; i < len; i++)
                b->p[i] = (uint8_t)(fill + i);
            acc += (r ^ len) * 0x9E3779B97F4A7C15ULL + (uint64_t)id;
            pthread_mutex_unlock(&lock);
        }
        pthread_barrier_wait(&end_round);
    }
    for (int i = 0; i < SLOTS; i++)
        check_free(&ring[i], id);
    return NULL;
}

int main(int argc, char **argv)
{
    long maxrounds = argc > 1 ? atol(argv[1]) : 200;
    const char *stopfile = argc > 2 ? argv[2] : NULL;
    setvbuf(stdout, NULL, _IOLBF, 0);
    pthread_barrier_init(&start_round, NULL, NTHREADS + 1);
    pthread_barrier_init(&end_round, NULL, NTHREADS + 1);
    pthread_t t[NTHREADS];
    for (long i = 0; i < NTHREADS; i++)
        pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i);
    printf("start malloc_storm threads=%d\n", NTHREADS);
    long r = 0;
    for (;;) {
        if (r >= maxrounds || (stopfile != NULL && access(stopfile, F_OK) == 0))
            stop = 1;
        pthread_barrier_wait(&start_round);
        if (stop)
            break;
        pthread_barrier_wait(&end_round);
        r++;
        printf("step %ld acc=%016llx\n", r, (unsigned long long)acc);
    }
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(t[i], NULL);
    printf("result rounds=%ld acc=%016llx\n", r, (unsigned long long)acc);
    return 0;
}
