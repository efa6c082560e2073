/* Mapping flags and madvise advice of memory regions (as /proc/self/smaps VmFlags shows them):
 * MADV_DONTFORK, DONTDUMP, WIPEONFORK, HUGEPAGE, NOHUGEPAGE, SEQUENTIAL, RANDOM, MERGEABLE,
 * MAP_LOCKED, mlock2(MLOCK_ONFAULT), MAP_NORESERVE, MAP_DROPPABLE, MAP_GROWSDOWN and mseal, each
 * on a region holding data, and plain regions that have none of them (one of 8 MiB: a restart
 * must not leave advice of its own on a large region, MADV_HUGEPAGE). Prints READY, waits for
 * "go", then each region's flags and whether its data is intact (a flag the kernel lacks prints
 * "n/a", in both runs alike). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define LEN (8 * 4096)
#ifndef MAP_DROPPABLE
#define MAP_DROPPABLE 0x08
#endif

struct region {
    const char *what;
    char *p;
    int extra_map;  /* mmap flags */
    int advice;     /* -1: none */
    int lock;       /* 1 mlock, 2 mlock2 onfault, 3 mseal */
    const char *flags;  /* VmFlags to show */
    int keep_data;  /* 0: data may be dropped (droppable) */
    size_t len;     /* 0: LEN */
};
#define RLEN(r) ((r)->len ? (r)->len : LEN)

static struct region regions[] = {
    {"plain", 0, 0, -1, 0, "dc dd wf hg nh sr rr mg lo lf nr dp gd sl", 1},
    {"dontfork", 0, 0, MADV_DONTFORK, 0, "dc", 1},
    {"dontdump", 0, 0, MADV_DONTDUMP, 0, "dd", 1},
    {"wipeonfork", 0, 0, MADV_WIPEONFORK, 0, "wf", 1},
    {"hugepage", 0, 0, MADV_HUGEPAGE, 0, "hg nh", 1},
    {"nohugepage", 0, 0, MADV_NOHUGEPAGE, 0, "hg nh", 1},
    {"sequential", 0, 0, MADV_SEQUENTIAL, 0, "sr rr", 1},
    {"random", 0, 0, MADV_RANDOM, 0, "sr rr", 1},
    {"mergeable", 0, 0, MADV_MERGEABLE, 0, "mg", 1},
    {"locked", 0, MAP_LOCKED, -1, 0, "lo lf", 1},
    {"lockonfault", 0, 0, -1, 2, "lo lf", 1},
    {"noreserve", 0, MAP_NORESERVE, -1, 0, "nr", 1},
    {"droppable", 0, MAP_DROPPABLE, -1, 0, "dp", 0},
    {"growsdown", 0, MAP_GROWSDOWN, -1, 0, "gd", 1},
    {"plain large", 0, 0, -1, 0, "dc dd wf hg nh sr rr mg lo lf nr dp gd sl", 1, 8 << 20},
    {"sealed", 0, 0, -1, 3, "sl", 1},
};
#define N (sizeof regions / sizeof regions[0])
static int usable[N];

static void wait_go(int dir) {
    struct timespec ts = {0, 20 * 1000 * 1000};
    while (faccessat(dir, "go", F_OK, 0) != 0) nanosleep(&ts, NULL);
}

/* The VmFlags of the region at p, restricted to the names in `want`. */
static void vmflags(const char *p, const char *want, char *out, size_t n) {
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[1024];
    int here = 0;
    out[0] = 0;
    while (f && fgets(line, sizeof line, f)) {
        unsigned long s, e;
        if (sscanf(line, "%lx-%lx ", &s, &e) == 2 && strchr(line, '-') < strchr(line, ' ')) here = (unsigned long)p >= s && (unsigned long)p < e;
        else if (here && !strncmp(line, "VmFlags:", 8)) {
            for (char *t = strtok(line + 8, " \n"); t; t = strtok(NULL, " \n"))
                if (strlen(t) == 2 && strstr(want, t)) {
                    strncat(out, t, n - strlen(out) - 1);
                    strncat(out, " ", n - strlen(out) - 1);
                }
            break;
        }
    }
    if (f) fclose(f);
}

int main(void) {
    int dir = open(".", O_RDONLY | O_DIRECTORY);
    for (size_t i = 0; i < N; i++) {
        struct region *r = &regions[i];
        int type = (r->extra_map & MAP_DROPPABLE) ? 0 : MAP_PRIVATE;
        r->p = mmap(NULL, RLEN(r), PROT_READ | PROT_WRITE, type | MAP_ANONYMOUS | r->extra_map, -1, 0);
        usable[i] = r->p != MAP_FAILED;
        if (!usable[i]) continue;
        if (r->advice >= 0 && madvise(r->p, RLEN(r), r->advice)) usable[i] = 0;
        if (r->lock == 2 && syscall(SYS_mlock2, r->p, RLEN(r), 1 /* MLOCK_ONFAULT */)) usable[i] = 0;
        for (size_t k = 0; k < RLEN(r); k++) r->p[k] = (char)(i * 7 + k);
        if (r->lock == 3 && syscall(462 /* mseal */, r->p, RLEN(r), 0)) usable[i] = 0;
    }
    printf("READY\n");
    fflush(stdout);
    wait_go(dir);
    for (size_t i = 0; i < N; i++) {
        struct region *r = &regions[i];
        if (!usable[i]) {
            printf("%s: n/a\n", r->what);
            continue;
        }
        char flags[128];
        vmflags(r->p, r->flags, flags, sizeof flags);
        int ok = 1;
        for (size_t k = 0; k < RLEN(r) && r->keep_data; k++) ok &= r->p[k] == (char)(i * 7 + k);
        printf("%s: flags [%s] data %s\n", r->what, flags, ok ? "intact" : "CHANGED");
    }
    /* A sealed region cannot be unmapped. */
    if (usable[N - 1]) printf("munmap of the sealed region: %s\n", munmap(regions[N - 1].p, LEN) ? strerror(errno) : "done");
    return 0;
}
