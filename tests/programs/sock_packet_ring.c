/* Packet sockets with mapped rings (zdtm packet_sock_mmap, and more): socket A (TPACKET_V2, an RX
 * ring and a TX ring in one mapping) and socket B (TPACKET_V3, an RX ring of blocks), both bound
 * to lo with an ethertype of this run's own; no packet reaches them before READY. After "go":
 * socket C sends three frames to A, which reads them from its RX ring; A sends two frames to B
 * through its TX ring, which B reads from its blocks; each mapping is still the socket's, at the
 * address the program keeps, and the kernel fills the frames and blocks from the first, where
 * the program reads. A restarted run prints what an uninterrupted one prints. Needs
 * CAP_NET_RAW. */
#include "files_common.h"
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/sysmacros.h>

static int lo;
static unsigned short type_a, type_b;
static char tag[16];

static int bound(int version, unsigned short type) {
    int s = socket(AF_PACKET, SOCK_RAW, htons(type));
    if (s < 0) {
        printf("socket: %s\n", strerror(errno));
        exit(3);
    }
    if (version >= 0 && setsockopt(s, SOL_PACKET, PACKET_VERSION, &version, sizeof version)) exit(4);
    return s;
}

static void bind_lo(int s, unsigned short type) {
    struct sockaddr_ll a = {.sll_family = AF_PACKET, .sll_protocol = htons(type), .sll_ifindex = lo};
    if (bind(s, (struct sockaddr *)&a, sizeof a)) exit(5);
}

/* An Ethernet frame of `type` carrying "TAG-word" at `p`; its length. */
static int frame(unsigned char *p, unsigned short type, const char *word) {
    memset(p, 0, 14);
    p[12] = type >> 8;
    p[13] = type & 0xff;
    return 14 + sprintf((char *)p + 14, "%s-%s", tag, word) + 1;
}

/* The payload of a received frame when it is one of this run's (NULL: someone else's). */
static const char *ours(const unsigned char *eth) {
    const char *w = (const char *)eth + 14;
    return strncmp(w, tag, strlen(tag)) == 0 && w[strlen(tag)] == '-' ? w + strlen(tag) + 1 : NULL;
}

/* Whether the mapping at `addr` is socket `s`'s (zdtm's check). */
static int mapped_here(void *addr, int s) {
    struct stat st;
    char line[512];
    fstat(s, &st);
    FILE *f = fopen("/proc/self/maps", "r");
    int found = 0;
    while (f && fgets(line, sizeof line, f)) {
        unsigned long start;
        unsigned maj, min;
        unsigned long long ino;
        if (sscanf(line, "%lx-%*x %*s %*s %x:%x %llu", &start, &maj, &min, &ino) == 4 && start == (unsigned long)addr &&
            makedev(maj, min) == st.st_dev && ino == st.st_ino)
            found = 1;
    }
    if (f) fclose(f);
    return found;
}

static void pause_ms(void) {
    struct timespec ts = {0, 1000 * 1000};
    nanosleep(&ts, NULL);
}

int main(void) {
    lo = if_nametoindex("lo");
    /* Ethertypes of this run (local experimental range and above), and a tag in each payload. */
    type_a = 0x9100 + (getpid() % 0x700) * 2;
    type_b = type_a + 1;
    snprintf(tag, sizeof tag, "r%d", getpid());

    struct tpacket_req ra = {4096, 2, 1024, 8};
    int a = bound(TPACKET_V2, type_a);
    if (setsockopt(a, SOL_PACKET, PACKET_RX_RING, &ra, sizeof ra) || setsockopt(a, SOL_PACKET, PACKET_TX_RING, &ra, sizeof ra)) return 6;
    bind_lo(a, type_a);
    unsigned char *ma = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, a, 0);
    struct tpacket_req3 rb = {.tp_block_size = 4096, .tp_block_nr = 4, .tp_frame_size = 2048, .tp_frame_nr = 8, .tp_retire_blk_tov = 5};
    int b = bound(TPACKET_V3, type_b);
    if (setsockopt(b, SOL_PACKET, PACKET_RX_RING, &rb, sizeof rb)) return 7;
    bind_lo(b, type_b);
    unsigned char *mb = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, b, 0);
    int c = bound(-1, 0);
    if (ma == MAP_FAILED || mb == MAP_FAILED) return 8;
    ready();

    /* C -> A's RX ring (V2 frames, in order from the first). */
    struct sockaddr_ll to = {.sll_family = AF_PACKET, .sll_ifindex = lo, .sll_halen = 6};
    unsigned char buf[256];
    for (int i = 0; i < 3; i++) {
        char w[16];
        snprintf(w, sizeof w, "ping%d", i);
        int n = frame(buf, type_a, w);
        CHECK(sendto(c, buf, n, 0, (struct sockaddr *)&to, sizeof to) == n, "send %d", i);
    }
    printf("A received:");
    for (int got = 0, i = 0, waited = 0; got < 3 && waited < 5000;) {
        struct tpacket2_hdr *h = (struct tpacket2_hdr *)(ma + i * 1024);
        if (!(__atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER)) {
            pause_ms();
            waited++;
            continue;
        }
        const char *w = ours((unsigned char *)h + h->tp_mac);
        if (w) {
            printf(" %s@%d", w, i);
            got++;
        }
        __atomic_store_n(&h->tp_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
        i = (i + 1) % 8;
    }
    printf("\n");

    /* A's TX ring -> B's RX ring (V3 blocks). */
    for (int i = 0; i < 2; i++) {
        struct tpacket2_hdr *h = (struct tpacket2_hdr *)(ma + 8192 + i * 1024);
        CHECK(h->tp_status == TP_STATUS_AVAILABLE, "tx frame %d is free", i);
        char w[16];
        snprintf(w, sizeof w, "tx%d", i);
        h->tp_len = frame((unsigned char *)h + TPACKET2_HDRLEN - sizeof(struct sockaddr_ll), type_b, w);
        __atomic_store_n(&h->tp_status, TP_STATUS_SEND_REQUEST, __ATOMIC_RELEASE);
    }
    CHECK(send(a, NULL, 0, 0) >= 0, "send through the tx ring");
    printf("B received:");
    int first = -1;
    for (int got = 0, blk = 0, waited = 0; got < 2 && waited < 5000;) {
        struct tpacket_block_desc *d = (struct tpacket_block_desc *)(mb + blk * 4096);
        if (!(__atomic_load_n(&d->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER)) {
            pause_ms();
            waited++;
            continue;
        }
        struct tpacket3_hdr *p = (struct tpacket3_hdr *)((unsigned char *)d + d->hdr.bh1.offset_to_first_pkt);
        for (unsigned k = 0; k < d->hdr.bh1.num_pkts; k++) {
            const char *w = ours((unsigned char *)p + p->tp_mac);
            if (w) {
                printf(" %s", w);
                if (first < 0) first = blk;
                got++;
            }
            p = (struct tpacket3_hdr *)((unsigned char *)p + p->tp_next_offset);
        }
        __atomic_store_n(&d->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
        blk = (blk + 1) % 4;
    }
    printf(", the first in block %d\n", first);
    printf("mappings: %s %s\n", mapped_here(ma, a) ? "A's" : "not A's", mapped_here(mb, b) ? "B's" : "not B's");
    return finish();
}
