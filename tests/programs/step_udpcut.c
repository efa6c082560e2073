/*
 * step_udpcut: two tasks of a Slurm step (SLURM_PROCID 0 and 1 of SLURM_STEP_NUM_TASKS 2) that
 * talk over UDP before a checkpoint and after it: a socket connected before it, a datagram each
 * queued unread across it, sendmmsg and recvmmsg after it.
 *
 * Usage: step_udpcut DIR ROUNDS LATE DELAY_MS NODE
 * Each task binds a UDP socket at a port of its own on every address and publishes
 * "NODE PORT" as DIR/udp.RANK (NODE: this task's node's IPv4 address). Prints
 * "start step_udpcut rank=R n=2", then each round i = 1..ROUNDS folds i into its state, prints
 * "step i state=<hex>" and sleeps DELAY_MS.
 * Round 2: task 1 connects its socket to the address task 0 published and sends its state with
 * send(); task 0 sends its state to the address task 1 published with sendto. Round 3: each
 * waits (MSG_PEEK) until the other's datagram is queued on its socket, and leaves it unread.
 * Round LATE: task 1 reads the queued datagram with recvfrom and checks that it comes from the
 * address and port task 0 published ("late: queued from ADDR:PORT"), checks its socket's peer
 * (getpeername, "late: peer ADDR:PORT"), sends its state with send() on its connected socket,
 * and reads task 0's reply with recvmmsg, checked the same ("late: reply from ADDR:PORT").
 * Task 0 reads the queued datagram with recvmmsg ("late: queued from ADDR:PORT"), the new one
 * with recvfrom ("late: task 1 from ADDR:PORT"), each checked against task 1's published
 * address and port, and answers with sendmmsg to the source recvfrom gave. Each folds what it
 * received into its state. Last "result <hex>". Deterministic for the same ROUNDS.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "port_common.h"
#include "step_common.h"
#include "udp_common.h"

#define EARLY 2

/* A datagram of `n` bytes from `want`, checked; its words in msg. `mmsg`: read with recvmmsg. */
static void receive(int u, uint64_t *msg, size_t n, const struct sockaddr_in *want, int mmsg, const char *what)
{
    struct sockaddr_in s;
    ssize_t got;
    do {
        memset(&s, 0, sizeof s);
        if (mmsg) {
            struct iovec io = { msg, n };
            struct mmsghdr m = { .msg_hdr = { .msg_name = &s, .msg_namelen = sizeof s, .msg_iov = &io, .msg_iovlen = 1 } };
            int r = recvmmsg(u, &m, 1, 0, NULL);
            got = r == 1 ? (ssize_t)m.msg_len : -1;
        } else {
            socklen_t slen = sizeof s;
            got = recvfrom(u, msg, n, 0, (struct sockaddr *)&s, &slen);
        }
    } while (got < 0 && errno == EINTR);
    if (got != (ssize_t)n)
        die(mmsg ? "recvmmsg" : "recvfrom");
    if (!same(&s, want)) {
        fprintf(stderr, "step_udpcut: %s from an unexpected address %s (published %s)\n", what, show(&s), show(want));
        exit(2);
    }
    printf("late: %s from %s\n", what, show(&s));
}

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: step_udpcut DIR ROUNDS LATE DELAY_MS NODE\n");
        return 2;
    }
    const char *dir = argv[1], *node = argv[5];
    long rounds = atol(argv[2]), late = atol(argv[3]), delay = atol(argv[4]);
    const char *r = getenv("SLURM_PROCID"), *nt = getenv("SLURM_STEP_NUM_TASKS");
    long rank = r ? atol(r) : -1, n = nt ? atol(nt) : -1;
    struct in_addr node_ip;
    if (rank < 0 || n != 2 || rank >= n || late <= EARLY + 1 || late > rounds || inet_pton(AF_INET, node, &node_ip) != 1) {
        fprintf(stderr, "step_udpcut: needs SLURM_PROCID and SLURM_STEP_NUM_TASKS=2, 3 < LATE <= ROUNDS, NODE an IPv4 address\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);

    int u = udp_published(dir, rank, node);

    uint64_t state = 0x9E3779B97F4A7C15ULL ^ (uint64_t)rank;
    printf("start step_udpcut rank=%ld n=%ld\n", rank, n);
    struct sockaddr_in other = { 0 };
    for (long i = 1; i <= rounds; i++) {
        state = mix(state, (uint64_t)i);
        if (i == EARLY) {
            other = published(dir, 1 - rank);
            uint64_t msg[2] = { (uint64_t)rank, state };
            if (rank == 1) {
                if (connect(u, (struct sockaddr *)&other, sizeof other) != 0)
                    die("connect");
                if (send(u, msg, sizeof msg, 0) != (ssize_t)sizeof msg)
                    die("send");
            } else if (sendto(u, msg, sizeof msg, 0, (struct sockaddr *)&other, sizeof other) != (ssize_t)sizeof msg) {
                die("sendto");
            }
        } else if (i == EARLY + 1) {
            uint64_t peek[2];
            ssize_t got;
            do
                got = recv(u, peek, sizeof peek, MSG_PEEK);
            while (got < 0 && errno == EINTR);
            if (got != (ssize_t)sizeof peek)
                die("recv MSG_PEEK");
        } else if (i == late && rank == 1) {
            uint64_t early[2], sum[2];
            receive(u, early, sizeof early, &other, 0, "queued");
            struct sockaddr_in peer;
            socklen_t plen = sizeof peer;
            if (getpeername(u, (struct sockaddr *)&peer, &plen) != 0)
                die("getpeername");
            printf("late: peer %s\n", show(&peer));
            state = mix(state, early[1]);
            uint64_t msg[2] = { 1, state };
            if (send(u, msg, sizeof msg, 0) != (ssize_t)sizeof msg)
                die("send");
            receive(u, sum, sizeof sum, &other, 1, "reply");
            state = mix(state, sum[1]);
        } else if (i == late) {
            uint64_t early[2], now[2];
            receive(u, early, sizeof early, &other, 1, "queued");
            struct sockaddr_in s;
            socklen_t slen;
            ssize_t got;
            do {
                slen = sizeof s;
                got = recvfrom(u, now, sizeof now, 0, (struct sockaddr *)&s, &slen);
            } while (got < 0 && errno == EINTR);
            if (got != (ssize_t)sizeof now)
                die("recvfrom");
            if (!same(&s, &other)) {
                fprintf(stderr, "step_udpcut: task 1 from an unexpected address %s (published %s)\n", show(&s), show(&other));
                return 2;
            }
            printf("late: task 1 from %s\n", show(&s));
            state = mix(mix(state, early[1]), now[1]);
            uint64_t sum[2] = { 0, state };
            struct iovec io = { sum, sizeof sum };
            struct mmsghdr m = { .msg_hdr = { .msg_name = &s, .msg_namelen = slen, .msg_iov = &io, .msg_iovlen = 1 } };
            if (sendmmsg(u, &m, 1, 0) != 1 || m.msg_len != sizeof sum)
                die("sendmmsg");
        }
        printf("step %ld state=%016llx\n", i, (unsigned long long)state);
        sleep_ms(delay);
    }
    printf("result %016llx\n", (unsigned long long)state);
    return 0;
}
