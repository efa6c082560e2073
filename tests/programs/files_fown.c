/* The owners of I/O signals (zdtm file_fown): a pipe whose read end is owned by the process
 * (F_SETOWN) with its own signal (F_SETSIG, SIGRTMIN+3, with the fd in siginfo), a socketpair
 * end owned by the main thread (F_SETOWN_EX, F_OWNER_TID) with SIGIO, both O_ASYNC. After a
 * restart each still has its owner and signal, and data arriving on each raises that signal,
 * for that fd. Owners are printed relative to the process (the ids themselves may change); the
 * status flags whole (O_ASYNC, and no O_LARGEFILE on a pipe(2) end, which open(2) would add). */
#include "files_common.h"
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>

static volatile int got_fd[64];

static void on_io(int sig, siginfo_t *si, void *uc) {
    (void)uc;
    if (sig == SIGRTMIN + 3 && si->si_fd >= 0 && si->si_fd < 64) got_fd[si->si_fd] = sig;
    if (sig == SIGIO) got_fd[0]++;
}

static void report(const char *name, int fd) {
    struct f_owner_ex ex = {0};
    CHECK(fcntl(fd, F_GETOWN_EX, &ex) == 0, "F_GETOWN_EX %s", name);
    const char *kind = ex.type == F_OWNER_TID ? "thread" : ex.type == F_OWNER_PID ? "process" : "group";
    int me = ex.type == F_OWNER_TID ? (int)syscall(SYS_gettid) : getpid();
    printf("%s: owner %s %s, F_GETOWN %s, signal %d, flags %o\n", name, kind, ex.pid == me ? "me" : "other",
           fcntl(fd, F_GETOWN) == me ? "me" : "other", fcntl(fd, F_GETSIG) == SIGRTMIN + 3 ? 1 : fcntl(fd, F_GETSIG),
           fcntl(fd, F_GETFL));
}

int main(void) {
    struct sigaction sa = {.sa_sigaction = on_io, .sa_flags = SA_SIGINFO | SA_RESTART};
    sigaction(SIGRTMIN + 3, &sa, NULL);
    sigaction(SIGIO, &sa, NULL);
    int p[2], s[2];
    if (pipe(p) || socketpair(AF_UNIX, SOCK_STREAM, 0, s)) return 2;
    struct f_owner_ex tid = {F_OWNER_TID, (int)syscall(SYS_gettid)};
    if (fcntl(p[0], F_SETOWN, getpid()) || fcntl(p[0], F_SETSIG, SIGRTMIN + 3) || fcntl(p[0], F_SETFL, O_ASYNC) ||
        fcntl(s[0], F_SETOWN_EX, &tid) || fcntl(s[0], F_SETFL, O_ASYNC))
        return 3;
    ready();
    report("pipe", p[0]);
    report("socket", s[0]);
    write(p[1], "x", 1);
    write(s[1], "y", 1);
    struct timespec ts = {0, 10 * 1000 * 1000};
    for (int i = 0; i < 300 && !(got_fd[p[0]] && got_fd[0]); i++) nanosleep(&ts, NULL);
    printf("pipe's signal for its fd: %s\n", got_fd[p[0]] == SIGRTMIN + 3 ? "yes" : "no");
    printf("socket's SIGIO: %s\n", got_fd[0] ? "yes" : "no");
    return finish();
}
