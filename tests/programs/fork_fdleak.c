/*
 * fork_fdleak: forks children right from its start (while the runtime's checkpoint thread is
 * still reading /proc to set itself up) and at every step; each child counts the fds it has on
 * another process's /proc/<pid> directory or files (none of them are the program's: its
 * parent's /proc) and exits with that count.
 * Prints "result leaks=N forks=M": a child must never inherit an fd the runtime had open for a
 * moment in its parent (a restart would meet it as the program's: "/proc/N (deleted)").
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int proc_pid_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) return 0;
    int n = 0, own = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!isdigit((unsigned char)e->d_name[0]) || atoi(e->d_name) == own) continue;
        char p[64], link[256];
        snprintf(p, sizeof p, "/proc/self/fd/%s", e->d_name);
        ssize_t l = readlink(p, link, sizeof link - 1);
        if (l <= 0) continue;
        link[l] = 0;
        if (strncmp(link, "/proc/", 6) == 0 && isdigit((unsigned char)link[6]) && atoi(link + 6) != getpid()) {
            int fl = fcntl(atoi(e->d_name), F_GETFL);
            fprintf(stderr, "leak: child %d fd %s -> %s (flags %#x)\n", getpid(), e->d_name, link, fl);
            n++;
        }
    }
    closedir(d);
    return n;
}

static int burst(int count) {
    int leaks = 0;
    for (int i = 0; i < count; i++) {
        pid_t c = fork();
        if (c == 0) _exit(proc_pid_fds() > 0 ? 1 : 0);
        int st = 0;
        if (c > 0 && waitpid(c, &st, 0) == c && WIFEXITED(st)) leaks += WEXITSTATUS(st);
    }
    return leaks;
}

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 20;
    int per = argc > 2 ? atoi(argv[2]) : 20;
    int leaks = burst(200), forks = 200;
    printf("start fork_fdleak steps=%d\n", steps);
    fflush(stdout);
    struct timespec ts = {0, 50 * 1000 * 1000};
    for (int s = 1; s <= steps; s++) {
        leaks += burst(per);
        forks += per;
        nanosleep(&ts, NULL);
        printf("step %d\n", s);
        fflush(stdout);
    }
    printf("result leaks=%d forks=%d\n", leaks, forks);
    return 0;
}
