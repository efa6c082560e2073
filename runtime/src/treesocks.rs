//! Sockets this process shares with another process of its tree, found at checkpoint time (every
//! process of the tree stopped): the socket inodes that a process of the namespace with a lower
//! pid holds. That process captures their unread messages; we leave them to it (see
//! ckpt_kinds::sockets::capture::Context), since two processes peeking one queue at once would
//! move each other's peek offset. The restart takes the description of the lowest pid holding
//! the socket (ckpt_image::unshared::TreeSocks::connections).
//!
//! Raw system calls and the checkpoint's allocator only: the program's threads are stopped.

use crate::sys;
use crate::sys::syscall;

/// The socket and pipe inodes held by processes of our tree with a lower pid than ours (none
/// outside a tree). Init (pid 1, the coordinator) is not one of the program's processes. The
/// lower pids are read in order, and no further once every socket of our own fd table was found
/// in one (a tree of hundreds of processes that all inherited hundreds of sockets from the first
/// made every process read every fd of every lower one: zdtm session03); a socket only in flight
/// (SCM_RIGHTS) held by a lower pid that was not read then is captured here too. Pipes are
/// taken from the pids read for the sockets, and none further (a pipe of ours with no holder
/// among them, held by a lower pid read no more, has its bytes stored by both: only a cost).
pub fn held_by_lower_pids() -> Held {
    if !crate::tree::is_member() {
        return Held::default();
    }
    let me = sys::getpid();
    if let Some(told) = told_by_coordinator(me) {
        return told;
    }
    let Ok(names) = sys::list_dir(&sys::cpath(&[b"/proc"])) else { return Held::default() };
    let mut pids: Vec<i32> = names.iter().filter_map(|n| std::str::from_utf8(n).ok()?.parse::<i32>().ok()).filter(|&p| p > 1 && p < me).collect();
    pids.sort_unstable();
    // (Not the runtime's own: no other process holds them.)
    let mut mine: Vec<u64> = sockets_of(b"self").into_iter().filter(|&(fd, _)| !crate::control::is_runtime_fd(fd) && !sys::foreign_own(fd)).map(|s| s.1).collect();
    mine.sort_unstable();
    mine.dedup();
    let mut out = Held::default();
    for pid in pids {
        let theirs = objects_of(&sys::decimal(pid));
        out.sockets.extend(theirs.sockets);
        out.pipes.extend(theirs.pipes);
        for v in [&mut out.sockets, &mut out.pipes] {
            v.sort_unstable();
            v.dedup();
        }
        if mine.iter().all(|ino| out.sockets.binary_search(ino).is_ok()) {
            break;
        }
    }
    out
}

/// What the coordinator found of the sockets and pipes the tree shares while every process was
/// stopped (`treemsg::LOWEST_HOLDERS` in the set's directory): one small file read instead of
/// the fds of the lower pids (a tree of 250 processes holding 682 sockets each read 682 links
/// of another process each). None: not there (this process writes into a directory of its own,
/// or the coordinator could not tell).
fn told_by_coordinator(me: i32) -> Option<Held> {
    let dir = crate::tree::part_dir()?;
    let name = sys::cpath(&[ckpt_ns::treemsg::LOWEST_HOLDERS.as_bytes()]);
    let fd = syscall!(libc::SYS_openat, dir, name.as_ptr(), libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC).ok()? as i32;
    let mut text = Vec::new();
    let mut buf = [0u8; 8192];
    let read = loop {
        match sys::read(fd, &mut buf) {
            Ok(0) => break true,
            Ok(n) => text.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    sys::close(fd);
    let (sockets, pipes) = ckpt_ns::treemsg::lower_holders(&text, me).filter(|_| read)?;
    Some(Held { sockets, pipes })
}

/// Socket and pipe inodes (sorted by the caller).
#[derive(Default)]
pub struct Held {
    pub sockets: Vec<u64>,
    pub pipes: Vec<u64>,
}

/// The sockets and pipes of the fds of process `pid` (its /proc links: `socket:[N]`, `pipe:[N]`).
fn objects_of(pid: &[u8]) -> Held {
    let mut out = Held::default();
    let Ok(fds) = sys::list_dir(&sys::cpath(&[b"/proc/", pid, b"/fd"])) else { return out };
    for fd in &fds {
        let Ok(link) = sys::readlink(&sys::cpath(&[b"/proc/", pid, b"/fd/", fd])) else { continue };
        let ino = |prefix: &[u8]| link.strip_prefix(prefix).and_then(|r| r.strip_suffix(b"]")).and_then(|n| std::str::from_utf8(n).ok()?.parse::<u64>().ok());
        if let Some(i) = ino(b"socket:[") {
            out.sockets.push(i);
        } else if let Some(i) = ino(b"pipe:[") {
            out.pipes.push(i);
        }
    }
    out
}

/// The sockets of the fds of process `pid` ("self": ours): (fd, inode).
pub fn sockets_of(pid: &[u8]) -> Vec<(i32, u64)> {
    let Ok(fds) = sys::list_dir(&sys::cpath(&[b"/proc/", pid, b"/fd"])) else { return Vec::new() };
    if pid == b"self" {
        // Our own fds by fstat: a readlink of /proc/self/fd/N walks procfs, and a process of a
        // tree holding hundreds of fds read each several times per checkpoint (zdtm session03).
        return fds
            .iter()
            .filter_map(|fd| {
                let fd: i32 = std::str::from_utf8(fd).ok()?.parse().ok()?;
                let st = sys::fstat(fd).ok()?;
                (st.st_mode & libc::S_IFMT == libc::S_IFSOCK).then_some((fd, st.st_ino))
            })
            .collect();
    }
    fds.iter()
        .filter_map(|fd| {
            let link = sys::readlink(&sys::cpath(&[b"/proc/", pid, b"/fd/", fd])).ok()?;
            let ino = link.strip_prefix(b"socket:[").and_then(|r| r.strip_suffix(b"]")).and_then(|n| std::str::from_utf8(n).ok()?.parse().ok())?;
            Some((std::str::from_utf8(fd).ok()?.parse().ok()?, ino))
        })
        .collect()
}
