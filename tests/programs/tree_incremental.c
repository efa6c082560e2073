/*
 * tree_incremental: a tree whose processes each own a large private memory that changes a
 * little per step (what increments of a tree's sets are for, issue 13).
 *
 * Usage: tree_incremental [MIB=16] [ROUNDS=80] [DELAY_MS=60] [LATE=18]
 * The parent forks workers 0 and 1 at the start, and worker 2 once it printed step LATE (a
 * process born between checkpoints). Each process fills MIB MiB of private memory with a
 * pattern of its own; at each round it rewrites one page of it (a different page each round)
 * and checksums the whole of it. Each worker, for its rounds, writes "w r checksum" to the one
 * pipe all workers share (records wait in it: the workers run a little ahead); the parent prints "step r"
 * once it has round r of every worker alive then, after its own round r. At the end the parent
 * checks each worker's final record (its running sum) and exit status (waitpid) and prints
 * "result <hex>" of every checksum in round order: a page of any process restored from the
 * wrong image of its chain changes the result. Deterministic.
 */
#include <stdint.h>
#include <sys/mman.h>

#include "tree_common.h"

#define NW 3
#define MAXR 1000

static uint64_t *mem;

/* splitmix64's output function: memory that does not compress (an image's size is its pages). */
static uint64_t noise(uint64_t z)
{
    z = (z + 1) * 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static size_t words, pages;

static void fill(size_t mib, uint64_t seed)
{
    size_t n = mib << 20;
    mem = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    words = n / 8;
    pages = n / 4096;
    for (size_t i = 0; i < words; i++)
        mem[i] = noise(i + (seed << 40));
}

/* Round r: rewrite one page, return the checksum of all memory. */
static uint64_t round_of(long r, uint64_t seed)
{
    size_t page = ((size_t)r * 7919u + (size_t)seed * 104729u) % pages;
    uint64_t *p = mem + page * 512;
    for (size_t k = 0; k < 512; k++)
        p[k] = noise(p[k] ^ (uint64_t)r ^ (seed << 32));
    uint64_t sum = 0;
    for (size_t i = 0; i < words; i++)
        sum = sum * 31 + mem[i];
    return sum;
}

static void worker(int w, long first, long rounds, long delay, int out)
{
    uint64_t total = 0;
    for (long r = first; r <= rounds; r++) {
        uint64_t c = round_of(r, (uint64_t)w + 1);
        total += c;
        char line[80];
        int n = snprintf(line, sizeof line, "%d %ld %016llx\n", w, r, (unsigned long long)c);
        xfer(out, line, (size_t)n, 1);
        sleep_ms(delay); /* at the parent's pace (a little ahead: records wait in the pipe) */
    }
    char line[80];
    int n = snprintf(line, sizeof line, "%d 0 %016llx\n", w, (unsigned long long)total);
    xfer(out, line, (size_t)n, 1);
    _exit(10 + w);
}

static uint64_t got[NW][MAXR + 1];
static int have[NW][MAXR + 1];
static uint64_t final_sum[NW];
static int finished[NW];

/* Read one record from the shared pipe into got/have (or final_sum). */
static void take_record(int in)
{
    char line[128];
    int w;
    long r;
    unsigned long long v;
    if (read_line_fd(in, line, sizeof line) < 0 || sscanf(line, "%d %ld %llx", &w, &r, &v) != 3 || w < 0 || w >= NW || r < 0 || r > MAXR) {
        printf("error: bad record \"%s\"\n", line);
        exit(1);
    }
    if (r == 0) {
        final_sum[w] = v;
        finished[w] = 1;
    } else {
        got[w][r] = v;
        have[w][r] = 1;
    }
}

int main(int argc, char **argv)
{
    size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 16;
    long rounds = argc > 2 ? atol(argv[2]) : 80;
    long delay = argc > 3 ? atol(argv[3]) : 60;
    long late = argc > 4 ? atol(argv[4]) : 18;
    if (rounds < 1 || rounds > MAXR || late < 1 || late >= rounds)
        return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("start tree_incremental mib=%zu rounds=%ld late=%ld\n", mib, rounds, late);
    int p[2];
    if (pipe(p) != 0) {
        perror("pipe");
        return 1;
    }
    fill(mib, 0);
    pid_t pids[NW];
    long first[NW] = { 1, 1, late + 1 };
    for (int w = 0; w < 2; w++) {
        pids[w] = fork();
        if (pids[w] < 0) {
            perror("fork");
            return 1;
        }
        if (pids[w] == 0) {
            close(p[0]);
            munmap(mem, mib << 20); /* the parent's memory is not this worker's */
            fill(mib, (uint64_t)w + 1);
            worker(w, 1, rounds, delay, p[1]);
        }
    }
    uint64_t acc = 0;
    for (long r = 1; r <= rounds; r++) {
        if (r == late + 1) {
            pids[2] = fork();
            if (pids[2] < 0) {
                perror("fork");
                return 1;
            }
            if (pids[2] == 0) {
                close(p[0]);
                munmap(mem, mib << 20);
                fill(mib, 3);
                worker(2, late + 1, rounds, delay, p[1]);
            }
        }
        uint64_t mine = round_of(r, 0);
        acc = mix(acc ^ mine ^ (uint64_t)r);
        for (int w = 0; w < NW; w++) {
            if (r < first[w])
                continue;
            while (!have[w][r])
                take_record(p[0]);
            acc = mix(acc ^ got[w][r] ^ ((uint64_t)w << 56));
        }
        printf("step %ld acc=%016llx\n", r, (unsigned long long)acc);
        sleep_ms(delay);
    }
    close(p[1]);
    for (int w = 0; w < NW; w++) {
        while (!finished[w])
            take_record(p[0]);
        uint64_t total = 0;
        for (long r = first[w]; r <= rounds; r++)
            total += got[w][r];
        if (total != final_sum[w]) {
            printf("error: worker %d: sent a sum of %016llx, the parent got %016llx\n", w, (unsigned long long)final_sum[w], (unsigned long long)total);
            return 1;
        }
        acc = mix(acc ^ final_sum[w] ^ (uint64_t)reap_exited(pids[w], 10 + w));
    }
    printf("result %016llx\n", (unsigned long long)acc);
    return 0;
}
