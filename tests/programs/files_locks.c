/* File locks and a lease: flock, POSIX record locks (a write range and a read range to the end),
 * an OFD lock and a read lease. After a restart the program still holds them, and another
 * process (a child forked then) sees them held. */
#include "files_common.h"
#include <sys/file.h>
#include <sys/wait.h>

static int open_new(const char *name, int flags) {
    int fd = open(name, flags | O_CREAT, 0600);
    if (fd < 0) exit(2);
    return fd;
}

static struct flock range(short type, off_t start, off_t len) {
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
    return fl;
}

/* In a child: what another process sees. One letter per check, '+' when it sees the lock. */
static void from_outside(char *out) {
    int a = open("flock.dat", O_RDWR), b = open("posix.dat", O_RDWR), c = open("ofd.dat", O_RDWR);
    out[0] = flock(a, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK ? '+' : '-';
    struct flock fl = range(F_WRLCK, 15, 1);
    out[1] = fcntl(b, F_GETLK, &fl) == 0 && fl.l_type == F_WRLCK && fl.l_start == 10 && fl.l_len == 20 && fl.l_pid == getppid() ? '+' : '-';
    fl = range(F_RDLCK, 50, 1);
    out[2] = fcntl(b, F_GETLK, &fl) == 0 && fl.l_type == F_UNLCK ? '+' : '-'; /* a gap between the ranges */
    fl = range(F_WRLCK, 1000, 1);
    out[3] = fcntl(b, F_GETLK, &fl) == 0 && fl.l_type == F_RDLCK && fl.l_len == 0 ? '+' : '-';
    fl = range(F_WRLCK, 0, 1);
    out[4] = fcntl(c, F_OFD_GETLK, &fl) == 0 && fl.l_type == F_WRLCK && fl.l_len == 5 ? '+' : '-';
    out[5] = 0;
}

int main(void) {
    int a = open_new("flock.dat", O_RDWR);
    int b = open_new("posix.dat", O_RDWR);
    int c = open_new("ofd.dat", O_RDWR);
    int d = open_new("lease.dat", O_RDONLY);
    struct flock w = range(F_WRLCK, 10, 20), r = range(F_RDLCK, 100, 0), o = range(F_WRLCK, 0, 5);
    if (flock(a, LOCK_EX) || fcntl(b, F_SETLK, &w) || fcntl(b, F_SETLK, &r) || fcntl(c, F_OFD_SETLK, &o) || fcntl(d, F_SETLEASE, F_RDLCK))
        return 2;
    ready();

    int p[2];
    if (pipe(p)) return 2;
    pid_t pid = fork();
    if (pid == 0) {
        char out[8];
        from_outside(out);
        write(p[1], out, 6);
        _exit(0);
    }
    char seen[8] = {0};
    CHECK(read(p[0], seen, 6) == 6 && waitpid(pid, NULL, 0) == pid, "the child");
    printf("another process sees: %s\n", seen);
    CHECK(strcmp(seen, "+++++") == 0, "another process does not see every lock held (%s)", seen);
    CHECK(fcntl(d, F_GETLEASE) == F_RDLCK, "the read lease is gone");
    printf("lease: %s\n", fcntl(d, F_GETLEASE) == F_RDLCK ? "read" : "none");
    /* The locks are ours: taking them again or converting them succeeds. */
    CHECK(flock(a, LOCK_SH | LOCK_NB) == 0, "convert the flock");
    return finish();
}
