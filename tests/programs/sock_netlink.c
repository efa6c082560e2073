/* A NETLINK_ROUTE socket bound with a port id of the program's choice and multicast groups,
 * and one left unbound: after a restart they have the same address and groups, and a request
 * sent on each gets its answer. */
#include "files_common.h"
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

/* Ask for the link list; whether an answer (a RTM_NEWLINK or the end of the dump) comes back. */
static int ask(int s) {
    struct {
        struct nlmsghdr h;
        struct rtgenmsg g;
    } req = {{sizeof req, RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, 7, 0}, {AF_UNSPEC}};
    struct sockaddr_nl k = {.nl_family = AF_NETLINK};
    if (sendto(s, &req, sizeof req, 0, (struct sockaddr *)&k, sizeof k) < 0) return 0;
    static char buf[65536];
    int n = recv(s, buf, sizeof buf, 0);
    struct nlmsghdr *h = (struct nlmsghdr *)buf;
    return n > 0 && (h->nlmsg_type == RTM_NEWLINK || h->nlmsg_type == NLMSG_DONE) && h->nlmsg_seq == 7;
}

int main(void) {
    int a = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
    int b = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
    struct sockaddr_nl na = {.nl_family = AF_NETLINK, .nl_pid = 0x7fff0000u + (getpid() & 0xffff), .nl_groups = RTMGRP_LINK};
    if (bind(a, (struct sockaddr *)&na, sizeof na)) return 2;
    int g = RTNLGRP_IPV6_ROUTE;
    setsockopt(a, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &g, sizeof g);
    ready();

    struct sockaddr_nl got;
    socklen_t gl = sizeof got;
    getsockname(a, (struct sockaddr *)&got, &gl);
    printf("bound: port id %s, groups %#x\n", got.nl_pid == na.nl_pid ? "same" : "changed", got.nl_groups);
    unsigned mem[4] = {0};
    socklen_t ml = sizeof mem;
    getsockopt(a, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, mem, &ml);
    printf("memberships: %#x\n", mem[0]);
    gl = sizeof got;
    getsockname(b, (struct sockaddr *)&got, &gl);
    printf("unbound: port id %u\n", got.nl_pid);
    printf("answers: %s %s\n", ask(a) ? "yes" : "no", ask(b) ? "yes" : "no");
    return finish();
}
