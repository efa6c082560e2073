/* A process whose parent made a time namespace for its children (unshare(CLONE_NEWTIME), its
 * CLOCK_MONOTONIC 1000 s ahead) and exited: the orphan lives in that namespace while the
 * program counts. No thread of the tree entered a namespace itself any more; a restart must
 * bring the orphan back in a time namespace of its own (not the tree's: its clock 1000 s
 * behind). At its end the program asks the orphan again whether its clock is 1000 s ahead.
 * Usage: tree_timens_child [STEPS=400] [DELAY_MS=20]. Prints "start tree_timens_child",
 * "step i" and "result <hex>" (the orphan's clock was ahead, before and at the end: 1, 1). */
#define _GNU_SOURCE
#include "tree_common.h"
#include <fcntl.h>
#include <sched.h>
#include <time.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x80
#endif

static long long monotonic_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

int main(int argc, char **argv)
{
    long steps = argc > 1 ? atol(argv[1]) : 400, delay = argc > 2 ? atol(argv[2]) : 20;
    setvbuf(stdout, NULL, _IONBF, 0);
    printf("start tree_timens_child\n");
    int p[2], q[2];
    if (pipe(p) != 0 || pipe(q) != 0)
        return 1;
    long long before = monotonic_s();
    pid_t mid = fork();
    if (mid == 0) {
        char ok = 0;
        if (unshare(CLONE_NEWTIME) == 0) {
            int fd = open("/proc/self/timens_offsets", O_WRONLY);
            ok = fd >= 0 && write(fd, "monotonic 1000 0", 16) == 16;
            if (fd >= 0)
                close(fd);
        }
        if (!ok) {
            xfer(p[1], &ok, 1, 1);
            _exit(0);
        }
        if (fork() == 0) {
            ok = monotonic_s() >= before + 1000;
            xfer(p[1], &ok, 1, 1);
            /* Asked with the program's clock: whether ours is 1000 s ahead of it. The
             * program's end closes the last writer of q: the orphan ends too (it would
             * otherwise outlive the program, natively as under ckpt-run). */
            close(q[1]);
            close(p[0]);
            for (;;) {
                long long t;
                if (read(q[0], &t, sizeof t) != (ssize_t)sizeof t)
                    _exit(0);
                ok = monotonic_s() >= t + 1000;
                xfer(p[1], &ok, 1, 1);
            }
        }
        _exit(0);
    }
    waitpid(mid, NULL, 0);
    char ok = 0;
    xfer(p[0], &ok, 1, 0);
    uint64_t state = ok;
    for (long i = 1; i <= steps; i++) {
        state = mix(state + (uint64_t)i);
        printf("step %ld\n", i);
        sleep_ms(delay);
    }
    long long t = monotonic_s();
    xfer(q[1], &t, sizeof t, 1);
    xfer(p[0], &ok, 1, 0);
    state = mix(state + (uint64_t)ok);
    printf("result %llx\n", (unsigned long long)state);
    return 0;
}
