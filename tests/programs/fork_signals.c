/* Run under ckpt-run --stop-signal TERM: a forked child (no exec) is not managed by the runtime,
 * so TERM and USR2 must act on it as they would without ckpt (default: terminate), and a
 * handler it installs must run. Prints one line per case. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t got;
static void on_sig(int s) { got = s; }

static void expect_killed(int sig, const char *name) {
    pid_t pid = fork();
    if (pid == 0) {
        for (;;) pause();
    }
    usleep(50000);
    kill(pid, sig);
    int st = 0;
    for (int i = 0; i < 300 && waitpid(pid, &st, WNOHANG) == 0; i++) usleep(10000);
    if (WIFSIGNALED(st) && WTERMSIG(st) == sig) {
        printf("child killed by %s\n", name);
    } else {
        printf("child NOT killed by %s\n", name);
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
    }
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    expect_killed(SIGTERM, "TERM");
    expect_killed(SIGUSR2, "USR2");
    pid_t pid = fork();
    if (pid == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_sig;
        sigaction(SIGTERM, &sa, NULL);
        raise(SIGTERM);
        printf("child handler %s\n", got == SIGTERM ? "ran" : "did not run");
        return 0;
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return 0;
}
