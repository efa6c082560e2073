/* A stand-in for Slurm's srun on one machine (tests/step_join.rs), installed as `srun` on PATH:
 * `srun -n N PROGRAM ARGS...` writes its arguments (one a line) to $OUT/argv and its
 * CKPT_STEP_JOIN (or "none") to $OUT/join, then runs PROGRAM as its N tasks here with the
 * variables srun gives each task (SLURM_PROCID, SLURM_STEP_NUM_TASKS, SLURM_STEP_ID), task I's
 * output appended to $OUT/taskI (a task restarted by a srun run again goes on writing there), waits for them and exits 0 if every task did.
 * PROGRAM must be a path. Slurm starts the tasks under slurmstepd, not as srun's children: a
 * task must not be a member of the process tree srun is in, so the exec is the raw system
 * call (no exec hook of a preloaded runtime), with srun's own environment (from which the
 * runtime removed its settings when srun started). */
#include <sys/syscall.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static FILE *out_file(const char *name, const char *mode) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", getenv("OUT"), name);
    FILE *f = fopen(path, mode);
    if (!f) {
        perror(path);
        exit(3);
    }
    return f;
}

int main(int argc, char **argv) {
    if (argc < 4 || strcmp(argv[1], "-n") != 0 || !getenv("OUT")) {
        fprintf(stderr, "usage: OUT=DIR srun -n N PROGRAM [ARGS]\n");
        return 2;
    }
    FILE *f = out_file("argv", "w");
    for (int i = 1; i < argc; i++) fprintf(f, "%s\n", argv[i]);
    fclose(f);
    f = out_file("join", "w");
    fprintf(f, "%s\n", getenv("CKPT_STEP_JOIN") ? getenv("CKPT_STEP_JOIN") : "none");
    fclose(f);
    int n = atoi(argv[2]);
    char num[16];
    snprintf(num, sizeof num, "%d", n);
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "task%d", i);
        FILE *t = out_file(name, "a");
        pid_t pid = fork();
        if (pid == 0) {
            char rank[16];
            snprintf(rank, sizeof rank, "%d", i);
            setenv("SLURM_PROCID", rank, 1);
            setenv("SLURM_STEP_NUM_TASKS", num, 1);
            setenv("SLURM_STEP_ID", "1", 1);
            dup2(fileno(t), 1);
            dup2(fileno(t), 2);
            extern char **environ;
            syscall(SYS_execve, argv[3], argv + 3, environ);
            _exit(127);
        }
        fclose(t);
    }
    int failed = 0, st;
    while (wait(&st) > 0) failed |= !WIFEXITED(st) || WEXITSTATUS(st) != 0;
    return failed;
}
