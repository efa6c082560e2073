/* A shell's background job that looks at its own stdin: sh gives a background job /dev/null,
 * read-only, as fd 0 (its stdout stays the terminal). Every 100 ms it prints what fd 0 is (the
 * link of /proc/self/fd/0) and its open flags (access mode, O_APPEND, O_NONBLOCK), until STEPS.
 *
 *   sh -c 'bg_stdin STEPS & wait'
 *
 * Output: "step N fd0=PATH flags=F" lines, then "done". */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: bg_stdin STEPS\n");
        return 2;
    }
    unsigned long steps = strtoul(argv[1], NULL, 10);
    struct timespec t = {0, 100000000};
    for (unsigned long i = 1; i <= steps; i++) {
        char link[256];
        ssize_t n = readlink("/proc/self/fd/0", link, sizeof link - 1);
        link[n < 0 ? 0 : n] = 0;
        int fl = fcntl(0, F_GETFL);
        printf("step %lu fd0=%s flags=%d\n", i, n < 0 ? "closed" : link, fl < 0 ? -1 : fl & (O_ACCMODE | O_APPEND | O_NONBLOCK));
        fflush(stdout);
        nanosleep(&t, NULL);
    }
    printf("done\n");
    return 0;
}
