//! The sockets of a process tree's set that an image names by inode only (`FdKind::TreeSocket`):
//! a UNIX socket several processes held at the cut is described in full once, in the image of
//! the lowest pid holding it; the others name it. Reading a set, each name is replaced by that
//! description, as the process holding it would have given it (its unread messages are the
//! describing process's to restore: they are left out, as a second holder always left them out).
//!
//! Pipes alike (version 22): the unread bytes of a pipe several processes held are stored once,
//! in the image of the lowest pid holding it (the others' entries have none); reading a set,
//! every holder's first entry of the pipe gets them again, as each image held them before (a
//! tree's restart makes a pipe its processes share once, from one holder's entries; a pipe it
//! does not share is made by each holder).

use crate::{FdKind, FdState, Index, Socket};
use std::collections::{HashMap, HashSet};

/// The full description of every socket of a set, and the unread bytes of every pipe, by inode.
#[derive(Debug, Default, Clone)]
pub struct Described(HashMap<u64, Socket>, HashMap<u64, Vec<u8>>);

impl Described {
    /// The sockets described in full in `indexes` (the set's images, any order; the lowest
    /// pid's description of an inode when several have one).
    pub fn of(indexes: &[(i32, Index)]) -> Described {
        let mut by_pid: Vec<&(i32, Index)> = indexes.iter().collect();
        by_pid.sort_by_key(|(pid, _)| *pid);
        let mut out = HashMap::new();
        let mut pipes = HashMap::new();
        for (_, ix) in by_pid {
            for f in &ix.fds {
                match &f.kind {
                    FdKind::Socket(s) => {
                        out.entry(s.ino).or_insert_with(|| Socket { queue: Vec::new(), ..(**s).clone() });
                    }
                    FdKind::Pipe { ino, data, .. } if !data.is_empty() => {
                        pipes.entry(*ino).or_insert_with(|| data.clone());
                    }
                    _ => {}
                }
            }
        }
        Described(out, pipes)
    }

    /// Replace every `TreeSocket` of `fds` (of process `pid`) by the socket's description; an
    /// inode no image of the set describes is an error naming it.
    pub fn resolve(&self, pid: i32, fds: &mut [FdState]) -> Result<(), String> {
        self.give_pipes(fds);
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

impl Described {
    /// Give the first entry of each pipe of `fds` its unread bytes when no entry of it has any
    /// (another process of the tree stored them).
    fn give_pipes(&self, fds: &mut [FdState]) {
        let holding: HashSet<u64> = fds
            .iter()
            .filter_map(|f| match &f.kind {
                FdKind::Pipe { ino, data, .. } if !data.is_empty() => Some(*ino),
                _ => None,
            })
            .collect();
        let mut given = HashSet::new();
        for f in fds.iter_mut() {
            if let FdKind::Pipe { ino, data, .. } = &mut f.kind {
                if holding.contains(ino) || !given.insert(*ino) {
                    continue;
                }
                if let Some(d) = self.1.get(ino) {
                    *data = d.clone();
                }
            }
        }
    }
}

/// Replace every `TreeSocket` of the images of a set (`indexes`) by its description, and give
/// every holder of a pipe its unread bytes.
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
        FdState { fd, flags: 2, pos: 0, cloexec: false, kind: FdKind::Socket(Box::new(s)), dup_of: None, mtime: 0, id: Default::default(), locks: Vec::new(), owner: None, held_with: Vec::new() }
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

    fn pipe(fd: i32, ino: u64, data: &[u8]) -> FdState {
        FdState { kind: FdKind::Pipe { ino, size: 65536, data: data.to_vec() }, ..sock(fd, 0, b"") }
    }

    #[test]
    fn every_holder_of_a_pipe_gets_its_bytes_once() {
        let low = Index { fds: vec![pipe(3, 9, b"unread"), pipe(4, 9, b"")], ..Default::default() };
        let high = Index { fds: vec![pipe(5, 9, b""), pipe(6, 9, b""), pipe(7, 11, b"")], ..Default::default() };
        let mut set = vec![(20, high), (10, low)];
        resolve_all(&mut set).unwrap();
        let data = |ix: &Index| ix.fds.iter().map(|f| match &f.kind { FdKind::Pipe { data, .. } => data.clone(), _ => Vec::new() }).collect::<Vec<_>>();
        assert_eq!(data(&set[0].1), vec![b"unread".to_vec(), Vec::new(), Vec::new()]);
        assert_eq!(data(&set[1].1), vec![b"unread".to_vec(), Vec::new()]);
    }

    #[test]
    fn a_name_no_image_describes_is_an_error_naming_it() {
        let b = Index { fds: vec![named(5, 9)], ..Default::default() };
        let mut set = vec![(20, b)];
        let e = resolve_all(&mut set).unwrap_err();
        assert!(e.contains("socket:[9]") && e.contains("process 20"), "{e}");
    }
}
