/* inotify watches whose path changed after they were added: one on a symbolic link itself
 * (IN_DONT_FOLLOW), one through a symbolic link (on its target), one on a file renamed since
 * within its directory. After a restart each watch reports what happens to its file, under
 * its watch descriptor. */
#include "files_common.h"
#include <sys/inotify.h>

int main(void) {
    mkdir("w", 0755);
    close(open("w/target", O_CREAT | O_WRONLY, 0644));
    close(open("w/old", O_CREAT | O_WRONLY, 0644));
    unlink("w/link");
    symlink("target", "w/link");
    int in = inotify_init1(IN_NONBLOCK);
    int wl = inotify_add_watch(in, "w/link", IN_ATTRIB | IN_DONT_FOLLOW);
    int wt = inotify_add_watch(in, "w/link", IN_MODIFY);
    int wr = inotify_add_watch(in, "w/old", IN_MODIFY);
    rename("w/old", "w/new");
    ready();

    lchown("w/link", getuid(), getgid());           /* IN_ATTRIB on the link itself */
    int f = open("w/target", O_WRONLY | O_APPEND);
    write(f, "t", 1);                                 /* IN_MODIFY on the target */
    close(f);
    f = open("w/new", O_WRONLY | O_APPEND);
    write(f, "n", 1);                                 /* IN_MODIFY on the renamed file */
    close(f);
    char buf[4096];
    int n = read(in, buf, sizeof buf);
    int got_l = 0, got_t = 0, got_r = 0;
    for (char *p = buf; n > 0 && p < buf + n;) {
        struct inotify_event *e = (struct inotify_event *)p;
        if (e->wd == wl && (e->mask & IN_ATTRIB)) got_l = 1;
        if (e->wd == wt && (e->mask & IN_MODIFY)) got_t = 1;
        if (e->wd == wr && (e->mask & IN_MODIFY)) got_r = 1;
        p += sizeof *e + e->len;
    }
    /* The last one may come in a second read. */
    if (!got_r) {
        n = read(in, buf, sizeof buf);
        for (char *p = buf; n > 0 && p < buf + n;) {
            struct inotify_event *e = (struct inotify_event *)p;
            if (e->wd == wr && (e->mask & IN_MODIFY)) got_r = 1;
            p += sizeof *e + e->len;
        }
    }
    printf("link itself %s, through the link %s, renamed %s\n", got_l ? "yes" : "no", got_t ? "yes" : "no", got_r ? "yes" : "no");
    unlink("w/link");
    unlink("w/target");
    unlink("w/new");
    rmdir("w");
    return finish();
}
