/* A stand-in for Slurm's srun whose tasks run in network namespaces that stand for nodes:
 * `srun [--opt=value | -n N | -N N | --flag]... PROGRAM ARGS...` runs PROGRAM as its N tasks
 * (--ntasks=N or -n N), task I in the network namespace named on line I of the file
 * $NETNS_SRUN_NODES (/run/netns/NAME), with the variables srun gives each task (SLURM_PROCID,
 * SLURM_STEP_NUM_TASKS, SLURM_STEP_ID, SLURM_NODEID, SLURM_LOCALID, SLURMD_NODENAME nI+1),
 * its output appended to $OUT/taskI; waits for them and exits 0 if every task did. As Slurm,
 * the tasks are no members of the caller's process tree: raw execve (no exec hook). Needs
 * root (setns). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    const char *nodes = getenv("NETNS_SRUN_NODES"), *out = getenv("OUT");
    int n = 1, i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strncmp(argv[i], "--ntasks=", 9) == 0)
            n = atoi(argv[i] + 9);
        else if (strcmp(argv[i], "-n") == 0 && i + 1 < argc)
            n = atoi(argv[++i]);
        else if (strcmp(argv[i], "-N") == 0 && i + 1 < argc)
            i++;
    }
    if (i >= argc || nodes == NULL || out == NULL || n < 1) {
        fprintf(stderr, "usage: NETNS_SRUN_NODES=FILE OUT=DIR srun [OPTIONS] PROGRAM [ARGS]\n");
        return 2;
    }
    char ns[64][256];
    FILE *f = fopen(nodes, "r");
    int k = 0;
    while (f != NULL && k < 64 && fscanf(f, "%255s", ns[k]) == 1)
        k++;
    if (f != NULL)
        fclose(f);
    if (k < n) {
        fprintf(stderr, "srun: %s names %d namespaces for %d tasks\n", nodes, k, n);
        return 2;
    }
    char prog[4096];
    snprintf(prog, sizeof prog, "%s", argv[i]);
    if (strchr(argv[i], '/') == NULL) {
        char *path = strdup(getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
        for (char *d = strtok(path, ":"); d != NULL; d = strtok(NULL, ":")) {
            snprintf(prog, sizeof prog, "%s/%s", d, argv[i]);
            if (access(prog, X_OK) == 0)
                break;
        }
    }
    FILE *log = NULL;
    char lp[4096];
    snprintf(lp, sizeof lp, "%s/srun.log", out);
    log = fopen(lp, "a");
    for (int t = 0; t < n; t++) {
        if (log != NULL)
            fprintf(log, "task %d in %s: %s\n", t, ns[t], prog);
    }
    if (log != NULL)
        fclose(log);
    char num[16];
    snprintf(num, sizeof num, "%d", n);
    for (int t = 0; t < n; t++) {
        pid_t pid = fork();
        if (pid == 0) {
            char p[512], v[32], name[4096];
            snprintf(p, sizeof p, "/run/netns/%s", ns[t]);
            int fd = open(p, O_RDONLY);
            if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) {
                perror(p);
                _exit(126);
            }
            close(fd);
            snprintf(v, sizeof v, "%d", t);
            setenv("SLURM_PROCID", v, 1);
            setenv("SLURM_NODEID", v, 1);
            setenv("SLURM_LOCALID", "0", 1);
            setenv("SLURM_STEP_NUM_TASKS", num, 1);
            setenv("SLURM_STEP_ID", "1", 1);
            setenv("SLURM_STEPID", "1", 1);
            snprintf(v, sizeof v, "n%d", t + 1);
            setenv("SLURMD_NODENAME", v, 1);
            snprintf(name, sizeof name, "%s/task%d", out, t);
            int o = open(name, O_WRONLY | O_CREAT | O_APPEND, 0644);
            if (o >= 0) {
                dup2(o, 1);
                dup2(o, 2);
            }
            extern char **environ;
            syscall(SYS_execve, prog, argv + i, environ);
            _exit(127);
        }
    }
    int failed = 0, st;
    while (wait(&st) > 0)
        failed |= !WIFEXITED(st) || WEXITSTATUS(st) != 0;
    return failed;
}
