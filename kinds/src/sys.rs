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

pub fn pread(fd: i32, buf: &mut [u8], off: u64) -> SysResult<usize> {
    loop {
        // SAFETY: buf is a valid writable buffer of buf.len() bytes.
        match check(unsafe { libc::syscall(libc::SYS_pread64, fd, buf.as_mut_ptr(), buf.len(), off) }) {
            Err(libc::EINTR) => continue,
            r => return r.map(|n| n as usize),
        }
    }
}

/// `/proc/self/fd/<fd>` as a C string.
pub fn proc_fd(fd: &[u8]) -> std::ffi::CString {
    let mut v = b"/proc/self/fd/".to_vec();
    v.extend_from_slice(fd);
    std::ffi::CString::new(v).unwrap_or_default()
}
