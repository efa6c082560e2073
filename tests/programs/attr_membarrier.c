/* membarrier registrations (per process): private expedited, its sync-core and rseq variants,
 * and global expedited. Prints READY, waits for "go", then the registrations the kernel reports
 * and whether the expedited commands work (without a registration they fail with EPERM). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/membarrier.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int mb(int cmd) { return syscall(SYS_membarrier, cmd, 0, 0); }

static void wait_go(int dir) {
    struct timespec ts = {0, 20 * 1000 * 1000};
    while (faccessat(dir, "go", F_OK, 0) != 0) nanosleep(&ts, NULL);
}

int main(void) {
    int dir = open(".", O_RDONLY | O_DIRECTORY);
    int cmds[][2] = {
        {MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, MEMBARRIER_CMD_PRIVATE_EXPEDITED},
        {MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE, MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE},
        {MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ, MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ},
        {MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, MEMBARRIER_CMD_GLOBAL_EXPEDITED},
    };
    int n = sizeof cmds / sizeof cmds[0];
    int supported = mb(MEMBARRIER_CMD_QUERY);
    for (int i = 0; i < n; i++)
        if (supported & cmds[i][0]) mb(cmds[i][0]);
    printf("READY\n");
    fflush(stdout);
    wait_go(dir);
    printf("registrations %#x\n", mb(1 << 9 /* MEMBARRIER_CMD_GET_REGISTRATIONS */));
    for (int i = 0; i < n; i++)
        printf("command %#x: %s\n", cmds[i][1], !(supported & cmds[i][0]) ? "n/a" : mb(cmds[i][1]) ? strerror(errno) : "ok");
    return 0;
}
