/* A process that changes its user and group ids while the program counts (zdtm pid00,
 * seccomp_filter, mlock_setuid): real, effective and saved ids all different, and a filesystem
 * group id apart from them (setfsgid), as root may set them.
 * Usage: tree_setuid child|self [STEPS=400] [DELAY_MS=20]
 *   child: a forked child changes its ids; each step the parent asks it for them over a pipe
 *   self:  the program itself changes its ids, then counts
 * Each step mixes the ids as the changed process sees them (getresuid, getresgid, and the
 * filesystem ids setfsuid/setfsgid(-1) return) into the state. Prints "start tree_setuid",
 * "ids ..." once the ids were set (what setresuid and the rest gave: an ordinary user gets
 * EPERM, and its ids stay), "step i" and "result <hex>". */
#define _GNU_SOURCE
#include "tree_common.h"
#include <grp.h>
#include <sys/fsuid.h>

/* What an ordinary user may not do: root changes them for real. */
static int set_ids(void)
{
    gid_t none[1] = { 65534 };
    int bad = 0;
    if (geteuid() == 0)
        bad |= setgroups(1, none) != 0;
    bad |= setresgid(5, 6, 7) != 0;
    setfsgid(8);
    bad |= setresuid(1, 2, 3) != 0;
    return bad;
}

/* The caller's ids as one line. */
static void ids(char *out, size_t n)
{
    uid_t r, e, s;
    gid_t gr, ge, gs;
    getresuid(&r, &e, &s);
    getresgid(&gr, &ge, &gs);
    int fsu = setfsuid(-1), fsg = setfsgid(-1);
    snprintf(out, n, "uid %u/%u/%u fsuid %d gid %u/%u/%u fsgid %d", r, e, s, fsu, gr, ge, gs, fsg);
}

static uint64_t mix_line(uint64_t state, const char *line)
{
    for (const char *c = line; *c; c++)
        state = mix(state + (uint64_t)(unsigned char)*c);
    return state;
}

int main(int argc, char **argv)
{
    int self = argc > 1 && strcmp(argv[1], "self") == 0;
    long steps = argc > 2 ? atol(argv[2]) : 400, delay = argc > 3 ? atol(argv[3]) : 20;
    setvbuf(stdout, NULL, _IONBF, 0);
    printf("start tree_setuid\n");
    char line[128];
    int ask[2], answer[2];
    pid_t child = -1;
    if (self) {
        int bad = set_ids();
        ids(line, sizeof line);
        printf("ids %s%s\n", line, bad ? " (not changed: EPERM)" : "");
    } else {
        if (pipe(ask) != 0 || pipe(answer) != 0)
            return 1;
        child = fork();
        if (child == 0) {
            int bad = set_ids();
            char c;
            for (;;) {
                xfer(ask[0], &c, 1, 0);
                ids(line, sizeof line);
                if (bad)
                    strcat(line, " (not changed: EPERM)");
                strcat(line, "\n");
                xfer(answer[1], line, strlen(line), 1);
            }
        }
        xfer(ask[1], "?", 1, 1);
        if (read_line_fd(answer[0], line, sizeof line) < 0)
            return 1;
        printf("ids %s\n", line);
    }
    uint64_t state = 1;
    for (long i = 1; i <= steps; i++) {
        if (!self) {
            xfer(ask[1], "?", 1, 1);
            if (read_line_fd(answer[0], line, sizeof line) < 0)
                return 1;
        } else {
            ids(line, sizeof line);
        }
        state = mix_line(state + (uint64_t)i, line);
        printf("step %ld\n", i);
        sleep_ms(delay);
    }
    printf("ids at the end: %s\n", line);
    if (self)
        printf("result %016llx\n", (unsigned long long)state);
    else
        end_with_child(child, state);
    return 0;
}
