//! TCP connections between two processes of a tree (runtime side, every process of the tree
//! stopped at the cut): which of this process's sockets are one end of an established TCP
//! connection whose other end another process of the tree captures. The bytes one end sent and
//! the other has not read may sit in the sender's send queue, which cannot be read without
//! privileges (TCP_REPAIR); neither process alone can move them (settle_tcp_pairs does within
//! one process), so both ends drain the connection at once with markers and refill it
//! (`jobconn`, as the tasks of a step do): each end's image then holds every byte sent to it
//! and not yet read, and the tree's restart makes the connection once and queues them again.
//!
//! Only established connections (state ESTABLISHED at both ends) are drained with markers: a
//! FIN is sent only after the program shut down or closed its end, so an end that did is in
//! another state at both ends' captures, and both sides decide alike without talking. (A shut
//! end cannot refill its peer.) The others, in a closing state (FIN_WAIT1/2, CLOSING,
//! CLOSE_WAIT, LAST_ACK at either end), are `closing` ends: nothing is read from them; their
//! receivers make room until each side's send queue has reached its peer (`halfclosed`).

use super::{capture, diag};
use ckpt_image::inetaddr::same_inet;

const TCP_ESTABLISHED: u8 = 1;
const TCP_FIN_WAIT1: u8 = 4;
const TCP_FIN_WAIT2: u8 = 5;
const TCP_CLOSE_WAIT: u8 = 8;
const TCP_LAST_ACK: u8 = 9;
const TCP_CLOSING: u8 = 11;

/// A state of a socket a program holds whose connection still has its peer: established or
/// closing (not listening, connecting, or closed).
fn connected(state: u8) -> bool {
    matches!(state, TCP_ESTABLISHED | TCP_FIN_WAIT1 | TCP_FIN_WAIT2 | TCP_CLOSE_WAIT | TCP_LAST_ACK | TCP_CLOSING)
}

/// One end of ours to drain: our fd, its inode, the inode of the other end.
#[derive(Debug, Clone, Copy)]
pub struct End {
    pub fd: i32,
    pub ino: u64,
    pub peer: u64,
    /// Either end is in a closing state (not drained with markers: `halfclosed`).
    pub closing: bool,
}

/// Our ends (`mine`: (fd, inode) of the sockets whose queues this process captures, `me`) of
/// established or closing TCP connections whose other end is captured by another process of
/// the tree (`capturer`: the process that captures a socket's queue by inode, None: none of the
/// tree). An end whose peer's program closed its fd (an orphan in the kernel, no inode) is not
/// one: that peer is not ours to restore.
pub fn tree_ends(mine: &[(i32, u64)], me: i32, capturer: &dyn Fn(u64) -> Option<i32>) -> Vec<End> {
    if mine.is_empty() {
        return Vec::new();
    }
    let mut table: Vec<(Vec<u8>, Vec<u8>, u64, u8)> = Vec::new();
    for family in [libc::AF_INET, libc::AF_INET6] {
        for i in diag::inet_all(family, libc::IPPROTO_TCP) {
            if connected(i.state) && i.inode != 0 {
                table.push((capture::sockaddr(family, &i.src, i.sport), capture::sockaddr(family, &i.dst, i.dport), i.inode as u64, i.state));
            }
        }
    }
    let mut out = Vec::new();
    for &(fd, ino) in mine {
        let Some((local, peer, _, state)) = table.iter().find(|t| t.2 == ino) else { continue };
        let Some(other) = table.iter().find(|t| t.2 != ino && same_inet(&t.0, peer) && same_inet(&t.1, local)) else { continue };
        if capturer(other.2).is_some_and(|p| p != me) {
            out.push(End { fd, ino, peer: other.2, closing: *state != TCP_ESTABLISHED || other.3 != TCP_ESTABLISHED });
        }
    }
    out
}
