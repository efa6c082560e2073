/* Counts to N, printing "i sum" every DELAY_MS: deterministic output, slow enough to checkpoint
 * mid-way. Used by the Slurm and trigger tests. Usage: slurm_count N DELAY_MS */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 100;
    int delay_ms = argc > 2 ? atoi(argv[2]) : 100;
    unsigned long sum = 0;
    for (int i = 1; i <= n; i++) {
        sum = sum * 31 + (unsigned long)i;
        printf("%d %lu\n", i, sum);
        fflush(stdout);
        usleep(delay_ms * 1000);
    }
    printf("done %lu\n", sum);
    return 0;
}
