/* A packet socket's ring mapped, then the socket's fd closed: only the mapping holds the socket,
 * which the restart cannot make again (it knows sockets by their fds): it refuses in one line.
 * Needs CAP_NET_RAW. */
#include "files_common.h"
#include <linux/if_packet.h>
#include <sys/mman.h>
#include <sys/socket.h>

int main(void) {
    int a = socket(AF_PACKET, SOCK_RAW, 0), v = TPACKET_V2;
    struct tpacket_req r = {4096, 1, 1024, 4};
    if (a < 0 || setsockopt(a, SOL_PACKET, PACKET_VERSION, &v, sizeof v) || setsockopt(a, SOL_PACKET, PACKET_RX_RING, &r, sizeof r)) return 3;
    unsigned char *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, a, 0);
    if (m == MAP_FAILED) return 4;
    close(a);
    ready();
    printf("mapped: %s\n", m[0] == 0 ? "yes" : "no");
    return finish();
}
