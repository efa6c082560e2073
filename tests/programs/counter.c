/*
 * counter: the classic checkpoint/restart test program.
 *
 * Usage: counter [N=60] [DELAY_MS=30]
 * Prints "start counter n=N", then for i = 1..N one line "step i sum=<hex>" (sleeping DELAY_MS
 * between steps), then "result <hex>". The running sum lives on the stack, a per-step history
 * on the heap and another in static data; the result depends on all three, so a restart that
 * loses or rewinds any of them prints a different result (or visibly restarted step numbers).
 * Deterministic: the same arguments always give the same output.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static uint64_t history[1024]; /* static (.bss) state */

/* Sleep ms milliseconds, resuming after signal interruptions. */
static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 60;
    long delay = argc > 2 ? atol(argv[2]) : 30;
    setvbuf(stdout, NULL, _IOLBF, 0);

    uint64_t *heap = calloc((size_t)n + 1, sizeof *heap); /* heap state */
    if (heap == NULL) {
        perror("calloc");
        return 1;
    }
    uint64_t sum = 0; /* stack state */

    printf("start counter n=%ld\n", n);
    fflush(stdout);
    for (long i = 1; i <= n; i++) {
        sum = sum * 31 + (uint64_t)i;
        heap[i] = heap[i - 1] ^ (sum * 0x9E3779B97F4A7C15ULL);
        history[i % 1024] += sum;
        printf("step %ld sum=%016llx\n", i, (unsigned long long)sum);
        fflush(stdout);
        sleep_ms(delay);
    }

    uint64_t check = sum;
    for (long i = 0; i <= n; i++)
        check = (check ^ heap[i]) * 1099511628211ULL;
    for (int i = 0; i < 1024; i++)
        check = (check ^ history[i]) * 1099511628211ULL;
    printf("result %016llx\n", (unsigned long long)check);
    fflush(stdout);
    free(heap);
    return 0;
}
