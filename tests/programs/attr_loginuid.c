/* The audit login uid (/proc/self/loginuid), set to 4242 (root: CAP_AUDIT_CONTROL). Prints
 * READY, waits for "go", then the value it has. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(void) {
    int dir = open(".", O_RDONLY | O_DIRECTORY);
    FILE *f = fopen("/proc/self/loginuid", "w");
    if (!f || fprintf(f, "4242") < 0 || fclose(f)) {
        printf("READY\ncannot set loginuid: %s\n", strerror(errno));
        return 0;
    }
    printf("READY\n");
    fflush(stdout);
    struct timespec ts = {0, 20 * 1000 * 1000};
    while (faccessat(dir, "go", F_OK, 0) != 0) nanosleep(&ts, NULL);
    char buf[16] = "?";
    f = fopen("/proc/self/loginuid", "r");
    if (f && fgets(buf, sizeof buf, f)) printf("loginuid %s\n", buf);
    return 0;
}
