//! Which fds of the other processes of the tree are one open file description with a file in
//! flight (SCM_RIGHTS, queued in a socket) that this process peeked: found with kcmp(KCMP_FILE)
//! while every process of the cut is stopped (peeking installed the file in this process for
//! the moment, so kcmp can compare it). The restart makes such a file once for all of them
//! (ckpt_image::unshared::join_in_flight: the in-flight entry joins that fd's `same` group).
//! Another process's fd found may be its runtime's fd of a regular or deleted file, a memfd,
//! an event, timer or signal fd only in flight there too (kept until every process is
//! captured: `flightdata`), which its image names. Of a deleted file or memfd, the image of the
//! lowest pid holding it stores the data (`ckpt_image::unshared::stores_data`).
//! Likewise the fd of another process that is the file of an entry of an epoll instance only
//! in flight here whose file this process holds nowhere (kcmp(KCMP_EPOLL_TFD), `epoll_target`).
//! Every process of the namespace but init and our own snapshot is asked: what is not a
//! process of the set (another process's snapshot, forked meanwhile) or not one of its fds in
//! its image (a runtime's own) is left out by the restart.
//!
//! Raw system calls and the checkpoint's allocator only: the program's threads are stopped.

use crate::sys::{self, syscall};

/// For our fd `fd` (a file in flight, `st` its stat): the lowest fd of each other process of
/// the namespace that is one open file description with it, as (pid, fd).
pub fn holders(fd: i32, st: &libc::stat) -> Vec<(i32, i32)> {
    let me = sys::getpid();
    let same_inode = |o: &libc::stat| o.st_dev == st.st_dev && o.st_ino == st.st_ino;
    lowest_of_each(same_inode, |pid, n| syscall!(libc::SYS_kcmp, me, pid, sys::KCMP_FILE, fd, n) == Ok(0))
}

/// For an entry of our epoll instance (one only in flight here: `slot` is our fd of it, the
/// entry's fd number and its rank among entries of that number, as KCMP_EPOLL_TFD takes them;
/// `ino` its file's inode) whose file this process holds nowhere: the lowest fd of the first
/// other process of the namespace that holds that file, as (pid, fd). Its restorer adds the
/// entry again (`EpollEntry::held_by`).
pub fn epoll_target(slot: &[u32; 3], ino: u64) -> Option<(i32, i32)> {
    let me = sys::getpid();
    let same_inode = |o: &libc::stat| o.st_ino == ino;
    lowest_of_each(same_inode, |pid, n| syscall!(libc::SYS_kcmp, pid, me, sys::KCMP_EPOLL_TFD, n, slot as *const [u32; 3]) == Ok(0)).first().copied()
}

/// The lowest fd of each other process of the namespace (lowest pid first) whose file
/// `same_inode` accepts (its stat) and that `is_it` (pid, fd) confirms.
fn lowest_of_each(same_inode: impl Fn(&libc::stat) -> bool, is_it: impl Fn(i32, i32) -> bool) -> Vec<(i32, i32)> {
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
        let one = fds.into_iter().find(|&n| sys::stat(&sys::cpath(&[&dir, b"/", &sys::decimal(n)])).is_ok_and(|o| same_inode(&o)) && is_it(pid, n));
        if let Some(n) = one {
            out.push((pid, n));
        }
    }
    out
}
