//! Messages between init and the outer process, over a SOCK_SEQPACKET socketpair: one
//! fixed-size record per message; `Started` carries a pidfd of the program (SCM_RIGHTS). All go
//! from init to the outer process but `Witness`, the outer process's question.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Msg {
    /// The program runs with this pid in the namespace (the message carries its pidfd).
    Started { pid: i32 },
    /// Setting up the namespace failed before the program was started: (stage, errno).
    Failed { stage: Stage, errno: i32 },
    /// The program stopped (job control) with this signal.
    Stopped { sig: i32 },
    Continued,
    /// The program is gone; its wait status.
    Exited { status: i32 },
    /// The program is gone (its wait status) and other processes of the namespace live on:
    /// init stays with them and no longer dies with the outer process (`leftover`), which
    /// exits now as the program did.
    Outlived { status: i32 },
    /// (outer to init) Did you get signal `sig` too? Answered with `Witnessed`.
    Witness { sig: i32 },
    /// Whether init had `sig` pending (it is then taken).
    Witnessed { sig: i32, yes: bool },
    /// The restarted program runs again: every process of its tree is restored (the signals
    /// the outer process held meanwhile may go, `supervise`).
    Running,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Mount,
    Proc,
    Start,
}

impl Stage {
    pub fn what(self) -> &'static str {
        match self {
            Stage::Mount => "cannot keep the namespace's mounts from propagating",
            Stage::Proc => "cannot mount /proc in the namespace",
            Stage::Start => "cannot start the program in the namespace",
        }
    }
}

const LEN: usize = 12;

fn encode(m: Msg) -> [u8; LEN] {
    let (k, a, b): (i32, i32, i32) = match m {
        Msg::Started { pid } => (1, pid, 0),
        Msg::Failed { stage, errno } => (2, stage as i32, errno),
        Msg::Stopped { sig } => (3, sig, 0),
        Msg::Continued => (4, 0, 0),
        Msg::Exited { status } => (5, status, 0),
        Msg::Witness { sig } => (6, sig, 0),
        Msg::Witnessed { sig, yes } => (7, sig, yes as i32),
        Msg::Running => (8, 0, 0),
        Msg::Outlived { status } => (9, status, 0),
    };
    let mut out = [0u8; LEN];
    out[0..4].copy_from_slice(&k.to_ne_bytes());
    out[4..8].copy_from_slice(&a.to_ne_bytes());
    out[8..12].copy_from_slice(&b.to_ne_bytes());
    out
}

fn decode(b: &[u8; LEN]) -> Option<Msg> {
    let w = |i: usize| i32::from_ne_bytes(b[i..i + 4].try_into().unwrap());
    let stage = |v| match v {
        0 => Some(Stage::Mount),
        1 => Some(Stage::Proc),
        2 => Some(Stage::Start),
        _ => None,
    };
    Some(match w(0) {
        1 => Msg::Started { pid: w(4) },
        2 => Msg::Failed { stage: stage(w(4))?, errno: w(8) },
        3 => Msg::Stopped { sig: w(4) },
        4 => Msg::Continued,
        5 => Msg::Exited { status: w(4) },
        6 => Msg::Witness { sig: w(4) },
        7 => Msg::Witnessed { sig: w(4), yes: w(8) != 0 },
        8 => Msg::Running,
        9 => Msg::Outlived { status: w(4) },
        _ => return None,
    })
}

/// Send `m` (with `fd` attached, if any). Errors are ignored: the outer process is gone.
pub fn send(sock: RawFd, m: Msg, fd: Option<RawFd>) {
    send_bytes(sock, &encode(m), fd);
}

/// Send one record (with `fd` attached, if any); false when it could not be sent.
pub(crate) fn send_bytes(sock: RawFd, data: &[u8], fd: Option<RawFd>) -> bool {
    let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() };
    let mut cbuf = [0u8; 64];
    // SAFETY: an all-zero msghdr is valid; the pointers set below outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(fd) = fd {
        attach_fd(&mut msg, &mut cbuf, fd);
    }
    // SAFETY: msg describes valid buffers.
    unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) == data.len() as isize }
}

/// Attach `fd` to `msg` (SCM_RIGHTS), in `cbuf`, which must outlive the send. No system call:
/// the runtime uses it with its raw ones.
pub fn attach_fd(msg: &mut libc::msghdr, cbuf: &mut [u8; 64], fd: RawFd) {
    // SAFETY: CMSG_* compute offsets into cbuf, which is large enough for one fd.
    unsafe {
        msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = libc::CMSG_SPACE(4) as usize;
        let c = libc::CMSG_FIRSTHDR(msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(4) as usize;
        std::ptr::copy_nonoverlapping(fd.to_ne_bytes().as_ptr(), libc::CMSG_DATA(c), 4);
    }
}

/// The fd a received `msg` carries: its first SCM_RIGHTS control message's first fd (the
/// counterpart of `attach_fd`). No system call: the runtime uses it with its raw ones.
pub fn attached_fd(msg: &libc::msghdr) -> Option<RawFd> {
    // SAFETY: msg's control buffer was filled by recvmsg; CMSG_FIRSTHDR stays within
    // msg_controllen and CMSG_DATA of an SCM_RIGHTS message holds at least one fd.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(msg);
        if !c.is_null() && (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
            return Some(std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const RawFd));
        }
    }
    None
}

/// Receive one message (None: init closed its end, or garbage) and the fd it carries.
pub fn recv(sock: RawFd, flags: i32) -> std::io::Result<Option<(Msg, Option<OwnedFd>)>> {
    let mut data = [0u8; LEN];
    let (n, fd) = recv_bytes(sock, &mut data, flags)?;
    if n != LEN {
        return Ok(None);
    }
    Ok(decode(&data).map(|m| (m, fd)))
}

/// Receive one record into `data` (its length: 0 when the peer closed) and the fd it carries.
pub(crate) fn recv_bytes(sock: RawFd, data: &mut [u8], flags: i32) -> std::io::Result<(usize, Option<OwnedFd>)> {
    let mut iov = libc::iovec { iov_base: data.as_mut_ptr() as *mut libc::c_void, iov_len: data.len() };
    let mut cbuf = [0u8; 64];
    // SAFETY: an all-zero msghdr is valid; the pointers set below outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = cbuf.len();
    // SAFETY: msg describes valid buffers.
    let n = unsafe { libc::recvmsg(sock, &mut msg, flags | libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut fd = None;
    // SAFETY: walking the control messages the kernel wrote into cbuf.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let mut b = [0u8; 4];
                std::ptr::copy_nonoverlapping(libc::CMSG_DATA(c), b.as_mut_ptr(), 4);
                fd = Some(OwnedFd::from_raw_fd(i32::from_ne_bytes(b)));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n as usize, fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for m in [
            Msg::Started { pid: 2 },
            Msg::Failed { stage: Stage::Proc, errno: 1 },
            Msg::Stopped { sig: 20 },
            Msg::Continued,
            Msg::Exited { status: 0x0900 },
            Msg::Witness { sig: 15 },
            Msg::Witnessed { sig: 15, yes: true },
            Msg::Running,
            Msg::Outlived { status: 0x0300 },
        ] {
            assert_eq!(decode(&encode(m)), Some(m));
        }
    }
}
