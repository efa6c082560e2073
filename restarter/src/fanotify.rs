//! A fanotify group made again: fanotify_init with the flags and event flags it was made with
//! (fdinfo), then each mark added again on its object, found by the path the runtime saw it
//! being marked with (an inode mark: only if that path is still the same inode; a file removed
//! since and held by the program: through our fd of it as restored; else, with
//! CAP_DAC_READ_SEARCH, by the file handle fdinfo gave, opened on its filesystem's mount). A mark
//! whose object cannot be found, one of a kind this build does not know, and events left unread
//! in the group's queue (they cannot be queued again) refuse the restart in one line, or with
//! `--ignore-missing-files` are lost with a warning.

use crate::fdobjs::{check, cstr, held_fd, lost};
use anyhow::Result;
use ckpt_image::{FanotifyMark, MarkObject};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A new fanotify group of ours (close-on-exec) as the program's group at `fd_no` was; `held`:
/// our fd of the program's fd N (for a mark on a file removed since that the program holds).
pub fn group(flags: u32, event_flags: u32, marks: &[FanotifyMark], queued: u32, fd_no: i32, ignore: bool, held: &dyn Fn(i32) -> Option<RawFd>) -> Result<RawFd> {
    if queued > 0 {
        lost(fd_no, ignore, format!("{queued} bytes of fanotify events were queued unread; they cannot be queued again"))?;
    }
    // The flags exactly as they were (fdinfo shows them: FAN_CLOEXEC too); ours close-on-exec
    // after.
    // SAFETY: plain fanotify group creation.
    let fd = check(unsafe { libc::fanotify_init(flags, event_flags) }, || format!("fd {fd_no}: cannot make its fanotify group again (flags {flags:#x})"))?;
    // SAFETY: fd is ours.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    // fdinfo lists the newest mark first (the kernel puts each new mark at the head of the
    // group's list): added oldest first, the new group lists them in the same order.
    for m in marks.iter().rev() {
        if let Err(why) = add(fd, m, held) {
            if let Err(e) = lost(fd_no, ignore, format!("fanotify {} cannot be made again: {why}", m.what())) {
                // SAFETY: our fd, not handed out.
                unsafe { libc::close(fd) };
                return Err(e);
            }
        }
    }
    Ok(fd)
}

/// Add mark `m` to group `fd` again; Err: why not.
fn add(fd: RawFd, m: &FanotifyMark, held: &dyn Fn(i32) -> Option<RawFd>) -> Result<(), String> {
    let mut follow = !m.dont_follow;
    let mut by_handle = None;
    let (kind, path) = match &m.object {
        MarkObject::Unknown { .. } => return Err("ckpt does not know this kind of mark".into()),
        _ if m.path.is_empty() && !matches!(m.object, MarkObject::Inode { .. }) => return Err("it was not seen being added".into()),
        MarkObject::Inode { ino, handle_type, handle } => {
            let here = if m.path.is_empty() || m.gone {
                None
            } else if let Some(n) = held_fd(&m.path) {
                held(n).map(|ours| format!("/proc/self/fd/{ours}").into_bytes())
            } else {
                Some(m.path.clone()).filter(|p| inode(p, follow) == Some((*ino, m.sdev)))
            };
            let path = match here {
                Some(p) => p,
                None => {
                    let what = if m.path.is_empty() { "it was not seen being added".to_string() } else { format!("{} is no longer the file marked", lossy(&m.path)) };
                    let h = open_handle(m.sdev, *ino, *handle_type, handle).map_err(|e| format!("{what}, and its file handle cannot be opened ({e})"))?;
                    follow = true;
                    let p = format!("/proc/self/fd/{}", h.as_raw_fd()).into_bytes();
                    by_handle = Some(h);
                    p
                }
            };
            (libc::FAN_MARK_INODE, path)
        }
        MarkObject::Mount { .. } if m.gone => return Err(format!("{} is no longer on the mount marked", lossy(&m.path))),
        MarkObject::Mount { .. } => (libc::FAN_MARK_MOUNT, m.path.clone()),
        MarkObject::Filesystem => {
            if m.gone || device(&m.path, follow) != Some(m.sdev) {
                return Err(format!("{} is no longer on the filesystem marked", lossy(&m.path)));
            }
            (libc::FAN_MARK_FILESYSTEM, m.path.clone())
        }
    };
    let c = cstr(&path).map_err(|e| e.to_string())?;
    let base = libc::FAN_MARK_ADD | kind | (if follow { 0 } else { libc::FAN_MARK_DONT_FOLLOW }) | (m.mflags & libc::FAN_MARK_EVICTABLE);
    let ignore = if m.mflags & libc::FAN_MARK_IGNORE == libc::FAN_MARK_IGNORE { libc::FAN_MARK_IGNORE } else { libc::FAN_MARK_IGNORED_MASK };
    let calls = [(base, m.mask), (base | ignore | (m.mflags & libc::FAN_MARK_IGNORED_SURV_MODIFY), m.ignored_mask)];
    for (flags, mask) in calls.into_iter().filter(|c| c.1 != 0) {
        // SAFETY: c is a valid C string; fd is our group.
        if unsafe { libc::fanotify_mark(fd, flags, mask, libc::AT_FDCWD, c.as_ptr()) } < 0 {
            return Err(format!("fanotify_mark on {}: {}", lossy(&path), std::io::Error::last_os_error()));
        }
    }
    drop(by_handle);
    Ok(())
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn stat(path: &[u8], follow: bool) -> Option<libc::stat> {
    let c = CString::new(path).ok()?;
    // SAFETY: an all-zero struct stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let flags = if follow { 0 } else { libc::AT_SYMLINK_NOFOLLOW };
    // SAFETY: c is a valid C string, st a valid out-parameter.
    (unsafe { libc::fstatat(libc::AT_FDCWD, c.as_ptr(), &mut st, flags) } == 0).then_some(st)
}

/// The kernel's dev_t encoding (as fdinfo prints it) of a user-space st_dev.
fn kernel_dev(dev: u64) -> u64 {
    (u64::from(libc::major(dev)) << 20) | u64::from(libc::minor(dev))
}

/// (inode, kernel device) of `path`.
fn inode(path: &[u8], follow: bool) -> Option<(u64, u64)> {
    stat(path, follow).map(|st| (st.st_ino, kernel_dev(st.st_dev)))
}

fn device(path: &[u8], follow: bool) -> Option<u64> {
    stat(path, follow).map(|st| kernel_dev(st.st_dev))
}

/// Open (O_PATH) inode `ino` of the filesystem of kernel device `sdev` by its file handle, on
/// a mount of that filesystem (/proc/self/mountinfo); needs CAP_DAC_READ_SEARCH.
fn open_handle(sdev: u64, ino: u64, handle_type: i32, handle: &[u8]) -> std::io::Result<OwnedFd> {
    let err = |m: &str| std::io::Error::other(m.to_string());
    if handle.is_empty() {
        return Err(err("the filesystem gave none"));
    }
    let want = format!("{}:{}", sdev >> 20, sdev & 0xfffff);
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mount = info
        .lines()
        .map(|l| l.split(' ').collect::<Vec<_>>())
        .find(|f| f.len() > 4 && f[2] == want)
        .map(|f| unescape(f[4]))
        .ok_or_else(|| err("no mount of its filesystem here"))?;
    let dir = std::fs::File::open(&mount)?;
    // struct file_handle: handle_bytes (u32), handle_type (i32), the bytes.
    let mut fh = Vec::with_capacity(8 + handle.len());
    fh.extend_from_slice(&(handle.len() as u32).to_ne_bytes());
    fh.extend_from_slice(&handle_type.to_ne_bytes());
    fh.extend_from_slice(handle);
    // SAFETY: fh is a complete struct file_handle; dir is an open directory.
    let fd = unsafe { libc::open_by_handle_at(dir.as_raw_fd(), fh.as_mut_ptr().cast(), libc::O_PATH | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new fd of ours.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: an all-zero struct stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fd is ours, st a valid out-parameter.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 || st.st_ino != ino {
        return Err(err("it names another file"));
    }
    Ok(fd)
}

/// A mountinfo path field, with its octal escapes (`\040` for a space) undone.
fn unescape(s: &str) -> std::path::PathBuf {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') << 6 | (b[i + 2] - b'0') << 3 | (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    std::path::PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(out))
}
