//! The owner of an open file description's I/O signals (fcntl F_SETOWN, F_SETOWN_EX: a thread,
//! a process or a process group, which gets SIGIO when the file becomes ready and O_ASYNC is
//! on) and the signal it gets (F_SETSIG). Capture: F_GETOWN_EX and F_GETSIG. Restore: once
//! every fd is in place, the same owner and signal; an owner that was the process itself
//! (its pid, its main thread, its process group) is the restarted process's, whatever its ids
//! are now. Another owner keeps its number: where ids are exact, the process of the tree with
//! that pid; otherwise whatever has that id now, if anything (a warning says so when nothing).
//! Another thread of the process is lost, with a warning. With virtual ids (no namespace),
//! F_GETOWN then gives the process's real pid, not the one getpid() gives.

use ckpt_image::FileOwner;
use std::os::fd::RawFd;

/// fcntl commands the libc crate does not name (linux/fcntl.h).
const F_SETSIG: i32 = 10;
const F_GETSIG: i32 = 11;
const F_SETOWN_EX: i32 = 15;
const F_GETOWN_EX: i32 = 16;
const F_OWNER_TID: i32 = 0;
const F_OWNER_PGRP: i32 = 2;

/// Capture: the owner and signal of our fd `fd` in process `pid` (its real pid); None when it
/// has neither.
pub fn capture(fd: i32, pid: i32) -> Option<FileOwner> {
    let mut ex = [0i32; 2]; // struct f_owner_ex { int type; pid_t pid; }
    crate::sys::fcntl(fd, F_GETOWN_EX, ex.as_mut_ptr() as i64).ok()?;
    let signal = crate::sys::fcntl(fd, F_GETSIG, 0).unwrap_or(0) as i32;
    let (kind, owner) = (ex[0], ex[1]);
    if owner == 0 && signal == 0 {
        return None;
    }
    // SAFETY: getpgid(0) has no preconditions.
    let pgrp = unsafe { libc::syscall(libc::SYS_getpgid, 0) } as i32;
    let own = owner != 0 && if kind == F_OWNER_PGRP { owner == pgrp } else { owner == pid };
    Some(FileOwner { kind, pid: owner, own, signal })
}

/// Restore, for an fd the program had turned O_ASYNC on for: turn it on through `fd`, the
/// program's number, in place. The kernel's signal names the fd it was turned on through
/// (siginfo's si_fd, with F_SETSIG), so not through one of ckpt-restart's numbers (it is turned
/// off first where it was). No open of ckpt-restart passes O_ASYNC: open() keeps the flag
/// without registering the file for signals, and F_SETFL cannot undo that afterwards.
pub fn arm(fd: RawFd) {
    // SAFETY: plain fcntls on our fd.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl >= 0 {
            libc::fcntl(fd, libc::F_SETFL, fl & !libc::O_ASYNC);
            libc::fcntl(fd, libc::F_SETFL, fl | libc::O_ASYNC);
        }
    }
}

/// Restore: give fd `fd` (the program's, in place) its owner and signal again. A warning
/// (what is lost) when the owner cannot be set; `what` names the fd. A thread other than the
/// main one is not there yet (threads are made again after the switch): its ownership is lost.
pub fn restore(fd: RawFd, o: &FileOwner, what: &str) -> Option<String> {
    if o.pid != 0 && !o.own && o.kind == F_OWNER_TID {
        return Some(format!("{what}: its I/O signals went to thread {}, which is not made again before its fds: it gets none now", o.pid));
    }
    // SAFETY: plain fcntls on our fd; ex is a valid struct f_owner_ex.
    unsafe {
        if o.signal != 0 {
            libc::fcntl(fd, F_SETSIG, o.signal);
        }
        if o.pid == 0 {
            return None;
        }
        let pid = match (o.own, o.kind) {
            (true, F_OWNER_PGRP) => libc::getpgrp(),
            (true, _) => libc::getpid(),
            (false, _) => o.pid,
        };
        let ex = [o.kind, pid];
        if libc::fcntl(fd, F_SETOWN_EX, ex.as_ptr()) == 0 {
            return None;
        }
    }
    let e = std::io::Error::last_os_error();
    let whom = match o.kind {
        F_OWNER_TID => "thread",
        F_OWNER_PGRP => "process group",
        _ => "process",
    };
    Some(format!("{what}: its I/O signals went to {whom} {}, which cannot be made their owner again ({e}): it gets none now", o.pid))
}
