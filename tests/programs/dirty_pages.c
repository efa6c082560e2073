/*
 * dirty_pages: memory that changes a little between checkpoints, in every way that matters to
 * incremental images.
 *
 * Usage: dirty_pages [MIB=32] [N=120] [DELAY_MS=10]
 * Holds MIB MiB of random data (mmap) plus a malloc'd buffer and a fixed 1 MiB mapping. For
 * i = 1..N: rewrites 1% of the pages (a few bytes each), and every few steps also drops pages
 * with MADV_DONTNEED (they read back as zeros), grows the malloc'd buffer with realloc (mremap:
 * in place or moved), replaces the fixed mapping (munmap + mmap at the same address, new
 * contents), and makes part of the data read-only and writable again (mprotect). Prints
 * "step i sum=<hex>" after each step and "result <hex>" (a hash of all memory) at the end.
 * Deterministic: the same arguments always give the same output. An incremental restart that
 * loses a write, revives dropped pages or mixes up a replaced mapping prints another result.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define PAGE 4096

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static uint64_t hash(const void *p, size_t len, uint64_t h)
{
    const uint64_t *w = p;
    for (size_t i = 0; i < len / 8; i++) {
        h ^= w[i];
        h *= 0x100000001B3ull;
    }
    return h;
}

static void fill(uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len / 8; i++)
        ((uint64_t *)p)[i] = next();
}

int main(int argc, char **argv)
{
    size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 32;
    long n = argc > 2 ? atol(argv[2]) : 120;
    long delay = argc > 3 ? atol(argv[3]) : 10;
    setvbuf(stdout, NULL, _IOLBF, 0);

    size_t len = mib << 20, pages = len / PAGE;
    uint8_t *data = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    size_t buf_len = 1 << 20;
    uint8_t *buf = malloc(buf_len);
    size_t fixed_len = 1 << 20;
    uint8_t *fixed = mmap(NULL, fixed_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (data == MAP_FAILED || buf == NULL || fixed == MAP_FAILED) {
        perror("memory");
        return 1;
    }
    fill(data, len);
    fill(buf, buf_len);
    fill(fixed, fixed_len);
    printf("start dirty_pages mib=%zu n=%ld\n", mib, n);

    for (long i = 1; i <= n; i++) {
        for (size_t k = 0; k < pages / 100; k++) {
            size_t pg = next() % pages;
            ((uint64_t *)(data + pg * PAGE))[next() % (PAGE / 8)] = next();
        }
        if (i % 7 == 0) {
            size_t pg = next() % (pages - 16);
            madvise(data + pg * PAGE, 16 * PAGE, MADV_DONTNEED);
        }
        if (i % 11 == 0) {
            size_t grown = buf_len + 64 * 1024;
            uint8_t *b = realloc(buf, grown);
            if (b == NULL) {
                perror("realloc");
                return 1;
            }
            buf = b;
            fill(buf + buf_len, grown - buf_len);
            buf_len = grown;
        }
        if (i % 13 == 0) {
            munmap(fixed, fixed_len);
            uint8_t *f = mmap(fixed, fixed_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
            if (f != fixed) {
                perror("mmap fixed");
                return 1;
            }
            fill(fixed, fixed_len / 2); /* the second half stays zero */
        }
        if (i % 17 == 0) {
            size_t pg = next() % (pages - 64);
            mprotect(data + pg * PAGE, 64 * PAGE, PROT_READ);
            mprotect(data + pg * PAGE, 64 * PAGE, PROT_READ | PROT_WRITE);
            data[pg * PAGE + 8] ^= 0x5a;
        }
        uint64_t sum = hash(data, len, i);
        printf("step %ld sum=%016llx\n", i, (unsigned long long)sum);
        sleep_ms(delay);
    }
    uint64_t h = hash(data, len, 1);
    h = hash(buf, buf_len, h);
    h = hash(fixed, fixed_len, h);
    printf("result %016llx\n", (unsigned long long)h);
    return 0;
}
