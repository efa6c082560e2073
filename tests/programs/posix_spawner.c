/* Start a program with posix_spawn (as make starts its recipes' shells, glibc's spawn: a clone
 * that execs without fork), wait for it and exit with its status.
 *
 *   posix_spawner PROGRAM [ARG...]
 */
#include <spawn.h>
#include <stdio.h>
#include <sys/wait.h>

extern char **environ;

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: posix_spawner PROGRAM [ARG...]\n");
        return 2;
    }
    pid_t pid;
    int e = posix_spawn(&pid, argv[1], NULL, NULL, argv + 1, environ);
    if (e != 0) {
        fprintf(stderr, "posix_spawner: cannot start %s: error %d\n", argv[1], e);
        return 127;
    }
    int st = 0;
    if (waitpid(pid, &st, 0) != pid) return 3;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
