/* fds on the program's own namespaces (/proc/self/ns/net, /proc/self/ns/user, O_PATH on
 * /proc/self/ns/uts): after a restart each still names the namespace of that type the program
 * is in (its link reads as a fresh open's), not /dev/null. */
#include "files_common.h"

static void same(const char *what, int fd) {
    char a[64] = "", b[64] = "", p[64];
    snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
    CHECK(readlink(p, a, sizeof a - 1) > 0, "readlink %s", what);
    snprintf(p, sizeof p, "/proc/self/ns/%s", what);
    CHECK(readlink(p, b, sizeof b - 1) > 0, "readlink %s", p);
    CHECK(strcmp(a, b) == 0, "%s: fd is %s, the namespace %s", what, a, b);
    printf("%s: %s\n", what, strncmp(a, what, strlen(what)) == 0 ? "a namespace of that type" : "something else");
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    int net = open("/proc/self/ns/net", O_RDONLY);
    int user = open("/proc/self/ns/user", O_RDONLY | O_CLOEXEC);
    int uts = open("/proc/self/ns/uts", O_PATH);
    CHECK(net >= 0 && user >= 0 && uts >= 0, "open");
    ready();
    same("net", net);
    same("user", user);
    same("uts", uts);
    printf("cloexec: net %d user %d\n", !!(fcntl(net, F_GETFD) & FD_CLOEXEC), !!(fcntl(user, F_GETFD) & FD_CLOEXEC));
    return finish();
}
