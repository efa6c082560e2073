/*
 * tree_deleted_files: a parent and a forked child that keep writing and reading one file that
 * has no name (a file removed while open, or a memfd), through open files of three kinds, for
 * the tests of a tree's restart (process_trees_deleted).
 *
 * Usage: tree_deleted_files MODE [ROUNDS=200] [DELAY_MS=20]
 * MODE file: the parent creates tree_deleted_files.<pid>.data in the working directory (0600)
 *   and removes it; MODE memfd: a memfd. The parent holds it as fd m and opens it again through
 *   /proc/self/fd as p (its own offset); then forks; the child closes p and opens it again
 *   through /proc/<parent>/fd as c (its own offset). Both keep m (one open file, one offset).
 * Round r (in turns, through two pipes): the child writes record r through m and reads it back
 * through c; the parent checks that m's offset moved to the end of record r (one offset for
 * both: else exit 93) and reads record r through p (one file for both: else exit 93). At the
 * end the parent prints "result <hash of the whole file, read from offset 0> <size>".
 * Deterministic.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tree_common.h"

static void die(const char *what, int code)
{
    fprintf(stderr, "%s: %s\n", what, strerror(errno));
    exit(code);
}

static int reopen(pid_t pid, int fd)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd/%d", (int)pid, fd);
    int r = open(path, O_RDWR);
    if (r < 0)
        die(path, 1);
    return r;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "file";
    int rounds = argc > 2 ? atoi(argv[2]) : 200;
    int delay = argc > 3 ? atoi(argv[3]) : 20;
    printf("start tree_deleted_files %s %d %d\n", mode, rounds, delay);
    fflush(stdout);
    int m;
    if (strcmp(mode, "memfd") == 0) {
        m = memfd_create("tree-data", 0);
    } else if (strcmp(mode, "file") == 0) {
        char name[64];
        snprintf(name, sizeof name, "tree_deleted_files.%d.data", (int)getpid());
        m = open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
        if (m >= 0 && unlink(name) != 0)
            die("unlink", 1);
    } else {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    if (m < 0)
        die("create", 1);
    int p = reopen(getpid(), m);
    int to_child[2], to_parent[2];
    if (pipe(to_child) != 0 || pipe(to_parent) != 0)
        die("pipe", 1);
    pid_t parent = getpid();
    char token = 't';
    pid_t child = fork();
    if (child == 0) {
        close(p);
        int c = reopen(parent, m);
        for (int r = 1; r <= rounds; r++) {
            xfer(to_child[0], &token, 1, 0);
            uint64_t rec = mix((uint64_t)r), back;
            xfer(m, &rec, sizeof rec, 1);
            xfer(c, &back, sizeof back, 0);
            if (back != rec) {
                fprintf(stderr, "child round %d: read back %016llx\n", r, (unsigned long long)back);
                _exit(93);
            }
            xfer(to_parent[1], &token, 1, 1);
        }
        _exit(7);
    }
    for (int r = 1; r <= rounds; r++) {
        xfer(to_child[1], &token, 1, 1);
        xfer(to_parent[0], &token, 1, 0);
        off_t at = lseek(m, 0, SEEK_CUR);
        uint64_t rec;
        if (at != (off_t)(8 * r)) {
            fprintf(stderr, "round %d: the shared offset is %lld, not %d\n", r, (long long)at, 8 * r);
            exit(93);
        }
        ssize_t n = read(p, &rec, sizeof rec);
        if (n != (ssize_t)sizeof rec || rec != mix((uint64_t)r)) {
            fprintf(stderr, "round %d: read %zd bytes through the parent's own open\n", r, n);
            exit(93);
        }
        printf("step %d\n", r);
        fflush(stdout);
        sleep_ms(delay);
    }
    int st;
    if (waitpid(child, &st, 0) != child || !WIFEXITED(st) || WEXITSTATUS(st) != 7) {
        fprintf(stderr, "child: status %x\n", st);
        return 91;
    }
    uint64_t h = 0, v;
    off_t size = lseek(m, 0, SEEK_END), off = 0;
    while (pread(m, &v, sizeof v, off) == (ssize_t)sizeof v) {
        h = mix(h ^ v);
        off += 8;
    }
    printf("result %016llx %lld\n", (unsigned long long)h, (long long)size);
    return 0;
}
