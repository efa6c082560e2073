//! Whose files ckpt may trust. Restarting an image runs its code as the user who restarts it, so
//! an image is used only if the file is the user's: a regular file (opened without following a
//! symbolic link), owned by the user, not writable by group or others, and taken by the user
//! (`Origin::uid`). An image directory is used only if nobody else can replace what is in it:
//! owned by the user or root, and not writable by group or others unless sticky (like /tmp,
//! where only one's own files are trusted). Shared by ckpt-run, ckpt-restart and the runtime
//! (which calls only the allocation-free `dir_problem`).

use crate::{ImageError, Reader, Result};
use std::fs::File;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Why an image directory is not the user's alone (None: it is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirProblem {
    /// Owned by another user (not root).
    Owner(u32),
    /// Writable by group or others (mode bits given) without the sticky bit.
    Writable(u32),
}

/// Whether a directory with owner `uid` and mode `mode` may hold the images of user `euid`.
pub fn dir_problem(uid: u32, mode: u32, euid: u32) -> Option<DirProblem> {
    if uid != euid && uid != 0 {
        return Some(DirProblem::Owner(uid));
    }
    if mode & 0o022 != 0 && mode & libc::S_ISVTX == 0 {
        return Some(DirProblem::Writable(mode & 0o7777));
    }
    None
}

impl std::fmt::Display for DirProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            DirProblem::Owner(uid) => write!(f, "belongs to {}, not to you", user(uid)),
            DirProblem::Writable(mode) => write!(f, "is writable by {} (mode {mode:o}) without the sticky bit", if mode & 0o002 != 0 { "everyone" } else { "its group" }),
        }
    }
}

/// Whether an image name (`--name`, CKPT_NAME) is one file name: not empty, not `.` or `..`,
/// without `/` or NUL, so that its images and socket stay inside the image directory.
pub fn is_file_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
}

/// "uid 1001 (alice)", or "uid 1001" when the name is unknown.
pub fn user(uid: u32) -> String {
    let mut pw: libc::passwd = unsafe_zeroed();
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; buf outlives the use of pw's strings.
    let r = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut out) };
    if r == 0 && !out.is_null() && !pw.pw_name.is_null() {
        // SAFETY: getpwuid_r filled pw_name with a NUL-terminated string inside buf.
        let name = unsafe { std::ffi::CStr::from_ptr(pw.pw_name) }.to_string_lossy().into_owned();
        return format!("uid {uid} ({name})");
    }
    format!("uid {uid}")
}

fn unsafe_zeroed() -> libc::passwd {
    // SAFETY: an all-zero passwd (null pointers, zero ids) is a valid out-parameter.
    unsafe { std::mem::zeroed() }
}

/// This process's effective uid.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

fn untrusted(path: &Path, why: String) -> ImageError {
    ImageError::Untrusted(format!("{}: {why}", path.display()))
}

/// Open an image for a restart if the file is the user's: not a symbolic link (O_NOFOLLOW), a
/// regular file (O_NONBLOCK: a FIFO planted at the name does not block), owned by `euid` and
/// not writable by group or others.
pub fn open_owned(path: &Path, euid: u32) -> Result<File> {
    // Not even opened when it is something else than a regular file (a FIFO would block, a
    // device could act); the open file is checked again below.
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if !m.is_file() && !m.file_type().is_symlink() {
            return Err(untrusted(path, crate::reader::not_regular(&m).to_string()));
        }
    }
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path).map_err(|e| {
        if e.raw_os_error() == Some(libc::ELOOP) {
            untrusted(path, "is a symbolic link; an image is restarted only from the file itself".into())
        } else {
            ImageError::Io(e)
        }
    })?;
    let m = file.metadata()?;
    if !m.is_file() {
        return Err(untrusted(path, crate::reader::not_regular(&m).to_string()));
    }
    if m.uid() != euid {
        return Err(untrusted(path, format!("belongs to {}, not to you: restarting it would run its code as you", user(m.uid()))));
    }
    if m.mode() & 0o022 != 0 {
        return Err(untrusted(path, format!("is writable by group or others (mode {:o}): anyone could have changed its code", m.mode() & 0o7777)));
    }
    Ok(file)
}

/// Check that an image read from `path` was taken by `euid`.
pub fn check_taker(path: &Path, r: &Reader, euid: u32) -> Result<()> {
    let uid = r.index.meta.origin.uid;
    if uid != euid {
        return Err(untrusted(path, format!("was taken by {}, not by you: restarting it would run its code as you", user(uid))));
    }
    Ok(())
}

/// `open_owned`, then read the image and `check_taker`.
pub fn read_owned(path: &Path, euid: u32) -> Result<Reader> {
    read_taken_by(path, euid, euid)
}

/// `open_owned` by `euid`, then read the image and check it was taken by `taker` (root
/// restarting a process of its tree that ran as another user: that user, whom the set's
/// manifest names).
pub fn read_taken_by(path: &Path, euid: u32, taker: u32) -> Result<Reader> {
    let r = Reader::from_file(open_owned(path, euid)?)?;
    check_taker(path, &r, taker)?;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in [&b"app"[..], b"app.0", b"..a", b"a b"] {
            assert!(is_file_name(ok), "{ok:?}");
        }
        for bad in [&b""[..], b".", b"..", b"../x", b"a/b", b"/", b"x/"] {
            assert!(!is_file_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn directories() {
        assert_eq!(dir_problem(1000, 0o40700, 1000), None);
        assert_eq!(dir_problem(0, 0o41777, 1000), None, "/tmp");
        assert_eq!(dir_problem(0, 0o40755, 1000), None);
        assert_eq!(dir_problem(1001, 0o40700, 1000), Some(DirProblem::Owner(1001)));
        assert_eq!(dir_problem(1000, 0o40777, 1000), Some(DirProblem::Writable(0o777)));
        assert_eq!(dir_problem(1000, 0o42770, 1000), Some(DirProblem::Writable(0o2770)));
        assert_eq!(dir_problem(1000, 0o43770, 1000), None, "sticky");
    }
}
