//! SO_PEERCRED of UNIX sockets: the kernel takes the pid, uid and gid of the process that made
//! a socketpair (for both ends), or that connected (for the listener's side) or listened (for
//! the client's), once, and never changes them. A socketpair ckpt-restart makes is its own,
//! which is the restarted process's: right when the program made it itself. Capture records
//! the peer's credentials where they are not the process's own (a socketpair a child made and
//! passed up, under other ids, as zdtm's sock_peercred does). Restore makes such a socketpair
//! in a helper process with that pid (clone3 set_tid: where pids are exact and it is free, as a
//! dead child's is) and those ids (setresgid, setresuid: where ckpt-restart may take them), and
//! says in a warning what it could not give it. (Supplementary groups, SO_PEERGROUPS, are the
//! helper's: ckpt-restart's.)

use crate::sys;
use ckpt_image::PeerCred;
use std::os::fd::RawFd;

/// Capture: SO_PEERCRED of our fd `fd`, when it is not this process with its own ids.
pub fn capture(fd: i32) -> Option<PeerCred> {
    let mut b = [0u8; 12]; // struct ucred { pid_t pid; uid_t uid; gid_t gid; }
    sys::getsockopt(fd, libc::SOL_SOCKET, libc::SO_PEERCRED, &mut b).ok()?;
    let word = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let c = PeerCred { pid: word(0) as i32, uid: word(4), gid: word(8) };
    // SAFETY: plain id queries.
    let own = unsafe { PeerCred { pid: libc::syscall(libc::SYS_getpid) as i32, uid: libc::syscall(libc::SYS_geteuid) as u32, gid: libc::syscall(libc::SYS_getegid) as u32 } };
    (c.pid > 0 && c != own).then_some(c)
}

/// clone3's arguments (linux/sched.h, version 2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Restore: a socketpair of `sock_type` (close-on-exec fds of ours) whose SO_PEERCRED is `c`
/// as far as can be, and what it could not be given (None: all of it).
pub fn socketpair(sock_type: i32, c: &PeerCred) -> crate::Result<([RawFd; 2], Option<String>)> {
    // SAFETY: plain id queries.
    let (pid, uid, gid) = unsafe { (libc::getpid(), libc::geteuid(), libc::getegid()) };
    let mut lost = Vec::new();
    // Made by the process itself, under ids it has left since: by us (a helper would not have
    // our pid), with ours.
    let first = if c.pid == pid { Err(String::new()) } else { made_by(sock_type, c, true) };
    let pair = match first {
        Ok(p) => p,
        Err(e) => {
            if c.pid != pid {
                lost.push(format!("pid {} ({e})", c.pid));
            }
            let helper = if c.pid == pid { Err("they are not ours to take".to_string()) } else { made_by(sock_type, c, false) };
            helper.or_else(|e| {
                if c.uid != uid || c.gid != gid {
                    lost.push(format!("uid {} gid {} ({e})", c.uid, c.gid));
                }
                let mut sv = [0; 2];
                // SAFETY: sv has room for two fds.
                crate::check(unsafe { libc::socketpair(libc::AF_UNIX, sock_type | libc::SOCK_CLOEXEC, 0, sv.as_mut_ptr()) }, || "socketpair".into())?;
                Ok::<_, crate::Error>(sv)
            })?
        }
    };
    Ok((pair, (!lost.is_empty()).then(|| lost.join(", "))))
}

/// A socketpair made by a child of ours with `c`'s ids and, `with_pid`, its pid; passed back
/// over a socketpair of ours.
fn made_by(sock_type: i32, c: &PeerCred, with_pid: bool) -> std::result::Result<[RawFd; 2], String> {
    let mut ctl = [0; 2];
    // SAFETY: ctl has room for two fds.
    if unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, ctl.as_mut_ptr()) } < 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    let tid = [c.pid];
    let mut a = CloneArgs { exit_signal: libc::SIGCHLD as u64, ..Default::default() };
    if with_pid {
        a.set_tid = tid.as_ptr() as u64;
        a.set_tid_size = 1;
    }
    // SAFETY: a fork-like clone3; the child makes only system calls (no lock, no allocation:
    // ckpt-restart may have other threads) and exits.
    let child = unsafe { libc::syscall(libc::SYS_clone3, &a as *const CloneArgs, std::mem::size_of::<CloneArgs>()) };
    if child == 0 {
        // SAFETY: the child: raw system calls on its own copies of our fds, then exit.
        unsafe { helper(ctl[1], sock_type, c) }
    }
    let err = std::io::Error::last_os_error();
    crate::close(ctl[1]);
    if child < 0 {
        crate::close(ctl[0]);
        return Err(err.to_string());
    }
    let got = receive(ctl[0]);
    crate::close(ctl[0]);
    let mut st = 0;
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(child as i32, &mut st, 0) };
    match got {
        Some(sv) => Ok(sv),
        None => Err(match libc::WEXITSTATUS(st) {
            1 => "its gid cannot be taken here".to_string(),
            2 => "its uid cannot be taken here".to_string(),
            _ => "the helper that makes it failed".to_string(),
        }),
    }
}

/// In the helper: take the ids, make the pair, send both ends up `ctl`, exit.
unsafe fn helper(ctl: RawFd, sock_type: i32, c: &PeerCred) -> ! {
    let (g, u) = (c.gid as libc::c_long, c.uid as libc::c_long);
    let code = if libc::syscall(libc::SYS_getegid) != g && libc::syscall(libc::SYS_setresgid, g, g, g) < 0 {
        1
    } else if libc::syscall(libc::SYS_geteuid) != u && libc::syscall(libc::SYS_setresuid, u, u, u) < 0 {
        2
    } else {
        let mut sv = [0i32; 2];
        if libc::syscall(libc::SYS_socketpair, libc::AF_UNIX, sock_type | libc::SOCK_CLOEXEC, 0, sv.as_mut_ptr()) < 0 || !send_pair(ctl, sv) {
            3
        } else {
            0
        }
    };
    libc::syscall(libc::SYS_exit_group, code);
    unreachable!()
}

/// In the helper: send the two fds `sv` up `ctl` (no allocation).
unsafe fn send_pair(ctl: RawFd, sv: [i32; 2]) -> bool {
    let data = [b'p'];
    let mut cbuf = [0u64; 4];
    let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: 1 };
    let mut msg: libc::msghdr = std::mem::zeroed();
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = libc::CMSG_SPACE(8) as usize;
    let cm = libc::CMSG_FIRSTHDR(&msg);
    (*cm).cmsg_level = libc::SOL_SOCKET;
    (*cm).cmsg_type = libc::SCM_RIGHTS;
    (*cm).cmsg_len = libc::CMSG_LEN(8) as usize;
    let p = libc::CMSG_DATA(cm) as *mut i32;
    p.write_unaligned(sv[0]);
    p.add(1).write_unaligned(sv[1]);
    libc::syscall(libc::SYS_sendmsg, ctl, &msg as *const libc::msghdr, 0) == 1
}

/// The two fds the helper sent.
fn receive(ctl: RawFd) -> Option<[RawFd; 2]> {
    let mut data = [0u8; 1];
    let mut cbuf = [0u64; 8];
    let mut iov = libc::iovec { iov_base: data.as_mut_ptr().cast(), iov_len: 1 };
    // SAFETY: an all-zero msghdr is valid; it points at iov and cbuf, which outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cbuf);
    // SAFETY: msg is set up above.
    if unsafe { libc::recvmsg(ctl, &mut msg, libc::MSG_CMSG_CLOEXEC) } <= 0 {
        return None;
    }
    // SAFETY: walking the control messages the kernel wrote into cbuf.
    unsafe {
        let cm = libc::CMSG_FIRSTHDR(&msg);
        if cm.is_null() || (*cm).cmsg_level != libc::SOL_SOCKET || (*cm).cmsg_type != libc::SCM_RIGHTS {
            return None;
        }
        let p = libc::CMSG_DATA(cm) as *const i32;
        Some([p.read_unaligned(), p.add(1).read_unaligned()])
    }
}
