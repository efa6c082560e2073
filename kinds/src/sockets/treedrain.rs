//! TCP connections between two processes of a tree (runtime side, every process of the tree
//! stopped at the cut): which of this process's sockets are one end of an established TCP
//! connection whose other end another process of the tree captures. The bytes one end sent and
//! the other has not read may sit in the sender's send queue, which cannot be read without
//! privileges (TCP_REPAIR); neither process alone can move them (settle_tcp_pairs does within
//! one process), so both ends drain the connection at once with markers and refill it
//! (`jobconn`, as the tasks of a step do): each end's image then holds every byte sent to it
//! and not yet read, and the tree's restart makes the connection once and queues them again.
//!
//! Only established connections (state ESTABLISHED at both ends): a FIN is sent only after the
//! program shut down or closed its end, so an end that did is in another state at both ends'
//! captures, and both sides decide alike without talking. (A shut end cannot refill its peer.)

use super::{capture, diag};
use ckpt_image::inetaddr::same_inet;

const TCP_ESTABLISHED: u8 = 1;

/// One end of ours to drain: our fd, its inode, the inode of the other end.
#[derive(Debug, Clone, Copy)]
pub struct End {
    pub fd: i32,
    pub ino: u64,
    pub peer: u64,
}

/// Our ends (`mine`: (fd, inode) of the sockets whose queues this process captures, `me`) of
/// established TCP connections whose other end is captured by another process of the tree
/// (`capturer`: the process that captures a socket's queue by inode, None: none of the tree).
pub fn tree_ends(mine: &[(i32, u64)], me: i32, capturer: &dyn Fn(u64) -> Option<i32>) -> Vec<End> {
    let mut table: Vec<(Vec<u8>, Vec<u8>, u64)> = Vec::new();
    for family in [libc::AF_INET, libc::AF_INET6] {
        for i in diag::inet_all(family, libc::IPPROTO_TCP) {
            if i.state == TCP_ESTABLISHED && i.inode != 0 {
                table.push((capture::sockaddr(family, &i.src, i.sport), capture::sockaddr(family, &i.dst, i.dport), i.inode as u64));
            }
        }
    }
    let mut out = Vec::new();
    for &(fd, ino) in mine {
        let Some((local, peer, _)) = table.iter().find(|t| t.2 == ino) else { continue };
        let Some(other) = table.iter().find(|t| t.2 != ino && same_inet(&t.0, peer) && same_inet(&t.1, local)) else { continue };
        if capturer(other.2).is_some_and(|p| p != me) {
            out.push(End { fd, ino, peer: other.2 });
        }
    }
    out
}
