//! A socket's receive queue. Capture: the unread messages, read with MSG_PEEK at a moving peek
//! offset (SO_PEEK_OFF) so the queue is left as it was, each with its sender's address and the
//! files passed with it (SCM_RIGHTS: peeking installs new fds for them, which the caller
//! describes as files in flight and we close). Restore: messages sent again, with their files.

use crate::sys;
use ckpt_image::Message;

/// Datagrams up to this size are read whole.
const MAX_MSG: usize = 1 << 19;
/// At most this many fds in one message (the kernel's SCM_MAX_FD).
const MAX_FDS: usize = 253;

/// The unread messages of `fd` (a socket of type `sock_type`). `inflight` is called with each
/// fd a message carries and returns the number to record for it. The second value says whether
/// the queue could be read to its end. `offset` says whether the family honours SO_PEEK_OFF
/// (ping, raw, netlink and packet sockets accept it or not, but peek the first message only).
pub fn capture(fd: i32, sock_type: i32, offset: bool, inflight: &mut dyn FnMut(i32) -> i32) -> (Vec<Message>, bool) {
    let mut out: Vec<Message> = Vec::new();
    let saved = sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF).unwrap_or(-1);
    // (A peek moves no offset while the program has none set.)
    if saved < 0 && nothing_queued(fd, sock_type) {
        return (out, true);
    }
    let offset_works = offset && sys::setsockopt(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, &0i32.to_ne_bytes()).is_ok();
    let mut buf = vec![0u8; MAX_MSG];
    let mut ctl = vec![0u8; cmsg_space(MAX_FDS * 4)];
    let mut complete = true;
    for _ in 0..1_000_000 {
        let mut name = [0u8; 128];
        let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        // SAFETY: an all-zero msghdr is valid; we point it at our buffers.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = name.as_mut_ptr().cast();
        msg.msg_namelen = name.len() as u32;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = ctl.as_mut_ptr().cast();
        msg.msg_controllen = ctl.len();
        // MSG_TRUNC tells a datagram's real length, but makes TCP discard instead of copy.
        let trunc = if sock_type == libc::SOCK_STREAM { 0 } else { libc::MSG_TRUNC };
        let flags = libc::MSG_PEEK | libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC | trunc;
        let n = match sys::recvmsg(fd, &mut msg, flags) {
            // End of the queue with the peer gone (a stream or seqpacket socket).
            Ok(0) if sock_type != libc::SOCK_DGRAM && msg.msg_controllen == 0 => break,
            Ok(n) => n,
            Err(libc::EINTR) => continue,
            Err(_) => break,
        };
        if n > buf.len() {
            complete = false; // a datagram larger than we read
        }
        let fds = received_fds(&msg).into_iter().map(|f| {
            let no = inflight(f);
            sys::close(f);
            no
        });
        let from = if sock_type == libc::SOCK_STREAM { Vec::new() } else { name[..(msg.msg_namelen as usize).min(name.len())].to_vec() };
        let m = Message { data: buf[..n.min(buf.len())].to_vec(), from, fds: fds.collect() };
        match out.last_mut() {
            // A stream's bytes as few messages as possible (files stay where they were).
            Some(last) if sock_type == libc::SOCK_STREAM && last.fds.is_empty() && m.fds.is_empty() => last.data.extend_from_slice(&m.data),
            _ => out.push(m),
        }
        if !offset_works {
            // Without a peek offset only the first message can be read.
            complete = false;
            break;
        }
    }
    if offset_works {
        let _ = sys::setsockopt(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, &saved.to_ne_bytes());
    }
    (out, complete)
}

/// Whether `fd`'s receive queue is empty (or at its end, the peer gone), by a one-byte peek:
/// most sockets' queues are, and the full read's buffer (`MAX_MSG`) is then not made, which a
/// tree of processes holding hundreds of sockets each pays for every socket of every process.
fn nothing_queued(fd: i32, sock_type: i32) -> bool {
    let mut b = 0u8;
    loop {
        let mut iov = libc::iovec { iov_base: (&mut b as *mut u8).cast(), iov_len: 1 };
        // SAFETY: an all-zero msghdr is valid; it points at iov only.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        match sys::recvmsg(fd, &mut msg, libc::MSG_PEEK | libc::MSG_DONTWAIT) {
            Err(libc::EAGAIN) => return true,
            Ok(0) => return sock_type != libc::SOCK_DGRAM && msg.msg_flags & libc::MSG_CTRUNC == 0,
            Err(libc::EINTR) => continue,
            _ => return false,
        }
    }
}

fn cmsg_space(len: usize) -> usize {
    // SAFETY: CMSG_SPACE is arithmetic.
    unsafe { libc::CMSG_SPACE(len as u32) as usize }
}

/// The fds of the SCM_RIGHTS control messages of `msg`.
fn received_fds(msg: &libc::msghdr) -> Vec<i32> {
    let mut fds = Vec::new();
    // SAFETY: msg's control buffer was filled by recvmsg; the CMSG macros walk it within
    // msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let n = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / 4;
                let p = libc::CMSG_DATA(c) as *const i32;
                for i in 0..n {
                    fds.push(std::ptr::read_unaligned(p.add(i)));
                }
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    fds
}

/// Send `data` (with `fds` attached) from `fd`, to `to` (a raw sockaddr; empty: the peer),
/// without blocking. Returns the bytes sent.
pub fn send(fd: i32, data: &[u8], fds: &[i32], to: &[u8]) -> std::io::Result<usize> {
    let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() };
    // SAFETY: an all-zero msghdr is valid; we point it at our buffers.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    if !to.is_empty() {
        msg.msg_name = to.as_ptr() as *mut libc::c_void;
        msg.msg_namelen = to.len() as u32;
    }
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    let mut ctl = vec![0u8; if fds.is_empty() { 0 } else { cmsg_space(fds.len() * 4) }];
    if !fds.is_empty() {
        msg.msg_control = ctl.as_mut_ptr().cast();
        msg.msg_controllen = ctl.len();
        // SAFETY: ctl has room for one cmsg with fds.len() ints.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN((fds.len() * 4) as u32) as usize;
            let p = libc::CMSG_DATA(c) as *mut i32;
            for (i, f) in fds.iter().enumerate() {
                std::ptr::write_unaligned(p.add(i), *f);
            }
        }
    }
    // SAFETY: msg points at valid buffers.
    let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Send all of a stream message: the first piece carries the fds. A full queue is waited for
/// a moment (the receiving side of a loopback connection grows its window as it fills); one
/// that stays full is an error.
pub fn send_all(fd: i32, m: &Message, fds: &[i32]) -> std::io::Result<()> {
    let mut off = 0;
    let mut first = true;
    let mut idle = 0;
    while off < m.data.len() || first {
        match send(fd, &m.data[off..], if first { fds } else { &[] }, &[]) {
            Ok(n) => {
                first = false;
                off += n;
                idle = 0;
            }
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) && idle < 2000 => {
                idle += 1;
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(ty: i32) -> [i32; 2] {
        let mut sv = [0; 2];
        // SAFETY: a new socketpair into sv.
        assert_eq!(unsafe { libc::socketpair(libc::AF_UNIX, ty, 0, sv.as_mut_ptr()) }, 0);
        sv
    }

    fn send(fd: i32, data: &[u8]) {
        // SAFETY: data is a valid buffer of its length.
        assert_eq!(unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), 0) }, data.len() as isize);
    }

    /// The one-byte look that spares the full read tells empty queues (and a stream's end) from
    /// queued data (a zero-length datagram included), and leaves the queue as it was.
    #[test]
    fn an_empty_queue_is_told_from_queued_data_and_left_as_it_was() {
        let s = pair(libc::SOCK_STREAM);
        assert!(nothing_queued(s[0], libc::SOCK_STREAM));
        send(s[1], b"abc");
        assert!(!nothing_queued(s[0], libc::SOCK_STREAM));
        let (q, complete) = capture(s[0], libc::SOCK_STREAM, true, &mut |f| f);
        assert!(complete);
        assert_eq!(q.iter().flat_map(|m| m.data.clone()).collect::<Vec<u8>>(), b"abc");
        sys::close(s[1]);
        let mut buf = [0u8; 8];
        // SAFETY: reading into buf.
        assert_eq!(unsafe { libc::read(s[0], buf.as_mut_ptr().cast(), 8) }, 3);
        assert!(nothing_queued(s[0], libc::SOCK_STREAM), "a stream at its end, the peer gone");
        sys::close(s[0]);
        let d = pair(libc::SOCK_DGRAM);
        assert!(nothing_queued(d[0], libc::SOCK_DGRAM));
        send(d[1], b"");
        assert!(!nothing_queued(d[0], libc::SOCK_DGRAM), "a zero-length datagram is queued data");
        let mut b = [0u8; 4];
        // SAFETY: reading into b without waiting.
        assert_eq!(unsafe { libc::recv(d[0], b.as_mut_ptr().cast(), 4, libc::MSG_DONTWAIT) }, 0, "still queued after the look");
        sys::close(d[0]);
        sys::close(d[1]);
    }
}
