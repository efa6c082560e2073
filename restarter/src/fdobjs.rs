//! Creating the kernel objects behind the program's fds again: socketpairs (refilled with
//! their unread bytes), bound and listening sockets, sockets whose outside peer is gone,
//! eventfd, timerfd, signalfd, inotify and epoll. The kinds moved to the ckpt-kinds crate
//! (capture and restore side by side) are restored there.
//! Each function returns a new fd of ours (close-on-exec); fds.rs puts it at its number.

use anyhow::{Context, Result};
use ckpt_image::{EpollEntry, InotifyWatch};
use std::ffi::CString;
use std::os::fd::RawFd;

pub fn check(r: libc::c_int, what: impl FnOnce() -> String) -> Result<libc::c_int> {
    if r < 0 {
        return Err(std::io::Error::last_os_error()).with_context(what);
    }
    Ok(r)
}

pub fn cstr(b: &[u8]) -> Result<CString> {
    CString::new(b.to_vec()).context("path contains a NUL byte")
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Write all of `data` to `fd` (a fresh pipe or socket with room for it).
fn write_all(fd: RawFd, data: &[u8], what: &str) -> Result<()> {
    let mut rest = data;
    while !rest.is_empty() {
        // SAFETY: rest is a valid buffer.
        let n = unsafe { libc::send(fd, rest.as_ptr().cast(), rest.len(), libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) };
        let n = if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOTSOCK) {
            // SAFETY: as above.
            unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) }
        } else {
            n
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error()).with_context(|| format!("cannot refill {what}"));
        }
        rest = &rest[n as usize..];
    }
    Ok(())
}

/// Set the file status flags the program had (O_NONBLOCK, O_APPEND, O_ASYNC...).
pub fn set_status_flags(fd: RawFd, flags: i32) {
    let keep = libc::O_APPEND | libc::O_NONBLOCK | libc::O_ASYNC | libc::O_DIRECT | libc::O_NOATIME;
    // SAFETY: fd is ours.
    unsafe { libc::fcntl(fd, libc::F_SETFL, flags & keep) };
}

/// A new connected pair of UNIX sockets; `queues[i]` is put in end i's receive queue.
pub fn socketpair(sock_type: i32, queues: [&[Vec<u8>]; 2]) -> Result<[RawFd; 2]> {
    let mut sv = [0; 2];
    // SAFETY: sv has room for two fds.
    check(unsafe { libc::socketpair(libc::AF_UNIX, sock_type | libc::SOCK_CLOEXEC, 0, sv.as_mut_ptr()) }, || "socketpair".into())?;
    for (i, q) in queues.iter().enumerate() {
        for m in q.iter() {
            write_all(sv[1 - i], m, "a socket")?;
        }
    }
    Ok(sv)
}

/// A socket bound to `addr` again (and listening, if it was).
pub fn bound(family: i32, sock_type: i32, protocol: i32, addr: &[u8], listening: bool, opts: &[(i32, i32, i32)]) -> Result<RawFd> {
    let what = || describe_addr(family, addr);
    // SAFETY: plain socket creation.
    let s = check(unsafe { libc::socket(family, sock_type | libc::SOCK_CLOEXEC, protocol) }, || format!("socket for {}", what()))?;
    let close = |e: anyhow::Error| {
        // SAFETY: s is ours.
        unsafe { libc::close(s) };
        e
    };
    if family == libc::AF_INET || family == libc::AF_INET6 {
        let one: libc::c_int = 1;
        // SAFETY: a valid int option.
        unsafe { libc::setsockopt(s, libc::SOL_SOCKET, libc::SO_REUSEADDR, (&one as *const libc::c_int).cast(), 4) };
    }
    // SO_REUSEADDR stays on (set above): the old process's connections may linger in TIME_WAIT.
    for &(level, name, v) in opts.iter().filter(|o| (o.0, o.1) != (libc::SOL_SOCKET, libc::SO_REUSEADDR)) {
        // SAFETY: an int option. Best effort: a failure leaves the default.
        unsafe { libc::setsockopt(s, level, name, (&v as *const i32).cast(), 4) };
    }
    if family == libc::AF_UNIX && addr.len() > 2 && addr[2] != 0 {
        // A socket file left behind by the killed program: remove it if it is one.
        let path: Vec<u8> = addr[2..].iter().take_while(|&&b| b != 0).copied().collect();
        let p = cstr(&path)?;
        // SAFETY: an all-zero stat is a valid out-parameter; p is a valid C string.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::lstat(p.as_ptr(), &mut st) } == 0 && st.st_mode & libc::S_IFMT == libc::S_IFSOCK {
            // SAFETY: p is a valid C string.
            unsafe { libc::unlink(p.as_ptr()) };
        }
    }
    // SAFETY: addr holds a sockaddr of addr.len() bytes, as getsockname returned it.
    check(unsafe { libc::bind(s, addr.as_ptr().cast(), addr.len() as u32) }, || format!("cannot bind {} again", what())).map_err(close)?;
    if listening {
        // SAFETY: s is a bound socket.
        check(unsafe { libc::listen(s, libc::SOMAXCONN) }, || format!("cannot listen on {} again", what())).map_err(close)?;
    }
    Ok(s)
}

/// A socket whose peer has gone: one end of a socketpair whose other end is closed.
pub fn closed(sock_type: i32, queue: &[Vec<u8>]) -> Result<RawFd> {
    let t = if sock_type == libc::SOCK_DGRAM || sock_type == libc::SOCK_SEQPACKET { sock_type } else { libc::SOCK_STREAM };
    let sv = socketpair(t, [queue, &[]])?;
    // SAFETY: sv[1] is ours.
    unsafe { libc::close(sv[1]) };
    Ok(sv[0])
}

pub fn describe_addr(family: i32, a: &[u8]) -> String {
    match family {
        libc::AF_INET if a.len() >= 8 => format!("{}.{}.{}.{}:{}", a[4], a[5], a[6], a[7], u16::from_be_bytes([a[2], a[3]])),
        libc::AF_INET6 if a.len() >= 24 => {
            let ip: [u8; 16] = a[8..24].try_into().unwrap_or([0; 16]);
            format!("[{}]:{}", std::net::Ipv6Addr::from(ip), u16::from_be_bytes([a[2], a[3]]))
        }
        libc::AF_UNIX if a.len() > 2 && a[2] == 0 => format!("unix abstract {}", lossy(&a[3..])),
        libc::AF_UNIX => format!("unix {}", lossy(a[2..].split(|&b| b == 0).next().unwrap_or(&[]))),
        _ => format!("socket family {family}"),
    }
}

pub fn eventfd(count: u64, semaphore: bool) -> Result<RawFd> {
    let flags = libc::EFD_CLOEXEC | if semaphore { libc::EFD_SEMAPHORE } else { 0 };
    // SAFETY: plain eventfd creation.
    let fd = check(unsafe { libc::eventfd(0, flags) }, || "eventfd".into())?;
    if count > 0 {
        // SAFETY: writing 8 bytes from a u64.
        unsafe { libc::write(fd, (&count as *const u64).cast(), 8) };
    }
    Ok(fd)
}

/// A timerfd armed with the remaining time (relative, counted from now) and the interval.
/// Expirations not yet read come back as one immediate expiration.
pub fn timerfd(clockid: i32, value_ns: u64, interval_ns: u64, ticks: u64) -> Result<RawFd> {
    // SAFETY: plain timerfd creation.
    let fd = check(unsafe { libc::timerfd_create(clockid, libc::TFD_CLOEXEC) }, || format!("timerfd on clock {clockid}"))?;
    let ts = |ns: u64| libc::timespec { tv_sec: (ns / 1_000_000_000) as i64, tv_nsec: (ns % 1_000_000_000) as i64 };
    let value = if ticks > 0 { 1 } else { value_ns };
    let its = libc::itimerspec { it_interval: ts(interval_ns), it_value: ts(value) };
    if value != 0 {
        // SAFETY: its is a valid itimerspec.
        check(unsafe { libc::timerfd_settime(fd, 0, &its, std::ptr::null_mut()) }, || "timerfd_settime".into())?;
    }
    Ok(fd)
}

pub fn signalfd(mask: u64) -> Result<RawFd> {
    // SAFETY: an empty sigset_t, then filled from the mask.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    for sig in 1..=64 {
        if mask & (1u64 << (sig - 1)) != 0 {
            // SAFETY: set is valid.
            unsafe { libc::sigaddset(&mut set, sig) };
        }
    }
    // SAFETY: set is valid.
    check(unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC) }, || "signalfd".into())
}

/// An inotify instance with the watches added again in wd order, with the same watch
/// descriptors: the kernel numbers watches 1, 2, 3... (cyclically), so a gap left by a removed
/// watch is reproduced by adding and removing a throw-away watch on some other inode; the
/// IN_IGNORED events that removal queues are read off before the program gets the fd.
pub fn inotify(watches: &[InotifyWatch], fd_no: i32) -> Result<RawFd> {
    // SAFETY: plain inotify creation.
    let fd = check(unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) }, || "inotify_init1".into())?;
    let mut w: Vec<&InotifyWatch> = watches.iter().filter(|w| w.wd > 0).collect();
    w.sort_by_key(|w| w.wd);
    let mut spare = spare_paths(w.last().map_or(0, |l| l.wd as usize), watches);
    let mut next = 1;
    let mut dummies = Vec::new();
    for x in w {
        if x.path.is_empty() {
            eprintln!("ckpt-restart: warning: fd {fd_no}: inotify watch {} was not seen being added; it is lost", x.wd);
            continue;
        }
        while next < x.wd {
            let Some(p) = spare.pop() else { break };
            // SAFETY: p is a valid C string.
            let d = unsafe { libc::inotify_add_watch(fd, p.as_ptr(), libc::IN_DELETE_SELF | libc::IN_DONT_FOLLOW | libc::IN_MASK_CREATE) };
            if d < 0 {
                continue; // IN_MASK_CREATE: never touch a watch that exists
            }
            dummies.push(d);
            next = d + 1;
        }
        let p = cstr(&x.path)?;
        // SAFETY: p is a valid C string.
        let wd = unsafe { libc::inotify_add_watch(fd, p.as_ptr(), x.mask & !(libc::IN_MASK_ADD | libc::IN_MASK_CREATE)) };
        if wd != x.wd {
            eprintln!("ckpt-restart: warning: fd {fd_no}: inotify watch on {} is now {} (was {})", lossy(&x.path), wd, x.wd);
        }
        next = wd.max(next - 1) + 1;
    }
    for d in dummies {
        // SAFETY: removing our throw-away watch.
        unsafe { libc::inotify_rm_watch(fd, d) };
    }
    let mut buf = [0u8; 4096];
    // SAFETY: reading the IN_IGNORED events of the throw-away watches (non-blocking).
    while unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
    // SAFETY: fd is ours; the program's flags are set by the caller.
    unsafe { libc::fcntl(fd, libc::F_SETFL, 0) };
    Ok(fd)
}

/// Up to `n` paths of distinct files that none of `watches` watches, for throw-away watches.
fn spare_paths(n: usize, watches: &[InotifyWatch]) -> Vec<CString> {
    let mut out = Vec::new();
    for dir in ["/usr/lib", "/usr/bin", "/etc", "/"] {
        let Ok(rd) = std::fs::read_dir(dir) else { continue };
        for e in rd.flatten() {
            if out.len() >= n {
                return out;
            }
            let p = e.path();
            let b = std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()).to_vec();
            if watches.iter().any(|w| w.path == b) {
                continue;
            }
            if let Ok(c) = CString::new(b) {
                out.push(c);
            }
        }
    }
    out
}

/// An epoll instance with its interest list; the fds it refers to must already be in place.
pub fn epoll(entries: &[EpollEntry], fd_no: i32) -> Result<RawFd> {
    // SAFETY: plain epoll creation.
    let ep = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) }, || "epoll_create1".into())?;
    // EPOLLERR/EPOLLHUP are always reported; the kernel shows them in fdinfo.
    let internal = (libc::EPOLLERR | libc::EPOLLHUP) as u32;
    for e in entries {
        let mut ev = libc::epoll_event { events: e.events & !internal, u64: e.data };
        // SAFETY: ev is valid; e.fd is one of the program's fds, already restored.
        if unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, e.fd, &mut ev) } < 0 {
            eprintln!("ckpt-restart: warning: fd {fd_no}: epoll entry for fd {} cannot be restored: {}", e.fd, std::io::Error::last_os_error());
        }
    }
    Ok(ep)
}
