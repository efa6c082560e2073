//! The bytes in a UNIX listener's connections not yet accepted (runtime side, at the cut, with
//! the program's threads stopped). They sit in the waiting socket, which nothing can read
//! without accepting it; so when every waiting connection is one the program can be given back
//! exactly (its client is one of the program's own sockets, or has closed), they are accepted
//! here in queue order, their bytes read, and each is queued again at once: a new socket
//! connects to the listener, sends the same bytes and takes the client's place (the program's
//! fd of it, with its flags and options) or, when the client had closed, closes. The program
//! goes on with the same queue, the same bytes in it and the same fds; the image holds the
//! bytes, and the restart queues them again the same way (names.rs).
//! Not done (the bytes stay unknown, and the restart refuses as before): a client outside the
//! program, a client socket the program holds at two fds, bound to a name or watched by an
//! epoll, a listener whose name no longer leads to it, bytes sent with files (SCM_RIGHTS: sent
//! again here, but not recorded), a process tree (another process may hold the sockets).

use super::{diag, opts, queue, unix};
use crate::sys;
use ckpt_image::{Message, Pending};

/// A socket of the program: its fd and inode.
#[derive(Clone, Copy)]
pub struct Held {
    pub fd: i32,
    pub ino: u64,
}

/// For each listener among `held` (the program's sockets) whose waiting connections can be
/// given back exactly: its inode and those connections, in queue order, with their bytes.
/// `bind_dir` gives the directory a relative name was bound in; `epolled` whether a socket
/// (by inode) is in one of the program's epoll sets.
pub fn waiting(held: &[Held], bind_dir: &dyn Fn(u64) -> Option<Vec<u8>>, epolled: &dyn Fn(u64) -> bool) -> Vec<(u64, Vec<Pending>)> {
    let mut out = Vec::new();
    for l in held {
        let is_listener = sys::getsockopt_int(l.fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN).unwrap_or(0) != 0
            && sys::getsockopt_int(l.fd, libc::SOL_SOCKET, libc::SO_DOMAIN).ok() == Some(libc::AF_UNIX);
        let ty = sys::getsockopt_int(l.fd, libc::SOL_SOCKET, libc::SO_TYPE).unwrap_or(0);
        if !is_listener || ty == libc::SOCK_DGRAM {
            continue;
        }
        let Some(d) = diag::unix(l.ino as u32) else { continue };
        if d.icons.is_empty() {
            continue;
        }
        let name = sys::sock_addr(l.fd, false);
        let dir = bind_dir(l.ino).unwrap_or_default();
        let clients: Option<Vec<Option<i32>>> = d.icons.iter().map(|&c| client(held, c as u64, epolled)).collect();
        let Some(clients) = clients else { continue };
        if !reaches(&name, &dir, d.vfs) {
            continue;
        }
        if let Some(p) = requeue(l.fd, ty, &name, &dir, &d.icons, &clients) {
            out.push((l.ino, p));
        }
    }
    out
}

/// The client `ino` of a waiting connection: None when it cannot be given back; Some(None) when
/// it has closed; Some(Some(fd)) for the program's socket at fd.
fn client(held: &[Held], ino: u64, epolled: &dyn Fn(u64) -> bool) -> Option<Option<i32>> {
    if ino == 0 {
        return Some(None);
    }
    let mut at = held.iter().filter(|h| h.ino == ino);
    let h = at.next()?;
    let unbound = sys::sock_addr(h.fd, false).len() <= 2;
    (at.next().is_none() && unbound && !epolled(ino)).then_some(Some(h.fd))
}

/// Whether connecting to `name` (relative to `dir`) reaches the listener whose file is `vfs`.
fn reaches(name: &[u8], dir: &[u8], vfs: Option<(u32, u32)>) -> bool {
    let Some(path) = unix::path_of(name) else { return name.len() > 2 }; // abstract
    let full = if path.starts_with(b"/") || dir.is_empty() { path } else { [dir, b"/", &path[..]].concat() };
    let Ok(c) = std::ffi::CString::new(full) else { return false };
    matches!((sys::stat(&c, false), vfs), (Ok(st), Some(v)) if st.st_ino == v.0 as u64)
}

/// Accept the waiting connections of listener `lfd` (clients `icons`, ours at `clients`), read
/// their bytes, queue each again in the same order. None when the bytes could not all be
/// recorded (files sent with them, a message too large); the queue is given back all the same.
fn requeue(lfd: i32, ty: i32, name: &[u8], dir: &[u8], icons: &[u32], clients: &[Option<i32>]) -> Option<Vec<Pending>> {
    let mut taken: Vec<(i32, u32, Vec<Message>, Vec<i32>)> = Vec::new();
    let mut exact = true;
    for _ in icons {
        let Ok(a) = accept(lfd) else { break };
        let peer = diag::unix(fstat_ino(a) as u32).map_or(0, |i| i.peer);
        let mut files = Vec::new();
        let (msgs, complete) = queue::capture(a, ty, true, &mut |f| {
            files.push(sys::fcntl(f, libc::F_DUPFD_CLOEXEC, 0).map_or(-1, |x| x as i32));
            0
        });
        exact &= complete && files.is_empty();
        taken.push((a, peer, msgs, files));
    }
    let mut out = Vec::new();
    for (a, peer, msgs, files) in &taken {
        // Its client, found by inode (0: closed; one that connected since the threads stopped,
        // from outside, is given back as a connection whose client has closed).
        let fd = icons.iter().position(|&c| c == *peer && c != 0).and_then(|j| clients[j]);
        match again(ty, name, dir, msgs, files, fd) {
            Some(ino) => out.push(Pending { ino, data: Some(msgs.iter().map(|m| m.data.clone()).collect()), ..Pending::default() }),
            None => exact = false,
        }
        for &f in files {
            sys::close(f);
        }
        sys::close(*a);
    }
    exact.then_some(out)
}

/// A new connection to the listener at `name` with `msgs` sent into it (with `files`, as many
/// for each message as it had), in the place of the program's client socket at `fd` (with its
/// fd flags, status flags, options and filter), or closed when there is none. Its inode (0 when
/// closed); None if it could not be made.
fn again(ty: i32, name: &[u8], dir: &[u8], msgs: &[Message], files: &[i32], fd: Option<i32>) -> Option<u64> {
    let s = sys::socket(libc::AF_UNIX, ty | libc::SOCK_CLOEXEC, 0).ok()?;
    let options = fd.map(|f| opts::capture(f, libc::AF_UNIX)).unwrap_or_default();
    let _ = opts::restore(s, &options, opts::Phase::Early);
    let mut rest = files;
    let sent = unix::connect(s, name, dir) == 0
        && msgs.iter().all(|m| {
            let (these, more) = rest.split_at(m.fds.len().min(rest.len()));
            rest = more;
            queue::send_all(s, m, these).is_ok()
        });
    let Some(fd) = fd.filter(|_| sent) else {
        sys::close(s);
        return sent.then_some(0);
    };
    let _ = opts::restore(s, &options, opts::Phase::Late);
    let _ = opts::restore_filter(s, &opts::capture_filter(fd));
    let cloexec = sys::fcntl(fd, libc::F_GETFD, 0).unwrap_or(0) & libc::FD_CLOEXEC as i64 != 0;
    let status = sys::fcntl(fd, libc::F_GETFL, 0).unwrap_or(0);
    // SAFETY: dup3 of our new socket onto the program's fd, which it replaces.
    let r = unsafe { libc::syscall(libc::SYS_dup3, s, fd, if cloexec { libc::O_CLOEXEC } else { 0 }) };
    sys::close(s);
    if r < 0 {
        return None;
    }
    let _ = sys::fcntl(fd, libc::F_SETFL, status);
    Some(fstat_ino(fd))
}

/// The next waiting connection of `lfd`, without waiting for one (the listener may be a
/// blocking one: the program's threads are stopped).
fn accept(lfd: i32) -> Result<i32, i32> {
    let mut p = libc::pollfd { fd: lfd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one pollfd of ours; no wait. (Plain traps, as sys.rs: the runtime hooks poll.)
    if unsafe { libc::syscall(libc::SYS_poll, &mut p as *mut libc::pollfd, 1, 0) } != 1 {
        return Err(libc::EAGAIN);
    }
    // SAFETY: accept4 on the program's listener without an address.
    let a = unsafe { libc::syscall(libc::SYS_accept4, lfd, 0usize, 0usize, libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK) };
    if a < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    Ok(a as i32)
}

/// The inode of our fd `fd` (0 if fstat fails).
pub(super) fn fstat_ino(fd: i32) -> u64 {
    // SAFETY: an all-zero stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat on an fd of ours.
    unsafe { libc::syscall(libc::SYS_fstat, fd, &mut st as *mut libc::stat) };
    st.st_ino
}
