/*
 * tree_exit_during: a tree one of whose processes is exiting when a checkpoint is asked.
 *
 * Usage: tree_exit_during [STEPS=150] [DELAY_MS=20]
 * The parent forks a child named "leaver" (which prints "leaver PID"), then prints "step N"
 * every DELAY_MS ms up to STEPS, mixing each into its state. The leaver waits until a file named
 * `leave` appears in the working directory, prints "leaving" and calls exit(7); its exit then
 * waits in a destructor (run after exit's handlers, the checkpoint runtime's among them) until a
 * file named `go` appears, printing "held" first. The parent, after its steps, reaps the leaver
 * once it has ended ("left STATUS") and waits for a file named `end`; then it prints
 * "result <state mixed with the leaver's wait status>", which does not depend on when the files
 * appear.
 */
#define _GNU_SOURCE
#include "tree_common.h"
#include <sys/prctl.h>

static int leaver;

/* The leaver's exit waits here for `go`: the runtime has seen the exit begin by then. */
__attribute__((destructor)) static void hold(void)
{
    if (!leaver)
        return;
    printf("held\n");
    fflush(stdout);
    while (access("go", F_OK) != 0)
        sleep_ms(10);
}

int main(int argc, char **argv)
{
    long steps = argc > 1 ? atol(argv[1]) : 150;
    long delay = argc > 2 ? atol(argv[2]) : 20;
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("start tree_exit_during steps=%ld\n", steps);
    pid_t child = fork();
    if (child < 0) {
        perror("fork");
        return 1;
    }
    if (child == 0) {
        leaver = 1;
        prctl(PR_SET_NAME, "leaver");
        printf("leaver %d\n", (int)getpid());
        while (access("leave", F_OK) != 0)
            sleep_ms(10);
        printf("leaving\n");
        exit(7);
    }
    uint64_t state = 1;
    for (long step = 1; step <= steps; step++) {
        state = mix(state + (uint64_t)step);
        printf("step %ld\n", step);
        sleep_ms(delay);
    }
    int status = -1, reaped = 0;
    while (!reaped || access("end", F_OK) != 0) {
        if (!reaped && waitpid(child, &status, WNOHANG) == child) {
            reaped = 1;
            printf("left %d\n", status);
        }
        sleep_ms(10);
    }
    printf("result %016llx\n", (unsigned long long)mix(state ^ (uint64_t)status));
    return 0;
}
