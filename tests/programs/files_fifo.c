/* FIFOs opened by name: read, write and O_RDWR opens of one FIFO holding unread bytes, and a
 * FIFO whose name was removed, also holding unread bytes. */
#include "files_common.h"

int main(void) {
    if (mkfifo("fifo", 0640) || mkfifo("gone", 0600)) return 2;
    int rw = open("fifo", O_RDWR);
    int r = open("fifo", O_RDONLY | O_NONBLOCK);
    int w = open("fifo", O_WRONLY);
    int g = open("gone", O_RDWR);
    if (rw < 0 || r < 0 || w < 0 || g < 0) return 2;
    if (write(w, "fifo bytes", 10) != 10 || write(g, "ghost bytes", 11) != 11 || unlink("gone")) return 2;
    ready();

    struct stat st;
    char buf[64] = {0};
    CHECK(fstat(r, &st) == 0 && S_ISFIFO(st.st_mode), "not a FIFO");
    CHECK(read(r, buf, sizeof buf - 1) == 10, "unread bytes of the FIFO");
    printf("fifo: %s, mode %o, read end %s\n", buf, st.st_mode & 0777, (fcntl(r, F_GETFL) & O_NONBLOCK) ? "non-blocking" : "blocking");
    CHECK(read(r, buf, 1) < 0 && errno == EAGAIN, "an empty non-blocking read");
    CHECK(write(rw, "again", 5) == 5, "write through the O_RDWR open");
    memset(buf, 0, sizeof buf);
    CHECK(read(r, buf, sizeof buf - 1) == 5, "read it back");
    printf("fifo: %s\n", buf);
    memset(buf, 0, sizeof buf);
    CHECK(fstat(g, &st) == 0 && S_ISFIFO(st.st_mode) && st.st_nlink == 0, "the removed FIFO");
    CHECK(read(g, buf, sizeof buf - 1) == 11, "unread bytes of the removed FIFO");
    printf("removed fifo: %s, nlink %ld\n", buf, (long)st.st_nlink);
    return finish();
}
