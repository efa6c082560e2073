/* tree_timens: the parent makes a time namespace (unshare(CLONE_NEWTIME); its CLOCK_MONOTONIC
 * 1000 s and its CLOCK_BOOTTIME 500 s ahead of the parent's), forks two children in it and goes
 * back into its own (setns, as zdtm timens_nested): the children stay in the namespace it made.
 * At every step the parent asks each child for its clocks between two readings of its own: the
 * child's lie between those two plus the offsets (exactly: one host clock under both); every
 * process checks that its clocks never go back; the two children are in one time namespace, not
 * the parent's. Any failure changes the result.
 * At its end it forks one more child, which must be in the children's namespace when the parent
 * still has it for its children, else in the parent's.
 * Usage: tree_timens [STEPS=60] [DELAY_MS=50] [MODE]: "kids": the parent stays out of the
 * namespace it made but keeps it for its children (no setns back: zdtm timens_for_kids with
 * children forked before the checkpoint); "user": a user namespace of its own first (what an
 * ordinary user needs to make a time namespace), and no way back into its old time namespace
 * (owned by the user namespace above); "again": the first child makes yet another time
 * namespace for its own children (which ckpt refuses).
 * Prints "start tree_timens", "step i" and "result <hex>"; each failed check a line on stderr. */
#define _GNU_SOURCE
#include "tree_common.h"
#include <fcntl.h>
#include <sched.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x80
#endif

#define NS 1000000000LL

struct clocks {
    long long mono, boot;
};

static struct clocks now(void)
{
    struct timespec m, b;
    clock_gettime(CLOCK_MONOTONIC, &m);
    clock_gettime(CLOCK_BOOTTIME, &b);
    return (struct clocks){m.tv_sec * NS + m.tv_nsec, b.tv_sec * NS + b.tv_nsec};
}

/* Whether `c` went back from `*last` (then noted); `*last` becomes `c`. */
static int went_back(const char *who, struct clocks c, struct clocks *last)
{
    int back = c.mono < last->mono || c.boot < last->boot;
    if (back)
        fprintf(stderr, "%s: the clocks went back: monotonic %lld -> %lld, boottime %lld -> %lld\n", who, last->mono, c.mono, last->boot, c.boot);
    *last = c;
    return back;
}

/* A child: answer each request with its clocks (and whether they ever went back). */
static void child(int req, int rep)
{
    struct clocks last = now();
    long long back = 0;
    for (;;) {
        char b;
        xfer(req, &b, 1, 0);
        struct clocks c = now();
        back += went_back("child", c, &last);
        long long msg[3] = {c.mono, c.boot, back};
        xfer(rep, msg, sizeof msg, 1);
    }
}

static void ns_of(pid_t pid, char *out, size_t cap)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/ns/time", (int)pid);
    ssize_t n = readlink(path, out, cap - 1);
    out[n > 0 ? n : 0] = 0;
}

static int write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY);
    int ok = fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text);
    if (fd >= 0)
        close(fd);
    return ok ? 0 : -1;
}

int main(int argc, char **argv)
{
    long steps = argc > 1 ? atol(argv[1]) : 60, delay = argc > 2 ? atol(argv[2]) : 50;
    int user = argc > 3 && strcmp(argv[3], "user") == 0;
    int keep = user || (argc > 3 && strcmp(argv[3], "kids") == 0);
    setvbuf(stdout, NULL, _IONBF, 0);
    if (user) {
        uid_t uid = getuid();
        gid_t gid = getgid();
        char map[64];
        if (unshare(CLONE_NEWUSER) != 0) {
            perror("unshare(CLONE_NEWUSER)");
            return 1;
        }
        snprintf(map, sizeof map, "0 %u 1", (unsigned)uid);
        write_file("/proc/self/setgroups", "deny");
        if (write_file("/proc/self/uid_map", map) != 0)
            perror("uid_map");
        snprintf(map, sizeof map, "0 %u 1", (unsigned)gid);
        if (write_file("/proc/self/gid_map", map) != 0)
            perror("gid_map");
    }
    int own = open("/proc/self/ns/time", O_RDONLY | O_CLOEXEC);
    if (own < 0 || unshare(CLONE_NEWTIME) != 0) {
        perror("unshare(CLONE_NEWTIME)");
        return 1;
    }
    if (write_file("/proc/self/timens_offsets", "monotonic 1000 0\nboottime 500 0\n") != 0) {
        perror("timens_offsets");
        return 1;
    }
    int req[2][2], rep[2][2];
    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        if (pipe(req[k]) != 0 || pipe(rep[k]) != 0)
            return 1;
        kids[k] = fork();
        if (kids[k] == 0) {
            close(own);
            if (k == 0 && argc > 3 && strcmp(argv[3], "again") == 0 && unshare(CLONE_NEWTIME) != 0)
                perror("unshare(CLONE_NEWTIME) again");
            child(req[k][0], rep[k][1]);
            _exit(0);
        }
    }
    /* (In a user namespace of its own it may not enter its old one, owned by the one above.) */
    if (!keep && setns(own, CLONE_NEWTIME) != 0) {
        perror("setns back into its own time namespace");
        return 1;
    }
    close(own);
    printf("start tree_timens\n");
    uint64_t state = 1;
    struct clocks last = now();
    for (long i = 1; i <= steps; i++) {
        long bad = 0;
        for (int k = 0; k < 2; k++) {
            struct clocks before = now();
            char b = 'c';
            long long msg[3];
            xfer(req[k][1], &b, 1, 1);
            xfer(rep[k][0], msg, sizeof msg, 0);
            struct clocks after = now();
            bad += went_back("parent", before, &last) + went_back("parent", after, &last);
            int mono = before.mono + 1000 * NS <= msg[0] && msg[0] <= after.mono + 1000 * NS;
            int boot = before.boot + 500 * NS <= msg[1] && msg[1] <= after.boot + 500 * NS;
            if (!mono || !boot)
                fprintf(stderr, "step %ld child %d: its clocks are not 1000 s / 500 s ahead: monotonic %lld in [%lld, %lld] less 1000 s, boottime %lld in [%lld, %lld] less 500 s\n", i, k, msg[0], before.mono, after.mono, msg[1], before.boot, after.boot);
            bad += !mono + !boot + (msg[2] != 0);
        }
        char a[64], b[64], mine[64];
        ns_of(kids[0], a, sizeof a);
        ns_of(kids[1], b, sizeof b);
        ns_of(getpid(), mine, sizeof mine);
        if (strcmp(a, b) != 0 || strcmp(a, mine) == 0 || !a[0]) {
            fprintf(stderr, "step %ld: the children's time namespaces %s and %s, the parent's %s\n", i, a, b, mine);
            bad++;
        }
        state = mix(state + (uint64_t)i + (uint64_t)bad * 0x1000000ULL);
        printf("step %ld\n", i);
        sleep_ms(delay);
    }
    /* One more child: in the children's namespace, or (gone back) in the parent's. */
    pid_t last_kid = fork();
    if (last_kid == 0) {
        pause();
        _exit(0);
    }
    char a[64], l[64], mine[64];
    ns_of(kids[0], a, sizeof a);
    ns_of(last_kid, l, sizeof l);
    ns_of(getpid(), mine, sizeof mine);
    int where = strcmp(l, keep ? a : mine) == 0;
    if (!where)
        fprintf(stderr, "the last child's time namespace %s, the children's %s, the parent's %s\n", l, a, mine);
    state = mix(state + (uint64_t)where);
    kill(last_kid, SIGKILL);
    waitpid(last_kid, NULL, 0);
    for (int k = 0; k < 2; k++) {
        kill(kids[k], SIGKILL);
        waitpid(kids[k], NULL, 0);
    }
    printf("result %016llx\n", (unsigned long long)state);
    return 0;
}
