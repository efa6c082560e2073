/* System V IPC objects held across a checkpoint: they must come back as themselves, with
 * their ids, not only their memory.
 * - a keyed shared memory segment, attached and written every step; a second attachment of
 *   its second half only; a segment filled once and detached (only its id is kept); a
 *   segment marked for removal while attached;
 * - a semaphore set whose values change every step;
 * - a message queue that gets a message every step and loses one every other step.
 * At the end: every attachment detaches (shmdt), a fresh attachment by id and by key shows
 * the same bytes, the removed segment is gone from the key space, semaphore values and the
 * queued messages are checked, and checksums printed: after a restart they must match an
 * uninterrupted run's. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <time.h>
#include <unistd.h>

#define STEPS 160
#define LEN (40 * 1024 + 100) /* not a whole number of pages */
#define PAGE 4096

struct msg {
    long mtype;
    char text[32];
};

static unsigned long sum(const unsigned char *p, size_t n) {
    unsigned long s = 0;
    for (size_t i = 0; i < n; i++) s = s * 31 + p[i];
    return s;
}

static void die(const char *what) {
    printf("FAIL %s: %s\n", what, strerror(errno));
    exit(1);
}

int main(void) {
    key_t key = 0x5a000000 | (getpid() & 0xffffff);
    int id = shmget(key, LEN, IPC_CREAT | IPC_EXCL | 0640);
    if (id < 0) die("shmget");
    unsigned char *mem = shmat(id, NULL, 0);
    unsigned char *half = shmat(id, NULL, 0);
    if (mem == (void *)-1 || half == (void *)-1) die("shmat");
    /* Keep only the second half of the second attachment: a region at an offset. */
    if (munmap(half, 5 * PAGE)) die("munmap");
    half += 5 * PAGE;
    int detached = shmget(IPC_PRIVATE, 3 * PAGE, IPC_CREAT | 0600);
    unsigned char *d = shmat(detached, NULL, 0);
    if (detached < 0 || d == (void *)-1) die("detached");
    for (int i = 0; i < 3 * PAGE; i++) d[i] = (unsigned char)(i * 7 + 1);
    if (shmdt(d)) die("shmdt detached");
    int gone = shmget(IPC_PRIVATE, PAGE, IPC_CREAT | 0600);
    unsigned char *g = shmat(gone, NULL, 0);
    if (gone < 0 || g == (void *)-1) die("removed");
    if (shmctl(gone, IPC_RMID, NULL)) die("IPC_RMID");
    int sem = semget(key, 3, IPC_CREAT | IPC_EXCL | 0600);
    if (sem < 0) die("semget");
    int q = msgget(key, IPC_CREAT | IPC_EXCL | 0600);
    if (q < 0) die("msgget");
    printf("start ipc_sysv\n");
    fflush(stdout);
    struct timespec ts = {0, 10 * 1000 * 1000};
    for (int i = 1; i <= STEPS; i++) {
        for (int j = 0; j < LEN; j += 61) mem[(j + i * 13) % LEN] += i + j;
        half[i % (LEN - 5 * PAGE)] ^= (unsigned char)i;
        g[i % PAGE] += 3;
        struct sembuf up = {(unsigned short)(i % 3), 1, 0};
        if (semop(sem, &up, 1)) die("semop");
        struct msg m = {1 + i % 4, ""};
        snprintf(m.text, sizeof m.text, "message %d", i);
        if (msgsnd(q, &m, strlen(m.text) + 1, IPC_NOWAIT)) die("msgsnd");
        if (i % 2 == 0 && msgrcv(q, &m, sizeof m.text, 0, IPC_NOWAIT) < 0) die("msgrcv");
        printf("step %d\n", i);
        fflush(stdout);
        nanosleep(&ts, NULL);
    }
    /* The ids the program kept are still its objects. */
    if (shmget(key, 0, 0) != id) die("shmget by key gives another id");
    if (semget(key, 0, 0) != sem) die("semget by key gives another id");
    if (msgget(key, 0) != q) die("msgget by key gives another id");
    unsigned char *again = shmat(id, NULL, SHM_RDONLY);
    if (again == (void *)-1) die("shmat by id");
    printf("same segment: %d %d\n", !memcmp(again, mem, LEN), !memcmp(again + 5 * PAGE, half, LEN - 5 * PAGE));
    unsigned char *d2 = shmat(detached, NULL, SHM_RDONLY);
    if (d2 == (void *)-1) die("shmat detached");
    printf("segment %lx detached %lx removed %lx\n", sum(mem, LEN), sum(d2, 3 * PAGE), sum(g, PAGE));
    struct shmid_ds ds;
    if (shmctl(id, IPC_STAT, &ds)) die("IPC_STAT");
    printf("size %zu mode %o attached %lu\n", ds.shm_segsz, ds.shm_perm.mode & 0777, (unsigned long)ds.shm_nattch);
    if (shmctl(gone, IPC_STAT, &ds)) die("IPC_STAT removed");
    printf("removed: key %d marked %d\n", ds.shm_perm.__key, !!(ds.shm_perm.mode & SHM_DEST));
    /* The second attachment lost its first pages: shmdt finds the rest from its start. */
    if (shmdt(mem)) die("shmdt");
    if (shmdt(half - 5 * PAGE)) die("shmdt of the partial attachment");
    if (shmdt(again) || shmdt(d2) || shmdt(g)) die("shmdt");
    if (shmctl(id, IPC_STAT, &ds)) die("IPC_STAT after shmdt");
    printf("attached after shmdt %lu\n", (unsigned long)ds.shm_nattch);
    unsigned short vals[3];
    if (semctl(sem, 0, GETALL, vals) < 0) die("GETALL");
    printf("semaphores %u %u %u\n", vals[0], vals[1], vals[2]);
    struct msqid_ds qs;
    if (msgctl(q, IPC_STAT, &qs)) die("msgctl");
    printf("queued %lu\n", (unsigned long)qs.msg_qnum);
    struct msg m;
    unsigned long msum = 0;
    ssize_t n;
    while ((n = msgrcv(q, &m, sizeof m.text, 0, IPC_NOWAIT)) > 0) msum = msum * 31 + sum((unsigned char *)m.text, n) + m.mtype;
    printf("messages %lx\n", msum);
    shmctl(id, IPC_RMID, NULL);
    shmctl(detached, IPC_RMID, NULL);
    semctl(sem, 0, IPC_RMID);
    msgctl(q, IPC_RMID, NULL);
    printf("result %lx\n", msum ^ vals[0] ^ (unsigned long)vals[1] << 8 ^ (unsigned long)vals[2] << 16);
    return 0;
}
