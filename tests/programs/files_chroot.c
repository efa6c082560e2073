/* A program that changes its root directory: with a worker thread running, it chroot()s into
 * "jail" (made in its working directory) and enters /sub there, keeps an fd on a file outside
 * the new root and one on a file inside it, and sets its umask afterwards. Prints READY, waits
 * for "go" (through an fd on its first working directory), then what each thread sees: the same
 * root (a file inside opens by its path, one outside does not), the working directory, both
 * fds' contents, the umask, and where a file it creates ends up. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int dir;
static struct stat jail;
static pthread_barrier_t chrooted;

static void wait_go(void) {
    struct timespec ts = {0, 20 * 1000 * 1000};
    while (faccessat(dir, "go", F_OK, 0) != 0) nanosleep(&ts, NULL);
}

static void put(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) perror(path);
    close(fd);
}

/* The first line of the file at fd (from its start). */
static const char *first_line(int fd, char *buf, size_t len) {
    ssize_t n = pread(fd, buf, len - 1, 0);
    if (n < 0) return strerror(errno);
    buf[n] = 0;
    buf[strcspn(buf, "\n")] = 0;
    return buf;
}

static const char *by_path(const char *path, char *buf, size_t len) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return strerror(errno);
    const char *s = first_line(fd, buf, len);
    close(fd);
    return s;
}

static void report(const char *who) {
    char buf[256], cwd[256];
    struct stat root;
    printf("%s: cwd %s\n", who, getcwd(cwd, sizeof cwd) ? cwd : strerror(errno));
    printf("%s: root is the jail: %s\n", who, stat("/", &root) == 0 && root.st_ino == jail.st_ino && root.st_dev == jail.st_dev ? "yes" : "no");
    printf("%s: /inside: %s\n", who, by_path("/inside", buf, sizeof buf));
    printf("%s: /outside: %s\n", who, by_path("/outside", buf, sizeof buf));
    printf("%s: ../inside from /sub: %s\n", who, by_path("../inside", buf, sizeof buf));
}

static void *worker(void *arg) {
    (void)arg;
    pthread_barrier_wait(&chrooted);
    wait_go();
    report("worker");
    return NULL;
}

int main(void) {
    dir = open(".", O_RDONLY | O_DIRECTORY);
    mkdir("jail", 0755);
    mkdir("jail/sub", 0755);
    put("jail/inside", "inside the root\n");
    put("outside", "outside the root\n");
    if (stat("jail", &jail)) return perror("jail"), 1;
    int out = open("outside", O_RDWR);
    pthread_t t;
    pthread_barrier_init(&chrooted, NULL, 2);
    pthread_create(&t, NULL, worker, NULL);
    if (chroot("jail")) return perror("chroot"), 1;
    if (chdir("/sub")) return perror("chdir /sub"), 1;
    int in = open("/inside", O_RDWR);
    umask(027);
    pthread_barrier_wait(&chrooted);
    printf("READY\n");
    fflush(stdout);
    wait_go();
    pthread_join(t, NULL);
    report("main");
    char buf[256];
    printf("fd outside: %s\n", first_line(out, buf, sizeof buf));
    printf("fd inside: %s\n", first_line(in, buf, sizeof buf));
    mode_t m = umask(0);
    printf("umask %03o\n", m);
    umask(m);
    put("/made", "made\n");
    struct stat st = {0};
    int made = fstatat(dir, "jail/made", &st, 0) == 0;
    printf("/made is jail/made: %s, mode %03o\n", made ? "yes" : "no", st.st_mode & 0777);
    printf("done\n");
    return 0;
}
