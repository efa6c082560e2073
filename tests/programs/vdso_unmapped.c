/*
 * vdso_unmapped: unmaps its [vdso] and [vvar] areas (as some sandboxes and CRIU's vdso02 test
 * do), then works in steps, checking each step that neither is mapped (no time function is
 * called: glibc would jump into the vdso). A restart must not refuse such an image, and must not
 * give the program a vdso again.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* How many of [vdso], [vvar], [vvar_vclock] are mapped; unmaps them when `unmap`. */
static int specials(int unmap) {
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) { perror("maps"); exit(1); }
    char line[512];
    unsigned long ranges[8][2];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        if (strstr(line, "[vdso]") || strstr(line, "[vvar]") || strstr(line, "[vvar_vclock]")) {
            if (n < 8 && sscanf(line, "%lx-%lx", &ranges[n][0], &ranges[n][1]) == 2) n++;
        }
    }
    fclose(f);
    for (int i = 0; unmap && i < n; i++) {
        if (syscall(SYS_munmap, ranges[i][0], ranges[i][1] - ranges[i][0]) != 0) { perror("munmap"); exit(1); }
    }
    return n;
}

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 10;
    int had = specials(1);
    printf("start vdso_unmapped steps=%d\n", steps);
    fflush(stdout);
    unsigned long acc = 0;
    struct timespec ts = {0, 100 * 1000 * 1000};
    for (int s = 1; s <= steps; s++) {
        syscall(SYS_nanosleep, &ts, NULL);
        int now = specials(0);
        acc = acc * 31 + (unsigned long)s + (unsigned long)now * 1000;
        printf("step %d mapped %d\n", s, now);
        fflush(stdout);
    }
    printf("result %lu (had %d)\n", acc, had > 0);
    return 0;
}
