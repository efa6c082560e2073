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

/// `/proc/self/fd/<fd>` as a C string.
pub fn proc_fd(fd: &[u8]) -> std::ffi::CString {
    let mut v = b"/proc/self/fd/".to_vec();
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
