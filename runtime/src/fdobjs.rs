//! What kernel objects behind fds hold, read at checkpoint time with the world stopped:
//! eventfd/timerfd/signalfd/epoll/inotify/fanotify state (fdinfo). The kinds moved to the ckpt-kinds
//! crate (capture and restore side by side) are read there; sockets and terminals by
//! ckpt-kinds. Raw system calls only; allocations go to the checkpoint's scratch arena.

use crate::sys::{self, syscall};
use ckpt_image::{EpollEntry, FanotifyMark, FdKind, FdState, InotifyWatch, MarkObject};

/// Parse a hex or decimal number after `key` in `s` (first occurrence).
fn field(s: &str, key: &str, radix: u32) -> Option<u64> {
    let i = s.find(key)? + key.len();
    let v = s[i..].trim_start();
    let end = v.find(|c: char| !c.is_digit(radix)).unwrap_or(v.len());
    u64::from_str_radix(&v[..end], radix).ok()
}

/// eventfd, timerfd, signalfd, epoll, inotify and pidfds, from fdinfo (and timerfd_gettime).
/// `drain`: the events queued in an inotify instance are saved by the runtime (inotifyq.rs),
/// which serves them to the program; else they stay queued, and the image says how many bytes.
pub fn anon(fd: i32, link: &[u8], info: &[u8], drain: bool) -> Option<FdKind> {
    let s = std::str::from_utf8(info).ok()?;
    match link {
        b"anon_inode:[eventfd]" => Some(FdKind::EventFd {
            count: field(s, "eventfd-count:", 16)?,
            semaphore: field(s, "eventfd-semaphore:", 10).unwrap_or(0) != 0,
        }),
        b"anon_inode:[timerfd]" => {
            let mut its = [0i64; 4];
            syscall!(libc::SYS_timerfd_gettime, fd, its.as_mut_ptr()).ok()?;
            Some(FdKind::TimerFd {
                clockid: field(s, "clockid:", 10)? as i32,
                interval_ns: (its[0] * 1_000_000_000 + its[1]) as u64,
                value_ns: (its[2] * 1_000_000_000 + its[3]) as u64,
                ticks: field(s, "ticks:", 10).unwrap_or(0),
            })
        }
        b"anon_inode:[signalfd]" => Some(FdKind::SignalFd { mask: field(s, "sigmask:", 16)? }),
        // "Pid: -1" once the process is gone (exited and reaped): its inode tells which one.
        b"anon_inode:[pidfd]" if s.contains("Pid:\t-1\n") => {
            Some(FdKind::ExitedPidFd { ino: sys::fstat(fd).ok()?.st_ino })
        }
        b"anon_inode:[pidfd]" => {
            let pid = field(s, "Pid:", 10)? as i32;
            let thread = field(s, "flags:", 8).is_some_and(|f| f as i32 & libc::O_EXCL != 0); // PIDFD_THREAD
            Some(FdKind::PidFd { pid, own: pid == crate::sys::getpid() && !thread })
        }
        b"anon_inode:[eventpoll]" => Some(FdKind::Epoll {
            entries: epoll_lines(s)
                .map(|(fd, events, data, _)| EpollEntry { fd, events, data, holder: Some(fd), held_by: None })
                .collect(),
        }),
        b"anon_inode:inotify" => {
            let mut queued: i32 = 0;
            let _ = syscall!(libc::SYS_ioctl, fd, libc::FIONREAD, &mut queued as *mut i32);
            if drain {
                queued = crate::inotifyq::drain(fd) as i32;
            }
            Some(FdKind::Inotify {
                watches: s
                    .lines()
                    .filter(|l| l.starts_with("inotify wd:"))
                    .filter_map(|l| {
                        let ino = field(l, " ino:", 16)?;
                        let sdev = field(l, "sdev:", 16)?;
                        let (path, dont_follow, gone) = crate::fdhooks::watch_path(ino, sdev);
                        Some(InotifyWatch { wd: field(l, "wd:", 16)? as i32, mask: field(l, "mask:", 16)? as u32, path, dont_follow, gone, ino, sdev })
                    })
                    .collect(),
                queued: queued.max(0) as u32,
                last_wd: crate::inotifywd::last(fd),
            })
        }
        b"anon_inode:[fanotify]" => fanotify(fd, s),
        _ => None,
    }
}

/// A fanotify group from its fdinfo: `fanotify flags:F event-flags:E`, then one line per mark
/// (`fanotify ino:...`, `fanotify mnt_id:...`, `fanotify sdev:...`), each with where the runtime
/// saw its object being marked (fdhooks.rs). Unread events: saved by the runtime before the
/// table was read (inotifyq.rs), or left in the kernel's queue (FIONREAD says how many).
fn fanotify(fd: i32, s: &str) -> Option<FdKind> {
    let head = s.lines().find(|l| l.starts_with("fanotify flags:"))?;
    let mut queued: i32 = 0;
    if !crate::inotifyq::saved(fd) {
        let _ = syscall!(libc::SYS_ioctl, fd, libc::FIONREAD, &mut queued as *mut i32);
    }
    let marks = s
        .lines()
        .filter(|l| l.starts_with("fanotify ") && !l.starts_with("fanotify flags:"))
        .map(|l| mark_line(l).unwrap_or_else(|| FanotifyMark { object: MarkObject::Unknown { line: l.as_bytes().to_vec() }, ..UNKNOWN }))
        .collect();
    Some(FdKind::Fanotify { flags: field(head, "flags:", 16)? as u32, event_flags: field(head, "event-flags:", 16)? as u32, marks, queued: queued.max(0) as u32 })
}

const UNKNOWN: FanotifyMark =
    FanotifyMark { object: MarkObject::Filesystem, sdev: 0, mflags: 0, mask: 0, ignored_mask: 0, path: Vec::new(), dont_follow: false, gone: false };

/// One mark line of a fanotify fdinfo (None: not one this build knows).
fn mark_line(l: &str) -> Option<FanotifyMark> {
    let rest = l.strip_prefix("fanotify ")?;
    let (mflags, mask, ignored_mask) = (field(l, "mflags:", 16)? as u32, field(l, " mask:", 16)?, field(l, "ignored_mask:", 16)?);
    let mark = FanotifyMark { mflags, mask, ignored_mask, ..UNKNOWN };
    if rest.starts_with("ino:") {
        let (ino, sdev) = (field(l, "ino:", 16)?, field(l, "sdev:", 16)?);
        let handle_type = field(l, "fhandle-type:", 16).unwrap_or(0) as i32;
        let handle = l.split_once("f_handle:").map_or(Vec::new(), |(_, h)| hex(h.trim()));
        let (path, dont_follow, gone) = crate::fdhooks::watch_path(ino, sdev);
        Some(FanotifyMark { object: MarkObject::Inode { ino, handle_type, handle }, sdev, path, dont_follow, gone, ..mark })
    } else if rest.starts_with("mnt_id:") {
        let mnt_id = field(l, "mnt_id:", 16)?;
        let (path, gone) = crate::fdhooks::marked_path(libc::FAN_MARK_MOUNT, mnt_id);
        Some(FanotifyMark { object: MarkObject::Mount { mnt_id }, path, gone, ..mark })
    } else if rest.starts_with("sdev:") {
        let sdev = field(l, "sdev:", 16)?;
        let (path, gone) = crate::fdhooks::marked_path(libc::FAN_MARK_FILESYSTEM, sdev);
        Some(FanotifyMark { object: MarkObject::Filesystem, sdev, path, gone, ..mark })
    } else {
        None
    }
}

/// Bytes of a hex string ("d602990043dc1749").
fn hex(h: &str) -> Vec<u8> {
    let digits: Vec<u8> = h.bytes().map_while(|b| (b as char).to_digit(16).map(|d| d as u8)).collect();
    digits.chunks_exact(2).map(|p| p[0] << 4 | p[1]).collect()
}

/// The entries of an epoll fdinfo: (fd, events, data, inode of the file).
fn epoll_lines(s: &str) -> impl Iterator<Item = (i32, u32, u64, u64)> + '_ {
    s.lines().filter(|l| l.starts_with("tfd:")).filter_map(|l| {
        Some((field(l, "tfd:", 10)? as i32, field(l, "events:", 16)? as u32, field(l, "data:", 16)?, field(l, " ino:", 16).unwrap_or(0)))
    })
}

/// Which fd holds the file of each epoll entry. An entry is known by the fd number it was added
/// with and its file; that number may have been closed since, or now hold another file, while
/// the file is still open through a dup. `kcmp(KCMP_EPOLL_TFD)` tells whether an fd holds the
/// file of an entry (`seen`: every fd described, with its inode; `temps`: in-flight numbers of
/// our temporary fds). No holder: None (the entry cannot be restored), unless the epoll
/// instance is only in flight in a process of a tree (`tree`) and another process holds the
/// entry's file: its fd (`EpollEntry::held_by`, `flightheld::epoll_target`).
pub fn settle_epolls(out: &mut [FdState], seen: &[(i32, u64, u64)], temps: &[(i32, i32)], pid: i32, tree: bool) {
    let ours = |no: i32| if no >= 0 { no } else { temps.iter().find(|t| t.0 == no).map_or(-1, |t| t.1) };
    let number = |fd: i32| temps.iter().find(|t| t.1 == fd).map_or(fd, |t| t.0);
    for f in out.iter_mut() {
        let FdKind::Epoll { entries } = &mut f.kind else { continue };
        let efd = ours(f.fd);
        let info = sys::read_file(&sys::cpath(&[b"/proc/thread-self/fdinfo/", &sys::decimal(efd)])).unwrap_or_default();
        let lines: Vec<(i32, u32, u64, u64)> = epoll_lines(std::str::from_utf8(&info).unwrap_or("")).collect();
        for (k, e) in entries.iter_mut().enumerate() {
            let Some(&(tfd, _, _, ino)) = lines.get(k) else { continue };
            let toff = lines[..k].iter().filter(|l| l.0 == tfd).count() as u32;
            let slot: [u32; 3] = [efd as u32, tfd as u32, toff];
            let holds = |fd: i32| syscall!(libc::SYS_kcmp, pid, pid, sys::KCMP_EPOLL_TFD, fd, &slot as *const [u32; 3]) == Ok(0);
            let mut candidates = seen.iter().filter(|s| s.2 == ino).map(|s| s.0);
            e.holder = if seen.iter().any(|s| s.0 == tfd) && holds(tfd) { Some(tfd) } else { candidates.find(|&c| holds(c)).map(number) };
            if e.holder.is_none() && tree && f.fd < 0 && f.dup_of.is_none() {
                e.held_by = crate::flightheld::epoll_target(&slot, ino);
            }
        }
    }
}
