//! Which fds of the other processes of the tree are one open file description with a file in
//! flight (SCM_RIGHTS, queued in a socket) that this process peeked: found with kcmp(KCMP_FILE)
//! while every process of the cut is stopped (peeking installed the file in this process for
//! the moment, so kcmp can compare it). The restart makes such a file once for all of them
//! (ckpt_image::unshared::join_in_flight: the in-flight entry joins that fd's `same` group).
//! Another process's fd found may be its runtime's fd of a regular or deleted file, a memfd,
//! an event, timer or signal fd only in flight there too (kept until every process is
//! captured: `flightdata`), which its image names. Of a deleted file or memfd, the image of the
//! lowest pid holding it stores the data (`ckpt_image::unshared::stores_data`).
//! Every process of the namespace but init and our own snapshot is asked: what is not a
//! process of the set (another process's snapshot, forked meanwhile) or not one of its fds in
//! its image (a runtime's own) is left out by the restart.
//!
//! Raw system calls and the checkpoint's allocator only: the program's threads are stopped.

use crate::sys::{self, syscall};

const KCMP_FILE: i64 = 0;

/// For our fd `fd` (a file in flight, `st` its stat): the lowest fd of each other process of
/// the namespace that is one open file description with it, as (pid, fd).
pub fn holders(fd: i32, st: &libc::stat) -> Vec<(i32, i32)> {
    let mut out = Vec::new();
    if !crate::tree::is_member() {
        return out;
    }
    let me = sys::getpid();
    let Ok(names) = sys::list_dir(&sys::cpath(&[b"/proc"])) else { return out };
    let mut pids: Vec<i32> = names.iter().filter_map(|n| std::str::from_utf8(n).ok()?.parse::<i32>().ok()).filter(|&p| p > 1 && p != me && !crate::snapshot::is_own_child(p)).collect();
    pids.sort_unstable();
    for pid in pids {
        let dir = [b"/proc/".as_slice(), &sys::decimal(pid), b"/fd"].concat();
        let Ok(list) = sys::list_dir(&sys::cpath(&[&dir])) else { continue };
        let mut fds: Vec<i32> = list.iter().filter_map(|n| std::str::from_utf8(n).ok()?.parse::<i32>().ok()).collect();
        fds.sort_unstable();
        let one = fds.into_iter().find(|&n| {
            let same_inode = sys::stat(&sys::cpath(&[&dir, b"/", &sys::decimal(n)])).is_ok_and(|o| o.st_dev == st.st_dev && o.st_ino == st.st_ino);
            same_inode && syscall!(libc::SYS_kcmp, me, pid, KCMP_FILE, fd, n) == Ok(0)
        });
        if let Some(n) = one {
            out.push((pid, n));
        }
    }
    out
}
