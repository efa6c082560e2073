/* Files passed with SCM_RIGHTS and not yet received ("in flight"), in sockets whose both ends
 * the program holds: both ends of a pipe the program closed since (with bytes in it), an epoll
 * instance, a socket sent over itself, and a file the program still has open. After a restart
 * recvmsg returns them, and they work. */
#include "files_common.h"
#include <sys/epoll.h>
#include <sys/socket.h>

static int send_fds(int via, const int *fds, int n, const char *tag) {
    char c[CMSG_SPACE(4 * 4)];
    struct iovec iov = {(void *)tag, strlen(tag)};
    struct msghdr h = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = c, .msg_controllen = CMSG_SPACE(4 * n)};
    struct cmsghdr *ch = CMSG_FIRSTHDR(&h);
    ch->cmsg_level = SOL_SOCKET;
    ch->cmsg_type = SCM_RIGHTS;
    ch->cmsg_len = CMSG_LEN(4 * n);
    memcpy(CMSG_DATA(ch), fds, 4 * n);
    return sendmsg(via, &h, 0);
}

/* Receive one message: its text into tag, up to 4 fds into fds; the number of fds. */
static int recv_fds(int via, int *fds, char *tag) {
    char c[CMSG_SPACE(4 * 4)];
    struct iovec iov = {tag, 15};
    struct msghdr h = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = c, .msg_controllen = sizeof c};
    int n = recvmsg(via, &h, MSG_DONTWAIT);
    if (n < 0) return -1;
    tag[n] = 0;
    struct cmsghdr *ch = CMSG_FIRSTHDR(&h);
    if (!ch || ch->cmsg_type != SCM_RIGHTS) return 0;
    int k = (ch->cmsg_len - CMSG_LEN(0)) / 4;
    memcpy(fds, CMSG_DATA(ch), 4 * k);
    return k;
}

int main(void) {
    int dg[2], st[2], p[2];
    socketpair(AF_UNIX, SOCK_DGRAM, 0, dg);
    socketpair(AF_UNIX, SOCK_STREAM, 0, st);
    pipe(p);
    write(p[1], "in the pipe", 11);
    send_fds(dg[0], p, 2, "pipe");
    close(p[0]);
    close(p[1]);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 42};
    epoll_ctl(ep, EPOLL_CTL_ADD, dg[1], &ev);
    send_fds(st[0], &ep, 1, "epoll");
    close(ep);
    send_fds(st[0], &st[1], 1, "itself");
    int keep = open("kept.txt", O_CREAT | O_RDWR | O_TRUNC, 0600);
    write(keep, "kept", 4);
    send_fds(dg[0], &keep, 1, "kept");
    write(st[0], "plain bytes", 11);
    ready();

    int fds[4];
    char tag[16];
    int n = recv_fds(dg[1], fds, tag);
    printf("dgram 1: '%s' with %d fds\n", tag, n);
    if (n == 2) {
        char b[32];
        int r = read(fds[0], b, sizeof b);
        printf("pipe: '%.*s', writes again %s\n", r > 0 ? r : 0, b, write(fds[1], "x", 1) == 1 && read(fds[0], b, 1) == 1 ? "yes" : "no");
    }
    n = recv_fds(dg[1], fds, tag);
    printf("dgram 2: '%s' with %d fds\n", tag, n);
    if (n == 1) {
        char b[8] = "";
        int r = pread(fds[0], b, 4, 0);
        printf("kept: '%.*s', same file %s\n", r > 0 ? r : 0, b, lseek(fds[0], 0, SEEK_CUR) == lseek(keep, 0, SEEK_CUR) ? "yes" : "no");
    }
    n = recv_fds(st[1], fds, tag);
    printf("stream 1: '%s' with %d fds\n", tag, n);
    if (n == 1) {
        /* The epoll watches dg[1], which has nothing queued now; send it something. */
        send(dg[0], "wake", 4, 0);
        struct epoll_event got;
        int w = epoll_wait(fds[0], &got, 1, 1000);
        printf("epoll: %d event(s), data %llu\n", w, w == 1 ? (unsigned long long)got.data.u64 : 0ULL);
    }
    n = recv_fds(st[1], fds, tag);
    printf("stream 2: '%s' with %d fds\n", tag, n);
    if (n == 1) {
        write(st[0], "", 0);
        printf("itself: the same socket %s\n", fds[0] >= 0 && send(st[0], "", 0, 0) == 0 ? "yes" : "no");
    }
    char b[32];
    n = recv(st[1], b, sizeof b, MSG_DONTWAIT);
    printf("stream 3: '%.*s'\n", n > 0 ? n : 0, b);
    unlink("kept.txt");
    return finish();
}
