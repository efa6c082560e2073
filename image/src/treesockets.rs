//! The sockets of a process tree's set that an image names by inode only (`FdKind::TreeSocket`):
//! a UNIX socket several processes held at the cut is described in full once, in the image of
//! the lowest pid holding it; the others name it. Reading a set, each name is replaced by that
//! description, as the process holding it would have given it (its unread messages are the
//! describing process's to restore: they are left out, as a second holder always left them out).

use crate::{FdKind, FdState, Index, Socket};
use std::collections::HashMap;

/// The full description of every socket of a set, by inode.
#[derive(Debug, Default, Clone)]
pub struct Described(HashMap<u64, Socket>);

impl Described {
    /// The sockets described in full in `indexes` (the set's images, any order; the lowest
    /// pid's description of an inode when several have one).
    pub fn of(indexes: &[(i32, Index)]) -> Described {
        let mut by_pid: Vec<&(i32, Index)> = indexes.iter().collect();
        by_pid.sort_by_key(|(pid, _)| *pid);
        let mut out = HashMap::new();
        for (_, ix) in by_pid {
            for f in &ix.fds {
                if let FdKind::Socket(s) = &f.kind {
                    out.entry(s.ino).or_insert_with(|| Socket { queue: Vec::new(), ..(**s).clone() });
                }
            }
        }
        Described(out)
    }

    /// Replace every `TreeSocket` of `fds` (of process `pid`) by the socket's description; an
    /// inode no image of the set describes is an error naming it.
    pub fn resolve(&self, pid: i32, fds: &mut [FdState]) -> Result<(), String> {
        for f in fds.iter_mut() {
            let FdKind::TreeSocket { ino } = f.kind else { continue };
            let s = self.0.get(&ino).ok_or_else(|| {
                format!("process {pid}'s fd {} is socket:[{ino}], which the image of a process with a lower pid describes, and no image of the set does", f.fd)
            })?;
            f.kind = FdKind::Socket(Box::new(s.clone()));
        }
        Ok(())
    }
}

/// Replace every `TreeSocket` of the images of a set (`indexes`) by its description.
pub fn resolve_all(indexes: &mut [(i32, Index)]) -> Result<Described, String> {
    let d = Described::of(indexes);
    for (pid, ix) in indexes.iter_mut() {
        d.resolve(*pid, &mut ix.fds)?;
    }
    Ok(d)
}

/// Whether `fds` name a socket described in another image (an image of one process of a tree,
/// restarted alone, cannot be).
pub fn names_any(fds: &[FdState]) -> Option<(i32, u64)> {
    fds.iter().find_map(|f| match f.kind {
        FdKind::TreeSocket { ino } => Some((f.fd, ino)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sock(fd: i32, ino: u64, data: &[u8]) -> FdState {
        let s = Socket { ino, family: libc::AF_UNIX, queue: vec![crate::Message { data: data.to_vec(), ..Default::default() }], ..Default::default() };
        FdState { fd, flags: 2, pos: 0, cloexec: false, kind: FdKind::Socket(Box::new(s)), dup_of: None, mtime: 0, id: Default::default(), locks: Vec::new(), owner: None }
    }

    fn named(fd: i32, ino: u64) -> FdState {
        FdState { kind: FdKind::TreeSocket { ino }, ..sock(fd, 0, b"") }
    }

    #[test]
    fn a_named_socket_gets_the_lowest_holders_description_without_its_queue() {
        let a = Index { fds: vec![sock(3, 7, b"hello")], ..Default::default() };
        let b = Index { fds: vec![named(5, 7)], ..Default::default() };
        let mut set = vec![(20, b), (10, a)];
        resolve_all(&mut set).unwrap();
        let FdKind::Socket(s) = &set[0].1.fds[0].kind else { panic!("not resolved") };
        assert_eq!((s.ino, s.queue.len(), set[0].1.fds[0].fd), (7, 0, 5));
        // The describing process keeps its queue.
        let FdKind::Socket(s) = &set[1].1.fds[0].kind else { panic!() };
        assert_eq!(s.queue.len(), 1);
    }

    #[test]
    fn a_name_no_image_describes_is_an_error_naming_it() {
        let b = Index { fds: vec![named(5, 9)], ..Default::default() };
        let mut set = vec![(20, b)];
        let e = resolve_all(&mut set).unwrap_err();
        assert!(e.contains("socket:[9]") && e.contains("process 20"), "{e}");
    }
}
