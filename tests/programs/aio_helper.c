/*
 * aio_helper: starts a POSIX AIO read that never completes; glibc serves it with a helper thread
 * that blocks every signal, which no checkpoint can stop. Prints "step 1" .. "step N" (one per
 * 100 ms) and "result N": a checkpoint must fail quickly, with a line naming that thread, and
 * the program must go on unharmed.
 */
#include <aio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    int steps = argc > 1 ? atoi(argv[1]) : 60;
    int p[2];
    if (pipe(p) != 0)
        return 2;
    static char buf[16];
    struct aiocb cb;
    memset(&cb, 0, sizeof cb);
    cb.aio_fildes = p[0];
    cb.aio_buf = buf;
    cb.aio_nbytes = 1;
    cb.aio_sigevent.sigev_notify = SIGEV_NONE;
    if (aio_read(&cb) != 0)
        return 2;
    printf("start aio_helper steps=%d\n", steps);
    for (int s = 1; s <= steps; s++) {
        nanosleep(&(struct timespec){ 0, 100000000 }, NULL);
        printf("step %d\n", s);
        fflush(stdout);
    }
    printf("result %d\n", steps);
    return 0;
}
