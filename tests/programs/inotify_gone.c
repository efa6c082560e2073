/* An inotify watch on a file that was moved to another directory since it was added: the
 * runtime cannot tell where it is (the kernel names only its inode), so a restart must not go
 * on silently without the watch (the program would wait forever for its events). */
#include "files_common.h"
#include <sys/inotify.h>

int main(void) {
    mkdir("a", 0755);
    mkdir("b", 0755);
    close(open("a/f", O_CREAT | O_WRONLY, 0644));
    int in = inotify_init1(IN_NONBLOCK);
    int wd = inotify_add_watch(in, "a/f", IN_MODIFY);
    rename("a/f", "b/f");
    ready();
    int f = open("b/f", O_WRONLY);
    write(f, "x", 1);
    close(f);
    char buf[256];
    int n = read(in, buf, sizeof buf);
    printf("event: %s\n", n > 0 && ((struct inotify_event *)buf)->wd == wd ? "yes" : "no");
    unlink("b/f");
    rmdir("a");
    rmdir("b");
    return finish();
}
