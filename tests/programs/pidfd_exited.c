/* pidfds of processes that exited and were reaped before the checkpoint (zdtm pidfd_dead):
 * after a restart they still are pidfds of an exited process, not /dev/null: no pid in
 * fdinfo, poll reports the exit, a signal through them gets ESRCH, the two pidfds of one
 * process share an inode and the other process's has another, flags kept. */
#include "files_common.h"
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>

static int pidfd_open(pid_t pid, unsigned flags) { return syscall(SYS_pidfd_open, pid, flags); }
static int send_sig(int fd, int sig) { return syscall(SYS_pidfd_send_signal, fd, sig, NULL, 0); }

static pid_t child(void) {
    pid_t p = fork();
    if (p == 0) _exit(0);
    return p;
}

static void describe(const char *name, int fd) {
    char link[64] = "";
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, link, sizeof link - 1);
    if (n > 0) link[n] = 0;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int polled = poll(&p, 1, 0);
    errno = 0;
    int sent = send_sig(fd, 0);
    int sent_errno = errno;
    printf("%s: %s, fdinfo Pid %d, poll %d (in %d), signal %d (ESRCH %d), nonblock %d, cloexec %d\n", name, link,
           fdinfo_pid(fd), polled, !!(p.revents & POLLIN), sent, sent_errno == ESRCH,
           !!(fcntl(fd, F_GETFL) & O_NONBLOCK), !!(fcntl(fd, F_GETFD) & FD_CLOEXEC));
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    pid_t a = child(), b = child();
    int a1 = pidfd_open(a, 0), a2 = pidfd_open(a, O_NONBLOCK), b1 = pidfd_open(b, 0);
    CHECK(a1 >= 0 && a2 >= 0 && b1 >= 0, "pidfd_open");
    fcntl(b1, F_SETFD, FD_CLOEXEC);
    CHECK(waitpid(a, NULL, 0) == a && waitpid(b, NULL, 0) == b, "waitpid");
    ready();

    describe("a1", a1);
    describe("a2", a2);
    describe("b1", b1);
    struct stat sa1, sa2, sb1;
    CHECK(fstat(a1, &sa1) == 0 && fstat(a2, &sa2) == 0 && fstat(b1, &sb1) == 0, "fstat");
    printf("one process, one inode: %d; two processes, two inodes: %d\n", sa1.st_ino == sa2.st_ino,
           sa1.st_ino != sb1.st_ino);
    siginfo_t info;
    errno = 0;
    int w = waitid(P_PIDFD, a1, &info, WEXITED | WNOHANG);
    printf("waitid on a1: %d (ECHILD %d)\n", w, errno == ECHILD);
    return finish();
}
