/* Like srun: fork, exec another dynamically linked program (argv[1]) with the environment
 * (and so LD_PRELOAD) inherited, wait for it, exit with its status. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    int fd = open("/dev/null", O_RDONLY); /* the runtime's own fds must not shift the program's */
    printf("parent: first fd %d\n", fd);
    close(fd);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        execv(argv[1], argv + 1);
        _exit(127);
    }
    int st = 0;
    if (waitpid(pid, &st, 0) != pid) return 3;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 4;
}
