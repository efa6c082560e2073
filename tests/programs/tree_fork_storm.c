/*
 * tree_fork_storm: a program that forks all the time, as make and a compiler driver do (the
 * runtime makes a vfork a fork): a checkpoint of the tree often begins while the parent is in
 * fork(), and the child, which connects to the tree's coordinator in its fork handler, is born
 * while the others are being stopped. Each child execs itself a few times (connecting again
 * after each exec) and waits; the parent kills it once it has forked the next one.
 *
 * Usage: tree_fork_storm [STEPS=40] [PER_STEP=20] [HOPS=2]
 * Each step forks PER_STEP children; the parent kills and reaps the previous child once the
 * next one exists and mixes its wait status into its state, then prints "step i". At the end:
 * "result <state>". Deterministic. On stderr: the state after each step, and a child that
 * ended otherwise than by its parent's SIGKILL.
 */
#include "tree_common.h"

extern char **environ;

/* SIGKILL child `pid` (it never exits by itself: a process exiting while the tree is being
 * stopped makes the checkpoint fail, another matter), reap it, mix its status into `state`. */
static void end_child(pid_t pid, uint64_t *state)
{
    int st;
    kill(pid, SIGKILL);
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR) {
            perror("waitpid");
            exit(4);
        }
    }
    if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)
        fprintf(stderr, "tree_fork_storm: child %d ended with status %#x\n", (int)pid, st);
    *state = mix(*state ^ (uint64_t)st);
}

/* A child: exec itself `left` more times, then wait to be killed. */
static int hop(const char *self, long left)
{
    if (left > 0) {
        char l[32];
        snprintf(l, sizeof l, "%ld", left - 1);
        char *argv[] = { (char *)self, "hop", l, NULL };
        execve(self, argv, environ);
        perror("execve");
        return 99;
    }
    for (;;)
        pause();
}

int main(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[1], "hop") == 0)
        return hop(argv[0], atol(argv[2]));
    long steps = argc > 1 ? atol(argv[1]) : 40;
    long per = argc > 2 ? atol(argv[2]) : 20;
    long hops = argc > 3 ? atol(argv[3]) : 2;
    setvbuf(stdout, NULL, _IONBF, 0);
    printf("start tree_fork_storm %ld %ld %ld\n", steps, per, hops);
    uint64_t state = 0x5eed;
    pid_t prev = -1;
    for (long i = 1; i <= steps; i++) {
        for (long j = 0; j < per; j++) {
            pid_t pid = fork();
            if (pid < 0)
                return 3;
            if (pid == 0)
                return hop(argv[0], hops);
            if (prev >= 0)
                end_child(prev, &state);
            prev = pid;
            state = mix(state ^ (uint64_t)(i * 1000 + j));
        }
        printf("step %ld\n", i);
        /* For a wrong result: where the state of a restarted run first parts from the
         * uninterrupted run's (at the restart: its memory; later: a child's status). */
        fprintf(stderr, "state after step %ld: %016llx\n", i, (unsigned long long)state);
    }
    end_child(prev, &state);
    printf("result %016llx\n", (unsigned long long)state);
    return 0;
}
