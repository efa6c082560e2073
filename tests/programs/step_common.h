/* Shared by the test programs of a step's tasks that talk late (step_late.c, step_udp.c): a
 * sleep, an exit on error, a file published whole and read once it is, and the fold of a
 * value into a state. */
#ifndef STEP_COMMON_H
#define STEP_COMMON_H
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

__attribute__((unused)) static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

__attribute__((unused)) static void die(const char *what)
{
    perror(what);
    exit(2);
}

/* Write LINE to DIR/KIND.RANK, whole (renamed into place). */
__attribute__((unused)) static void publish(const char *dir, const char *kind, long rank, const char *line)
{
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/%s.%ld", dir, kind, rank);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        die(tmp);
    fputs(line, f);
    fclose(f);
    rename(tmp, path);
}

__attribute__((unused)) static uint64_t mix(uint64_t s, uint64_t v)
{
    s ^= v;
    s *= 0x100000001b3ULL;
    return s ^ (s >> 29);
}
/* "ADDRESS PORT" of DIR/KIND.RANK, once published (waited for: 30 s at most): the port, the
 * address in ADDR (64 bytes). */
__attribute__((unused)) static int read_published(const char *dir, const char *kind, long rank, char *addr)
{
    char path[4096];
    int port = 0;
    snprintf(path, sizeof path, "%s/%s.%ld", dir, kind, rank);
    for (int tries = 0; port == 0 && tries < 600; tries++) {
        FILE *p = fopen(path, "r");
        if (p != NULL) {
            if (fscanf(p, "%63s %d", addr, &port) != 2)
                port = 0;
            fclose(p);
        }
        if (port == 0)
            sleep_ms(50);
    }
    if (port == 0)
        die(path);
    return port;
}
#endif
