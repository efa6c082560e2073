/*
 * shared_rewrite: memory shared with files that the program rewrites without pause.
 *
 * Usage: shared_rewrite KINDS [MIB=8] [STEPS=150] [DELAY_MS=4]
 * KINDS is a comma-separated list of shared regions, each MIB MiB:
 *   file   a MAP_SHARED mapping of shared-PID.bin (created in the working directory), plus a
 *          read-only MAP_PRIVATE view of the same file (never written: its pages are the file's)
 *   anon   MAP_SHARED | MAP_ANONYMOUS memory
 *   memfd  a MAP_SHARED mapping of a memfd (the fd stays open), plus a read-only MAP_PRIVATE
 *          view of it
 *   shm    a MAP_SHARED mapping of a POSIX shm object (/dev/shm)
 * Step s first checks that every word of every region (and of its private view) still holds
 * what step s-1 wrote, counting the words that do not, then rewrites every word. A checkpoint
 * image that mixes the contents of two steps (a torn snapshot) makes a restarted run count bad
 * words. Prints "start", "step s bad=<n>" and "result <bad> <hash>", where the hash covers the
 * final contents, read back through the memfd and the file with read(2). Deterministic.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* What step s writes at word i of region r. */
static uint64_t word(long s, size_t i, int r)
{
    return ((uint64_t)s * 0x9E3779B97F4A7C15ULL) ^ ((uint64_t)i * 0xBF58476D1CE4E5B9ULL) ^ (uint64_t)r;
}

#define MAXR 4
static uint64_t *region[MAXR];
static int fds[MAXR]; /* fd to read the final contents back through, or -1 */
static int nregions;
static uint64_t *view[MAXR]; /* a read-only MAP_PRIVATE view of the region's file, or NULL */

static int add(uint64_t *p, int fd)
{
    if (p == MAP_FAILED || nregions == MAXR)
        return -1;
    region[nregions] = p;
    fds[nregions] = fd;
    return nregions++;
}

static uint64_t hash(const uint64_t *p, size_t words, uint64_t h)
{
    for (size_t i = 0; i < words; i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: shared_rewrite KINDS [MIB] [STEPS] [DELAY_MS]\n");
        return 2;
    }
    long mib = argc > 2 ? atol(argv[2]) : 8;
    long steps = argc > 3 ? atol(argv[3]) : 150;
    long delay = argc > 4 ? atol(argv[4]) : 4;
    size_t len = (size_t)mib << 20, words = len / 8;
    int prot = PROT_READ | PROT_WRITE;
    char shmname[64];
    snprintf(shmname, sizeof shmname, "/ckpt-rewrite-%d", getpid());
    int has_shm = 0;
    setvbuf(stdout, NULL, _IOLBF, 0);

    char *kinds = strdup(argv[1]);
    for (char *k = strtok(kinds, ","); k; k = strtok(NULL, ",")) {
        int r = -1;
        if (!strcmp(k, "file")) {
            char fname[64];
            snprintf(fname, sizeof fname, "shared-%d.bin", getpid());
            int fd = open(fname, O_RDWR | O_CREAT | O_TRUNC, 0600);
            if (fd < 0 || ftruncate(fd, (off_t)len))
                return 3;
            r = add(mmap(NULL, len, prot, MAP_SHARED, fd, 0), fd);
            view[r] = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
        } else if (!strcmp(k, "anon")) {
            r = add(mmap(NULL, len, prot, MAP_SHARED | MAP_ANONYMOUS, -1, 0), -1);
        } else if (!strcmp(k, "memfd")) {
            int fd = memfd_create("ckpt-rewrite", 0);
            if (fd < 0 || ftruncate(fd, (off_t)len))
                return 3;
            r = add(mmap(NULL, len, prot, MAP_SHARED, fd, 0), fd);
            view[r] = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
        } else if (!strcmp(k, "shm")) {
            int fd = shm_open(shmname, O_RDWR | O_CREAT | O_EXCL, 0600);
            if (fd < 0 || ftruncate(fd, (off_t)len))
                return 3;
            has_shm = 1;
            r = add(mmap(NULL, len, prot, MAP_SHARED, fd, 0), -1);
            close(fd);
        } else {
            fprintf(stderr, "shared_rewrite: unknown kind %s\n", k);
            return 2;
        }
        if (r < 0 || view[r] == MAP_FAILED)
            return 3;
    }
    /* Step 0: what step 1 expects. */
    for (int r = 0; r < nregions; r++)
        for (size_t i = 0; i < words; i++)
            region[r][i] = word(0, i, r);

    printf("start shared_rewrite kinds=%s mib=%ld steps=%ld\n", argv[1], mib, steps);
    uint64_t bad = 0;
    for (long s = 1; s <= steps; s++) {
        uint64_t here = 0;
        for (int r = 0; r < nregions; r++) {
            for (size_t i = 0; i < words; i++) {
                uint64_t want = word(s - 1, i, r);
                here += region[r][i] != want;
                if (view[r])
                    here += view[r][i] != want;
                region[r][i] = word(s, i, r);
            }
        }
        bad += here;
        printf("step %ld bad=%llu\n", s, (unsigned long long)here);
        sleep_ms(delay);
    }
    uint64_t h = 1469598103934665603ULL;
    uint64_t *back = malloc(len);
    for (int r = 0; r < nregions; r++) {
        h = hash(region[r], words, h);
        if (fds[r] >= 0) {
            /* The file (or memfd) itself holds what the mapping shows. */
            if (pread(fds[r], back, len, 0) != (ssize_t)len)
                return 4;
            h = hash(back, words, h);
        }
    }
    for (int r = 0; r < nregions; r++)
        if (view[r])
            h = hash(view[r], words, h);
    if (has_shm)
        shm_unlink(shmname);
    printf("result %llu %016llx\n", (unsigned long long)bad, (unsigned long long)h);
    return 0;
}
