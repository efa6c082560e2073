/* Shared by the tree_*.c programs: a sleep that survives signals and a 64-bit mixer for the
 * deterministic results. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <stdint.h>
#include <time.h>

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

/* The end of a program with one child: kill and reap the child, print the result. */
static inline void end_with_child(pid_t child, uint64_t state)
{
    int status;
    kill(child, SIGKILL);
    waitpid(child, &status, 0);
    printf("result %016llx\n", (unsigned long long)state);
}
