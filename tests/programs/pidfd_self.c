/* A pidfd of the program's own process (pidfd_open(getpid())), one of them PIDFD_NONBLOCK:
 * after a restart it still names the program: pidfd_send_signal through it reaches the
 * program's handler, poll does not report it exited, and its flags are kept. */
#include "files_common.h"
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>

static volatile sig_atomic_t got;
static void on_usr1(int s) { (void)s; got++; }

static int pidfd_open(pid_t pid, unsigned flags) { return syscall(SYS_pidfd_open, pid, flags); }
static int send_sig(int fd, int sig) { return syscall(SYS_pidfd_send_signal, fd, sig, NULL, 0); }

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGUSR1, on_usr1);
    int a = pidfd_open(getpid(), 0);
    int b = pidfd_open(getpid(), O_NONBLOCK);
    CHECK(a >= 0 && b >= 0, "pidfd_open");
    CHECK(send_sig(a, 0) == 0, "signal 0 before");
    ready();

    CHECK(send_sig(a, 0) == 0, "signal 0 through a");
    CHECK(send_sig(a, SIGUSR1) == 0, "SIGUSR1 through a");
    CHECK(send_sig(b, SIGUSR1) == 0, "SIGUSR1 through b");
    printf("handler ran %d times\n", got);
    struct pollfd p = {.fd = a, .events = POLLIN};
    printf("poll: %d\n", poll(&p, 1, 0));
    printf("flags: a nonblock %d cloexec %d, b nonblock %d cloexec %d\n", !!(fcntl(a, F_GETFL) & O_NONBLOCK),
           !!(fcntl(a, F_GETFD) & FD_CLOEXEC), !!(fcntl(b, F_GETFL) & O_NONBLOCK), !!(fcntl(b, F_GETFD) & FD_CLOEXEC));
    int pid = fdinfo_pid(a);
    CHECK(pid > 0, "fdinfo Pid %d", pid);
    return finish();
}
