/*
 * bg_syscalls: while a background snapshot is being written, everything a program may do to
 * memory that is write-protected, besides writing it: create threads and processes, unmap and
 * map again, drop pages (MADV_DONTNEED), change protections, move mappings (mremap), take
 * signals (on its stack, on an alternate stack set up on the heap), and handle them with system
 * calls.
 *
 * Usage: bg_syscalls [STEPS=80] [DELAY_MS=10]
 * Prints "step i sum=<hex>" after each step and "result <hex>" (a hash of all its memory) at
 * the end. Deterministic: the same arguments always give the same output. A call that failed
 * prints "error ..." and exits 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
#define MIB (1 << 20)
#define NA (32 * MIB)  /* the array */
#define NB (1 * MIB)   /* a mapping unmapped and mapped again */
#define NC (256 * 1024) /* a mapping that moves */

static uint8_t *a, *b, *c;
static size_t nc = NC;
static volatile uint64_t handled;

static void die(const char *what)
{
    printf("error %s: %s\n", what, strerror(errno));
    fflush(stdout);
    exit(1);
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void fill(uint8_t *p, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i += 8)
        *(uint64_t *)(p + i) = (seed + i) * 0x9E3779B97F4A7C15ull;
}

static uint64_t hash(const uint8_t *p, size_t n, uint64_t h)
{
    for (size_t i = 0; i < n; i += 8)
        h = (h ^ *(const uint64_t *)(p + i)) * 0x100000001B3ull;
    return h;
}

/* SIGUSR1 (on the stack) and SIGVTALRM (on the alternate stack): write protected memory and make
 * system calls from the handler. */
static void on_signal(int sig)
{
    uint64_t step = handled + 1;
    a[(step * 7 * PAGE) % NA] ^= (uint8_t)sig;
    if (getpid() <= 0 || write(-1, "", 0) != -1)
        die("handler syscalls");
    handled = step;
}

static void *thread_body(void *arg)
{
    uint64_t i = (uint64_t)(uintptr_t)arg;
    for (size_t k = 0; k < 64; k++)
        a[(i * 4096 + k * 8192 + 100) % NA] += (uint8_t)i;
    return (void *)(uintptr_t)(i * 3);
}

int main(int argc, char **argv)
{
    long steps = argc > 1 ? atol(argv[1]) : 80;
    long delay = argc > 2 ? atol(argv[2]) : 10;
    setvbuf(stdout, NULL, _IOLBF, 0);
    a = mmap(NULL, NA, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    b = mmap(NULL, NB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    c = mmap(NULL, nc, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint8_t *alt = malloc(64 * 1024);
    if (a == MAP_FAILED || b == MAP_FAILED || c == MAP_FAILED || !alt)
        die("memory");
    fill(a, NA, 1);
    fill(b, NB, 2);
    fill(c, nc, 3);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigfillset(&sa.sa_mask); /* blocks SIGSYS too: the runtime must cope */
    sigaction(SIGUSR1, &sa, NULL);
    sa.sa_flags = SA_ONSTACK;
    sigaction(SIGVTALRM, &sa, NULL);
    printf("start bg_syscalls steps=%ld\n", steps);
    for (long i = 1; i <= steps; i++) {
        /* Keep the snapshot busy: rewrite every page of the array. */
        for (size_t p = 0; p < NA; p += PAGE)
            a[p + (i % 64) * 8] += (uint8_t)i;
        /* Unmap and map again at the same place. */
        if (i % 5 == 0) {
            if (munmap(b, NB) != 0 || mmap(b, NB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != b)
                die("remap");
            fill(b, NB, (uint64_t)i);
        }
        /* Drop pages: they read back as zeros. */
        if (i % 3 == 0 && madvise(a + (i % 16) * MIB, 256 * 1024, MADV_DONTNEED) != 0)
            die("madvise");
        /* Read-only for a moment. */
        if (mprotect(a + 20 * MIB, MIB, PROT_READ) != 0 || mprotect(a + 20 * MIB, MIB, PROT_READ | PROT_WRITE) != 0)
            die("mprotect");
        a[20 * MIB + i] ^= 1;
        /* Move a mapping (it grows). */
        if (i % 7 == 0) {
            uint8_t *n = mremap(c, nc, nc + PAGE, MREMAP_MAYMOVE);
            if (n == MAP_FAILED)
                die("mremap");
            c = n;
            nc += PAGE;
            c[nc - 1] = (uint8_t)i;
        }
        /* An alternate signal stack on the heap, set up now; signals on both stacks. */
        stack_t ss = { .ss_sp = alt, .ss_size = 64 * 1024, .ss_flags = 0 };
        if (sigaltstack(&ss, NULL) != 0)
            die("sigaltstack");
        raise(SIGUSR1);
        raise(SIGVTALRM);
        ss.ss_flags = SS_DISABLE;
        if (sigaltstack(&ss, NULL) != 0)
            die("sigaltstack off");
        if (i % 4 == 0) {
            /* Every fourth step (a snapshot defers these to its end): a thread that writes and
             * ends. */
            pthread_t t;
            void *ret;
            if (pthread_create(&t, NULL, thread_body, (void *)(uintptr_t)i) != 0 || pthread_join(t, &ret) != 0)
                die("thread");
            a[i * 13] ^= (uint8_t)(uintptr_t)ret;
            /* A process that computes from its copy of memory. */
            pid_t pid = fork();
            if (pid < 0)
                die("fork");
            if (pid == 0)
                _exit((int)(hash(a, PAGE, i) & 0x7f));
            int st;
            if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st))
                die("waitpid");
            a[PAGE + i] = (uint8_t)WEXITSTATUS(st);
        }
        uint64_t h = hash(a, NA, 0xcbf29ce484222325ull);
        h = hash(b, NB, h);
        h = hash(c, nc & ~7ul, h);
        printf("step %ld sum=%016llx handled=%llu\n", i, (unsigned long long)h, (unsigned long long)handled);
        sleep_ms(delay);
    }
    uint64_t h = hash(a, NA, 0xcbf29ce484222325ull);
    h = hash(b, NB, h);
    h = hash(c, nc & ~7ul, h);
    printf("result %016llx\n", (unsigned long long)(h ^ handled));
    return 0;
}
