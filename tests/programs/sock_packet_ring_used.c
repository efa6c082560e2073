/* A packet socket whose mapped ring (TPACKET_V2) has held a packet before READY, read and given
 * back to the kernel: the kernel's position in the ring is the second frame now, which a new
 * ring cannot have, so the restart refuses (with --ignore-missing-files it goes on, warned).
 * After "go" the program only checks that the mapping is there. Needs CAP_NET_RAW. */
#include "files_common.h"
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sys/mman.h>
#include <sys/socket.h>

int main(void) {
    int lo = if_nametoindex("lo");
    unsigned short type = 0x9100 + (getpid() % 0x700) * 2;
    int a = socket(AF_PACKET, SOCK_RAW, htons(type)), v = TPACKET_V2;
    struct tpacket_req r = {4096, 1, 1024, 4};
    if (a < 0 || setsockopt(a, SOL_PACKET, PACKET_VERSION, &v, sizeof v) || setsockopt(a, SOL_PACKET, PACKET_RX_RING, &r, sizeof r)) return 3;
    struct sockaddr_ll to = {.sll_family = AF_PACKET, .sll_protocol = htons(type), .sll_ifindex = lo, .sll_halen = 6};
    if (bind(a, (struct sockaddr *)&to, sizeof to)) return 4;
    unsigned char *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, a, 0);
    int c = socket(AF_PACKET, SOCK_RAW, 0);
    unsigned char frame[64] = {0};
    frame[12] = type >> 8;
    frame[13] = type & 0xff;
    if (m == MAP_FAILED || sendto(c, frame, sizeof frame, 0, (struct sockaddr *)&to, sizeof to) != sizeof frame) return 5;
    struct tpacket2_hdr *h = (struct tpacket2_hdr *)m;
    for (int waited = 0; !(__atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER) && waited < 5000; waited++) {
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    __atomic_store_n(&h->tp_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
    ready();
    printf("mapped: %s\n", m[0] == 0 ? "yes" : "no");
    return finish();
}
