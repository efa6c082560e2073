/* An AIO context (io_setup) with a completion not yet reaped: after a restart io_getevents
 * returns it, and new requests can be submitted and reaped. */
#include "files_common.h"
#include <linux/aio_abi.h>
#include <sys/syscall.h>

static aio_context_t ctx;

static long submit(int fd, int op, char *buf, size_t len, off_t off, unsigned long long data) {
    struct iocb cb = {.aio_data = data, .aio_lio_opcode = op, .aio_fildes = fd, .aio_buf = (unsigned long)buf, .aio_nbytes = len, .aio_offset = off};
    struct iocb *list[1] = {&cb};
    return syscall(SYS_io_submit, ctx, 1, list);
}

static long reap(struct io_event *ev) {
    struct timespec ts = {5, 0};
    return syscall(SYS_io_getevents, ctx, 1, 1, ev, &ts);
}

int main(void) {
    int fd = open("aio.dat", O_RDWR | O_CREAT | O_TRUNC, 0600);
    struct io_event ev;
    if (fd < 0 || syscall(SYS_io_setup, 32, &ctx)) return 2;
    if (submit(fd, IOCB_CMD_PWRITE, "first", 5, 0, 1) != 1 || reap(&ev) != 1) return 2;
    /* Completed before the checkpoint, not reaped: its event waits in the ring. */
    if (submit(fd, IOCB_CMD_PWRITE, "second", 6, 100, 42) != 1) return 2;
    ready();

    long n = reap(&ev);
    CHECK(n == 1 && ev.data == 42 && ev.res == 6, "the pending completion (%ld, data %llu, res %lld)", n, (unsigned long long)ev.data, (long long)ev.res);
    printf("pending completion: %ld event, data %llu, res %lld\n", n, (unsigned long long)ev.data, (long long)ev.res);
    char buf[16] = {0};
    CHECK(submit(fd, IOCB_CMD_PREAD, buf, 6, 100, 7) == 1, "submit after the restart");
    n = reap(&ev);
    CHECK(n == 1 && ev.data == 7 && ev.res == 6, "reap after the restart");
    printf("new request: read '%s'\n", buf);
    CHECK(syscall(SYS_io_destroy, ctx) == 0, "io_destroy");
    return finish();
}
