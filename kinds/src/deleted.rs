//! Files deleted while open: captured by reading their contents through /proc/self/fd (which
//! works whatever the fd's access mode), restored as an unnamed file in the same directory
//! (O_TMPFILE, else a memfd) holding those contents, opened again with the program's flags.

use crate::{lossy, sys, Error, Result};
use ckpt_image::FdKind;
use std::ffi::CString;
use std::os::fd::RawFd;

/// Above this, a deleted file's contents are not stored (the fd becomes /dev/null at restart).
const DELETED_MAX: u64 = 1 << 30;

/// Capture: the whole contents of the deleted file behind fd `name` (its number in decimal).
pub fn capture(name: &[u8], path: Vec<u8>, size: u64) -> Option<FdKind> {
    if size > DELETED_MAX {
        return None;
    }
    let rfd = sys::open(&sys::proc_fd(name), libc::O_RDONLY, 0).ok()?;
    let mut data = vec![0u8; size as usize];
    let mut got = 0;
    while got < data.len() {
        match sys::pread(rfd, &mut data[got..], got as u64) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    sys::close(rfd);
    data.truncate(got);
    Some(FdKind::Deleted { path, data })
}

fn cstr(b: &[u8]) -> Result<CString> {
    CString::new(b.to_vec()).map_err(|_| Error::Refused(format!("path {} contains a NUL byte", lossy(b))))
}

/// Restore: an unnamed file in the same directory (O_TMPFILE), or a memfd, holding the saved
/// contents, then opened again with the program's flags. A new fd of ours.
pub fn restore(path: &[u8], data: &[u8], flags: i32) -> Result<RawFd> {
    let dir = match path.iter().rposition(|&b| b == b'/') {
        Some(0) => b"/".to_vec(),
        Some(i) => path[..i].to_vec(),
        None => b".".to_vec(),
    };
    let d = cstr(&dir)?;
    // SAFETY: d is a valid C string.
    let mut t = unsafe { libc::open(d.as_ptr(), libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC, 0o600) };
    if t < 0 {
        // SAFETY: a constant name.
        t = unsafe { libc::memfd_create(c"ckpt-deleted".as_ptr(), libc::MFD_CLOEXEC) };
        if t < 0 {
            return Err(Error::last(format!("cannot recreate deleted file {}", lossy(path))));
        }
    }
    let mut off = 0;
    while off < data.len() {
        // SAFETY: data[off..] is a valid buffer.
        let n = unsafe { libc::pwrite(t, data[off..].as_ptr().cast(), data.len() - off, off as i64) };
        if n <= 0 {
            let e = Error::last(format!("cannot recreate deleted file {}", lossy(path)));
            // SAFETY: t is ours.
            unsafe { libc::close(t) };
            return Err(e);
        }
        off += n as usize;
    }
    let proc = cstr(format!("/proc/self/fd/{t}").as_bytes())?;
    let f = flags & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_NOCTTY) | libc::O_CLOEXEC;
    // SAFETY: proc is a valid C string.
    let fd = unsafe { libc::open(proc.as_ptr(), f) };
    let e = Error::last(format!("cannot reopen recreated file {}", lossy(path)));
    // SAFETY: t is ours.
    unsafe { libc::close(t) };
    if fd < 0 {
        return Err(e);
    }
    Ok(fd)
}
