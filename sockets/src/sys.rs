//! The system calls the capture halves need, through libc's `syscall` (a plain trap: no lock, no
//! allocation), returning the errno on failure. Safe on the runtime's checkpoint thread while
//! the program's threads are stopped.

use std::ffi::CStr;

pub type SysResult<T> = Result<T, i32>;

fn check(r: libc::c_long) -> SysResult<i64> {
    if r < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO))
    } else {
        Ok(r)
    }
}

macro_rules! sc {
    ($nr:expr $(, $a:expr)* $(,)?) => {
        // SAFETY: the callers pass valid fds and buffers of the stated lengths; the kernel
        // checks every pointer it is given.
        check(unsafe { libc::syscall($nr $(, $a)*) })
    };
}

pub fn close(fd: i32) {
    let _ = sc!(libc::SYS_close, fd);
}

pub fn fcntl(fd: i32, cmd: i32, arg: i64) -> SysResult<i64> {
    sc!(libc::SYS_fcntl, fd, cmd, arg)
}

pub fn ioctl_int(fd: i32, req: u64) -> SysResult<i32> {
    let mut v: i32 = 0;
    sc!(libc::SYS_ioctl, fd, req, &mut v as *mut i32)?;
    Ok(v)
}

/// ioctl with a pointer to `T` (read or write).
pub fn ioctl_ptr<T>(fd: i32, req: u64, arg: *mut T) -> SysResult<i64> {
    sc!(libc::SYS_ioctl, fd, req, arg)
}

pub fn read(fd: i32, buf: &mut [u8]) -> SysResult<usize> {
    sc!(libc::SYS_read, fd, buf.as_mut_ptr(), buf.len()).map(|n| n as usize)
}

pub fn write(fd: i32, buf: &[u8]) -> SysResult<usize> {
    sc!(libc::SYS_write, fd, buf.as_ptr(), buf.len()).map(|n| n as usize)
}

/// stat (`follow`) or lstat of a path.
pub fn stat(path: &CStr, follow: bool) -> SysResult<libc::stat> {
    // SAFETY: an all-zero struct stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let flags = if follow { 0 } else { libc::AT_SYMLINK_NOFOLLOW };
    sc!(libc::SYS_newfstatat, libc::AT_FDCWD, path.as_ptr(), &mut st as *mut libc::stat, flags)?;
    Ok(st)
}

/// getsockopt into `buf`; the bytes the kernel wrote.
pub fn getsockopt(fd: i32, level: i32, name: i32, buf: &mut [u8]) -> SysResult<usize> {
    let mut len = buf.len() as u32;
    sc!(libc::SYS_getsockopt, fd, level, name, buf.as_mut_ptr(), &mut len as *mut u32)?;
    Ok((len as usize).min(buf.len()))
}

pub fn getsockopt_int(fd: i32, level: i32, name: i32) -> SysResult<i32> {
    let mut b = [0u8; 4];
    getsockopt(fd, level, name, &mut b)?;
    Ok(i32::from_ne_bytes(b))
}

pub fn setsockopt(fd: i32, level: i32, name: i32, val: &[u8]) -> SysResult<()> {
    sc!(libc::SYS_setsockopt, fd, level, name, val.as_ptr(), val.len()).map(|_| ())
}

/// getsockname (`peer` false) or getpeername: the raw address, empty on failure.
pub fn sock_addr(fd: i32, peer: bool) -> Vec<u8> {
    let mut a = [0u8; 128];
    let mut len = a.len() as u32;
    let nr = if peer { libc::SYS_getpeername } else { libc::SYS_getsockname };
    match sc!(nr, fd, a.as_mut_ptr(), &mut len as *mut u32) {
        Ok(_) => a[..(len as usize).min(a.len())].to_vec(),
        Err(_) => Vec::new(),
    }
}

pub fn socket(family: i32, ty: i32, proto: i32) -> SysResult<i32> {
    sc!(libc::SYS_socket, family, ty | libc::SOCK_CLOEXEC, proto).map(|fd| fd as i32)
}

pub fn sendto(fd: i32, buf: &[u8], flags: i32, addr: &[u8]) -> SysResult<usize> {
    let (p, l) = if addr.is_empty() { (std::ptr::null(), 0) } else { (addr.as_ptr(), addr.len()) };
    sc!(libc::SYS_sendto, fd, buf.as_ptr(), buf.len(), flags, p, l).map(|n| n as usize)
}

pub fn recvmsg(fd: i32, msg: &mut libc::msghdr, flags: i32) -> SysResult<usize> {
    sc!(libc::SYS_recvmsg, fd, msg as *mut libc::msghdr, flags).map(|n| n as usize)
}

