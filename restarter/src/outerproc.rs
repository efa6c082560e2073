//! The outer ckpt-restart's /proc/PID directory, which the namespace's init passes us when the
//! outer process leads its session (`ckpt_ns::OUTER_PROC_VAR`): kept out of the way of the
//! program's fds while they are restored, and handed to the restarted runtime
//! (`RestartInfo::outer_proc_fd`), which holds a kernel hangup from the program's SIGHUP handler
//! while the outer process is exiting or gone (runtime hupgate.rs). A process of a restarted
//! tree that shares another's fd table (clone with CLONE_FILES) takes a copy of the fd the
//! table's owner keeps (`of_table`): its runtime moves and marks a copy of its own, as the
//! owner's runtime does its own, and neither takes the other's from under it.

use std::os::fd::RawFd;

/// Take the fd named in the environment and move it to `top` or above, out of the numbers the
/// program's fds take; close-on-exec. None: there is none.
pub fn take(top: RawFd) -> Option<RawFd> {
    let name = std::str::from_utf8(&ckpt_ns::OUTER_PROC_VAR[..ckpt_ns::OUTER_PROC_VAR.len() - 1]).ok()?;
    let fd: RawFd = std::env::var(name).ok()?.parse().ok().filter(|&f| f > 2)?;
    // The process init started, or one of its tree (made by it: the fd and the variable are
    // inherited), unless it shares another's fd table, whose owner moves the fd.
    if !(crate::namespace::started_by_init() || crate::tree::in_tree()) || crate::tree::table_of_another() {
        return None;
    }
    // SAFETY: fstat and fcntl on an fd number we were told is ours; st is a valid out-parameter.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd, &mut st) != 0 || st.st_mode & libc::S_IFMT != libc::S_IFDIR {
            return None;
        }
        let high = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, top.max(3));
        libc::close(fd);
        if high < 0 {
            return None;
        }
        // The processes of the tree made after this take it from where it is now.
        std::env::set_var(name, high.to_string());
        Some(high)
    }
}

/// For a process that shares another's fd table, once its owner restored it (tree
/// `before_fds`): a copy of the fd the owner keeps there (tree `publish_outer_proc`), at `top` or
/// above, close-on-exec, for this process's runtime. None: the owner keeps none.
pub fn of_table(top: RawFd) -> Option<RawFd> {
    if !crate::tree::table_of_another() {
        return None;
    }
    let fd = crate::tree::outer_proc_of_table()?;
    // SAFETY: fstat and fcntl on the fd the owner of our fd table keeps in it (the table is
    // ours too); st is a valid out-parameter.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd, &mut st) != 0 || st.st_mode & libc::S_IFMT != libc::S_IFDIR {
            return None;
        }
        let copy = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, top.max(3));
        (copy >= 0).then_some(copy)
    }
}
