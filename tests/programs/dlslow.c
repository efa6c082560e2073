/* A library whose constructor blocks until one byte arrives on the fd named by DLSLOW_FD: a
 * thread that dlopens it holds glibc's loader lock (a recursive mutex owned by its tid) until
 * then. Used by dlopen_lock.c. */
#include <stdlib.h>
#include <unistd.h>

static int value;

__attribute__((constructor)) static void wait_for_go(void) {
    const char *fd = getenv("DLSLOW_FD");
    char c = 0;
    if (fd && read(atoi(fd), &c, 1) == 1) value = c;
}

int dlslow_value(void) { return value; }
