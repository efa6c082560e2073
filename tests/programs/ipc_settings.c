/* The settings of the program's IPC namespace (root only: only the namespace's root may change
 * them), changed before a checkpoint, must read the same after a restart: a message queue
 * limit, a POSIX message queue limit, the semaphore limits, and a chosen next id not yet used
 * (the next queue made gets it). Run natively only inside an IPC namespace of its own. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <time.h>

static const char *names[] = {"kernel/msgmnb", "fs/mqueue/msg_max", "kernel/sem", "kernel/msg_next_id"};
static const char *values[] = {"20000", "77", "250 32000 32 200", "4242"};

static void put(const char *name, const char *value) {
    char path[128];
    snprintf(path, sizeof path, "/proc/sys/%s", name);
    FILE *f = fopen(path, "w");
    if (!f || fprintf(f, "%s\n", value) < 0 || fclose(f)) {
        printf("FAIL cannot set %s\n", name);
        exit(1);
    }
}

static void get(const char *name, char *out, size_t len) {
    char path[128];
    snprintf(path, sizeof path, "/proc/sys/%s", name);
    FILE *f = fopen(path, "r");
    if (!f || !fgets(out, (int)len, f)) exit(2);
    fclose(f);
    out[strcspn(out, "\n")] = 0;
    for (char *c = out; *c; c++)
        if (*c == '\t') *c = ' ';
}

int main(void) {
    for (int i = 0; i < 4; i++) put(names[i], values[i]);
    printf("start ipc_settings\n");
    fflush(stdout);
    struct timespec ts = {0, 10 * 1000 * 1000};
    for (int i = 1; i <= 120; i++) {
        printf("step %d\n", i);
        fflush(stdout);
        nanosleep(&ts, NULL);
    }
    char v[128];
    for (int i = 0; i < 3; i++) {
        get(names[i], v, sizeof v);
        printf("%s %s\n", names[i], v);
    }
    int q = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
    printf("next queue id %d\n", q);
    struct msqid_ds ds;
    msgctl(q, IPC_STAT, &ds);
    printf("its limit %lu\n", (unsigned long)ds.msg_qbytes);
    msgctl(q, IPC_RMID, NULL);
    printf("result %d\n", q);
    return 0;
}
