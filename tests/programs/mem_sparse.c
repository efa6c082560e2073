/* A huge sparse reservation, as the JVM, Go and the sanitizers make: 2 TiB of MAP_NORESERVE
 * memory of which a few pages hold data (at its start, quarters and end). Prints READY, waits
 * for "go", then changes one page, and prints whether each page holds its data, whether the
 * region is still MAP_NORESERVE, and how much of it is resident (a few pages, not terabytes). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define SIZE ((size_t)2 << 40)
#define PG 4096
#define N 5

static size_t where(int i) { return i == N - 1 ? SIZE - PG : (SIZE / (N - 1)) * i; }

static void wait_go(int dir) {
    struct timespec ts = {0, 20 * 1000 * 1000};
    while (faccessat(dir, "go", F_OK, 0) != 0) nanosleep(&ts, NULL);
}

/* "nr" in the region's VmFlags, and its Rss in kB. */
static void smaps(const char *p, int *nr, long *rss) {
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[1024];
    int here = 0;
    while (f && fgets(line, sizeof line, f)) {
        unsigned long s, e;
        if (sscanf(line, "%lx-%lx ", &s, &e) == 2 && strchr(line, '-') < strchr(line, ' ')) here = (unsigned long)p >= s && (unsigned long)p < e;
        else if (here && !strncmp(line, "Rss:", 4)) *rss = atol(line + 4);
        else if (here && !strncmp(line, "VmFlags:", 8)) *nr = strstr(line, " nr") != NULL;
    }
    if (f) fclose(f);
}

int main(void) {
    int dir = open(".", O_RDONLY | O_DIRECTORY);
    char *p = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        return 2;
    }
    for (int i = 0; i < N; i++) memset(p + where(i), 'a' + i, PG);
    printf("READY\n");
    fflush(stdout);
    wait_go(dir);
    memset(p + where(2), 'z', PG);
    for (int i = 0; i < N; i++) {
        int ok = 1;
        for (int k = 0; k < PG; k++) ok &= p[where(i) + k] == (i == 2 ? 'z' : 'a' + i);
        printf("page at %zu GiB: %s\n", where(i) >> 30, ok ? "intact" : "CHANGED");
    }
    int nr = 0;
    long rss = -1;
    smaps(p, &nr, &rss);
    printf("MAP_NORESERVE: %s\n", nr ? "yes" : "no");
    printf("resident: %s\n", rss >= 0 && rss <= 1024 ? "a few pages" : "too much");
    return 0;
}
