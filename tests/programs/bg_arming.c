/*
 * bg_arming: pages written while a background snapshot arms (write-protects the program's
 * memory chunk by chunk while it runs), for the instant's protection of what was written since.
 *
 * Usage: bg_arming [SMALL=16] [ARRAY_MIB=128] [STEPS=150] [ROUNDS=40]
 * Holds an array of ARRAY_MIB MiB (every page in memory), SMALL regions of two pages 4 MiB apart
 * (the first page in memory, the second never touched: not in memory when the snapshot arms)
 * and a fresh region of 128 MiB with nothing in memory at the start. Each round, without a
 * pause, writes: one page in every 8 MiB of the array (disjoint ranges), the first page of every
 * small region, the next 4 pages of the fresh region (first writes, until it has all been
 * written once: the kernel makes new pages, without a write fault) and one page of the array dropped first (madvise MADV_DONTNEED, a
 * system call). Every page written holds a pattern of (page, version, word; compressible, so
 * that the image is written fast); before each write the page is checked to hold its previous
 * version. ROUNDS rounds make a step, "step N" after each; at the end every page of the three
 * regions is checked, and "result <hex>" (a hash of the versions) is printed. A page whose
 * write during an arming is missing from the image is found after the restart: "error page
 * ...". Deterministic: the same arguments give the same output.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096
#define WORDS (PAGE / 8)
#define FRESH_PAGES (128 * 256)

static uint64_t *array;
static size_t array_pages;
static char *small;
static long nsmall;
static uint64_t *fresh;
static size_t fresh_used;
/* Per page (array, then small regions, then fresh): its version (0: never written, zeros). */
static uint32_t *version;

static void die(const char *what)
{
    printf("error %s: %s\n", what, strerror(errno));
    fflush(stdout);
    exit(1);
}

/* Word w of page g at version v (0: never written). */
static uint64_t pattern(size_t g, uint32_t v, size_t w)
{
    return v ? (uint64_t)g << 40 ^ (uint64_t)v << 12 ^ w : 0;
}

/* Page g's address. */
static uint64_t *page_of(size_t g)
{
    if (g < array_pages)
        return array + g * WORDS;
    g -= array_pages;
    if (g < (size_t)nsmall)
        return (uint64_t *)(small + g * (4ul << 20));
    return fresh + (g - nsmall) * WORDS;
}

static void check(size_t g)
{
    const uint64_t *p = page_of(g);
    uint32_t v = version[g];
    for (size_t w = 0; w < WORDS; w++) {
        uint64_t want = pattern(g, v, w);
        if (p[w] != want) {
            printf("error page %zu (version %u) word %zu: %016llx, expected %016llx\n", g, v, w, (unsigned long long)p[w], (unsigned long long)want);
            fflush(stdout);
            exit(1);
        }
    }
}

static void write_page(size_t g)
{
    check(g);
    uint32_t v = ++version[g];
    uint64_t *p = page_of(g);
    for (size_t w = 0; w < WORDS; w++)
        p[w] = pattern(g, v, w);
}

int main(int argc, char **argv)
{
    nsmall = argc > 1 ? atol(argv[1]) : 16;
    size_t mib = argc > 2 ? (size_t)atol(argv[2]) : 128;
    long steps = argc > 3 ? atol(argv[3]) : 150;
    long rounds = argc > 4 ? atol(argv[4]) : 40;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (mib < 8 || mib % 8 || nsmall < 1) {
        printf("error bad arguments\n");
        return 1;
    }
    array_pages = mib * 256;
    size_t total = array_pages + nsmall + FRESH_PAGES;
    version = calloc(total, sizeof *version);
    array = mmap(NULL, mib << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    /* The small regions: two pages at each 4 MiB of a reservation (separate mappings). */
    small = mmap(NULL, nsmall * (4ul << 20), PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    fresh = mmap(NULL, FRESH_PAGES * (size_t)PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (!version || array == MAP_FAILED || small == MAP_FAILED || fresh == MAP_FAILED)
        die("memory");
    for (long i = 0; i < nsmall; i++)
        if (mmap(small + i * (4ul << 20), 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED)
            die("mmap");
    for (size_t g = 0; g < array_pages + nsmall; g++)
        write_page(g);
    printf("start bg_arming small=%ld mib=%zu steps=%ld rounds=%ld\n", nsmall, mib, steps, rounds);
    long r = 0;
    for (long s = 1; s <= steps; s++) {
        for (long k = 0; k < rounds; k++, r++) {
            for (size_t b = 0; b < array_pages; b += 2048)
                write_page(b + (size_t)(r % 512));
            for (long i = 0; i < nsmall; i++)
                write_page(array_pages + i);
            for (int i = 0; i < 4; i++)
                write_page(array_pages + nsmall + fresh_used++ % FRESH_PAGES);
            size_t d = (size_t)(r * 7919) % array_pages;
            check(d);
            if (madvise(page_of(d), PAGE, MADV_DONTNEED) != 0)
                die("madvise");
            version[d] = 0;
            write_page(d);
        }
        printf("step %ld\n", s);
    }
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t g = 0; g < total; g++) {
        check(g);
        h = (h ^ version[g]) * 0x100000001B3ull;
    }
    printf("result %016llx\n", (unsigned long long)h);
    return 0;
}
