/* A program alone (no children) that puts its own files at fds 0 and 1: it reopens stdin on
 * /dev/null (freopen, read-only) and stdout on a file of its own (open + dup2, truncated, not
 * O_APPEND: the offset matters), then counts. Every 100 ms it writes "line N SUM" to that
 * file and "step N" to stderr (the stdio ckpt-run gave it).
 *
 *   lone_stdio STEPS LOG
 *
 * At the end it looks at fd 0: "stdin=devnull" when it is /dev/null, read-only, at end of
 * file; "stdin=other" otherwise. It writes "result SUM stdin=..." to LOG and "done" to
 * stderr. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

static const char *stdin_is(void) {
    struct stat st;
    if (fstat(0, &st) != 0 || !S_ISCHR(st.st_mode) || st.st_rdev != makedev(1, 3))
        return "other";
    int fl = fcntl(0, F_GETFL);
    if (fl < 0 || (fl & O_ACCMODE) != O_RDONLY)
        return "other";
    char b;
    return read(0, &b, 1) == 0 ? "devnull" : "other";
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: lone_stdio STEPS LOG\n");
        return 2;
    }
    unsigned long steps = strtoul(argv[1], NULL, 10);
    if (!freopen("/dev/null", "r", stdin)) {
        perror("freopen /dev/null");
        return 1;
    }
    int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || dup2(fd, 1) != 1) {
        perror(argv[2]);
        return 1;
    }
    close(fd);
    struct timespec t = {0, 100000000};
    unsigned long sum = 0;
    for (unsigned long i = 1; i <= steps; i++) {
        sum = sum * 31 + i;
        printf("line %lu %lu\n", i, sum);
        fflush(stdout);
        fprintf(stderr, "step %lu\n", i);
        nanosleep(&t, NULL);
    }
    printf("result %lu stdin=%s\n", sum, stdin_is());
    fflush(stdout);
    fprintf(stderr, "done\n");
    return 0;
}
