/* Memory shared with files: a MAP_SHARED file mapping, a MAP_PRIVATE file mapping, a memfd,
 * a POSIX shm object and a System V segment, each updated every step. Prints a checksum of
 * each at the end (the file one read back through read(2)): after a restart it must match an
 * uninterrupted run's, however far the program ran past the checkpoint before it was killed. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <time.h>
#include <unistd.h>

#define STEPS 200
#define LEN (64 * 1024)

static unsigned long sum(const unsigned char *p) {
    unsigned long s = 0;
    for (int i = 0; i < LEN; i++) s = s * 31 + p[i];
    return s;
}

static void *shared_file(const char *path, int flags) {
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, LEN)) exit(2);
    void *p = mmap(NULL, LEN, PROT_READ | PROT_WRITE, flags, fd, 0);
    close(fd);
    return p;
}

int main(void) {
    unsigned char *file = shared_file("shared.bin", MAP_SHARED);
    unsigned char *priv = shared_file("private.bin", MAP_PRIVATE);
    int mfd = memfd_create("ckpt-test", 0);
    ftruncate(mfd, LEN);
    unsigned char *mem = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    char shmname[64];
    snprintf(shmname, sizeof shmname, "/ckpt-test-%d", getpid());
    int sfd = shm_open(shmname, O_RDWR | O_CREAT | O_TRUNC, 0600);
    ftruncate(sfd, LEN);
    unsigned char *posix = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, sfd, 0);
    close(sfd);
    int id = shmget(IPC_PRIVATE, LEN, IPC_CREAT | 0600);
    unsigned char *sysv = shmat(id, NULL, 0);
    shmctl(id, IPC_RMID, NULL);
    /* A ring mapped twice from one memfd whose fd is then closed: both views must stay one. */
    int rfd = memfd_create("ckpt-ring", 0);
    ftruncate(rfd, LEN);
    unsigned char *ring1 = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, rfd, 0);
    unsigned char *ring2 = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, rfd, 0);
    close(rfd);
    if (ring1 == MAP_FAILED || ring2 == MAP_FAILED) return 5;
    if (file == MAP_FAILED || priv == MAP_FAILED || mem == MAP_FAILED || posix == MAP_FAILED || sysv == (void *)-1) return 3;
    struct timespec ts = {0, 10 * 1000 * 1000};
    for (int i = 0; i < STEPS; i++) {
        for (int j = 0; j < LEN; j += 97) {
            file[(j + i * 13) % LEN] += i + j;
            priv[(j + i * 7) % LEN] ^= i;
            mem[(j + i * 5) % LEN] += 3;
            posix[(j + i * 3) % LEN] += i;
            sysv[(j + i) % LEN] += 1;
            ring1[(j + i * 11) % LEN] += 5;
        }
        printf("step %d\n", i);
        fflush(stdout);
        nanosleep(&ts, NULL);
    }
    unsigned char *back = malloc(LEN);
    int fd = open("shared.bin", O_RDONLY);
    if (read(fd, back, LEN) != LEN) return 4;
    printf("file %lx %lx\nprivate %lx\nmemfd %lx\nposix %lx\nsysv %lx\n", sum(file), sum(back), sum(priv), sum(mem), sum(posix), sum(sysv));
    unsigned char *viafd = malloc(LEN);
    printf("memfd fd sees the mapping: %d\n", pread(mfd, viafd, LEN, 0) == LEN && !memcmp(viafd, mem, LEN));
    ring2[7] = 42;
    printf("ring views are one: %d %d\n", !memcmp(ring1, ring2, LEN), ring1[7] == 42);
    shm_unlink(shmname);
    printf("done\n");
    return 0;
}
