/*
 * step_udp: the tasks of a Slurm step (SLURM_PROCID of SLURM_STEP_NUM_TASKS) that first talk
 * to each other late over UDP, to the address and port a task published at its start (as a
 * program's ports file): datagrams first sent after a restart.
 *
 * Usage: step_udp DIR ROUNDS LATE DELAY_MS NODE
 * Each task binds a UDP socket at a port of its own on every address and publishes
 * "NODE PORT" as DIR/udp.RANK (NODE: this task's node's IPv4 address). Prints
 * "start step_udp rank=R n=N", then each round i = 1..ROUNDS folds i into its state, prints
 * "step i state=<hex>" and sleeps DELAY_MS. At round LATE every task but 0 reads DIR/udp.0
 * (then, not before), connects its socket there, sends its rank and state to that address
 * with sendmsg, reads the reply with recvfrom and drops it unless it comes from the address
 * and port task 0 published, and prints "late: reply from ADDR:PORT, peer ADDR:PORT"
 * (recvfrom's source, getpeername). Task 0 reads each task's datagram with recvmsg, drops it
 * unless its source is the address and port that task published (DIR/udp.K, read then),
 * prints "late: task K from ADDR:PORT", folds the states in rank order and sends the sum to
 * each task with sendto at the address recvmsg gave. Each folds the sum into its state. Last
 * "result <hex>". Deterministic for the same N and ROUNDS.
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
#include "udp_common.h"

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: step_udp DIR ROUNDS LATE DELAY_MS NODE\n");
        return 2;
    }
    const char *dir = argv[1], *node = argv[5];
    long rounds = atol(argv[2]), late = atol(argv[3]), delay = atol(argv[4]);
    const char *r = getenv("SLURM_PROCID"), *nt = getenv("SLURM_STEP_NUM_TASKS");
    long rank = r ? atol(r) : -1, n = nt ? atol(nt) : -1;
    struct in_addr node_ip;
    if (rank < 0 || n < 1 || rank >= n || late < 1 || late > rounds || inet_pton(AF_INET, node, &node_ip) != 1) {
        fprintf(stderr, "step_udp: needs SLURM_PROCID and SLURM_STEP_NUM_TASKS, 1 <= LATE <= ROUNDS, NODE an IPv4 address\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);

    int u = udp_published(dir, rank, node);

    uint64_t state = 0x9E3779B97F4A7C15ULL ^ (uint64_t)rank;
    printf("start step_udp rank=%ld n=%ld\n", rank, n);
    for (long i = 1; i <= rounds; i++) {
        state = mix(state, (uint64_t)i);
        if (i == late && rank == 0) {
            uint64_t *from = calloc((size_t)n, sizeof *from);
            struct sockaddr_in *src = calloc((size_t)n, sizeof *src);
            if (from == NULL || src == NULL)
                die("calloc");
            for (long k = 1; k < n; k++) {
                uint64_t msg[2];
                struct sockaddr_in s;
                struct iovec io = { msg, sizeof msg };
                struct msghdr m = { .msg_name = &s, .msg_namelen = sizeof s, .msg_iov = &io, .msg_iovlen = 1 };
                ssize_t got = recvmsg(u, &m, 0);
                if (got < 0 && errno == EINTR) {
                    k--;
                    continue;
                }
                if (got != (ssize_t)sizeof msg)
                    die("recvmsg");
                if (msg[0] < 1 || msg[0] >= (uint64_t)n || src[msg[0]].sin_family != 0) {
                    fprintf(stderr, "step_udp: a bad rank %llu\n", (unsigned long long)msg[0]);
                    return 2;
                }
                struct sockaddr_in want = published(dir, (long)msg[0]);
                if (!same(&s, &want)) {
                    fprintf(stderr, "step_udp: a datagram from an unexpected address %s (task %llu published %s)\n", show(&s), (unsigned long long)msg[0], show(&want));
                    return 2;
                }
                printf("late: task %llu from %s\n", (unsigned long long)msg[0], show(&s));
                src[msg[0]] = s;
                from[msg[0]] = msg[1];
            }
            uint64_t sum = state;
            for (long k = 1; k < n; k++)
                sum = mix(sum, from[k]);
            for (long k = 1; k < n; k++)
                if (sendto(u, &sum, sizeof sum, 0, (struct sockaddr *)&src[k], sizeof src[k]) != (ssize_t)sizeof sum)
                    die("sendto");
            state = mix(state, sum);
            printf("late: answered %ld tasks\n", n - 1);
        } else if (i == late) {
            struct sockaddr_in to = published(dir, 0);
            if (connect(u, (struct sockaddr *)&to, sizeof to) != 0)
                die("connect");
            uint64_t msg[2] = { (uint64_t)rank, state }, sum;
            struct iovec io = { msg, sizeof msg };
            struct msghdr m = { .msg_name = &to, .msg_namelen = sizeof to, .msg_iov = &io, .msg_iovlen = 1 };
            if (sendmsg(u, &m, 0) != (ssize_t)sizeof msg)
                die("sendmsg");
            struct sockaddr_in s, peer;
            socklen_t slen, plen = sizeof peer;
            ssize_t got;
            do {
                slen = sizeof s;
                got = recvfrom(u, &sum, sizeof sum, 0, (struct sockaddr *)&s, &slen);
            } while (got < 0 && errno == EINTR);
            if (got != (ssize_t)sizeof sum)
                die("recvfrom");
            if (!same(&s, &to)) {
                fprintf(stderr, "step_udp: a reply from an unexpected address %s (task 0 published %s)\n", show(&s), show(&to));
                return 2;
            }
            if (getpeername(u, (struct sockaddr *)&peer, &plen) != 0)
                die("getpeername");
            state = mix(state, sum);
            printf("late: reply from %s, peer %s\n", show(&s), show(&peer));
        }
        printf("step %ld state=%016llx\n", i, (unsigned long long)state);
        sleep_ms(delay);
    }
    printf("result %016llx\n", (unsigned long long)state);
    return 0;
}
