//! The few system calls both halves need, through libc's `syscall` (a plain trap: no lock, no
//! allocation), returning the errno on failure. Safe to call from the runtime's checkpoint
//! thread while the program's threads are stopped.

use std::ffi::CStr;

pub type SysResult<T> = Result<T, i32>;

fn check(r: libc::c_long) -> SysResult<i64> {
    if r < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO))
    } else {
        Ok(r)
    }
}

pub fn open(path: &CStr, flags: i32, mode: u32) -> SysResult<i32> {
    // SAFETY: path is a valid C string.
    check(unsafe { libc::syscall(libc::SYS_openat, libc::AT_FDCWD, path.as_ptr(), flags | libc::O_CLOEXEC, mode) }).map(|fd| fd as i32)
}

pub fn close(fd: i32) {
    // SAFETY: closing an fd the caller owns.
    unsafe { libc::syscall(libc::SYS_close, fd) };
}

pub fn flock(fd: i32, op: i32) -> SysResult<()> {
    // SAFETY: flock on an fd the caller owns.
    check(unsafe { libc::syscall(libc::SYS_flock, fd, op) }).map(drop)
}

pub fn sleep_ms(ms: u64) {
    let ts = libc::timespec { tv_sec: (ms / 1000) as i64, tv_nsec: ((ms % 1000) * 1_000_000) as i64 };
    // SAFETY: a valid timespec; no remainder wanted.
    unsafe { libc::syscall(libc::SYS_nanosleep, &ts as *const libc::timespec, 0usize) };
}

pub fn fcntl(fd: i32, cmd: i32, arg: i64) -> SysResult<i64> {
    // SAFETY: fcntl commands with integer arguments.
    check(unsafe { libc::syscall(libc::SYS_fcntl, fd, cmd, arg) })
}

pub fn pipe2(flags: i32) -> SysResult<[i32; 2]> {
    let mut p = [0i32; 2];
    // SAFETY: p has room for two fds.
    check(unsafe { libc::syscall(libc::SYS_pipe2, p.as_mut_ptr(), flags) })?;
    Ok(p)
}

/// tee(2), non-blocking.
pub fn tee(from: i32, to: i32, len: usize) -> SysResult<usize> {
    // SAFETY: a plain system call on fds.
    check(unsafe { libc::syscall(libc::SYS_tee, from, to, len, libc::SPLICE_F_NONBLOCK) }).map(|n| n as usize)
}

/// `/proc/thread-self/fd/<fd>` as a C string (thread-self: /proc/self is unreadable once the
/// main thread has exited, and capture runs on the runtime's thread).
pub fn proc_fd(fd: &[u8]) -> std::ffi::CString {
    let mut v = b"/proc/thread-self/fd/".to_vec();
    v.extend_from_slice(fd);
    std::ffi::CString::new(v).unwrap_or_default()
}

pub fn read(fd: i32, buf: &mut [u8]) -> SysResult<usize> {
    // SAFETY: buf is a valid writable buffer of buf.len() bytes.
    check(unsafe { libc::syscall(libc::SYS_read, fd, buf.as_mut_ptr(), buf.len()) }).map(|n| n as usize)
}

pub fn lseek(fd: i32, off: u64, whence: i32) -> SysResult<u64> {
    // SAFETY: a plain system call on an fd.
    check(unsafe { libc::syscall(libc::SYS_lseek, fd, off, whence) }).map(|n| n as u64)
}

/// A non-blocking inotify instance of ours.
pub fn inotify() -> SysResult<i32> {
    // SAFETY: a plain system call.
    check(unsafe { libc::syscall(libc::SYS_inotify_init1, libc::IN_NONBLOCK | libc::IN_CLOEXEC) }).map(|fd| fd as i32)
}

pub fn add_watch(ino: i32, path: &CStr, mask: u32) -> SysResult<i32> {
    // SAFETY: path is a valid C string.
    check(unsafe { libc::syscall(libc::SYS_inotify_add_watch, ino, path.as_ptr(), mask) }).map(|w| w as i32)
}

/// The target of the symlink an O_PATH fd is on.
pub fn readlink_fd(fd: i32) -> SysResult<Vec<u8>> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: an empty path names the fd itself; buf is a valid buffer.
    let n = check(unsafe { libc::syscall(libc::SYS_readlinkat, fd, c"".as_ptr(), buf.as_mut_ptr(), buf.len()) })?;
    buf.truncate(n as usize);
    Ok(buf)
}

pub fn write(fd: i32, buf: &[u8]) -> SysResult<usize> {
    // SAFETY: buf is a valid buffer of buf.len() bytes.
    check(unsafe { libc::syscall(libc::SYS_write, fd, buf.as_ptr(), buf.len()) }).map(|n| n as usize)
}

/// An ioctl that writes an int.
pub fn ioctl_int(fd: i32, req: u64) -> SysResult<i32> {
    let mut v: i32 = 0;
    // SAFETY: v has room for the int the request writes.
    check(unsafe { libc::syscall(libc::SYS_ioctl, fd, req, &mut v as *mut i32) })?;
    Ok(v)
}

/// An ioctl with a pointer to a `T` the request reads or writes.
pub fn ioctl_ptr<T>(fd: i32, req: u64, arg: *mut T) -> SysResult<i64> {
    // SAFETY: the caller passes a valid T for the request.
    check(unsafe { libc::syscall(libc::SYS_ioctl, fd, req, arg) })
}

/// stat (`follow`) or lstat of a path.
pub fn stat(path: &CStr, follow: bool) -> SysResult<libc::stat> {
    // SAFETY: an all-zero struct stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let flags = if follow { 0 } else { libc::AT_SYMLINK_NOFOLLOW };
    // SAFETY: path is a valid C string, st a valid out-parameter.
    check(unsafe { libc::syscall(libc::SYS_newfstatat, libc::AT_FDCWD, path.as_ptr(), &mut st as *mut libc::stat, flags) })?;
    Ok(st)
}

/// getsockopt into `buf`; the bytes the kernel wrote.
pub fn getsockopt(fd: i32, level: i32, name: i32, buf: &mut [u8]) -> SysResult<usize> {
    let mut len = buf.len() as u32;
    // SAFETY: buf holds len bytes; len is a valid in/out length.
    check(unsafe { libc::syscall(libc::SYS_getsockopt, fd, level, name, buf.as_mut_ptr(), &mut len as *mut u32) })?;
    Ok((len as usize).min(buf.len()))
}

pub fn getsockopt_int(fd: i32, level: i32, name: i32) -> SysResult<i32> {
    let mut b = [0u8; 4];
    getsockopt(fd, level, name, &mut b)?;
    Ok(i32::from_ne_bytes(b))
}

pub fn setsockopt(fd: i32, level: i32, name: i32, val: &[u8]) -> SysResult<()> {
    // SAFETY: val is a valid buffer of its length.
    check(unsafe { libc::syscall(libc::SYS_setsockopt, fd, level, name, val.as_ptr(), val.len()) }).map(|_| ())
}

/// getsockname (`peer` false) or getpeername: the raw address, empty on failure.
pub fn sock_addr(fd: i32, peer: bool) -> Vec<u8> {
    let mut a = [0u8; 128];
    let mut len = a.len() as u32;
    let nr = if peer { libc::SYS_getpeername } else { libc::SYS_getsockname };
    // SAFETY: a holds len bytes; len is a valid in/out length.
    match check(unsafe { libc::syscall(nr, fd, a.as_mut_ptr(), &mut len as *mut u32) }) {
        Ok(_) => a[..(len as usize).min(a.len())].to_vec(),
        Err(_) => Vec::new(),
    }
}

pub fn socket(family: i32, ty: i32, proto: i32) -> SysResult<i32> {
    // SAFETY: a plain system call.
    check(unsafe { libc::syscall(libc::SYS_socket, family, ty | libc::SOCK_CLOEXEC, proto) }).map(|fd| fd as i32)
}

pub fn sendto(fd: i32, buf: &[u8], flags: i32, addr: &[u8]) -> SysResult<usize> {
    let (p, l) = if addr.is_empty() { (std::ptr::null(), 0) } else { (addr.as_ptr(), addr.len()) };
    // SAFETY: buf and the address are valid buffers of their lengths (or null, 0).
    check(unsafe { libc::syscall(libc::SYS_sendto, fd, buf.as_ptr(), buf.len(), flags, p, l) }).map(|n| n as usize)
}

pub fn recvmsg(fd: i32, msg: &mut libc::msghdr, flags: i32) -> SysResult<usize> {
    // SAFETY: msg points at buffers of the lengths it gives.
    check(unsafe { libc::syscall(libc::SYS_recvmsg, fd, msg as *mut libc::msghdr, flags) }).map(|n| n as usize)
}
