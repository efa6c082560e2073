/*
 * step_ring: the tasks of a Slurm step (SLURM_PROCID of SLURM_STEP_NUM_TASKS) pass data round a
 * ring over TCP, as a parallel solver would.
 *
 * Usage: step_ring DIR [ROUNDS=60] [DELAY_MS=50] [SIZE=65536] [WORKER=0] [EARLY]
 * With WORKER=1 each task is a process tree: before anything else it forks a worker that makes
 * the bytes the task sends each round (the task writes it a seed over a pipe, the worker
 * answers with SIZE bytes over another); the result is the same as without a worker.
 * With WORKER=2 the task, once connected, forks a child that inherits the ring's sockets, and
 * the two take turns: the task makes the odd rounds, the child the even ones, each passing the
 * state to the other over a pipe after its round. Two processes of the task's tree hold and
 * use each connection to the other tasks; the result is the same as without a child.
 * Each task listens on a port of its own (published as DIR/port.RANK), connects to the next
 * task and accepts the previous one. Prints "start step_ring rank=R n=N", then each round
 * i = 1..ROUNDS: sends SIZE bytes made from its state to the next task, sleeps DELAY_MS (so
 * that the data is in flight when a checkpoint comes), receives SIZE bytes from the previous
 * task and folds them into its state; prints "step i state=<hex>". Last "result <hex>". Every
 * task's result depends on every byte every task received: a byte lost, duplicated or
 * reordered between tasks changes them all. Deterministic for the same N and arguments.
 * With EARLY=RANK:ROUND:STATUS (the sixth argument, after WORKER), task RANK takes no part in
 * the ring: it makes ROUND rounds on its own, prints its result and returns STATUS from main
 * (exit(3)'s way), while the others (at least two) make the ring without it. Every task then
 * appends "start RANK PID" to DIR/starts.RANK as it starts (a test counts the lines: a task
 * run again adds one).
 * With STEP_RING_HOLD=FILE:ROUND in the environment, rank 0 waits before round ROUND until
 * FILE exists (the whole ring waits with it; rank 0 alone with EARLY=0:... waits alone): a test
 * holds the ring, or keeps rank 0 from ending, until it says so; the result is the same.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "port_common.h"

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static long env_num(const char *a, const char *b)
{
    const char *v = getenv(a);
    if (v == NULL && b != NULL)
        v = getenv(b);
    return v ? atol(v) : -1;
}

static void die(const char *what)
{
    perror(what);
    exit(2);
}

static void send_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            die("send");
        p += k;
        n -= (size_t)k;
    }
}

/* The bytes a task sends in a round: SIZE bytes of xorshift from SEED. */
static void fill(unsigned char *out, size_t size, uint64_t x)
{
    for (size_t j = 0; j < size; j++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out[j] = (unsigned char)x;
    }
}

/* Pipes between a task and its worker: read(2) and write(2) until N bytes. */
static void write_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            die("write");
        p += k;
        n -= (size_t)k;
    }
}

static void read_all(int fd, unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = read(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            die(k == 0 ? "read: the pipe was closed" : "read");
        p += k;
        n -= (size_t)k;
    }
}

/* The worker: for each seed read from REQ, SIZE bytes written to RESP; ends at EOF. */
static void worker(int req, int resp, size_t size)
{
    unsigned char *out = malloc(size);
    uint64_t seed;
    if (out == NULL)
        die("malloc");
    for (;;) {
        ssize_t k = read(req, &seed, sizeof seed);
        if (k < 0 && errno == EINTR)
            continue;
        if (k == 0)
            _exit(0);
        if (k != sizeof seed)
            die("worker read");
        fill(out, size, seed);
        write_all(resp, out, size);
    }
}

static void recv_all(int fd, unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = recv(fd, p, n, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k == 0) {
            fprintf(stderr, "recv: the previous task closed the connection\n");
            exit(2);
        }
        if (k < 0)
            die("recv");
        p += k;
        n -= (size_t)k;
    }
}

/* EARLY: every task notes its start in DIR/starts.RANK (one write, appended). */
static void note_start(const char *dir, long rank)
{
    char path[4096], line[64];
    snprintf(path, sizeof path, "%s/starts.%ld", dir, rank);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0600);
    int len = snprintf(line, sizeof line, "start %ld %d\n", rank, (int)getpid());
    if (fd < 0 || write(fd, line, (size_t)len) != len)
        die(path);
    close(fd);
}

/* STEP_RING_HOLD: rank 0 waits before round I until the file it names exists. */
static void hold_before(long rank, long i)
{
    const char *hold = getenv("STEP_RING_HOLD");
    const char *at = hold ? strrchr(hold, ':') : NULL;
    char file[4096];
    if (rank != 0 || at == NULL || (size_t)(at - hold) >= sizeof file || i != atol(at + 1))
        return;
    memcpy(file, hold, (size_t)(at - hold));
    file[at - hold] = '\0';
    while (access(file, F_OK) != 0)
        sleep_ms(50);
}

/* EARLY: the task that is no part of the ring: ROUNDS rounds alone, then STATUS. */
static int alone(long rank, long rounds, long delay, int status)
{
    uint64_t state = 0x9E3779B97F4A7C15ULL ^ (uint64_t)rank;
    printf("start step_ring rank=%ld alone\n", rank);
    for (long i = 1; i <= rounds; i++) {
        hold_before(rank, i);
        state = (state ^ (uint64_t)i) * 1099511628211ULL;
        sleep_ms(delay);
        printf("step %ld state=%016llx\n", i, (unsigned long long)state);
    }
    printf("result %016llx\n", (unsigned long long)state);
    return status;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: step_ring DIR [ROUNDS] [DELAY_MS] [SIZE]\n");
        return 2;
    }
    const char *dir = argv[1];
    long rounds = argc > 2 ? atol(argv[2]) : 60;
    long delay = argc > 3 ? atol(argv[3]) : 50;
    size_t size = argc > 4 ? (size_t)atol(argv[4]) : 65536;
    long rank = env_num("SLURM_PROCID", NULL);
    long n = env_num("SLURM_STEP_NUM_TASKS", "SLURM_NTASKS");
    if (rank < 0 || n < 2 || rank >= n) {
        fprintf(stderr, "step_ring: needs SLURM_PROCID and SLURM_STEP_NUM_TASKS >= 2\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    long early = -1, early_round = 0, early_status = 0;
    if (argc > 6 && (sscanf(argv[6], "%ld:%ld:%ld", &early, &early_round, &early_status) != 3 || n < 3))
        early = -1;
    if (early >= 0)
        note_start(dir, rank);
    if (rank == early)
        return alone(rank, early_round, delay, (int)early_status);
    int to_worker = -1, from_worker = -1;
    if (argc > 5 && atoi(argv[5]) == 1) {
        int req[2], resp[2];
        if (pipe(req) != 0 || pipe(resp) != 0)
            die("pipe");
        pid_t w = fork();
        if (w < 0)
            die("fork");
        if (w == 0) {
            close(req[1]);
            close(resp[0]);
            worker(req[0], resp[1], size);
        }
        close(req[0]);
        close(resp[1]);
        to_worker = req[1];
        from_worker = resp[0];
    }

    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY) };
    if (l < 0 || bind_free_port(l, &a, sizeof a) != 0 || listen(l, 4) != 0)
        die("listen");
    socklen_t alen = sizeof a;
    getsockname(l, (struct sockaddr *)&a, &alen);
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/port.%ld", dir, rank);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        die(tmp);
    fprintf(f, "%d\n", ntohs(a.sin_port));
    fclose(f);
    rename(tmp, path);

    /* Connect to the next task (its port file may not be there yet). */
    long after = (rank + 1) % n == early ? (rank + 2) % n : (rank + 1) % n;
    snprintf(path, sizeof path, "%s/port.%ld", dir, after);
    int port = 0;
    for (int tries = 0; port == 0 && tries < 600; tries++) {
        FILE *p = fopen(path, "r");
        if (p != NULL) {
            if (fscanf(p, "%d", &port) != 1)
                port = 0;
            fclose(p);
        }
        if (port == 0)
            sleep_ms(50);
    }
    if (port == 0) {
        fprintf(stderr, "step_ring: %s did not appear\n", path);
        return 2;
    }
    int next = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int ok = -1;
    for (int tries = 0; ok != 0 && tries < 100; tries++) {
        ok = connect(next, (struct sockaddr *)&to, sizeof to);
        if (ok != 0)
            sleep_ms(50);
    }
    if (ok != 0)
        die("connect");
    int prev = accept(l, NULL, NULL);
    if (prev < 0)
        die("accept");
    int one = 1;
    setsockopt(next, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

    unsigned char *out = malloc(size), *in = malloc(size);
    if (out == NULL || in == NULL)
        die("malloc");
    uint64_t state = 0x9E3779B97F4A7C15ULL ^ (uint64_t)rank;
    printf("start step_ring rank=%ld n=%ld\n", rank, n);
    /* WORKER=2: the turns. `turn_in` brings the state after the other's round, `turn_out` takes
     * it after ours; `child` is the child's pid in the task, 0 in the child. */
    int turn_in = -1, turn_out = -1, in_child = 0;
    pid_t child = 0;
    if (argc > 5 && atoi(argv[5]) == 2) {
        int down[2], up[2];
        if (pipe(down) != 0 || pipe(up) != 0)
            die("pipe");
        child = fork();
        if (child < 0)
            die("fork");
        in_child = child == 0;
        turn_in = in_child ? down[0] : up[0];
        turn_out = in_child ? up[1] : down[1];
        close(in_child ? down[1] : up[1]);
        close(in_child ? up[0] : down[0]);
    }
    for (long i = 1; i <= rounds; i++) {
        hold_before(rank, i);
        if (turn_in >= 0 && (i % 2 == 0) != in_child) {
            read_all(turn_in, (unsigned char *)&state, sizeof state);
            continue;
        }
        uint64_t x = state ^ (uint64_t)i;
        if (to_worker >= 0) {
            write_all(to_worker, (unsigned char *)&x, sizeof x);
            read_all(from_worker, out, size);
        } else {
            fill(out, size, x);
        }
        send_all(next, out, size);
        sleep_ms(delay);
        recv_all(prev, in, size);
        for (size_t j = 0; j < size; j++)
            state = (state ^ in[j]) * 1099511628211ULL;
        printf("step %ld state=%016llx\n", i, (unsigned long long)state);
        if (turn_out >= 0)
            write_all(turn_out, (unsigned char *)&state, sizeof state);
    }
    if (in_child)
        _exit(0);
    if (child > 0) {
        int st = 0;
        if (waitpid(child, &st, 0) != child || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "step_ring: the child that took turns failed (status %d)\n", st);
            return 2;
        }
    }
    printf("result %016llx\n", (unsigned long long)state);
    return 0;
}
