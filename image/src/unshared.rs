//! Objects that several processes of a tree share but that a tree's restart cannot share again
//! yet (it shares only pipes and shared memory, see `tree`): one socket held by two processes,
//! the two ends of one socketpair or UNIX connection, one TCP connection between two processes,
//! one open file with its common offset (inherited by fork), one deleted file. Restarted, each
//! process would get its own copy (a socket whose peer is closed, a file with its own offset):
//! ckpt-restart refuses such a set unless the user asked to go on (--ignore-missing-files), and
//! the checkpoint that wrote it says so in one line.
//!
//! Found from the images alone. Sockets and deleted files by their inodes and peers; an open
//! file shared by fork by the same file (device, inode) at the same fd number with the same
//! flags and offset in both processes: a heuristic (the images do not say whether two processes'
//! fds are one open file), which could also match a file each process opened on its own.

use crate::{FdKind, FdState, Index, Socket};
use std::collections::HashMap;

/// One object shared by two processes: what it is, as one clause naming both.
pub struct Unshared {
    pub what: String,
    /// What the processes get back instead.
    pub instead: &'static str,
}

/// Where one fd is: (pid, fd).
type At = (i32, i32);

/// Every object of `indexes` (pid, image index) held by two processes that comes back separate.
pub fn find(indexes: &[(i32, Index)]) -> Vec<Unshared> {
    // The fds that are not dups of a lower fd (a dup is the same object), and not in flight.
    let fds = || indexes.iter().flat_map(|(pid, ix)| ix.fds.iter().filter(|f| f.fd >= 0 && f.dup_of.is_none()).map(move |f| (*pid, f)));
    let mut out = Vec::new();
    let mut first: HashMap<Key, At> = HashMap::new();
    let mut sockets: HashMap<u64, (At, &Socket)> = HashMap::new();
    for (pid, f) in fds() {
        if let FdKind::Socket(s) = &f.kind {
            sockets.entry(s.ino).or_insert(((pid, f.fd), s));
        }
        let Some(key) = key(f) else { continue };
        match first.get(&key) {
            Some(&(p, fd)) if p != pid => out.push(describe(&key, (p, fd), (pid, f.fd), f)),
            Some(_) => {}
            None => {
                first.insert(key, (pid, f.fd));
            }
        }
    }
    // The two ends of one connection in two processes.
    for (pid, f) in fds() {
        let FdKind::Socket(s) = &f.kind else { continue };
        let peer = if s.family == libc::AF_UNIX {
            sockets.get(&s.peer).filter(|_| s.peer != 0)
        } else {
            sockets.values().find(|(_, o)| tcp_ends(s, o))
        };
        if let Some(&((p, fd), o)) = peer {
            // Each pair once, from its lower end.
            if p != pid && (pid, f.fd) < (p, fd) {
                let conn = if s.family != libc::AF_UNIX {
                    "the two ends of one TCP connection"
                } else if unnamed(&s.name) && unnamed(&s.peer_name) && unnamed(&o.name) {
                    "the two ends of one socketpair"
                } else {
                    "the two ends of one UNIX connection"
                };
                out.push(Unshared { what: format!("pid {pid} fd {} and pid {p} fd {fd} are {conn}", f.fd), instead: "separate, closed connections" });
            }
        }
    }
    out
}

/// The objects of the set at `set` that come back separate, read from its images (for the
/// checkpoint's warning; an image that does not read is left out).
pub fn in_set(set: &std::path::Path) -> Vec<Unshared> {
    let Some(Ok(m)) = crate::tree::Manifest::read(set) else { return Vec::new() };
    let indexes: Vec<(i32, Index)> = m.live().filter_map(|(p, image)| Some((p.pid, crate::Reader::open(&set.join(image)).ok()?.index))).collect();
    find(&indexes)
}

/// What identifies an object held by two processes (None: nothing this module looks at).
#[derive(PartialEq, Eq, Hash)]
enum Key {
    Socket(u64),
    Deleted(u64, u64),
    /// Device, inode, fd number, flags, offset.
    File(u64, u64, i32, i32, i64),
}

fn key(f: &FdState) -> Option<Key> {
    match &f.kind {
        FdKind::Socket(s) => Some(Key::Socket(s.ino)),
        FdKind::Deleted(d) if d.is_file() => Some(Key::Deleted(d.dev, d.ino)),
        // Not stdio: whoever ran the program gave every process of it the same fds 0 to 2.
        FdKind::Path { is_dir: false, .. } if f.fd > 2 && f.flags & libc::O_PATH == 0 && f.id.ino != 0 => Some(Key::File(f.id.dev, f.id.ino, f.fd, f.flags, f.pos)),
        _ => None,
    }
}

fn describe(key: &Key, a: At, b: At, f: &FdState) -> Unshared {
    let both = format!("pid {} fd {} and pid {} fd {}", a.0, a.1, b.0, b.1);
    match (key, &f.kind) {
        (Key::Socket(_), _) => Unshared { what: format!("{both} are one socket"), instead: "separate sockets" },
        (Key::Deleted(..), FdKind::Deleted(d)) => {
            Unshared { what: format!("{both} are one deleted file {}", String::from_utf8_lossy(&d.path)), instead: "separate files" }
        }
        (_, FdKind::Path { path, .. }) => Unshared {
            what: format!("{both} are one open file {} (offset {}, shared by fork)", String::from_utf8_lossy(path), f.pos),
            instead: "separate open files, each with its own offset",
        },
        _ => Unshared { what: both, instead: "separate objects" },
    }
}

/// Whether `a` and `b` are the two ends of one INET connection (each one's name the other's peer).
fn tcp_ends(a: &Socket, b: &Socket) -> bool {
    matches!(a.family, libc::AF_INET | libc::AF_INET6) && a.sock_type == libc::SOCK_STREAM && a.family == b.family && a.ino != b.ino && !a.name.is_empty() && !a.peer_name.is_empty() && a.name == b.peer_name && a.peer_name == b.name
}

/// A UNIX socket address without a name (just its family, or nothing): socketpair's ends.
fn unnamed(addr: &[u8]) -> bool {
    addr.len() <= std::mem::size_of::<libc::sa_family_t>()
}
