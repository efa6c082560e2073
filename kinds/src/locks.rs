//! File locks and leases: flock(2), POSIX record locks (F_SETLK), open-file-description locks
//! (F_OFD_SETLK) and leases (F_SETLEASE), which HDF5, NetCDF and others take.
//!
//! Capture: the `lock:` lines of /proc/self/fdinfo/N, which list the locks held through that
//! open file description (a POSIX lock is listed on the fd it was set through), in /proc/locks
//! format: `1: POSIX  ADVISORY  WRITE 1234 fe:00:5678 10 29` (range inclusive, `EOF` open).
//!
//! Restore: once every fd is in place (closing any fd of a file drops the process's POSIX locks
//! on it, so nothing may be closed after), each lock is taken again, without waiting, through
//! the same fd: the old process is gone, so its locks are free, and other processes see the
//! restarted one hold them. A lock that another process took meanwhile stops the restart: going
//! on without it would break the mutual exclusion the program relies on. Leases come back in
//! their type and break signal (F_SETSIG), and a lease that was being broken is broken again (by
//! an open that conflicts with it, without a second signal): the kernel's break timer starts
//! again from the restart.

use crate::{Error, Result};
use ckpt_image::{FileLock, LockKind};
use std::os::fd::RawFd;

/// fcntl commands the libc crate does not name (linux/fcntl.h).
const F_SETSIG: i32 = 10;
const F_GETSIG: i32 = 11;

/// Capture: the locks in the fdinfo text of `fd`, open with `flags`.
pub fn capture(fd: i32, fdinfo: &[u8], flags: i32) -> Vec<FileLock> {
    let text = std::str::from_utf8(fdinfo).unwrap_or("");
    let mut locks: Vec<FileLock> = text.lines().filter_map(|l| l.strip_prefix("lock:")).filter_map(|l| parse(l, flags)).collect();
    for l in locks.iter_mut().filter(|l| l.kind == LockKind::Lease) {
        l.signal = crate::sys::fcntl(fd, F_GETSIG, 0).unwrap_or(0) as i32;
    }
    locks
}

/// One line of /proc/locks format (after "lock:"). A lease being broken shows the type it is
/// broken to: a read lease was a write lease; for none, the lease was a read lease when the fd
/// is read-only (a read lease needs that) and a write lease otherwise.
fn parse(line: &str, flags: i32) -> Option<FileLock> {
    let w: Vec<&str> = line.split_whitespace().collect();
    // id: TYPE STATE ACCESS pid dev:ino start end
    if w.len() < 8 {
        return None;
    }
    let kind = match w[1] {
        "FLOCK" => LockKind::Flock,
        "POSIX" => LockKind::Posix,
        "OFDLCK" => LockKind::Ofd,
        "LEASE" if w[2] == "ACTIVE" || w[2] == "BREAKING" => LockKind::Lease,
        _ => return None,
    };
    let breaking = kind == LockKind::Lease && w[2] == "BREAKING";
    let (write, breaking_to_read) = match (w[3], breaking) {
        ("WRITE", false) => (true, None),
        ("READ", false) => (false, None),
        ("READ", true) => (true, Some(true)),
        ("UNLCK", true) => (flags & libc::O_ACCMODE != libc::O_RDONLY, Some(false)),
        _ => return None,
    };
    let start = w[6].parse().ok()?;
    let end = if w[7] == "EOF" { u64::MAX } else { w[7].parse().ok()? };
    Some(FileLock { kind, write, start, end, breaking_to_read, signal: 0 })
}

/// Start breaking the lease on `fd` again, to a read lease or to none: an open that conflicts
/// with it, without waiting (it fails with EWOULDBLOCK once the break has started). The program
/// was told of the break before the checkpoint: no owner while it starts, so no signal.
fn break_lease(fd: RawFd, to_read: bool) {
    let Ok(p) = std::ffi::CString::new(format!("/proc/self/fd/{fd}")) else { return };
    let mode = if to_read { libc::O_RDONLY } else { libc::O_WRONLY };
    // SAFETY: fcntl on our fd; p is a valid C string; an fd we get is closed at once.
    unsafe {
        libc::fcntl(fd, libc::F_SETOWN, 0);
        let other = libc::open(p.as_ptr(), mode | libc::O_NONBLOCK | libc::O_CLOEXEC);
        if other >= 0 {
            libc::close(other);
        }
        libc::fcntl(fd, libc::F_SETOWN, libc::getpid());
    }
}

/// Restore: take `locks` again through fd `fd` (the program's fd, in place); `what` names it.
pub fn restore(fd: RawFd, locks: &[FileLock], what: &str) -> Result<()> {
    for l in locks {
        let r = match l.kind {
            LockKind::Flock => {
                let op = if l.write { libc::LOCK_EX } else { libc::LOCK_SH };
                // SAFETY: a plain system call on our fd.
                unsafe { libc::flock(fd, op | libc::LOCK_NB) }
            }
            LockKind::Posix | LockKind::Ofd => {
                // SAFETY: an all-zero flock is a valid value to fill in.
                let mut fl: libc::flock = unsafe { std::mem::zeroed() };
                fl.l_type = if l.write { libc::F_WRLCK } else { libc::F_RDLCK } as i16;
                fl.l_whence = libc::SEEK_SET as i16;
                fl.l_start = l.start as i64;
                fl.l_len = if l.end == u64::MAX { 0 } else { (l.end - l.start + 1) as i64 };
                let cmd = if l.kind == LockKind::Posix { libc::F_SETLK } else { libc::F_OFD_SETLK };
                // SAFETY: fl is a valid struct flock.
                unsafe { libc::fcntl(fd, cmd, &fl) }
            }
            LockKind::Lease => {
                let t = if l.write { libc::F_WRLCK } else { libc::F_RDLCK };
                // SAFETY: plain fcntls on our fd (F_SETLEASE makes this process the owner).
                let r = unsafe {
                    libc::fcntl(fd, F_SETSIG, l.signal);
                    libc::fcntl(fd, libc::F_SETLEASE, t)
                };
                if let (0, Some(to_read)) = (r, l.breaking_to_read) {
                    break_lease(fd, to_read);
                }
                r
            }
        };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            let kind = match l.kind {
                LockKind::Flock => "flock",
                LockKind::Posix => "POSIX lock",
                LockKind::Ofd => "OFD lock",
                LockKind::Lease => "lease",
            };
            let why = if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES)) { "another process holds a conflicting lock".to_string() } else { e.to_string() };
            return Err(Error::Refused(format!("the {kind} of {what} cannot be taken again: {why}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdinfo_lock_lines() {
        let info = b"pos:\t0\nflags:\t0100002\nlock:\t1: POSIX  ADVISORY  WRITE 3429 fe:00:10019445 10 29\nlock:\t2: POSIX  ADVISORY  READ 3429 fe:00:10019445 100 EOF\nlock:\t1: OFDLCK ADVISORY  WRITE -1 fe:00:1 0 4\nlock:\t1: LEASE  ACTIVE    READ 3429 fe:00:10019447 0 EOF\nlock:\t1: LEASE  BREAKING  READ 3429 fe:00:10019447 0 EOF\nlock:\t1: FLOCK  ADVISORY  WRITE 3429 fe:00:10019444 0 EOF\n";
        let l = capture(-1, info, libc::O_RDONLY);
        assert_eq!(l.len(), 6);
        assert_eq!(l[0], FileLock { kind: LockKind::Posix, write: true, start: 10, end: 29, breaking_to_read: None, signal: 0 });
        assert_eq!(l[1], FileLock { kind: LockKind::Posix, write: false, start: 100, end: u64::MAX, breaking_to_read: None, signal: 0 });
        assert_eq!(l[2].kind, LockKind::Ofd);
        assert_eq!(l[3], FileLock { kind: LockKind::Lease, write: false, start: 0, end: u64::MAX, breaking_to_read: None, signal: 0 });
        assert_eq!(l[4], FileLock { kind: LockKind::Lease, write: true, start: 0, end: u64::MAX, breaking_to_read: Some(true), signal: 0 });
        assert_eq!(l[5].kind, LockKind::Flock);
    }
}
