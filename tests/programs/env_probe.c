/*
 * env_probe: what a program under ckpt-run, its children and a program it execs in its place
 * see of the environment ckpt-run touches.
 *
 * Usage: env_probe [WHO=program]
 * Prints, for every variable of its environment whose name is LD_PRELOAD or starts with CKPT
 * or __CKPT, one line "WHO env NAME=VALUE", and "WHO getenv LD_PRELOAD=VALUE" (or "(unset)").
 * As "program" it then runs itself as "child" (fork + execv, waited for) and finally execs
 * itself in its own process as "exec".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv)
{
    const char *who = argc > 1 ? argv[1] : "program";
    for (char **e = environ; *e; e++)
        if (strncmp(*e, "LD_PRELOAD=", 11) == 0 || strncmp(*e, "CKPT", 4) == 0 || strncmp(*e, "__CKPT", 6) == 0)
            printf("%s env %s\n", who, *e);
    const char *pre = getenv("LD_PRELOAD");
    printf("%s getenv LD_PRELOAD=%s\n", who, pre ? pre : "(unset)");
    fflush(stdout);
    if (strcmp(who, "program") != 0)
        return 0;
    pid_t pid = fork();
    if (pid == 0) {
        char *args[] = { argv[0], "child", NULL };
        execv(argv[0], args);
        _exit(127);
    }
    int st = 0;
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return 1;
    char *args[] = { argv[0], "exec", NULL };
    execv(argv[0], args);
    return 1;
}
