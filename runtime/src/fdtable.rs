//! The file descriptor table (/proc/self/fd and fdinfo): what each fd is, its flags and offset.

use crate::sys::{self, syscall};
use ckpt_image::{FdKind, FdState};

pub fn read_fds() -> Vec<FdState> {
    let mut out = Vec::new();
    let Ok(names) = sys::list_dir(&sys::cpath(&[b"/proc/self/fd"])) else { return out };
    for n in names {
        let Ok(fd) = std::str::from_utf8(&n).unwrap_or("").parse::<i32>() else { continue };
        if crate::control::is_runtime_fd(fd) {
            continue; // ours, created again after a restart
        }
        // SAFETY: an all-zero struct stat is a valid out-parameter.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if syscall!(libc::SYS_fstat, fd, &mut st as *mut libc::stat).is_err() {
            continue; // the directory fd we listed with, now closed
        }
        let link = sys::readlink(&sys::cpath(&[b"/proc/self/fd/", &n])).unwrap_or_default();
        let info = sys::read_file(&sys::cpath(&[b"/proc/self/fdinfo/", &n])).unwrap_or_default();
        let (pos, flags) = parse_fdinfo(&info);
        let cloexec = syscall!(libc::SYS_fcntl, fd, libc::F_GETFD).map(|f| f & libc::FD_CLOEXEC as i64 != 0).unwrap_or(false);
        let fmt = st.st_mode & libc::S_IFMT;
        let by_path = link.starts_with(b"/")
            && !link.ends_with(b" (deleted)")
            && (fmt == libc::S_IFREG || fmt == libc::S_IFDIR || fmt == libc::S_IFCHR);
        let kind = if by_path {
            FdKind::Path { path: link, size: st.st_size as u64, is_dir: fmt == libc::S_IFDIR }
        } else {
            FdKind::Other { link }
        };
        out.push(FdState { fd, flags, pos, cloexec, kind });
    }
    out
}

/// fdinfo: "pos:\t<dec>\nflags:\t<octal>\n..."
pub fn parse_fdinfo(info: &[u8]) -> (i64, i32) {
    let mut pos = 0;
    let mut flags = 0;
    for line in info.split(|&b| b == b'\n') {
        let s = std::str::from_utf8(line).unwrap_or("");
        if let Some(v) = s.strip_prefix("pos:") {
            pos = v.trim().parse().unwrap_or(0);
        } else if let Some(v) = s.strip_prefix("flags:") {
            flags = i32::from_str_radix(v.trim(), 8).unwrap_or(0);
        }
    }
    (pos, flags)
}
