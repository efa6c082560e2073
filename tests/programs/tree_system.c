/*
 * tree_system: a program whose system() command is running at checkpoint time (issue 13: the
 * shell of system() is a process of the tree).
 *
 * Usage: tree_system [STEPS=60] [DELAY=0.03] [popen]
 * With "popen", popen(cmd, "r") runs the loop instead: the program reads each "step i" line
 * from the shell's pipe and prints it, and pclose() gives the wait status.
 * Prints "start", then system() runs a shell loop that prints "step i" for i = 1..STEPS (sleep
 * DELAY between, an exec'd sleep process) and exits with 3. Then the program checks that
 * SIGINT and SIGQUIT have their dispositions back (system() ignores them while it waits) and
 * prints "result <wait status>-<dispositions ok>". Deterministic.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

int main(int argc, char **argv)
{
    long steps = argc > 1 ? atol(argv[1]) : 60;
    const char *delay = argc > 2 ? argv[2] : "0.03";
    setvbuf(stdout, NULL, _IONBF, 0);
    printf("start tree_system %ld\n", steps);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "i=0; while [ $i -lt %ld ]; do i=$((i+1)); echo step $i; sleep %s; done; exit 3", steps, delay);
    int st;
    if (argc > 3 && strcmp(argv[3], "popen") == 0) {
        FILE *f = popen(cmd, "r");
        if (!f)
            return 2;
        char line[64];
        while (fgets(line, sizeof line, f))
            fputs(line, stdout);
        st = pclose(f);
    } else {
        st = system(cmd);
    }
    struct sigaction intr, quit;
    sigaction(SIGINT, NULL, &intr);
    sigaction(SIGQUIT, NULL, &quit);
    int ok = intr.sa_handler == SIG_DFL && quit.sa_handler == SIG_DFL;
    printf("result %d-%d-%d\n", WIFEXITED(st), WIFEXITED(st) ? WEXITSTATUS(st) : -1, ok);
    return 0;
}
