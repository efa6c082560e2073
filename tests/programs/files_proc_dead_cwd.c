/* A working directory and an fd in the /proc directory of a process that has died (a child
 * reaped before the checkpoint): after a restart they are still such a directory. */
#include "files_common.h"
#include <signal.h>
#include <sys/wait.h>

int main(void) {
    pid_t pid = fork();
    if (pid == 0) {
        pause();
        _exit(0);
    }
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d", pid);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    if (pid < 0 || dfd < 0 || chdir(dir)) return 2;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    ready();

    char buf[4096];
    CHECK(getcwd(buf, sizeof buf) == NULL && errno == ENOENT, "getcwd");
    ssize_t n = readlink("/proc/self/cwd", buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    int dead = strncmp(buf, "/proc/", 6) == 0 && n > 10 && strcmp(buf + n - 10, " (deleted)") == 0;
    CHECK(dead, "working directory %s", buf);
    printf("working directory: %s\n", dead ? "a dead process's /proc directory" : "something else");
    CHECK(open("status", O_RDONLY) < 0, "a dead process's status");
    snprintf(dir, sizeof dir, "/proc/self/fd/%d", dfd);
    n = readlink(dir, buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    dead = strncmp(buf, "/proc/", 6) == 0 && n > 10 && strcmp(buf + n - 10, " (deleted)") == 0;
    CHECK(dead && openat(dfd, "status", O_RDONLY) < 0, "directory fd %s", buf);
    printf("directory fd: %s\n", dead ? "a dead process's /proc directory" : "something else");
    return finish();
}
