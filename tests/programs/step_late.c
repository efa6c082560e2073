/*
 * step_late: the tasks of a Slurm step (SLURM_PROCID of SLURM_STEP_NUM_TASKS) that first
 * connect to each other late, to the address and port a task published at its start (as MPI's
 * modex or a ports file): a connection first made after a restart.
 *
 * Usage: step_late DIR [ROUNDS=80] [LATE=70] [DELAY_MS=50] [OWN_ADDRESS=0] [UDP=0] [SHARE=0] [NODE=-] [BIND=0] [EARLY=0]
 * (STEP_LATE_ALONE set and no SLURM_* variables: task 0 of 1, a program that is no step.)
 * Each task listens at a port of its own, on every address, or with OWN_ADDRESS=1 on
 * 127.0.0.(2 + rank) only, and publishes "ADDRESS PORT" as DIR/port.RANK (ADDRESS 127.0.0.1
 * for every address). With UDP=1 each task also binds a UDP socket at a port of its own on
 * every address (unused otherwise) and publishes that port as DIR/udp.RANK. With SHARE=1 each
 * task forks a child once it listens that holds the listener too (it never accepts) and waits
 * for the task to end (the end of a pipe). With NODE an IPv4 address of this machine (other than
 * loopback), a task listening on every address publishes NODE instead of 127.0.0.1, and task 0
 * drops a late connection whose source address is not NODE, as Open MPI's TCP BTL drops one from
 * an address its peer did not publish ("step_late: a connection from an unexpected address").
 * With BIND=1 NODE is this task's own address (each task its own), as Open MPI's TCP BTL: a
 * connecting task binds its socket to NODE (port 0) before it connects and prints
 * "late: bound at ADDR" (getsockname), and task 0 drops a late connection whose source address
 * is not the one the connecting task published (DIR/port.RANK), printing "late: task K from
 * ADDR" for each it keeps. Prints "start step_late rank=R n=N", then each round i = 1..ROUNDS folds
 * i into its state, prints "step i state=<hex>" and sleeps DELAY_MS. At round LATE every task
 * but 0 reads DIR/port.0 (then, not before), connects there and sends its rank and state;
 * task 0 accepts them all, folds their states in rank order and sends the sum back; each
 * folds it into its state. With EARLY (a round before LATE) every task but 0 also connects
 * there at round EARLY and sends a byte; task 0 accepts them all, reads the byte and closes each
 * connection first, so that its end lingers in TIME_WAIT on its listener's port for a minute
 * (the listener has no SO_REUSEADDR, and so neither has the connection); nothing of it goes
 * into the state. Last "result <hex>". Deterministic for the same N and arguments.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "port_common.h"
#include "step_common.h"

static void io_all(int fd, void *buf, size_t n, int out)
{
    unsigned char *p = buf;
    while (n > 0) {
        ssize_t k = out ? send(fd, p, n, MSG_NOSIGNAL) : recv(fd, p, n, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k == 0) {
            fprintf(stderr, "step_late: the other task closed the connection\n");
            exit(2);
        }
        if (k < 0)
            die(out ? "send" : "recv");
        p += k;
        n -= (size_t)k;
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: step_late DIR [ROUNDS] [LATE] [DELAY_MS] [OWN_ADDRESS] [UDP] [SHARE]\n");
        return 2;
    }
    const char *dir = argv[1];
    long rounds = argc > 2 ? atol(argv[2]) : 80;
    long late = argc > 3 ? atol(argv[3]) : 70;
    long delay = argc > 4 ? atol(argv[4]) : 50;
    int own = argc > 5 && atoi(argv[5]) == 1;
    int udp = argc > 6 && atoi(argv[6]) == 1;
    int share = argc > 7 && atoi(argv[7]) == 1;
    const char *node = argc > 8 && strcmp(argv[8], "-") != 0 ? argv[8] : NULL;
    int bind_own = argc > 9 && atoi(argv[9]) == 1 && node != NULL;
    long early = argc > 10 ? atol(argv[10]) : 0;
    struct in_addr node_ip = { 0 };
    if (node != NULL && inet_pton(AF_INET, node, &node_ip) != 1) {
        fprintf(stderr, "step_late: NODE %s is no IPv4 address\n", node);
        return 2;
    }
    const char *r = getenv("SLURM_PROCID"), *nt = getenv("SLURM_STEP_NUM_TASKS");
    long rank = r ? atol(r) : -1, n = nt ? atol(nt) : -1;
    if (r == NULL && nt == NULL && getenv("STEP_LATE_ALONE") != NULL)
        rank = 0, n = 1;
    if (rank < 0 || n < 1 || rank >= n || late < 1 || late > rounds) {
        fprintf(stderr, "step_late: needs SLURM_PROCID and SLURM_STEP_NUM_TASKS (or STEP_LATE_ALONE), 1 <= LATE <= ROUNDS\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);

    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = own ? htonl(0x7f000002u + (uint32_t)rank) : htonl(INADDR_ANY) };
    if (l < 0 || bind_free_port(l, &a, sizeof a) != 0 || listen(l, 16) != 0)
        die("listen");
    socklen_t alen = sizeof a;
    getsockname(l, (struct sockaddr *)&a, &alen);
    char path[4096], line[128], ip[INET_ADDRSTRLEN];
    struct in_addr shown = a.sin_addr;
    if (!own)
        shown.s_addr = node != NULL ? node_ip.s_addr : htonl(INADDR_LOOPBACK);
    inet_ntop(AF_INET, &shown, ip, sizeof ip);
    snprintf(line, sizeof line, "%s %d\n", ip, ntohs(a.sin_port));
    publish(dir, "port", rank, line);

    if (share) {
        int p[2];
        if (pipe(p) != 0)
            die("pipe");
        pid_t c = fork();
        if (c < 0)
            die("fork");
        if (c == 0) {
            char b;
            close(p[1]);
            while (read(p[0], &b, 1) < 0 && errno == EINTR) {
            }
            _exit(0);
        }
        close(p[0]);
    }

    if (udp) {
        int u = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in ua = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY) };
        socklen_t ulen = sizeof ua;
        if (u < 0 || bind_free_port(u, &ua, sizeof ua) != 0 || getsockname(u, (struct sockaddr *)&ua, &ulen) != 0)
            die("udp");
        snprintf(line, sizeof line, "%d\n", ntohs(ua.sin_port));
        publish(dir, "udp", rank, line);
    }

    uint64_t state = 0x9E3779B97F4A7C15ULL ^ (uint64_t)rank;
    printf("start step_late rank=%ld n=%ld\n", rank, n);
    for (long i = 1; i <= rounds; i++) {
        state = mix(state, (uint64_t)i);
        if (i == early && i != late && rank == 0) {
            for (long k = 1; k < n; k++) {
                char b;
                int c = accept(l, NULL, NULL);
                if (c < 0)
                    die("early accept");
                io_all(c, &b, 1, 0);
                close(c);
            }
        } else if (i == early && i != late) {
            char addr[64], b = 1;
            int port = read_published(dir, "port", 0, addr);
            struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
            int c = socket(AF_INET, SOCK_STREAM, 0);
            if (c < 0 || inet_pton(AF_INET, addr, &to.sin_addr) != 1 || connect(c, (struct sockaddr *)&to, sizeof to) != 0)
                die("early connect");
            io_all(c, &b, 1, 1);
            ssize_t k; /* task 0 closes first */
            while ((k = read(c, &b, 1)) > 0 || (k < 0 && errno == EINTR))
                ;
            close(c);
        }
        if (i == late && rank == 0) {
            uint64_t *from = calloc((size_t)n, sizeof *from);
            int *fds = calloc((size_t)n, sizeof *fds);
            if (from == NULL || fds == NULL)
                die("calloc");
            for (long k = 1; k < n; k++) {
                struct sockaddr_in src;
                socklen_t slen = sizeof src;
                int c = accept(l, (struct sockaddr *)&src, &slen);
                if (c < 0)
                    die("accept");
                if (node != NULL && !bind_own && src.sin_addr.s_addr != node_ip.s_addr) {
                    fprintf(stderr, "step_late: a connection from an unexpected address %s (the tasks published %s)\n", inet_ntoa(src.sin_addr), node);
                    return 2;
                }
                uint64_t msg[2];
                io_all(c, msg, sizeof msg, 0);
                if (msg[0] < 1 || msg[0] >= (uint64_t)n || fds[msg[0]] != 0) {
                    fprintf(stderr, "step_late: a bad rank %llu\n", (unsigned long long)msg[0]);
                    return 2;
                }
                if (bind_own) {
                    /* The address task msg[0] published, read now (a restart does not change it). */
                    char pub[64] = "";
                    int pport = 0;
                    struct in_addr want = { 0 };
                    snprintf(path, sizeof path, "%s/port.%llu", dir, (unsigned long long)msg[0]);
                    FILE *p = fopen(path, "r");
                    if (p == NULL || fscanf(p, "%63s %d", pub, &pport) != 2 || inet_pton(AF_INET, pub, &want) != 1)
                        die(path);
                    fclose(p);
                    if (src.sin_addr.s_addr != want.s_addr) {
                        fprintf(stderr, "step_late: a connection from an unexpected address %s (task %llu published %s)\n", inet_ntoa(src.sin_addr), (unsigned long long)msg[0], pub);
                        return 2;
                    }
                    printf("late: task %llu from %s\n", (unsigned long long)msg[0], inet_ntoa(src.sin_addr));
                }
                fds[msg[0]] = c;
                from[msg[0]] = msg[1];
            }
            uint64_t sum = state;
            for (long k = 1; k < n; k++)
                sum = mix(sum, from[k]);
            for (long k = 1; k < n; k++) {
                io_all(fds[k], &sum, sizeof sum, 1);
                close(fds[k]);
            }
            state = mix(state, sum);
            printf("late: accepted %ld tasks\n", n - 1);
        } else if (i == late) {
            char addr[64];
            int port = read_published(dir, "port", 0, addr);
            struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
            if (inet_pton(AF_INET, addr, &to.sin_addr) != 1)
                die("inet_pton");
            int c = socket(AF_INET, SOCK_STREAM, 0);
            if (c < 0)
                die("socket");
            if (bind_own) {
                struct sockaddr_in me = { .sin_family = AF_INET, .sin_addr = node_ip };
                if (bind(c, (struct sockaddr *)&me, sizeof me) != 0)
                    die("bind to this task's own address");
            }
            if (connect(c, (struct sockaddr *)&to, sizeof to) != 0)
                die("connect");
            if (bind_own) {
                struct sockaddr_in me;
                socklen_t mlen = sizeof me;
                if (getsockname(c, (struct sockaddr *)&me, &mlen) != 0)
                    die("getsockname");
                printf("late: bound at %s\n", inet_ntoa(me.sin_addr));
            }
            struct sockaddr_in peer;
            socklen_t plen = sizeof peer;
            getpeername(c, (struct sockaddr *)&peer, &plen);
            uint64_t msg[2] = { (uint64_t)rank, state }, sum;
            io_all(c, msg, sizeof msg, 1);
            io_all(c, &sum, sizeof sum, 0);
            close(c);
            state = mix(state, sum);
            printf("late: connected to %s:%d, peer %s:%d\n", addr, port, inet_ntoa(peer.sin_addr), ntohs(peer.sin_port));
        }
        printf("step %ld state=%016llx\n", i, (unsigned long long)state);
        sleep_ms(delay);
    }
    printf("result %016llx\n", (unsigned long long)state);
    return 0;
}
