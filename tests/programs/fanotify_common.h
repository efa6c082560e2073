/* Shared by the fanotify_*.c programs (files_common.h first): which file an event of a
 * FAN_REPORT_FID group names. */
#include <sys/fanotify.h>

/* Whether the fid record of event `m` names the file at `path`. */
static int names(struct fanotify_event_metadata *m, const char *path) {
    struct fanotify_event_info_fid *fid = (void *)(m + 1);
    struct file_handle *got = (void *)fid->handle;
    char buf[sizeof(struct file_handle) + MAX_HANDLE_SZ];
    struct file_handle *want = (void *)buf;
    int mnt;
    want->handle_bytes = MAX_HANDLE_SZ;
    if (name_to_handle_at(AT_FDCWD, path, want, &mnt, 0)) return 0;
    return got->handle_type == want->handle_type && got->handle_bytes == want->handle_bytes &&
           !memcmp(got->f_handle, want->f_handle, want->handle_bytes);
}
