/* Files that never had a name or lost it in ways glibc uses: tmpfile() (O_TMPFILE),
 * open(O_TMPFILE) directly, and a POSIX shared memory object (shm_open opens with O_NOFOLLOW)
 * removed with shm_unlink. Contents, offsets and flags must come back. */
#include "files_common.h"
#include <sys/mman.h>

int main(void) {
    FILE *tf = tmpfile();
    int ot = open(".", O_TMPFILE | O_RDWR | O_APPEND, 0600);
    char name[64];
    snprintf(name, sizeof name, "/ckpt-files-tmpfile-%d", getpid());
    int shm = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (!tf || ot < 0 || shm < 0) return 2;
    fputs("tmpfile contents\n", tf);
    fflush(tf);
    fseek(tf, 8, SEEK_SET);
    if (write(ot, "otmpfile data", 13) != 13 || write(shm, "shared memory object", 20) != 20) return 2;
    lseek(shm, 7, SEEK_SET);
    shm_unlink(name);
    ready();

    char buf[64] = {0};
    CHECK(fgets(buf, sizeof buf, tf) != NULL, "read tmpfile");
    printf("tmpfile: '%s' at %ld\n", strtok(buf, "\n"), ftell(tf));
    struct stat st;
    CHECK(fstat(fileno(tf), &st) == 0 && st.st_nlink == 0, "tmpfile has a name");
    CHECK(write(ot, " more", 5) == 5, "append to O_TMPFILE");
    memset(buf, 0, sizeof buf);
    CHECK(pread(ot, buf, sizeof buf - 1, 0) == 18, "O_TMPFILE size");
    printf("otmpfile: '%s' flags %s\n", buf, (fcntl(ot, F_GETFL) & O_APPEND) ? "append" : "no-append");
    CHECK(fstat(ot, &st) == 0 && st.st_nlink == 0, "O_TMPFILE file has a name");
    memset(buf, 0, sizeof buf);
    CHECK(read(shm, buf, sizeof buf - 1) == 13, "read shm object from its offset");
    printf("shm: '%s'\n", buf);
    return finish();
}
