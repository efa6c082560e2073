/* A child that shares its parent's fd table (clone with CLONE_FILES; zdtm fdt_shared, fd01):
 * an fd one of them opens or closes is opened or closed for the other. Each round the child
 * makes a pipe, writes a value into it and leaves its read end at fd 200 (dup2); the parent,
 * which never opened it, reads the value through fd 200 and closes it; the child then finds
 * fd 200 closed. After a restart the two must still share one table: with a table each, the
 * parent would read from an fd it does not have (EBADF, exit 90).
 *
 * Usage: tree_files [ROUNDS=2000] [DELAY_US=1000] [glibc|raw]
 * "glibc": the child is made by glibc's clone() on a stack of its own; "raw": by the clone
 * system call through syscall() (no new stack, it goes on like a forked child).
 * Prints "start tree_files", "step i" for each round, and "result <hex>" of the values read
 * and the child's exit status. Deterministic. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <sys/syscall.h>

#include "tree_common.h"

#define SHARED_FD 200

static int go[2], back[2];

/* The child: one pipe per round until the parent says 0; its exit status says what it saw. */
static int child_rounds(void *arg)
{
    (void)arg;
    uint64_t i;
    for (;;) {
        xfer(go[0], &i, sizeof i, 0);
        if (i == 0)
            return 0;
        if (fcntl(SHARED_FD, F_GETFD) != -1 || errno != EBADF)
            return 7; /* the parent's close was not seen */
        int p[2];
        if (pipe(p) != 0)
            return 8;
        uint64_t v = mix(i * 7919);
        xfer(p[1], &v, sizeof v, 1);
        close(p[1]);
        if (dup2(p[0], SHARED_FD) != SHARED_FD)
            return 9;
        close(p[0]);
        xfer(back[1], &i, sizeof i, 1);
    }
}

int main(int argc, char **argv)
{
    long rounds = argc > 1 ? atol(argv[1]) : 2000, delay_us = argc > 2 ? atol(argv[2]) : 1000;
    const char *mode = argc > 3 ? argv[3] : "glibc";
    setvbuf(stdout, NULL, _IONBF, 0);
    printf("start tree_files\n");
    if (pipe(go) != 0 || pipe(back) != 0)
        return 1;
    static char stack[256 * 1024] __attribute__((aligned(16)));
    pid_t child;
    if (!strcmp(mode, "raw")) {
        child = syscall(SYS_clone, CLONE_FILES | SIGCHLD, 0, 0, 0, 0);
        if (child == 0)
            _exit(child_rounds(NULL));
    } else {
        child = clone(child_rounds, stack + sizeof stack, CLONE_FILES | SIGCHLD, NULL);
    }
    if (child < 0) {
        perror("clone");
        return 1;
    }
    uint64_t state = 1;
    for (uint64_t i = 1; i <= (uint64_t)rounds; i++) {
        xfer(go[1], &i, sizeof i, 1);
        uint64_t got, v;
        xfer(back[0], &got, sizeof got, 0);
        xfer(SHARED_FD, &v, sizeof v, 0); /* the child's pipe, never opened here */
        if (close(SHARED_FD) != 0) {
            perror("close of the child's fd");
            return 1;
        }
        state = mix(state ^ v ^ got);
        printf("step %llu\n", (unsigned long long)i);
        sleep_ms(delay_us / 1000);
    }
    uint64_t zero = 0;
    xfer(go[1], &zero, sizeof zero, 1);
    int status = 0;
    while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
    printf("result %016llx %x\n", (unsigned long long)state, WIFEXITED(status) ? WEXITSTATUS(status) : 0x100 | WTERMSIG(status));
    return 0;
}
