/* A child that inherited ckpt's preload: USR2 must be its own (its handler runs), and it can
 * fork and exec again. Run with "grand" it only says hello. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t got;
static void on_usr2(int sig) { (void)sig; got = 1; }

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "grand") == 0) {
        printf("grandchild: ok\n");
        return 0;
    }
    const char *pre = getenv("LD_PRELOAD");
    printf("child: preloaded runtime: %s\n", pre && strstr(pre, "libckpt_runtime") ? "yes" : "no");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr2;
    sigaction(SIGUSR2, &sa, NULL);
    raise(SIGUSR2);
    for (int i = 0; i < 100 && !got; i++) usleep(10000);
    printf("child: %s\n", got ? "own USR2 handler ran" : "USR2 handler did not run");
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        execl(argv[0], argv[0], "grand", (char *)NULL);
        _exit(127);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return got && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}
