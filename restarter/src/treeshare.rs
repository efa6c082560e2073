//! The sockets that processes of a tree share, made once by the tree's root before it forks the
//! tree (like its pipes, see `tree`): every socketpair of `ckpt_image::unshared::tree_socketpairs`,
//! refilled once. Every process inherits them and takes the ones its fd table holds (as fds or
//! in flight) through the socket restore's `job` (ckpt_kinds::sockets::restore); the rest it
//! closes with every other fd of ours.

use anyhow::{anyhow, Result};
use ckpt_image::{FdKind, FdState, Index};
use std::collections::HashMap;
use std::os::fd::RawFd;

/// Our fd of each shared socket, by inode.
#[derive(Default)]
pub struct TreeSockets(HashMap<u64, RawFd>);

impl TreeSockets {
    /// Make the socketpairs the processes of `indexes` share.
    pub fn make(indexes: &[(i32, Index)]) -> Result<TreeSockets> {
        let mut me = TreeSockets::default();
        for (a, b) in ckpt_image::unshared::tree_socketpairs(indexes) {
            let (x, y) = ckpt_kinds::sockets::pair::make(a, b).map_err(|e| anyhow!("{e}"))?;
            me.0.insert(a.ino, x);
            me.0.insert(b.ino, y);
        }
        Ok(me)
    }

    /// New fds of ours (close-on-exec) for the shared sockets of fd table `fds`, by inode.
    pub fn of(&self, fds: &[FdState]) -> Result<HashMap<u64, RawFd>> {
        let mut out = HashMap::new();
        for f in fds {
            let FdKind::Socket(s) = &f.kind else { continue };
            let Some(&fd) = self.0.get(&s.ino) else { continue };
            if out.contains_key(&s.ino) {
                continue;
            }
            // SAFETY: fd is ours (inherited from the tree's root).
            let d = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
            if d < 0 {
                return Err(anyhow!("cannot take the shared socket socket:[{}]: {}", s.ino, std::io::Error::last_os_error()));
            }
            out.insert(s.ino, d);
        }
        Ok(out)
    }
}
