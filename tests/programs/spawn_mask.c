/*
 * spawn_mask: the signal mask each way of starting another program hands it (system, popen,
 * posix_spawnp, vfork + execlp, fork + execvp), as the started program sees it: each child
 * prints the "SigBlk:" line of its own /proc/self/status. Under ckpt the program's threads block
 * the checkpoint signal for the runtime: its children must not.
 * Blocks SIGINT itself first (that one every child must inherit).
 */
#define _GNU_SOURCE
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;
#define SHOW "grep SigBlk /proc/self/status"

int main(void)
{
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGINT);
    sigprocmask(SIG_BLOCK, &m, NULL);
    printf("system: ");
    fflush(stdout);
    system("exec " SHOW);
    printf("popen: ");
    FILE *f = popen("exec " SHOW, "r");
    char line[256];
    while (fgets(line, sizeof line, f))
        fputs(line, stdout);
    pclose(f);
    printf("posix_spawnp: ");
    fflush(stdout);
    pid_t p;
    char *av[] = { "grep", "SigBlk", "/proc/self/status", NULL };
    posix_spawnp(&p, "grep", NULL, NULL, av, environ);
    waitpid(p, NULL, 0);
    printf("vfork+execlp: ");
    fflush(stdout);
    if ((p = vfork()) == 0) {
        execlp("grep", "grep", "SigBlk", "/proc/self/status", (char *)NULL);
        _exit(127);
    }
    waitpid(p, NULL, 0);
    printf("fork+execvp: ");
    fflush(stdout);
    if ((p = fork()) == 0) {
        execvp("grep", av);
        _exit(127);
    }
    waitpid(p, NULL, 0);
    return 0;
}
