/* An idle program (scripts/bench-leak): says READY, then sleeps in a loop. Whatever its
 * checkpoints leave behind in its memory shows up in its RSS and memory map. */
#include <stdio.h>
#include <unistd.h>

int main(void) {
    printf("READY\n");
    fflush(stdout);
    for (;;)
        usleep(10000);
}
