/*
 * tree_workers: a parent that forks workers which report through pipes and count in shared
 * anonymous memory (a process tree, issue 13).
 *
 * Usage: tree_workers [WORKERS=2] [ROUNDS=60] [DELAY_MS=40]
 * The parent maps a MAP_SHARED|MAP_ANONYMOUS counter block, makes one pipe per worker and forks
 * the workers. Worker w, for round r = 1..ROUNDS: computes v = f(w, r) from its private running
 * state, adds v to the shared total and to its own shared slot (atomically), and writes the
 * record "w r v" to its pipe; it runs ahead of the parent (which reads one round per DELAY_MS),
 * so records wait in the pipes at any moment. After its last round it writes "w 0 <own sum>"
 * and exits with status 10 + w. The parent prints "step r" once it has read round r of every
 * worker, checking that records arrive in order and that the worker's own sum matches what it
 * received; at the end it reaps every worker with waitpid (checking pid and status: a restart
 * that lost the children gets ECHILD) and prints "result <hex>" from everything it read, the
 * shared counters and the exit statuses. Deterministic.
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tree_common.h"

#define MAXW 8

struct shared {
    uint64_t total;
    uint64_t slot[MAXW];
};

static void write_all(int fd, const char *b, size_t n)
{
    while (n > 0) {
        ssize_t k = write(fd, b, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            perror("worker write");
            _exit(90);
        }
        b += k;
        n -= (size_t)k;
    }
}

static void worker(int w, long rounds, long delay, int out, struct shared *sh)
{
    uint64_t state = mix((uint64_t)w + 1), sum = 0;
    for (long r = 1; r <= rounds; r++) {
        state = mix(state + (uint64_t)r);
        uint64_t v = state & 0xffff;
        __atomic_add_fetch(&sh->total, v, __ATOMIC_SEQ_CST);
        __atomic_add_fetch(&sh->slot[w], v, __ATOMIC_SEQ_CST);
        sum += v;
        char line[64];
        int n = snprintf(line, sizeof line, "%d %ld %llu\n", w, r, (unsigned long long)v);
        write_all(out, line, (size_t)n);
        sleep_ms(delay / 2); /* ahead of the parent: records wait in the pipe */
    }
    char line[64];
    int n = snprintf(line, sizeof line, "%d 0 %llu\n", w, (unsigned long long)sum);
    write_all(out, line, (size_t)n);
    close(out);
    _exit(10 + w);
}

int main(int argc, char **argv)
{
    int nw = argc > 1 ? atoi(argv[1]) : 2;
    long rounds = argc > 2 ? atol(argv[2]) : 60;
    long delay = argc > 3 ? atol(argv[3]) : 40;
    if (nw < 1 || nw > MAXW)
        return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    printf("start tree_workers workers=%d rounds=%ld\n", nw, rounds);
    int in[MAXW];
    pid_t pids[MAXW];
    for (int w = 0; w < nw; w++) {
        int p[2];
        if (pipe(p) != 0) {
            perror("pipe");
            return 1;
        }
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 1;
        }
        if (pid == 0) {
            close(p[0]);
            for (int k = 0; k < w; k++)
                close(in[k]);
            worker(w, rounds, delay, p[1], sh);
        }
        close(p[1]);
        in[w] = p[0];
        pids[w] = pid;
    }
    uint64_t acc = 0, got_sum[MAXW] = { 0 };
    char line[128];
    for (long r = 1; r <= rounds; r++) {
        for (int w = 0; w < nw; w++) {
            if (read_line_fd(in[w], line, sizeof line) < 0) {
                printf("error: worker %d: pipe ended before round %ld\n", w, r);
                return 1;
            }
            int ww;
            long rr;
            unsigned long long v;
            if (sscanf(line, "%d %ld %llu", &ww, &rr, &v) != 3 || ww != w || rr != r) {
                printf("error: worker %d round %ld: got \"%s\"\n", w, r, line);
                return 1;
            }
            got_sum[w] += v;
            acc = mix(acc ^ (v + (uint64_t)r * 1000003u + (uint64_t)w));
        }
        char s[64];
        int n = snprintf(s, sizeof s, "step %ld acc=%016llx\n", r, (unsigned long long)acc);
        write_all(1, s, (size_t)n);
        sleep_ms(delay);
    }
    for (int w = 0; w < nw; w++) {
        unsigned long long sum;
        int ww;
        long zero;
        if (read_line_fd(in[w], line, sizeof line) < 0 || sscanf(line, "%d %ld %llu", &ww, &zero, &sum) != 3 || ww != w || zero != 0) {
            printf("error: worker %d: no final record\n", w);
            return 1;
        }
        if (sum != got_sum[w] || sum != sh->slot[w]) {
            printf("error: worker %d: sent %llu, parent got %llu, shared slot %llu\n", w, sum, (unsigned long long)got_sum[w], (unsigned long long)sh->slot[w]);
            return 1;
        }
        if (read_line_fd(in[w], line, sizeof line) != -1) {
            printf("error: worker %d: data after its final record\n", w);
            return 1;
        }
        acc = mix(acc ^ (uint64_t)reap_exited(pids[w], 10 + w));
    }
    uint64_t total = 0;
    for (int w = 0; w < nw; w++)
        total += sh->slot[w];
    if (total != sh->total) {
        printf("error: shared total %llu != sum of slots %llu\n", (unsigned long long)sh->total, (unsigned long long)total);
        return 1;
    }
    printf("result %016llx\n", (unsigned long long)mix(acc ^ sh->total));
    return 0;
}
