/* tree_mem: a tree of N processes (the parent and N-1 forked children) of MIB MiB of private
 * memory each (written with a cheap non-constant pattern), which then sleep until killed.
 * Prints "ready" once every process has its memory. With a third argument "shared", the parent
 * fills its memory before it forks and the children write nothing: the tree holds MIB MiB,
 * shared copy-on-write. Used by scripts/bench-tree and scripts/bench-tree-restart. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

unsigned long *volatile keep; /* the memory stays the program's */

static void fill(size_t mib, unsigned seed)
{
    size_t n = mib << 20;
    unsigned long *p = malloc(n);
    if (!p) {
        perror("malloc");
        exit(1);
    }
    for (size_t i = 0; i < n / sizeof *p; i++)
        p[i] = (i * 2654435761u) ^ seed ^ (i >> 7);
    keep = p;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 8;
    size_t mib = argc > 2 ? (size_t)atol(argv[2]) : 256;
    int shared = argc > 3 && strcmp(argv[3], "shared") == 0;
    int ready[2];
    if (pipe(ready) != 0)
        return 1;
    if (shared)
        fill(mib, 0);
    for (int k = 1; k < n; k++) {
        if (fork() == 0) {
            if (!shared)
                fill(mib, (unsigned)k);
            write(ready[1], "x", 1);
            for (;;)
                pause();
        }
    }
    if (!shared)
        fill(mib, 0);
    for (int k = 1; k < n; k++) {
        char c;
        read(ready[0], &c, 1);
    }
    printf("ready\n");
    fflush(stdout);
    for (;;)
        pause();
}
