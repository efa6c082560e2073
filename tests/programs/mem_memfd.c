/* memfds: seals (one sealed against writes and shrinking, one made without MFD_ALLOW_SEALING,
 * which has F_SEAL_SEAL), exec permission (a script in a memfd run with fexecve, also while a
 * read-only open of it through /proc/self/fd exists; one made with MFD_NOEXEC_SEAL, which must
 * not run), and the file system (statfs: tmpfs). Prints READY, waits for "go", then each. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef F_SEAL_EXEC
#define F_SEAL_EXEC 0x20
#endif
#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x08
#endif

static const char script[] = "#!/bin/true\n";

static void wait_go(int dir) {
    struct timespec ts = {0, 20 * 1000 * 1000};
    while (faccessat(dir, "go", F_OK, 0) != 0) nanosleep(&ts, NULL);
}

/* Run the memfd with fexecve in a child: "runs", or why not. */
static const char *run(int fd) {
    static char why[64];
    int p[2];
    if (pipe2(p, O_CLOEXEC)) return "pipe";
    pid_t pid = fork();
    if (pid == 0) {
        char *argv[] = {"true", NULL}, *envp[] = {NULL};
        fexecve(fd, argv, envp);
        int e = errno;
        if (write(p[1], &e, sizeof e) != sizeof e) _exit(2);
        _exit(1);
    }
    close(p[1]);
    int e = 0, st = 0;
    int n = read(p[0], &e, sizeof e);
    close(p[0]);
    waitpid(pid, &st, 0);
    if (n == sizeof e) snprintf(why, sizeof why, "does not run: %s", strerror(e));
    else snprintf(why, sizeof why, "%s", WIFEXITED(st) && WEXITSTATUS(st) == 0 ? "runs" : "runs but fails");
    return why;
}

static int memfd(const char *name, unsigned flags, const char *data) {
    int fd = memfd_create(name, flags);
    if (fd < 0 || write(fd, data, strlen(data)) != (ssize_t)strlen(data)) return -1;
    return fd;
}

int main(void) {
    int dir = open(".", O_RDONLY | O_DIRECTORY);
    int sealed = memfd("sealed", MFD_ALLOW_SEALING, "hello");
    fcntl(sealed, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SHRINK);
    int plain = memfd("plain", 0, "world");
    int exe = memfd("script", 0, script);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", exe);
    int exe_ro = open(path, O_RDONLY | O_CLOEXEC);
    int noexec = memfd("noexec", MFD_NOEXEC_SEAL, script);
    if (sealed < 0 || plain < 0 || exe < 0 || exe_ro < 0) return 2;
    printf("READY\n");
    fflush(stdout);
    wait_go(dir);
    printf("sealed: seals %#x, write: %s\n", fcntl(sealed, F_GET_SEALS), write(sealed, "x", 1) < 0 ? strerror(errno) : "written");
    printf("plain: seals %#x, adding a seal: %s\n", fcntl(plain, F_GET_SEALS), fcntl(plain, F_ADD_SEALS, F_SEAL_GROW) < 0 ? strerror(errno) : "added");
    struct statfs fs;
    fstatfs(plain, &fs);
    printf("plain: on tmpfs: %s\n", fs.f_type == TMPFS_MAGIC ? "yes" : "no");
    printf("script: %s\n", run(exe));
    if (noexec >= 0) printf("noexec: seals include F_SEAL_EXEC: %s, %s\n", fcntl(noexec, F_GET_SEALS) & F_SEAL_EXEC ? "yes" : "no", run(noexec));
    else printf("noexec: n/a\n");
    char buf[8] = {0};
    pread(plain, buf, 5, 0);
    printf("plain holds: %s\n", buf);
    return 0;
}
