/* The address space after a restart holds what the program had, nothing of the checkpoint's:
 * reads /proc/self/maps before READY and again after the file "go" appears, and prints each
 * range of the second read that no mapping of the first covered ("new START-END PERMS NAME"),
 * each range of the first that the second lacks ("lost START-END"), and the counts. The maps
 * are read with open/read into static buffers: nothing the program does between the two reads
 * maps memory (stdio's buffer exists before the first). With an argument N, N more threads
 * wait in pause() all along (made before the first read). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define MAX 512

struct vma {
    unsigned long start, end;
    char perms[5];
    char name[96];
};

static char text[1 << 17];
static struct vma before[MAX], after[MAX];

static int read_maps(struct vma *v) {
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC), n = 0;
    size_t len = 0;
    ssize_t r;
    if (fd < 0) return -1;
    while (len < sizeof text - 1 && (r = read(fd, text + len, sizeof text - 1 - len)) > 0) len += r;
    close(fd);
    text[len] = 0;
    for (char *line = text; *line && n < MAX;) {
        char *eol = strchr(line, '\n');
        if (eol) *eol = 0;
        char *p = line;
        v[n].start = strtoul(p, &p, 16);
        v[n].end = strtoul(p + 1, &p, 16);
        memcpy(v[n].perms, p + 1, 4);
        v[n].perms[4] = 0;
        /* The name starts after five fields. */
        int fields = 0;
        for (p = line; *p && fields < 5; fields++) {
            while (*p && *p != ' ') p++;
            while (*p == ' ') p++;
        }
        snprintf(v[n].name, sizeof v[n].name, "%s", p);
        n++;
        if (!eol) break;
        line = eol + 1;
    }
    return n;
}

/* Print the parts of v[0..n) that no range of w[0..m) covers (both sorted), as `what`. */
static int uncovered(const char *what, struct vma *v, int n, struct vma *w, int m) {
    int count = 0;
    for (int i = 0; i < n; i++) {
        unsigned long at = v[i].start;
        for (int j = 0; j < m && at < v[i].end; j++) {
            if (w[j].end <= at || w[j].start >= v[i].end) continue;
            if (w[j].start > at) {
                printf("%s %lx-%lx %s %s\n", what, at, w[j].start, v[i].perms, v[i].name);
                count++;
            }
            at = w[j].end > at ? w[j].end : at;
        }
        if (at < v[i].end) {
            printf("%s %lx-%lx %s %s\n", what, at, v[i].end, v[i].perms, v[i].name);
            count++;
        }
    }
    return count;
}

static void *idle(void *arg) {
    (void)arg;
    for (;;) pause();
    return NULL;
}

int main(int argc, char **argv) {
    for (int i = 0, n = argc > 1 ? atoi(argv[1]) : 0; i < n; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, idle, NULL) != 0) return 3;
    }
    int dir = open(".", O_RDONLY | O_DIRECTORY);
    /* stdio's buffer now, before the first read. */
    printf("mem_maps\n");
    fflush(stdout);
    int nb = read_maps(before);
    if (nb <= 0) return 2;
    printf("READY\n");
    fflush(stdout);
    struct timespec ts = {0, 20 * 1000 * 1000};
    while (faccessat(dir, "go", F_OK, 0) != 0) nanosleep(&ts, NULL);
    int na = read_maps(after);
    if (na <= 0) return 2;
    int added = uncovered("new", after, na, before, nb);
    int lost = uncovered("lost", before, nb, after, na);
    printf("compared %s: %d new, %d lost\n", nb > 5 ? "the maps" : "too few maps", added, lost);
    return 0;
}
