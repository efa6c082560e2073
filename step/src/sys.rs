//! System calls for the step's links and files, made with `libc::syscall` only: this crate runs
//! inside the runtime (which hooks libc's socket, open and close functions, and must not enter
//! its own hooks) as well as in ckpt-restart and ckpt-run. No locks, no stdio.

use std::ffi::CStr;

/// An errno.
pub type Errno = i32;

fn errno() -> Errno {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

fn check(r: libc::c_long) -> Result<libc::c_long, Errno> {
    if r < 0 {
        Err(errno())
    } else {
        Ok(r)
    }
}

macro_rules! sc {
    ($nr:expr $(, $a:expr)*) => {
        // SAFETY: a raw system call; callers pass valid pointers and lengths.
        check(unsafe { libc::syscall($nr $(, $a)*) })
    };
}

pub fn close(fd: i32) {
    let _ = sc!(libc::SYS_close, fd);
}

/// A duplicate of `fd` (close-on-exec).
pub fn dup(fd: i32) -> Result<i32, Errno> {
    sc!(libc::SYS_fcntl, fd, libc::F_DUPFD_CLOEXEC, 0).map(|r| r as i32)
}

pub fn openat(dir: i32, name: &CStr, flags: i32, mode: u32) -> Result<i32, Errno> {
    sc!(libc::SYS_openat, dir, name.as_ptr(), flags | libc::O_CLOEXEC, mode).map(|r| r as i32)
}

pub fn fstat(fd: i32) -> Result<libc::stat, Errno> {
    // SAFETY: an all-zero stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    sc!(libc::SYS_fstat, fd, &mut st as *mut libc::stat)?;
    Ok(st)
}

pub fn read(fd: i32, buf: &mut [u8]) -> Result<usize, Errno> {
    loop {
        match sc!(libc::SYS_read, fd, buf.as_mut_ptr(), buf.len()) {
            Err(libc::EINTR) => continue,
            r => return r.map(|n| n as usize),
        }
    }
}

pub fn write_all(fd: i32, mut buf: &[u8]) -> Result<(), Errno> {
    while !buf.is_empty() {
        match sc!(libc::SYS_write, fd, buf.as_ptr(), buf.len()) {
            Err(libc::EINTR) => continue,
            Err(e) => return Err(e),
            Ok(n) => buf = &buf[n as usize..],
        }
    }
    Ok(())
}

pub fn renameat(dir: i32, from: &CStr, to: &CStr) -> Result<(), Errno> {
    sc!(libc::SYS_renameat, dir, from.as_ptr(), dir, to.as_ptr()).map(|_| ())
}

pub fn unlinkat(dir: i32, name: &CStr) -> Result<(), Errno> {
    sc!(libc::SYS_unlinkat, dir, name.as_ptr(), 0).map(|_| ())
}

pub fn fsync(fd: i32) {
    let _ = sc!(libc::SYS_fsync, fd);
}

pub fn getrandom(buf: &mut [u8]) -> Result<(), Errno> {
    let mut got = 0;
    while got < buf.len() {
        got += sc!(libc::SYS_getrandom, buf[got..].as_mut_ptr(), buf.len() - got, 0)? as usize;
    }
    Ok(())
}

pub fn geteuid() -> u32 {
    sc!(libc::SYS_geteuid).unwrap_or(-1) as u32
}

/// CLOCK_MONOTONIC in ms.
pub fn now_ms() -> u64 {
    clock(libc::CLOCK_MONOTONIC) / 1_000_000
}

/// CLOCK_REALTIME in ns.
pub fn realtime_ns() -> u64 {
    clock(libc::CLOCK_REALTIME)
}

fn clock(id: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    let _ = sc!(libc::SYS_clock_gettime, id, &mut ts as *mut libc::timespec);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

pub fn socket(family: i32, ty: i32) -> Result<i32, Errno> {
    sc!(libc::SYS_socket, family, ty | libc::SOCK_CLOEXEC, 0).map(|r| r as i32)
}

pub fn setsockopt_int(fd: i32, level: i32, name: i32, v: i32) {
    let _ = sc!(libc::SYS_setsockopt, fd, level, name, &v as *const i32, 4);
}

pub fn bind(fd: i32, addr: &[u8]) -> Result<(), Errno> {
    sc!(libc::SYS_bind, fd, addr.as_ptr(), addr.len()).map(|_| ())
}

pub fn listen(fd: i32, backlog: i32) -> Result<(), Errno> {
    sc!(libc::SYS_listen, fd, backlog).map(|_| ())
}

/// accept4 (close-on-exec); the peer's address as raw bytes.
pub fn accept(fd: i32, flags: i32) -> Result<(i32, Vec<u8>), Errno> {
    let mut a = [0u8; 128];
    let mut len: u32 = a.len() as u32;
    let r = sc!(libc::SYS_accept4, fd, a.as_mut_ptr(), &mut len as *mut u32, libc::SOCK_CLOEXEC | flags)?;
    Ok((r as i32, a[..(len as usize).min(128)].to_vec()))
}

/// getsockname (peer: getpeername) as raw bytes.
pub fn sock_name(fd: i32, peer: bool) -> Vec<u8> {
    let mut a = [0u8; 128];
    let mut len: u32 = a.len() as u32;
    let nr = if peer { libc::SYS_getpeername } else { libc::SYS_getsockname };
    match sc!(nr, fd, a.as_mut_ptr(), &mut len as *mut u32) {
        Ok(_) => a[..(len as usize).min(128)].to_vec(),
        Err(_) => Vec::new(),
    }
}

pub fn getsockopt_int(fd: i32, level: i32, name: i32) -> Result<i32, Errno> {
    let mut v: i32 = 0;
    let mut len: u32 = 4;
    sc!(libc::SYS_getsockopt, fd, level, name, &mut v as *mut i32, &mut len as *mut u32)?;
    Ok(v)
}

/// poll one fd for `events` for up to `ms` (None: forever); the revents (0: timeout).
pub fn poll1(fd: i32, events: i16, ms: Option<u64>) -> Result<i16, Errno> {
    let mut p = [libc::pollfd { fd, events, revents: 0 }];
    poll(&mut p, ms)?;
    Ok(p[0].revents)
}

pub fn poll(fds: &mut [libc::pollfd], ms: Option<u64>) -> Result<usize, Errno> {
    let ts = ms.map(|ms| libc::timespec { tv_sec: (ms / 1000) as i64, tv_nsec: ((ms % 1000) * 1_000_000) as i64 });
    let tsp = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    loop {
        match sc!(libc::SYS_ppoll, fds.as_mut_ptr(), fds.len(), tsp, 0, 8) {
            Err(libc::EINTR) => continue,
            r => return r.map(|n| n as usize),
        }
    }
}

/// Connect with a deadline (the socket is non-blocking for the attempt, then blocking again).
pub fn connect(fd: i32, addr: &[u8], ms: u64) -> Result<(), Errno> {
    let fl = sc!(libc::SYS_fcntl, fd, libc::F_GETFL)? as i32;
    sc!(libc::SYS_fcntl, fd, libc::F_SETFL, fl | libc::O_NONBLOCK)?;
    let r = match sc!(libc::SYS_connect, fd, addr.as_ptr(), addr.len()) {
        Ok(_) => Ok(()),
        Err(libc::EINPROGRESS) => match poll1(fd, libc::POLLOUT, Some(ms)) {
            Ok(0) => Err(libc::ETIMEDOUT),
            Ok(_) => match getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_ERROR) {
                Ok(0) => Ok(()),
                Ok(e) => Err(e),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    let _ = sc!(libc::SYS_fcntl, fd, libc::F_SETFL, fl);
    r
}

/// recv with flags (MSG_DONTWAIT for a non-blocking read of a program's socket).
pub fn recv(fd: i32, buf: &mut [u8], flags: i32) -> Result<usize, Errno> {
    sc!(libc::SYS_recvfrom, fd, buf.as_mut_ptr(), buf.len(), flags, 0, 0).map(|n| n as usize)
}

/// send with flags; MSG_NOSIGNAL is always added.
pub fn send(fd: i32, buf: &[u8], flags: i32) -> Result<usize, Errno> {
    sc!(libc::SYS_sendto, fd, buf.as_ptr(), buf.len(), flags | libc::MSG_NOSIGNAL, 0, 0).map(|n| n as usize)
}

/// A sockaddr_in for `ip`:`port`.
pub fn sockaddr_in(ip: [u8; 4], port: u16) -> Vec<u8> {
    let mut a = vec![0u8; 16];
    a[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
    a[2..4].copy_from_slice(&port.to_be_bytes());
    a[4..8].copy_from_slice(&ip);
    a
}

/// The port of an inet sockaddr.
pub fn port_of(a: &[u8]) -> u16 {
    if a.len() >= 4 {
        u16::from_be_bytes([a[2], a[3]])
    } else {
        0
    }
}

/// The address of an inet sockaddr, printable.
pub fn show_addr(a: &[u8]) -> String {
    match a.len() {
        n if n >= 24 && u16::from_ne_bytes([a[0], a[1]]) == libc::AF_INET6 as u16 => {
            let ip: Vec<String> = a[8..24].chunks(2).map(|c| format!("{:x}", u16::from_be_bytes([c[0], c[1]]))).collect();
            format!("[{}]:{}", ip.join(":"), port_of(a))
        }
        n if n >= 8 => format!("{}.{}.{}.{}:{}", a[4], a[5], a[6], a[7], port_of(a)),
        _ => "an unnamed address".into(),
    }
}
