/* A program of root's that installs seccomp filters without no_new_privs and then drops to
 * another uid (zdtm seccomp_filter): filter 1 makes getppid fail with EPERM, filter 2 kills
 * the thread at setresuid (so a restart that switched ids after the filters would be seen),
 * then a worker thread is created (it inherits both), then setuid(1000) for every thread.
 * Usage: seccomp_setuid plain|keepcaps|nocapset [STEPS=300] [DELAY_MS=10]
 *   keepcaps: before setuid, SECBIT_KEEP_CAPS; after it, CAP_NET_BIND_SERVICE stays permitted,
 *             effective, inheritable and ambient, and CAP_SYS_MODULE leaves the bounding set.
 *   nocapset: a third filter makes capset fail with EPERM (a restart cannot drop the
 *             CAP_SYS_ADMIN it needs to install the filters again: it must refuse).
 * Each step each thread describes itself in one line (getppid's result; Uid, NoNewPrivs,
 * Seccomp, Seccomp_filters and the capability sets of its /proc status; its securebits),
 * which is mixed into the state. Prints "start seccomp_setuid", "state <main line> |
 * <worker line>" at the first step and whenever it changes, "step i" and "result <hex>".
 * Not root: it says so and changes nothing (the ids and filters stay as they are). */
#define _GNU_SOURCE
#include "tree_common.h"
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <linux/securebits.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

static void filter(int nr, unsigned action)
{
    struct sock_filter prog[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, action),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog p = { 4, prog };
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &p, 0, 0) != 0) {
        printf("cannot install a filter: %s\n", strerror(errno));
        exit(1);
    }
}

/* The calling thread as one line. */
static void describe(char *out, size_t n)
{
    long p = syscall(SYS_getppid);
    const char *pr = p >= 0 ? "ok" : errno == EPERM ? "EPERM" : "other error";
    char buf[4096] = "";
    int fd = open("/proc/thread-self/status", O_RDONLY);
    ssize_t k = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (k > 0)
        buf[k] = 0;
    if (fd >= 0)
        close(fd);
    static const char *keys[] = { "Uid:", "NoNewPrivs:", "Seccomp:", "Seccomp_filters:", "CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:" };
    size_t at = (size_t)snprintf(out, n, "getppid %s", pr);
    for (size_t i = 0; i < sizeof keys / sizeof keys[0] && at < n; i++) {
        char want[32];
        snprintf(want, sizeof want, "\n%s", keys[i]);
        char *f = strstr(buf, want);
        char val[64] = "?";
        if (f) {
            f += strlen(want);
            while (*f == '\t' || *f == ' ')
                f++;
            size_t j = 0;
            while (f[j] && f[j] != '\n' && j + 1 < sizeof val) {
                val[j] = f[j] == '\t' ? ' ' : f[j];
                j++;
            }
            val[j] = 0;
        }
        at += (size_t)snprintf(out + at, n - at, ", %s %s", keys[i], val);
    }
    if (at < n)
        snprintf(out + at, n - at, ", securebits %#x", prctl(PR_GET_SECUREBITS, 0, 0, 0, 0));
}

static char worker_line[1024];
static volatile long asked, answered;

static void *worker(void *arg)
{
    (void)arg;
    for (;;) {
        long a = __atomic_load_n(&asked, __ATOMIC_ACQUIRE);
        if (a != __atomic_load_n(&answered, __ATOMIC_ACQUIRE)) {
            describe(worker_line, sizeof worker_line);
            __atomic_store_n(&answered, a, __ATOMIC_RELEASE);
        }
        sleep_ms(1);
    }
    return NULL;
}

static void keep_net_bind(void)
{
    struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct d[2] = { 0 };
    d[0].effective = d[0].permitted = d[0].inheritable = 1u << CAP_NET_BIND_SERVICE;
    if (syscall(SYS_capset, &h, d) != 0 || prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_BIND_SERVICE, 0, 0) != 0) {
        printf("cannot keep CAP_NET_BIND_SERVICE: %s\n", strerror(errno));
        exit(1);
    }
}

int main(int argc, char **argv)
{
    int keep = argc > 1 && strcmp(argv[1], "keepcaps") == 0;
    long steps = argc > 2 ? atol(argv[2]) : 300, delay = argc > 3 ? atol(argv[3]) : 10;
    setvbuf(stdout, NULL, _IONBF, 0);
    printf("start seccomp_setuid\n");
    int root = geteuid() == 0;
    if (root) {
        if (keep && (prctl(PR_CAPBSET_DROP, CAP_SYS_MODULE, 0, 0, 0) != 0 || prctl(PR_SET_SECUREBITS, SECBIT_KEEP_CAPS, 0, 0, 0) != 0)) {
            printf("cannot set securebits: %s\n", strerror(errno));
            return 1;
        }
        filter(SYS_getppid, SECCOMP_RET_ERRNO | EPERM);
        filter(SYS_setresuid, SECCOMP_RET_KILL_THREAD);
        if (argc > 1 && strcmp(argv[1], "nocapset") == 0)
            filter(SYS_capset, SECCOMP_RET_ERRNO | EPERM);
    } else {
        printf("not root: no filter, no change of ids\n");
    }
    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
    if (root) {
        if (setuid(1000) != 0) {
            printf("setuid: %s\n", strerror(errno));
            return 1;
        }
        if (keep)
            keep_net_bind();
    }
    char line[1024], last[2100] = "", now[2100];
    uint64_t state = 1;
    for (long i = 1; i <= steps; i++) {
        __atomic_store_n(&asked, i, __ATOMIC_RELEASE);
        describe(line, sizeof line);
        while (__atomic_load_n(&answered, __ATOMIC_ACQUIRE) != i)
            sleep_ms(1);
        snprintf(now, sizeof now, "%s | %s", line, worker_line);
        if (strcmp(now, last) != 0) {
            printf("state %s\n", now);
            strcpy(last, now);
        }
        for (const char *c = now; *c; c++)
            state = mix(state + (uint64_t)(unsigned char)*c);
        state = mix(state + (uint64_t)i);
        printf("step %ld\n", i);
        sleep_ms(delay);
    }
    printf("result %016llx\n", (unsigned long long)state);
    return 0;
}
