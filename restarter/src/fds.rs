//! Restoring the program's file descriptors: regular files, directories and devices reopened by
//! path with their flags and offsets, at their old numbers. stdin/stdout/stderr stay ours.

use anyhow::{Context, Result};
use ckpt_image::{FdKind, FdState};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;

fn cstr(b: &[u8]) -> Result<CString> {
    CString::new(b.to_vec()).context("path contains a NUL byte")
}

fn check(r: libc::c_int, what: impl FnOnce() -> String) -> Result<libc::c_int> {
    if r < 0 {
        return Err(std::io::Error::last_os_error()).with_context(what);
    }
    Ok(r)
}

/// Open every fd of the image at its number; close every other fd of ours above 2.
pub fn restore(fds: &[FdState]) -> Result<()> {
    let top = fds.iter().map(|f| f.fd).max().unwrap_or(0).max(2) + 1;
    let mut opened: Vec<(i32, i32)> = Vec::new(); // (temporary fd, target)
    for f in fds.iter().filter(|f| f.fd > 2) {
        let fd = match &f.kind {
            FdKind::Path { path, is_dir, .. } => {
                let p = cstr(path)?;
                let mut flags = f.flags & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_NOCTTY) | libc::O_CLOEXEC;
                if *is_dir {
                    flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC;
                }
                // SAFETY: p is a valid C string.
                let fd = check(unsafe { libc::open(p.as_ptr(), flags) }, || {
                    format!("file {} (fd {}) needed by the image cannot be reopened", std::ffi::OsStr::from_bytes(path).to_string_lossy(), f.fd)
                })?;
                if f.pos > 0 || *is_dir {
                    // SAFETY: fd was just opened.
                    unsafe { libc::lseek(fd, f.pos, libc::SEEK_SET) };
                }
                fd
            }
            FdKind::Other { link } => {
                eprintln!(
                    "ckpt-restart: warning: fd {} ({}) cannot be restored yet; it is replaced by /dev/null",
                    f.fd,
                    String::from_utf8_lossy(link)
                );
                // SAFETY: a constant path.
                check(unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) }, || "cannot open /dev/null".into())?
            }
        };
        // Park it above every target number so that the dup3s below cannot clobber it.
        // SAFETY: fd is ours.
        let parked = check(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, top + 64) }, || "fcntl".into())?;
        // SAFETY: fd is ours.
        unsafe { libc::close(fd) };
        opened.push((parked, f.fd));
    }
    // Close everything else of ours (above stderr) that is not one of the parked fds.
    let parked: Vec<i32> = opened.iter().map(|p| p.0).collect();
    let ours: Vec<i32> = std::fs::read_dir("/proc/self/fd")?
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
        .collect();
    for n in ours {
        if n > 2 && !parked.contains(&n) {
            // SAFETY: closing our own fd (the listing's own fd is already closed: EBADF).
            unsafe { libc::close(n) };
        }
    }
    for (tmp, target) in opened {
        let f = fds.iter().find(|f| f.fd == target).expect("target from the list");
        let flags = if f.cloexec { libc::O_CLOEXEC } else { 0 };
        // SAFETY: both are fd numbers; dup3 replaces whatever is at target.
        check(unsafe { libc::dup3(tmp, target, flags) }, || format!("cannot place fd {target}"))?;
        // SAFETY: tmp is ours.
        unsafe { libc::close(tmp) };
    }
    Ok(())
}
