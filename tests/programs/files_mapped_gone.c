/* A file the program maps shared and writes (like the JVM's hsperfdata or Open MPI's session
 * files), removed after the program was killed (by a cleanup of some other process): the
 * restart makes it again from the image. */
#include "files_common.h"
#include <sys/mman.h>

#define SIZE (3 * 4096 + 100)

int main(void) {
    int fd = open("session.dat", O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, SIZE)) return 2;
    char *m = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) return 2;
    close(fd);
    for (int i = 0; i < SIZE; i++) m[i] = (char)('a' + i % 23);
    ready();

    long bad = 0;
    for (int i = 0; i < SIZE; i++) bad += m[i] != (char)('a' + i % 23);
    CHECK(bad == 0, "%ld bytes of the mapping differ", bad);
    memcpy(m + 5000, "written after", 13);
    CHECK(msync(m, SIZE, MS_SYNC) == 0, "msync");
    static char file[SIZE + 1];
    int f = open("session.dat", O_RDONLY);
    CHECK(f >= 0 && read(f, file, sizeof file) == SIZE, "the file by its name");
    CHECK(memcmp(file, m, SIZE) == 0, "the file and the mapping differ");
    printf("mapping and file: %d bytes, same: %s\n", SIZE, memcmp(file, m, SIZE) == 0 ? "yes" : "no");
    return finish();
}
