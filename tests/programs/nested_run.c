/*
 * nested_run: a program that starts another command (for instance a nested ckpt-run) and then
 * counts like counter.
 *
 * Usage: nested_run N DELAY_MS CMD [ARGS...]
 * Starts CMD ARGS in a child with its stdout and stderr going to the file "nested.out" in the
 * current directory (not waited for), prints "start nested_run n=N", then for i = 1..N
 * "step i sum=<hex>" (sleeping DELAY_MS between steps), then "result <hex>". The output does
 * not depend on the child. Deterministic.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

int main(int argc, char **argv)
{
    if (argc < 4)
        return 2;
    long n = atol(argv[1]);
    long delay = atol(argv[2]);
    setvbuf(stdout, NULL, _IOLBF, 0);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open("nested.out", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0)
            _exit(126);
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
        execvp(argv[3], argv + 3);
        _exit(127);
    }
    uint64_t sum = 0;
    printf("start nested_run n=%ld\n", n);
    for (long i = 1; i <= n; i++) {
        sum = sum * 31 + (uint64_t)i * 7;
        printf("step %ld sum=%016llx\n", i, (unsigned long long)sum);
        sleep_ms(delay);
    }
    printf("result %016llx\n", (unsigned long long)(sum ^ 0x5bd1e995));
    return 0;
}
