/*
 * posix_aio: a program that uses POSIX AIO (aio_read, aio_write, aio_fsync, aio_suspend,
 * lio_listio, aio_cancel; SIGEV_SIGNAL and SIGEV_THREAD notifications) with a read in flight
 * across checkpoints (zdtm socket_aio): glibc's AIO helper threads block every signal, so no
 * checkpoint could be taken while one waited.
 *
 * Usage: posix_aio [ROUNDS=40] [DELAY_MS=40]
 * Round 3 starts an aio_read of 64 bytes from a pipe nobody writes yet (it stays in flight,
 * notifying by SIGUSR1 with a value); round ROUNDS-10 writes them, waits for the read with
 * aio_suspend and checks its result. Every round writes 16 bytes at its offset of aio.dat with
 * aio_write (notifying a thread), waits for it, and every fifth round also writes two records
 * with lio_listio(LIO_WAIT), syncs with aio_fsync and cancels a read of an empty pipe.
 * "step r inflight=.." says whether the first read is still in flight. At the end the program
 * waits for the notifications and prints "result <hash of the file and the read> sig=.. thr=..".
 * Deterministic.
 */
#define _GNU_SOURCE
#include <aio.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tree_common.h"

static atomic_int sigs, bad_sigs, threads;

static void on_usr1(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    if (si->si_code == SI_ASYNCIO && si->si_value.sival_int == 77)
        atomic_fetch_add(&sigs, 1);
    else
        atomic_fetch_add(&bad_sigs, 1);
}

static void on_done(union sigval v)
{
    if (v.sival_int == 5)
        atomic_fetch_add(&threads, 1);
}

static void die(const char *what)
{
    printf("error %s: %s\n", what, strerror(errno));
    exit(2);
}

/* Wait for cb with aio_suspend (through EINTR) and check that it moved n bytes. */
static void finish(struct aiocb *cb, ssize_t n, const char *what)
{
    const struct aiocb *list[1] = { cb };
    while (aio_error(cb) == EINPROGRESS)
        if (aio_suspend(list, 1, NULL) != 0 && errno != EINTR)
            die("aio_suspend");
    if (aio_error(cb) != 0 || aio_return(cb) != n) {
        printf("error %s: error %d return %zd\n", what, aio_error(cb), aio_return(cb));
        exit(2);
    }
}

int main(int argc, char **argv)
{
    long rounds = argc > 1 ? atol(argv[1]) : 40;
    long delay = argc > 2 ? atol(argv[2]) : 40;
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_usr1;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    int p[2], q[2];
    if (pipe(p) != 0 || pipe(q) != 0)
        die("pipe");
    int fd = open("aio.dat", O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        die("open");
    printf("start posix_aio rounds=%ld\n", rounds);
    static char in[64], out[64];
    static struct aiocb rd;
    long feed = rounds - 10;
    int fed = 0;
    long writes = 0;
    for (long r = 1; r <= rounds; r++) {
        if (r == 3) {
            memset(&rd, 0, sizeof rd);
            rd.aio_fildes = p[0];
            rd.aio_buf = in;
            rd.aio_nbytes = sizeof in;
            rd.aio_sigevent.sigev_notify = SIGEV_SIGNAL;
            rd.aio_sigevent.sigev_signo = SIGUSR1;
            rd.aio_sigevent.sigev_value.sival_int = 77;
            if (aio_read(&rd) != 0)
                die("aio_read");
        }
        if (r == feed) {
            for (int i = 0; i < 64; i++)
                out[i] = (char)('a' + (i * 7 + 3) % 26);
            if (write(p[1], out, sizeof out) != sizeof out)
                die("write");
            finish(&rd, 64, "the read in flight");
            fed = memcmp(in, out, sizeof in) == 0;
        }
        char rec[16];
        snprintf(rec, sizeof rec, "%014lx\n", (unsigned long)mix((uint64_t)r));
        struct aiocb wr;
        memset(&wr, 0, sizeof wr);
        wr.aio_fildes = fd;
        wr.aio_buf = rec;
        wr.aio_nbytes = 15;
        wr.aio_offset = (off_t)(r - 1) * 15;
        wr.aio_sigevent.sigev_notify = SIGEV_THREAD;
        wr.aio_sigevent.sigev_notify_function = on_done;
        wr.aio_sigevent.sigev_value.sival_int = 5;
        if (aio_write(&wr) != 0)
            die("aio_write");
        finish(&wr, 15, "aio_write");
        writes++;
        if (r % 5 == 0) {
            static char a[8] = "listio-a", b[8] = "listio-b";
            struct aiocb la, lb;
            memset(&la, 0, sizeof la);
            memset(&lb, 0, sizeof lb);
            la.aio_fildes = lb.aio_fildes = fd;
            la.aio_lio_opcode = lb.aio_lio_opcode = LIO_WRITE;
            la.aio_buf = a;
            lb.aio_buf = b;
            la.aio_nbytes = lb.aio_nbytes = 8;
            la.aio_offset = 4096 + r * 16;
            lb.aio_offset = 4096 + r * 16 + 8;
            struct aiocb *list[2] = { &la, &lb };
            if (lio_listio(LIO_WAIT, list, 2, NULL) != 0 || aio_return(&la) != 8 || aio_return(&lb) != 8)
                die("lio_listio");
            struct aiocb sy;
            memset(&sy, 0, sizeof sy);
            sy.aio_fildes = fd;
            if (aio_fsync(O_SYNC, &sy) != 0)
                die("aio_fsync");
            finish(&sy, 0, "aio_fsync");
            /* A read of an empty pipe behind another on the same fd: cancelled while queued. */
            static char x[4], y[4];
            struct aiocb c1, c2;
            memset(&c1, 0, sizeof c1);
            memset(&c2, 0, sizeof c2);
            c1.aio_fildes = c2.aio_fildes = q[0];
            c1.aio_buf = x;
            c2.aio_buf = y;
            c1.aio_nbytes = c2.aio_nbytes = 4;
            if (aio_read(&c1) != 0 || aio_read(&c2) != 0)
                die("aio_read of q");
            int got = aio_cancel(q[0], &c2);
            if (got != AIO_CANCELED || aio_error(&c2) != ECANCELED || aio_return(&c2) != -1)
                printf("error aio_cancel gave %d, %d\n", got, aio_error(&c2));
            if (write(q[1], "ping", 4) != 4)
                die("write q");
            finish(&c1, 4, "the read of q");
        }
        printf("step %ld inflight=%d\n", r, aio_error(&rd) == EINPROGRESS);
        sleep_ms(delay);
    }
    for (int i = 0; i < 500 && (atomic_load(&threads) < writes || atomic_load(&sigs) < 1); i++)
        sleep_ms(10);
    char buf[8192];
    ssize_t n = pread(fd, buf, sizeof buf, 0);
    uint64_t h = 0;
    for (ssize_t i = 0; i < n; i++)
        h = mix(h ^ (uint8_t)buf[i] ^ ((uint64_t)i << 20));
    printf("result %016llx size=%zd fed=%d sig=%d bad=%d thr=%d\n", (unsigned long long)h, n, fed, atomic_load(&sigs), atomic_load(&bad_sigs), atomic_load(&threads) == writes);
    return 0;
}
