//! A socketpair that several processes of a tree share (see ckpt_image::unshared::
//! tree_socketpairs), made again once by the tree's restart before the processes are forked:
//! a new socketpair of the same type, each end's unread messages queued again from the other
//! end (exactly once, since it is made once), message by message for datagrams and seqpackets.
//! Each process then gets its ends through `Sockets::make`'s `job` (options, shutdown, filters
//! are set there as for any socket of the process).

use super::queue;
use crate::{check, close, Error, Result};
use ckpt_image::Socket;
use std::os::fd::RawFd;

/// The socketpair of `a` and `b` (each the other's peer), refilled: our fds, close-on-exec.
pub fn make(a: &Socket, b: &Socket) -> Result<(RawFd, RawFd)> {
    let mut sv = [0; 2];
    // SAFETY: sv has room for two fds.
    check(unsafe { libc::socketpair(libc::AF_UNIX, a.sock_type | libc::SOCK_CLOEXEC, 0, sv.as_mut_ptr()) }, || "socketpair".into())?;
    let r = refill(sv[1], a).and_then(|_| refill(sv[0], b));
    if let Err(e) = r {
        close(sv[0]);
        close(sv[1]);
        return Err(e);
    }
    Ok((sv[0], sv[1]))
}

/// Queue the unread messages of `to` again, sent from `from` (its peer).
fn refill(from: RawFd, to: &Socket) -> Result<()> {
    // Room for all the unread bytes (as far as the kernel allows: wmem_max).
    let unread: usize = to.queue.iter().map(|m| m.data.len() + 256).sum();
    if unread > 64 * 1024 {
        let want = unread.min(i32::MAX as usize) as i32;
        // SAFETY: an int option on a socket of ours.
        unsafe { libc::setsockopt(from, libc::SOL_SOCKET, libc::SO_SNDBUF, (&want as *const i32).cast(), 4) };
    }
    for m in &to.queue {
        let sent = if to.sock_type == libc::SOCK_STREAM {
            queue::send_all(from, m, &[])
        } else {
            queue::send(from, &m.data, &[], &[]).and_then(|n| if n == m.data.len() { Ok(()) } else { Err(std::io::Error::from_raw_os_error(libc::EMSGSIZE)) })
        };
        sent.map_err(|e| Error::Refused(format!("socket {}: {} unread bytes cannot be queued again ({e})", to.describe(), m.data.len())))?;
    }
    Ok(())
}
