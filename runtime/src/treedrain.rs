//! TCP connections between two processes of our tree, drained at the cut and refilled at once
//! (ckpt_kinds::sockets::treedrain says which and why): every byte sent to one of our ends and
//! not yet read, wherever it was (our receive queue, on its way, the peer's send queue), becomes
//! that socket's unread queue in the image, and the tree's restart makes the connection once
//! with it (ckpt_image::unshared::TreeSocks::connections). Both processes run this in their part of
//! the checkpoint at the same time (every process of the tree is stopped first); the markers are
//! derived from the checkpoint's generation and the two ends' inodes, which both know.
//! Connections in a closing state (one side shut down writing: it could not send drained bytes
//! back) are not read: their receive buffers are grown until every byte and FIN has reached
//! its receiver (ckpt_kinds::sockets::halfclosed), and the capture takes them from there.
//!
//! Raw system calls and the checkpoint's allocator only: the program's threads are stopped.

use crate::log::{log, DEBUG, ERROR};
use crate::sys;
use ckpt_image::{FdKind, FdState, Message};
use ckpt_kinds::sockets::{halfclosed, jobconn, treedrain};

/// How long the drain and the refill of all our connections may take.
const DEADLINE_MS: u64 = 20_000;

/// What became of one of our ends: its inode and every byte sent to it and not yet read, or
/// why they could not be had.
pub type Drained = (u64, Result<Vec<u8>, String>);

/// The socket inodes of the fds of process `pid` (dups once), with the fd numbers.
fn socket_fds(pid: &[u8]) -> Vec<(i32, u64)> {
    let mut out: Vec<(i32, u64)> = Vec::new();
    for (fd, ino) in crate::treesocks::sockets_of(pid) {
        if !out.iter().any(|o| o.1 == ino) {
            out.push((fd, ino));
        }
    }
    out
}

/// A marker of checkpoint `gen` for the bytes `from` sends to `to` (both ends compute it).
fn marker(gen: u64, from: u64, to: u64) -> [u8; 16] {
    let m = ckpt_step::sha256::hmac(b"ckpt tree drain", &[&gen.to_le_bytes()[..], &from.to_le_bytes()[..], &to.to_le_bytes()[..]]);
    m[..16].try_into().expect("16 bytes")
}

/// Whether our fd `fd` (SO_DOMAIN `domain`) is an IPv4 or IPv6 TCP socket.
fn is_tcp(fd: i32, domain: Option<i32>) -> bool {
    let opt = |o| ckpt_step::sys::getsockopt_int(fd, libc::SOL_SOCKET, o).ok();
    matches!(domain, Some(libc::AF_INET | libc::AF_INET6)) && opt(libc::SO_PROTOCOL) == Some(libc::IPPROTO_TCP)
}

/// Drain and refill our ends of the TCP connections to other processes of the tree (none
/// outside a tree). `sockets`: ours, as the capture listed them (fd, inode, SO_DOMAIN; the
/// runtime's own left out).
pub fn drain(gen: u64, sockets: &[(i32, u64, Option<i32>)]) -> Vec<Drained> {
    if !crate::tree::is_member() {
        return Vec::new();
    }
    let me = sys::getpid();
    // Only our ends of established TCP connections within this host matter, and only their
    // sockets need be looked for in the other processes' fds: a process without one reads no
    // other's (a tree of hundreds of processes holding hundreds of sockets each made every
    // process read every fd of every other: zdtm session03).
    // Only TCP sockets: the table of the host's TCP sockets costs a walk of the kernel's whole
    // hash table (~3 ms per family here, whatever it holds), paid in the program's pause.
    let own: Vec<(i32, u64)> = sockets.iter().filter(|&&(fd, _, domain)| is_tcp(fd, domain)).map(|&(fd, ino, _)| (fd, ino)).collect();
    if own.is_empty() {
        return Vec::new();
    }
    let wanted: Vec<u64> = treedrain::tree_ends(&own, me, &|_| Some(0)).iter().flat_map(|e| [e.ino, e.peer]).collect();
    if wanted.is_empty() {
        return Vec::new();
    }
    let mut mine: Vec<(i32, u64)> = own.into_iter().filter(|o| wanted.contains(&o.1)).collect();
    // Who captures each socket: the lowest pid of the tree holding it (as treesocks decides).
    let mut capturer: Vec<(u64, i32)> = mine.iter().map(|o| (o.1, me)).collect();
    for pid in crate::treetcp::others().into_iter().map(|o| o.0) {
        for (_, ino) in socket_fds(&sys::decimal(pid)).into_iter().filter(|o| wanted.contains(&o.1)) {
            match capturer.iter_mut().find(|c| c.0 == ino) {
                Some(c) => c.1 = c.1.min(pid),
                None => capturer.push((ino, pid)),
            }
        }
    }
    let of = |ino: u64| capturer.iter().find(|c| c.0 == ino).map(|c| c.1);
    mine.retain(|&(_, ino)| of(ino) == Some(me));
    let (closing, ends): (Vec<treedrain::End>, Vec<treedrain::End>) = treedrain::tree_ends(&mine, me, &of).into_iter().partition(|e| e.closing);
    let end = ckpt_step::sys::now_ms() + DEADLINE_MS;
    settle(gen, &closing, end);
    if ends.is_empty() {
        return Vec::new();
    }
    let drains: Vec<jobconn::Drain> = ends.iter().map(|e| jobconn::Drain { fd: e.fd, send_marker: marker(gen, e.ino, e.peer), wait_marker: marker(gen, e.peer, e.ino) }).collect();
    let failed = |why: String| -> Vec<Drained> {
        log!(ERROR, "checkpoint {gen}: the TCP connections to other processes of the tree: {why} (their streams may have lost or gained bytes)");
        ends.iter().map(|e| (e.ino, Err(why.clone()))).collect()
    };
    let drained = match jobconn::drain(&drains, end) {
        Ok(d) => d,
        Err(e) => return failed(format!("draining: {e}")),
    };
    let refills = ends.iter().zip(&drained).map(|(e, d)| jobconn::Refill { fd: e.fd, mine: d.data.clone(), read: d.after.clone() }).collect();
    if let Err(e) = jobconn::refill(refills, end) {
        return failed(format!("refilling: {e}"));
    }
    log!(DEBUG, "checkpoint {gen}: {} TCP connection(s) to other processes of the tree drained ({} bytes)", ends.len(), drained.iter().map(|d| d.data.len()).sum::<usize>());
    ends.iter().zip(drained).map(|(e, d)| (e.ino, Ok(d.data))).collect()
}

/// Our ends of connections in a closing state, settled (see the module comment). What cannot be
/// is left as it is: the capture finds bytes unsent behind a FIN, which a restart refuses.
fn settle(gen: u64, closing: &[treedrain::End], end: u64) {
    if closing.is_empty() {
        return;
    }
    let ends: Vec<(i32, u64, u64)> = closing.iter().map(|e| (e.fd, e.ino, e.peer)).collect();
    match halfclosed::settle(&ends, end) {
        Ok(()) => log!(DEBUG, "checkpoint {gen}: {} closing TCP connection(s) to other processes of the tree settled", ends.len()),
        Err(why) => log!(DEBUG, "checkpoint {gen}: the closing TCP connections to other processes of the tree: {why}"),
    }
}

/// Our drained ends in the fd table `fds`: their unread queue is what the drain read, nothing
/// is left unsent; or what could not be had is said as lost.
pub fn apply(fds: &mut [FdState], drained: Vec<Drained>) {
    for (ino, got) in drained {
        let Some(s) = fds.iter_mut().find_map(|f| match &mut f.kind {
            FdKind::Socket(s) if s.ino == ino && f.dup_of.is_none() => Some(s),
            _ => None,
        }) else {
            continue;
        };
        match got {
            Ok(data) => {
                s.queue = if data.is_empty() { Vec::new() } else { vec![Message { data, ..Default::default() }] };
                s.unsent = 0;
            }
            Err(why) => s.lost = format!("the bytes in flight between it and its peer in another process of the tree could not be drained at checkpoint time ({why})"),
        }
    }
}
