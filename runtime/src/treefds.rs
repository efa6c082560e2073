//! The list of this process's fds it leaves the tree's coordinator while it is stopped for the
//! tree's checkpoint, before it says Stopped (`ckpt_ns::treemsg::fds_name` in its set
//! directory): the coordinator finds the fds several processes hold as one open file from these
//! lists (ckpt-ns's `samefds`) instead of looking each fd of each process up in /proc, which cost
//! a tree of 128 processes of 682 fds each 140-340 ms of its pause. A list that cannot be made
//! or written is left out: the coordinator reads /proc for that process.
//!
//! Raw system calls only: the program's threads are stopped.

use crate::sys::{self, syscall};

/// Write the list into the set directory `dir` (the fds as /proc shows them, our own too: the
/// coordinator's view of the table is unchanged).
pub fn leave(dir: i32) {
    let Ok(names) = sys::list_dir(&sys::cpath(&[b"/proc/thread-self/fd"])) else { return };
    let fds = names.iter().filter_map(|n| std::str::from_utf8(n).ok()?.parse::<i32>().ok());
    let listed = fds.filter_map(|fd| sys::fstat(fd).ok().map(|st| (fd, st.st_mode, st.st_dev, st.st_ino)));
    let mut bytes = Vec::with_capacity(8 + names.len() * ckpt_ns::treemsg::FD_RECORD);
    ckpt_ns::treemsg::encode_fds(listed, &mut bytes);
    let name = sys::cpath(&[ckpt_ns::treemsg::fds_name(sys::getpid()).as_bytes()]);
    // A new file of ours (O_EXCL|O_NOFOLLOW, 0600) in the set's directory.
    let Ok(fd) = syscall!(libc::SYS_openat, dir, name.as_ptr(), libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC, 0o600) else { return };
    let fd = fd as i32;
    let ok = sys::write_all(fd, &bytes).is_ok();
    sys::close(fd);
    if !ok {
        // (Torn: the coordinator would refuse it anyway; /proc then.)
        let _ = syscall!(libc::SYS_unlinkat, dir, name.as_ptr(), 0);
    }
}
