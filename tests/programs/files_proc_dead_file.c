/* An fd on a file in the /proc directory of a child that has died and been reaped before the
 * checkpoint (/proc/<pid>/mountinfo, /proc/<pid>/status): after a restart it is still an fd on
 * such a file (not /dev/null, not a refusal), and reading it fails as before. */
#include "files_common.h"
#include <signal.h>
#include <sys/wait.h>

static void show(const char *what, int fd) {
    char p[64], link[256] = "", buf[64];
    snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(p, link, sizeof link - 1);
    link[n > 0 ? n : 0] = 0;
    int proc = strncmp(link, "/proc/", 6) == 0 && strstr(link, what) != NULL;
    errno = 0;
    ssize_t r = read(fd, buf, sizeof buf);
    printf("%s: fd valid %d, a /proc file of that name %d, read %zd errno %d\n", what, fcntl(fd, F_GETFD) >= 0, proc, r < 0 ? -1 : r, errno);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    pid_t pid = fork();
    if (pid == 0) {
        for (;;) pause();
    }
    char p[64];
    snprintf(p, sizeof p, "/proc/%d/mountinfo", pid);
    int m = open(p, O_RDONLY);
    snprintf(p, sizeof p, "/proc/%d/status", pid);
    int s = open(p, O_RDONLY | O_CLOEXEC);
    CHECK(m >= 0 && s >= 0, "open");
    kill(pid, SIGKILL);
    CHECK(waitpid(pid, NULL, 0) == pid, "waitpid");
    ready();
    show("mountinfo", m);
    show("status", s);
    printf("cloexec: %d %d\n", !!(fcntl(m, F_GETFD) & FD_CLOEXEC), !!(fcntl(s, F_GETFD) & FD_CLOEXEC));
    return finish();
}
