//! memfds (memfd_create): what makes one more than a deleted file on tmpfs (deleted.rs keeps its
//! data, owner, mode and times, and recreates it as a memfd of the same name, so statfs says
//! tmpfs as before).
//!
//! - Seals (F_GET_SEALS): recorded at checkpoint time, added again once the file holds its data
//!   and every fd on it is open. A memfd made without MFD_ALLOW_SEALING has F_SEAL_SEAL from the
//!   start, so the same seals come back either way.
//! - Exec permission: a memfd can be executed (execveat, fexecve) when its mode allows it and it
//!   is not sealed against it (F_SEAL_EXEC, MFD_NOEXEC_SEAL). It is recreated with MFD_EXEC when
//!   its mode had an execute bit (so that vm.memfd_noexec=1 does not take that away), with
//!   MFD_NOEXEC_SEAL when it was sealed so; its mode is then set by deleted.rs. Where the kernel
//!   refuses MFD_EXEC (vm.memfd_noexec=2), it comes back without, with a warning.
//! - Open mode: memfd_create's own fd is read-write but is no writer in the kernel's count that
//!   exec checks (ETXTBSY); an open through /proc/self/fd for writing is. The first read-write
//!   fd of a memfd is therefore memfd_create's fd itself, later ones are opens through
//!   /proc/self/fd like the program's were.

use crate::{info, lossy, sys, Error, Result};
use std::ffi::CString;
use std::os::fd::RawFd;

const F_ADD_SEALS: i32 = 1033;
const F_GET_SEALS: i32 = 1034;
const F_SEAL_EXEC: u32 = 0x20;
const MFD_EXEC: u32 = 0x10;
const MFD_NOEXEC_SEAL: u32 = 0x08;

/// Whether `path` (a link text without " (deleted)") names a memfd.
pub fn is_memfd(path: &[u8]) -> bool {
    path.starts_with(b"/memfd:")
}

/// Capture: the seals of the memfd open as `fd` (0 when it has none or is no memfd).
pub fn seals(fd: i32) -> u32 {
    sys::fcntl(fd, F_GET_SEALS, 0).map_or(0, |s| s as u32)
}

/// Restore: a new memfd named like the old one (`path`: "/memfd:NAME"), allowing exec as the old
/// one did (`mode`, `seals`), open read-write and close-on-exec.
pub fn create(path: &[u8], mode: u32, seals: u32) -> Result<RawFd> {
    let name = CString::new(path.strip_prefix(b"/memfd:").unwrap_or(path)).map_err(|_| Error::Refused(format!("bad memfd name {}", lossy(path))))?;
    let base = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    let exec = if seals & F_SEAL_EXEC != 0 {
        MFD_NOEXEC_SEAL
    } else if mode & 0o111 != 0 {
        MFD_EXEC
    } else {
        0
    };
    let make = |flags: u32| {
        // SAFETY: name is a valid C string.
        unsafe { libc::memfd_create(name.as_ptr(), flags) }
    };
    let mut fd = make(base | exec);
    if fd < 0 && exec != 0 {
        // Kernels before 6.3 have neither flag (and no such sysctl); vm.memfd_noexec=2 refuses MFD_EXEC.
        let e = std::io::Error::last_os_error();
        fd = make(base);
        if fd >= 0 && exec == MFD_EXEC && e.raw_os_error() == Some(libc::EACCES) {
            crate::say!("ckpt-restart: warning: memfd {} cannot be made executable here (vm.memfd_noexec forbids it)", lossy(path));
        }
    }
    if fd < 0 {
        return Err(Error::last(format!("cannot recreate memfd {}", lossy(path))));
    }
    Ok(fd)
}

/// Restore, once every fd is open: seal the new memfd `fd` as the old one was.
pub fn seal(fd: RawFd, path: &[u8], seals: u32) {
    let have = self::seals(fd);
    let want = seals & !have;
    if want != 0 && sys::fcntl(fd, F_ADD_SEALS, i64::from(want)).is_err() {
        info(&format!("memfd {} does not get its seals {seals:#x} back: {}", lossy(path), std::io::Error::last_os_error()));
    }
}
