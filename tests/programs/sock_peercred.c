/* SO_PEERCRED of a socketpair a child made and passed up (zdtm sock_peercred): the pid is the
 * child's (reaped before the checkpoint), and when run as root the child made it as user and
 * group 65534 (as nobody it is 65534 anyway). After a restart SO_PEERCRED of both ends still
 * gives the child's pid and ids. */
#include "files_common.h"
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

static int recv_fd(int s) {
    char d;
    char cbuf[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {&d, 1};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
    if (recvmsg(s, &m, 0) != 1) return -1;
    int fd;
    memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&m)), sizeof fd);
    return fd;
}

static void send_fd(int s, int fd) {
    char d = 'f';
    char cbuf[CMSG_SPACE(sizeof(int))] = {0};
    struct iovec iov = {&d, 1};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    sendmsg(s, &m, 0);
}

static void show(const char *name, int fd, pid_t child) {
    struct ucred u;
    socklen_t l = sizeof u;
    CHECK(getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &u, &l) == 0, "SO_PEERCRED");
    printf("%s: peer pid is the child: %s, uid %u gid %u\n", name, u.pid == child ? "yes" : "no", u.uid, u.gid);
}

int main(void) {
    int ctl[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, ctl)) return 2;
    pid_t child = fork();
    if (child == 0) {
        if (getuid() == 0 && (syscall(SYS_setresgid, 65534, 65534, 65534) || syscall(SYS_setresuid, 65534, 65534, 65534))) _exit(3);
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) _exit(4);
        send_fd(ctl[1], sv[0]);
        send_fd(ctl[1], sv[1]);
        _exit(0);
    }
    int a = recv_fd(ctl[0]), b = recv_fd(ctl[0]);
    int st;
    waitpid(child, &st, 0);
    if (a < 0 || b < 0 || st != 0) return 5;
    close(ctl[0]);
    close(ctl[1]);
    ready();
    show("one end", a, child);
    show("other end", b, child);
    CHECK(write(a, "x", 1) == 1, "write");
    char c = 0;
    CHECK(read(b, &c, 1) == 1 && c == 'x', "read");
    return finish();
}
