/*
 * tree_shared_fds: a tree of many processes that all hold the same many socketpairs and pipes
 * (made once, before the first fork), for the tests of a tree sharing many fds
 * (process_trees_sharedfds; zdtm session03's shape: a checkpoint or restart that costs
 * processes x fds shows here).
 *
 * Usage: tree_shared_fds [PROCS=64] [PAIRS=300] [PIPES=100] [ROUNDS=40] [DELAY_MS=40]
 * The root (process 0) makes PAIRS stream socketpairs and PIPES pipes, then the tree is made:
 * process k forks processes 2k+1 and 2k+2 (below PROCS), and nobody closes anything: every
 * process holds every fd. Round r, for each worker k = 1..PROCS-1: socketpair s = (k + r*PROCS)
 * mod PAIRS carries the root's request (written at end 0, read by worker k at end 1); the
 * answer, f(request) from the worker's private running state, comes back through end 1 of that
 * socketpair on even rounds and through pipe (k + r*PROCS) mod PIPES on odd ones. In one round
 * each socketpair and pipe serves one worker at most (PROCS-1 <= PIPES, and 2*PROCS-1 <= PAIRS
 * so that a worker already waiting at round r+1's socketpair never reads another's round r
 * request), and over the rounds every worker uses many of the fds it inherited. The root sends every request of round
 * r, sleeps DELAY_MS (requests and answers wait unread), reads every answer and prints
 * "step r". At the end every worker waits for its children (status 10 + their index mod 100),
 * exits with its own; the root reaps its children, checks that no socket or pipe holds a byte
 * more, and prints "result <hex>" of everything it read. Deterministic.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tree_common.h"

static int procs, npairs, npipes;
static long rounds, delay;
static int (*pairs)[2];
static int (*pipes)[2];

static int pair_of(int k, long r)
{
    return (int)(((long)k + r * procs) % npairs);
}

static int pipe_of(int k, long r)
{
    return (int)(((long)k + r * procs) % npipes);
}

/* Worker k: answer every round's request, then reap its children and exit. */
static void worker(int k)
{
    uint64_t state = mix((uint64_t)k * 7919u + 1);
    for (long r = 1; r <= rounds; r++) {
        uint64_t req, ans;
        int s = pair_of(k, r);
        xfer(pairs[s][1], &req, sizeof req, 0);
        if (req != mix((uint64_t)k ^ ((uint64_t)r << 32))) {
            fprintf(stderr, "worker %d round %ld: request %016llx on socketpair %d is not its own\n", k, r, (unsigned long long)req, s);
            _exit(91);
        }
        state = mix(state ^ req);
        ans = state;
        xfer(r % 2 ? pipes[pipe_of(k, r)][1] : pairs[s][1], &ans, sizeof ans, 1);
    }
}

/* Make process k's children (2k+1, 2k+2), each working then making its own. */
static int make_children(int k, pid_t kids[2])
{
    int n = 0;
    for (int c = 2 * k + 1; c <= 2 * k + 2 && c < procs; c++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            exit(1);
        }
        if (pid == 0) {
            pid_t mine[2];
            int m = make_children(c, mine);
            worker(c);
            for (int i = 0; i < m; i++)
                reap_exited(mine[i], 10 + (2 * c + 1 + i) % 100);
            _exit(10 + c % 100);
        }
        kids[n++] = pid;
    }
    return n;
}

/* Whether fd holds a byte unread (it must not at the end). */
static int has_data(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    char c;
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    ssize_t n = read(fd, &c, 1);
    fcntl(fd, F_SETFL, fl);
    return n > 0;
}

int main(int argc, char **argv)
{
    procs = argc > 1 ? atoi(argv[1]) : 64;
    npairs = argc > 2 ? atoi(argv[2]) : 300;
    npipes = argc > 3 ? atoi(argv[3]) : 100;
    rounds = argc > 4 ? atol(argv[4]) : 40;
    delay = argc > 5 ? atol(argv[5]) : 40;
    if (procs < 2 || npipes < procs - 1 || npairs < 2 * procs - 1)
        return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    pairs = calloc((size_t)npairs, sizeof *pairs);
    pipes = calloc((size_t)npipes, sizeof *pipes);
    for (int i = 0; i < npairs; i++) {
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, pairs[i]) != 0) {
            perror("socketpair");
            return 1;
        }
    }
    for (int i = 0; i < npipes; i++) {
        if (pipe(pipes[i]) != 0) {
            perror("pipe");
            return 1;
        }
    }
    printf("start tree_shared_fds procs=%d pairs=%d pipes=%d rounds=%ld\n", procs, npairs, npipes, rounds);
    pid_t kids[2];
    int nkids = make_children(0, kids);
    uint64_t acc = 0;
    for (long r = 1; r <= rounds; r++) {
        for (int k = 1; k < procs; k++) {
            uint64_t req = mix((uint64_t)k ^ ((uint64_t)r << 32));
            xfer(pairs[pair_of(k, r)][0], &req, sizeof req, 1);
        }
        sleep_ms(delay);
        for (int k = 1; k < procs; k++) {
            uint64_t ans;
            xfer(r % 2 ? pipes[pipe_of(k, r)][0] : pairs[pair_of(k, r)][0], &ans, sizeof ans, 0);
            acc = mix(acc ^ ans ^ (uint64_t)k);
        }
        printf("step %ld acc=%016llx\n", r, (unsigned long long)acc);
    }
    for (int i = 0; i < nkids; i++)
        acc = mix(acc ^ (uint64_t)reap_exited(kids[i], 10 + (1 + i) % 100));
    for (int i = 0; i < npairs; i++) {
        if (has_data(pairs[i][0]) || has_data(pairs[i][1])) {
            printf("error: socketpair %d holds data at the end\n", i);
            return 1;
        }
    }
    for (int i = 0; i < npipes; i++) {
        if (has_data(pipes[i][0])) {
            printf("error: pipe %d holds data at the end\n", i);
            return 1;
        }
    }
    printf("result %016llx\n", (unsigned long long)acc);
    return 0;
}
