/* epoll entries added through fd numbers the program closed since, the file still open
 * through another fd (a dup), and two entries added through one fd number for two files (the
 * number reused after a close); and an epoll instance watching another one made after it (at a
 * higher fd number: UCX's, in MPICH's ranks). After a restart epoll_wait reports each of them. */
#include "files_common.h"
#include <sys/epoll.h>

int main(void) {
    int outer = epoll_create1(0);
    int ep = epoll_create1(0);
    int a[2], b[2];
    pipe(a);
    pipe(b);
    /* Added as fd 50, which then goes; the file stays open as a[0]. */
    dup2(a[0], 50);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 1};
    epoll_ctl(ep, EPOLL_CTL_ADD, 50, &ev);
    close(50);
    /* Fd 51 twice: b[0] first, then (after a close) a[0] again under the same number. */
    dup2(b[0], 51);
    ev.data.u64 = 2;
    epoll_ctl(ep, EPOLL_CTL_ADD, 51, &ev);
    close(51);
    dup2(a[0], 51);
    ev.data.u64 = 3;
    epoll_ctl(ep, EPOLL_CTL_ADD, 51, &ev);
    close(51);
    /* And a plain one. */
    ev.data.u64 = 4;
    epoll_ctl(ep, EPOLL_CTL_ADD, b[1], &(struct epoll_event){.events = EPOLLOUT, .data.u64 = 4});
    /* The outer instance (the lower fd) watches `ep`. */
    epoll_ctl(outer, EPOLL_CTL_ADD, ep, &(struct epoll_event){.events = EPOLLIN, .data.u64 = 5});
    ready();

    write(a[1], "x", 1);
    write(b[1], "y", 1);
    struct epoll_event got[8];
    int nested = epoll_wait(outer, got, 8, 2000);
    printf("nested: %d, data %llu\n", nested, nested == 1 ? (unsigned long long)got[0].data.u64 : 0ULL);
    int n = epoll_wait(ep, got, 8, 2000);
    unsigned seen = 0;
    for (int i = 0; i < n; i++) seen |= 1u << got[i].data.u64;
    printf("events: %d, data 1 %s, 2 %s, 3 %s, 4 %s\n", n, seen & 2 ? "yes" : "no", seen & 4 ? "yes" : "no", seen & 8 ? "yes" : "no",
           seen & 16 ? "yes" : "no");
    return finish();
}
