/* A tree that waits for SIGTERM, as CRIU's zdtm tests do (session03): the root forks A, A forks
 * B; A and B fill MIB MiB each with a pattern of their own (a large image: a slow restore), say
 * so through a pipe and wait for SIGUSR1. The root prints "started" once, "waiting" when the tree is made, and then
 * waits for SIGTERM (its handler counts them). Then it sends SIGUSR1 to A, which sends it to B
 * and reaps it; each checks its memory and reports its sum through a pipe to the root, which
 * reaps A, waits a moment (a second SIGTERM would arrive then) and prints
 * "result A=<sum> B=<sum> term=<count>". Usage: tree_term MIB */
#include "tree_common.h"
#include <sys/mman.h>

static volatile sig_atomic_t term, usr1;

static void on_term(int s)
{
    (void)s;
    term++;
}

static void on_usr1(int s)
{
    (void)s;
    usr1 = 1;
}

/* Fill `mib` MiB with the pattern of `seed`; return the memory. */
static uint64_t *fill(size_t mib, uint64_t seed)
{
    size_t n = mib << 17;
    uint64_t *m = mmap(NULL, n * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        perror("mmap");
        exit(91);
    }
    for (size_t i = 0; i < n; i++)
        m[i] = mix(seed + i);
    return m;
}

/* The sum of the memory, or 0 when a word is not the pattern's. */
static uint64_t check(const uint64_t *m, size_t mib, uint64_t seed)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < (mib << 17); i++) {
        if (m[i] != mix(seed + i))
            return 0;
        sum += m[i];
    }
    return sum;
}

/* Wait until SIGUSR1 came (taken only here: `open` is the mask without it). */
static void wait_usr1(const sigset_t *open)
{
    while (!usr1)
        sigsuspend(open);
}

static void member(const char *name, size_t mib, uint64_t seed, int ready, int report, pid_t child, const sigset_t *open)
{
    uint64_t *m = fill(mib, seed);
    xfer(ready, "r", 1, 1);
    close(ready);
    wait_usr1(open);
    if (child > 0) {
        int st;
        kill(child, SIGUSR1);
        if (waitpid(child, &st, 0) != child || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "%s: its child ended wrong (%#x)\n", name, st);
            exit(92);
        }
    }
    char line[64];
    int n = snprintf(line, sizeof line, "%s=%016llx\n", name, (unsigned long long)check(m, mib, seed));
    xfer(report, line, (size_t)n, 1);
    exit(0);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    /* SIGTERM and SIGUSR1 are taken only in sigsuspend. */
    sigset_t both, open;
    sigemptyset(&both);
    sigaddset(&both, SIGTERM);
    sigaddset(&both, SIGUSR1);
    sigprocmask(SIG_BLOCK, &both, &open);
    int p[2], r[2];
    if (pipe(p) != 0 || pipe(r) != 0) {
        perror("pipe");
        return 93;
    }
    printf("started\n");
    pid_t a = fork();
    if (a == 0) {
        close(p[0]);
        close(r[0]);
        pid_t b = fork();
        if (b == 0)
            member("B", mib, 2, r[1], p[1], 0, &open);
        member("A", mib, 1, r[1], p[1], b, &open);
    }
    close(p[1]);
    close(r[1]);
    /* A and B filled their memory. */
    char two[2];
    xfer(r[0], two, 2, 0);
    close(r[0]);
    printf("waiting\n");
    while (!term)
        sigsuspend(&open);
    kill(a, SIGUSR1);
    char got[2][64];
    for (int i = 0; i < 2; i++)
        if (read_line_fd(p[0], got[i], sizeof got[i]) <= 0) {
            fprintf(stderr, "root: a report is missing\n");
            return 94;
        }
    int st;
    if (waitpid(a, &st, 0) != a || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "root: A ended wrong (%#x)\n", st);
        return 95;
    }
    /* A second SIGTERM (one forwarded twice) would be here by now. */
    sigprocmask(SIG_UNBLOCK, &both, NULL);
    sleep_ms(300);
    const char *first = got[0][0] == 'A' ? got[0] : got[1], *second = got[0][0] == 'A' ? got[1] : got[0];
    printf("result %.*s %.*s term=%d\n", (int)strcspn(first, "\n"), first, (int)strcspn(second, "\n"), second, (int)term);
    return 0;
}
