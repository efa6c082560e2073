/* Private mappings of a deleted file the program still writes through an fd: pages it has not
 * written through a mapping show what the fd writes, pages it wrote (its own copies) do not. */
#include "files_common.h"
#include <sys/mman.h>

#define PG 4096

int main(void) {
    int fd = open("mapped.tmp", O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 3 * PG)) return 2;
    char *ro = mmap(NULL, PG, PROT_READ, MAP_PRIVATE, fd, 0);
    char *rw = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, PG);
    if (ro == MAP_FAILED || rw == MAP_FAILED || unlink("mapped.tmp")) return 2;
    if (pwrite(fd, "before", 6, 0) != 6) return 2;
    strcpy(rw + PG, "own copy"); /* the mapping's own copy of the file's third page */
    ready();

    CHECK(strcmp(ro, "before") == 0, "first page before the write: %.8s", ro);
    CHECK(pwrite(fd, "after0", 6, 0) == 6 && pwrite(fd, "after1", 6, PG) == 6 && pwrite(fd, "after2", 6, 2 * PG) == 6, "pwrite");
    printf("read-only mapping: %.6s\n", ro);
    printf("written mapping: %.6s, %.8s\n", rw, rw + PG);
    CHECK(strcmp(ro, "after0") == 0 && strcmp(rw, "after1") == 0, "the mappings do not show the file's new contents");
    CHECK(strcmp(rw + PG, "own copy") == 0, "the mapping's own copy changed");
    return finish();
}
