/* A program whose only thread computes without a system call for a while, step by step, and
 * prints READY then the result. Used by tests/tests/late_capture.rs, which holds this thread
 * (ptrace) while it is parked in a checkpoint's stop, before the checkpoint asks the parked
 * threads to take their pending signals again: that checkpoint must be refused, and the
 * program must go on to the same result as an uninterrupted run. Once its steps are done it
 * waits for a file named `go` in its working directory before it prints its result. */
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

int main(void)
{
    volatile uint64_t x = 1;
    uint64_t steps = 0;
    printf("READY\n");
    fflush(stdout);
    for (int s = 0; s < 300; s++) {
        for (uint64_t i = 0; i < 20000000ULL; i++)
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        steps++;
    }
    /* (A test that failed never writes it: give up after about 5 minutes.) */
    for (int waited = 0; access("go", F_OK) != 0; waited++) {
        if (waited == 30000)
            return 2;
        usleep(10000);
    }
    printf("steps %llu x %llu\n", (unsigned long long)steps, (unsigned long long)x);
    return 0;
}
