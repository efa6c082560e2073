//! After a restart of a tree: pidfds that one process holds of a thread of another, handed over
//! between their runtimes (the restarter's handpidfds.rs pairs them with a socket each). Once
//! this process's threads exist again and before they run, it opens a pidfd of each of its
//! threads another process holds (flags as that one's: PIDFD_THREAD, O_NONBLOCK) and sends it;
//! then it takes the pidfds it holds of other processes' threads and puts them at their fds
//! (in place of /dev/null), and their dups. Sends come first, so two processes that hold pidfds
//! of each other's threads do not wait on each other. Raw system calls only.

use crate::log::{log, ERROR};
use crate::sys::{self, syscall};
use ckpt_image::{RestartHandoff, RestartInfo};

/// The records the restarter wrote in the switch area (none from an older restarter).
pub fn take(info: &RestartInfo) -> Vec<RestartHandoff> {
    // SAFETY: the restarter wrote nhandoffs records at info.handoffs, in the switch area (mapped).
    (0..info.nhandoffs as usize).map(|i| unsafe { std::ptr::read((info.handoffs as *const RestartHandoff).add(i)) }).collect()
}

/// Hand over and take the pidfds (the threads exist, parked).
pub fn run(recs: &[RestartHandoff]) {
    for r in recs.iter().filter(|r| r.kind == RestartHandoff::SEND) {
        if let Err(e) = send(r) {
            log!(ERROR, "cannot hand over the pidfd of thread {} to the process that holds it: {}", r.tid, crate::checkpoint::strerror(e));
        }
        sys::close(r.sock);
    }
    for r in recs.iter().filter(|r| r.kind == RestartHandoff::RECEIVE) {
        match receive(r) {
            Ok(true) => {}
            Ok(false) => log!(ERROR, "fd {}: process {} ended before it handed over the pidfd of its thread {}; the fd stays /dev/null", r.fd, r.owner, r.tid),
            Err(e) => log!(ERROR, "fd {}: cannot take the pidfd of thread {} of process {}: {}; the fd stays /dev/null", r.fd, r.tid, r.owner, crate::checkpoint::strerror(e)),
        }
        sys::close(r.sock);
    }
    for r in recs.iter().filter(|r| r.kind == RestartHandoff::DUP) {
        let cloexec = if r.cloexec != 0 { libc::O_CLOEXEC } else { 0 };
        if let Err(e) = syscall!(libc::SYS_dup3, r.dup_of, r.fd, cloexec) {
            log!(ERROR, "fd {}: cannot make it a dup of fd {} again: {}", r.fd, r.dup_of, crate::checkpoint::strerror(e));
        }
    }
}

/// Open the pidfd of our thread and send it over the record's socket.
fn send(r: &RestartHandoff) -> Result<(), i32> {
    let fd = syscall!(libc::SYS_pidfd_open, r.tid, r.flags & (libc::O_NONBLOCK | libc::O_EXCL))? as i32;
    let mut byte = [1u8];
    let mut iov = one_byte(&mut byte);
    let mut cbuf = [0u8; 64];
    let mut msg = message(&mut iov);
    ckpt_ns::attach_fd(&mut msg, &mut cbuf, fd);
    let r = loop {
        match syscall!(libc::SYS_sendmsg, r.sock, &msg as *const libc::msghdr, libc::MSG_NOSIGNAL) {
            Err(libc::EINTR) => continue,
            other => break other,
        }
    };
    sys::close(fd);
    r.map(drop)
}

/// Wait for the pidfd on the record's socket and put it at the record's fd; false when the
/// thread's process ended without sending it.
fn receive(r: &RestartHandoff) -> Result<bool, i32> {
    // Its end: readable when the pidfd comes; the process's pidfd: readable once it has ended.
    let got = match syscall!(libc::SYS_pidfd_open, r.owner, 0) {
        Ok(owner) => {
            let got = wait_and_take(r.sock, owner as i32);
            sys::close(owner as i32);
            got
        }
        // Gone already: what it sent before that is there still.
        Err(_) => recv_fd(r.sock),
    };
    let Some(fd) = got? else { return Ok(false) };
    let cloexec = if r.cloexec != 0 { libc::O_CLOEXEC } else { 0 };
    let placed = syscall!(libc::SYS_dup3, fd, r.fd, cloexec);
    sys::close(fd);
    placed.map(|_| true)
}

fn wait_and_take(sock: i32, owner: i32) -> Result<Option<i32>, i32> {
    loop {
        let mut p = [libc::pollfd { fd: sock, events: libc::POLLIN, revents: 0 }, libc::pollfd { fd: owner, events: libc::POLLIN, revents: 0 }];
        match syscall!(libc::SYS_poll, p.as_mut_ptr(), 2, -1) {
            Err(libc::EINTR) => continue,
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        // The pidfd came, or the process ended (what it sent before that is there still).
        if p[0].revents & libc::POLLIN != 0 || p[1].revents != 0 {
            return recv_fd(sock);
        }
    }
}

/// One message's fd from `sock` without waiting (None: nothing there, or no fd in it).
fn recv_fd(sock: i32) -> Result<Option<i32>, i32> {
    let mut byte = [0u8];
    let mut iov = one_byte(&mut byte);
    let mut cbuf = [0u64; 4];
    let mut msg = message(&mut iov);
    msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = std::mem::size_of_val(&cbuf);
    loop {
        match syscall!(libc::SYS_recvmsg, sock, &mut msg as *mut libc::msghdr, libc::MSG_CMSG_CLOEXEC | libc::MSG_DONTWAIT) {
            Err(libc::EINTR) => continue,
            Err(libc::EAGAIN) | Ok(0) => return Ok(None),
            Err(e) => return Err(e),
            Ok(_) => break,
        }
    }
    Ok(ckpt_ns::attached_fd(&msg))
}

fn one_byte(b: &mut [u8; 1]) -> libc::iovec {
    libc::iovec { iov_base: b.as_mut_ptr() as *mut libc::c_void, iov_len: 1 }
}

/// A message of `iov` (which must outlive its use), without control data.
fn message(iov: &mut libc::iovec) -> libc::msghdr {
    // SAFETY: an all-zero msghdr is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    msg
}
