//! A listener of a task of a step whose port another program holds at the restart (issue 14,
//! docs/multinode.md part 6): it gets another port at its address instead of refusing the
//! restart. The step's rendezvous tells every task where it is now and their runtimes send a
//! connect to the old port there (ckpt_step::addrmap); a program outside the step that
//! connects to the old port reaches whoever holds it now, which is said once. The same for a
//! listener several processes of a task's tree hold, made once by the tree's root (`pair`).

use super::restore::Sockets;
use crate::{check, warn, Error, Result};
use ckpt_image::Socket;
use std::os::fd::RawFd;

pub(super) fn in_use(e: &Error) -> bool {
    match e {
        Error::Os { err, .. } => err.raw_os_error() == Some(libc::EADDRINUSE),
        Error::Refused(m) => m.ends_with(&std::io::Error::from_raw_os_error(libc::EADDRINUSE).to_string()),
    }
}

/// `name` with port 0 (the kernel picks one).
pub(super) fn any_port(name: &[u8]) -> Vec<u8> {
    let mut a = name.to_vec();
    if a.len() >= 4 {
        a[2..4].copy_from_slice(&[0, 0]);
    }
    a
}

impl Sockets<'_> {
    /// `addr` (a listener's old address) with the port our listener `l` has now: a connection
    /// between two of the program's sockets made again through a listener that moved.
    pub(super) fn now_at(&self, l: RawFd, addr: &[u8]) -> Vec<u8> {
        if self.opts.other_port {
            with_port_of(l, addr)
        } else {
            addr.to_vec()
        }
    }

    /// Whether the listener `s` may move: a task of a step, a port that is in use.
    pub(super) fn may_move(&self, s: &Socket, e: &Error) -> bool {
        self.opts.other_port && s.sock_type == libc::SOCK_STREAM && in_use(e)
    }

    /// `s` (our `fd`) made again and bound at its address with another port.
    pub(super) fn bind_elsewhere(&mut self, fd: RawFd, s: &Socket, why: &Error) -> Result<()> {
        self.remade(fd, s)?;
        self.bind_inet(fd, s, &any_port(&s.name)).map_err(|e| Error::Refused(format!("{why}; another port: {e}")))?;
        said_moved(s, fd);
        Ok(())
    }

    /// After a failed bind or listen: a fresh socket of `s` at the same number `fd`, with its
    /// early options.
    pub(super) fn remade(&mut self, fd: RawFd, s: &Socket) -> Result<()> {
        // SAFETY: plain socket creation.
        let fresh = check(unsafe { libc::socket(s.family, s.sock_type | libc::SOCK_CLOEXEC, s.protocol) }, || format!("cannot make socket {} again", s.describe()))?;
        // SAFETY: both fds are ours; fd keeps its number.
        let r = unsafe { libc::dup3(fresh, fd, libc::O_CLOEXEC) };
        // SAFETY: fresh is ours.
        unsafe { libc::close(fresh) };
        check(r, || format!("cannot make socket {} again", s.describe()))?;
        self.early(fd, s);
        Ok(())
    }
}

/// `addr` with the port our socket `l` has now.
pub(super) fn with_port_of(l: RawFd, addr: &[u8]) -> Vec<u8> {
    let mut a = addr.to_vec();
    let now = sock_name(l);
    if a.len() >= 4 && now.len() >= 4 {
        a[2..4].copy_from_slice(&now[2..4]);
    }
    a
}

/// The warning line of listener `s`, bound again at another port (our `fd`).
pub(super) fn said_moved(s: &Socket, fd: RawFd) {
    let now = ckpt_image::describe_addr(s.family, &sock_name(fd));
    warn(&format!(
        "listener {}: its port is held by another program now, so it listens at {now}: the step's tasks that connect to the old port reach it there, programs outside the step do not",
        s.describe()
    ));
}

fn sock_name(fd: RawFd) -> Vec<u8> {
    let mut a = [0u8; 128];
    let mut len = a.len() as libc::socklen_t;
    // SAFETY: a is a buffer of len bytes.
    if unsafe { libc::getsockname(fd, a.as_mut_ptr().cast(), &mut len) } < 0 {
        return Vec::new();
    }
    a[..(len as usize).min(a.len())].to_vec()
}
