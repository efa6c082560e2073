//! Hooks for what /proc cannot tell about fds: the path each inotify watch and fanotify mark
//! was added with (fdinfo shows only the watched inode, mount id or device), and the working
//! directory a UNIX socket was bound in when its name is relative (the kernel keeps the name as
//! given). Recorded by inode (mount id, device) and looked up at checkpoint time. `bind` also
//! sends a restarted step task's bind to its old node's address to its new one (stepaddrs).

use crate::gate;
use crate::hooks::RealFn;
use crate::sys::{self, syscall};
use std::ffi::{c_char, c_int, CStr};
use crate::forklock::Mutex;

static REAL_INOTIFY_ADD_WATCH: RealFn = RealFn::new(b"inotify_add_watch\0");
static REAL_BIND: RealFn = RealFn::new(b"bind\0");
static REAL_FANOTIFY_MARK: RealFn = RealFn::new(b"fanotify_mark\0");

type AddWatchFn = unsafe extern "C" fn(c_int, *const c_char, u32) -> c_int;
type BindFn = unsafe extern "C" fn(c_int, *const libc::sockaddr, libc::socklen_t) -> c_int;
type MarkFn = unsafe extern "C" fn(c_int, u32, u64, c_int, *const c_char) -> c_int;

/// A watched path: (inode, kernel-encoded device, absolute path, added with IN_DONT_FOLLOW).
type Watched = (u64, u64, Vec<u8>, bool);

pub(crate) static WATCHED: Mutex<Vec<Watched>> = Mutex::new(Vec::new());
/// (socket inode, working directory at bind time) of UNIX sockets bound to a relative name.
pub(crate) static BOUND_IN: Mutex<Vec<(u64, Vec<u8>)>> = Mutex::new(Vec::new());
/// The objects of fanotify mount and filesystem marks: (FAN_MARK_MOUNT and the mount id, or
/// FAN_MARK_FILESYSTEM and the kernel-encoded device, absolute path). Inode marks go to WATCHED.
pub(crate) static MARKED: Mutex<Vec<(u32, u64, Vec<u8>)>> = Mutex::new(Vec::new());

pub fn resolve() {
    REAL_INOTIFY_ADD_WATCH.get();
    REAL_BIND.get();
    REAL_FANOTIFY_MARK.get();
}

/// The kernel's internal dev_t encoding (as fdinfo prints it) of a user-space st_dev.
fn kernel_dev(dev: u64) -> u64 {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major << 20) | minor
}

fn cwd() -> Vec<u8> {
    let mut cwd = vec![0u8; 4096];
    match syscall!(libc::SYS_getcwd, cwd.as_mut_ptr(), cwd.len()) {
        Ok(n) => {
            cwd.truncate((n as usize).saturating_sub(1));
            cwd
        }
        Err(_) => Vec::new(),
    }
}

fn stat(path: &[u8], follow: bool) -> Option<libc::stat> {
    // SAFETY: an all-zero struct stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let c = sys::cpath(&[path]);
    let flags = if follow { 0 } else { libc::AT_SYMLINK_NOFOLLOW };
    syscall!(libc::SYS_newfstatat, libc::AT_FDCWD, c.as_ptr(), &mut st as *mut libc::stat, flags).ok()?;
    Some(st)
}

/// # Safety
/// libc's contract for inotify_add_watch.
#[no_mangle]
pub unsafe extern "C" fn inotify_add_watch(fd: c_int, path: *const c_char, mask: u32) -> c_int {
    // SAFETY: forwarding to libc's inotify_add_watch.
    let wd = unsafe { std::mem::transmute::<usize, AddWatchFn>(REAL_INOTIFY_ADD_WATCH.get())(fd, path, mask) };
    if wd < 0 || !crate::is_active() || path.is_null() {
        return wd;
    }
    crate::inotifywd::added(fd, wd);
    // SAFETY: path is the caller's C string.
    let p = unsafe { CStr::from_ptr(path) }.to_bytes();
    let mut abs = Vec::new();
    if !p.starts_with(b"/") {
        abs = cwd();
        abs.push(b'/');
    }
    abs.extend_from_slice(p);
    let dont_follow = mask & libc::IN_DONT_FOLLOW != 0;
    let Some(st) = stat(&abs, !dont_follow) else { return wd };
    watched(&st, abs, dont_follow);
    wd
}

/// Note that inode `st` was watched or marked through `abs`.
fn watched(st: &libc::stat, abs: Vec<u8>, dont_follow: bool) {
    let _g = gate::enter();
    let mut w = WATCHED.lock().unwrap_or_else(|e| e.into_inner());
    let key = (st.st_ino, kernel_dev(st.st_dev));
    w.retain(|e| (e.0, e.1) != key);
    w.push((key.0, key.1, abs, dont_follow));
}

/// # Safety
/// libc's contract for fanotify_mark.
#[no_mangle]
pub unsafe extern "C" fn fanotify_mark(fd: c_int, flags: u32, mask: u64, dirfd: c_int, path: *const c_char) -> c_int {
    // SAFETY: forwarding to libc's fanotify_mark.
    let r = unsafe { std::mem::transmute::<usize, MarkFn>(REAL_FANOTIFY_MARK.get())(fd, flags, mask, dirfd, path) };
    if r == 0 {
        // SAFETY: the caller's arguments, which the kernel just accepted.
        unsafe { fanotify_marked(flags, dirfd, path) };
    }
    r
}

/// The absolute path `dirfd` names (the working directory for AT_FDCWD).
fn dir_path(dirfd: c_int) -> Option<Vec<u8>> {
    if dirfd == libc::AT_FDCWD {
        return Some(cwd());
    }
    sys::readlink(&sys::cpath(&[b"/proc/thread-self/fd/", &sys::decimal(dirfd)])).ok().filter(|p| p.starts_with(b"/"))
}

/// A successful fanotify_mark(2) (libc's, or a raw one through `syscall()`): note where the
/// object of an added mark is, as the kernel resolved it (relative to `dirfd`; `path` null: the
/// file `dirfd` holds).
///
/// # Safety
/// `path` is null or a C string.
pub unsafe fn fanotify_marked(flags: u32, dirfd: c_int, path: *const c_char) {
    if !crate::is_active() || flags & libc::FAN_MARK_ADD == 0 {
        return;
    }
    let dont_follow = flags & libc::FAN_MARK_DONT_FOLLOW != 0;
    let (abs, st) = if path.is_null() {
        // The file dirfd holds (its name may be gone: the checkpoint finds it among the fds).
        let Some(abs) = dir_path(dirfd) else { return };
        let Ok(st) = sys::fstat(dirfd) else { return };
        (abs, st)
    } else {
        // SAFETY: path is the caller's C string.
        let p = unsafe { CStr::from_ptr(path) }.to_bytes();
        let mut abs = Vec::new();
        if !p.starts_with(b"/") {
            let Some(base) = dir_path(dirfd) else { return };
            abs = base;
            abs.push(b'/');
        }
        abs.extend_from_slice(p);
        let Some(st) = stat(&abs, !dont_follow) else { return };
        (abs, st)
    };
    let key = match flags & (libc::FAN_MARK_MOUNT | libc::FAN_MARK_FILESYSTEM) {
        libc::FAN_MARK_INODE => return watched(&st, abs, dont_follow),
        libc::FAN_MARK_MOUNT => match mount_id(&abs, !dont_follow) {
            Some(id) => id,
            None => return,
        },
        libc::FAN_MARK_FILESYSTEM => kernel_dev(st.st_dev),
        _ => return, // a mount namespace mark: not restored (the restart says so)
    };
    let kind = flags & (libc::FAN_MARK_MOUNT | libc::FAN_MARK_FILESYSTEM);
    let _g = gate::enter();
    let mut m = MARKED.lock().unwrap_or_else(|e| e.into_inner());
    m.retain(|e| (e.0, e.1) != (kind, key));
    m.push((kind, key, abs));
}

/// The id of the mount `path` is on (statx).
fn mount_id(path: &[u8], follow: bool) -> Option<u64> {
    // SAFETY: an all-zero struct statx is a valid out-parameter.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    let c = sys::cpath(&[path]);
    let flags = if follow { 0 } else { libc::AT_SYMLINK_NOFOLLOW };
    syscall!(libc::SYS_statx, libc::AT_FDCWD, c.as_ptr(), flags, libc::STATX_MNT_ID, &mut stx as *mut libc::statx).ok()?;
    (stx.stx_mask & libc::STATX_MNT_ID != 0).then_some(stx.stx_mnt_id)
}

/// # Safety
/// libc's contract for bind.
#[no_mangle]
pub unsafe extern "C" fn bind(fd: c_int, addr: *const libc::sockaddr, len: libc::socklen_t) -> c_int {
    // A restarted step task on another node: its old node's address is its new one's here.
    if let Some(to) = crate::stepaddrs::bind_addr(addr, len) {
        // SAFETY: libc's bind with a sockaddr of its length.
        return unsafe { std::mem::transmute::<usize, BindFn>(REAL_BIND.get())(fd, to.as_ptr().cast(), to.len() as libc::socklen_t) };
    }
    // SAFETY: forwarding to libc's bind.
    let r = unsafe { std::mem::transmute::<usize, BindFn>(REAL_BIND.get())(fd, addr, len) };
    if r < 0 || !crate::is_active() || addr.is_null() || (len as usize) < 3 {
        return r;
    }
    // SAFETY: addr holds at least len bytes (the caller's sockaddr).
    let bytes = unsafe { std::slice::from_raw_parts(addr as *const u8, len as usize) };
    let relative = u16::from_ne_bytes([bytes[0], bytes[1]]) == libc::AF_UNIX as u16 && bytes[2] != 0 && bytes[2] != b'/';
    if !relative {
        return r;
    }
    let Ok(st) = sys::fstat(fd) else { return r };
    let dir = cwd();
    let _g = gate::enter();
    let mut b = BOUND_IN.lock().unwrap_or_else(|e| e.into_inner());
    b.retain(|e| e.0 != st.st_ino);
    b.push((st.st_ino, dir));
    r
}

/// The working directory the UNIX socket `ino` was bound in, for a relative name.
/// Checkpoint thread, world stopped: no hook holds the lock (hooks take it only inside the gate).
pub fn bind_dir(ino: u64) -> Option<Vec<u8>> {
    let b = BOUND_IN.lock().unwrap_or_else(|e| e.into_inner());
    b.iter().find(|e| e.0 == ino).map(|e| e.1.clone())
}

/// Every inode this process's runtime saw being watched whose recorded path still names it
/// (one stat each; `Index::watched`, for another process of the tree holding an inotify
/// instance in flight with a watch on it). Checkpoint thread, world stopped.
pub fn watched_paths() -> Vec<ckpt_image::WatchedPath> {
    let w = WATCHED.lock().unwrap_or_else(|e| e.into_inner());
    let all: Vec<Watched> = w.clone();
    drop(w);
    all.into_iter()
        .filter(|(ino, kdev, path, dont_follow)| stat(path, !dont_follow).is_some_and(|st| st.st_ino == *ino && kernel_dev(st.st_dev) == *kdev))
        .map(|(ino, sdev, path, dont_follow)| ckpt_image::WatchedPath { ino, sdev, path, dont_follow })
        .collect()
}

/// The path of a watched inode and whether the watch is on a symbolic link itself; when the
/// file is no longer at the path it was added with, where it is now (a directory entry next to
/// the old one, or a file the program has open), or the old path with `gone` set. Checkpoint
/// thread, world stopped (see `bind_dir`).
pub fn watch_path(ino: u64, kdev: u64) -> (Vec<u8>, bool, bool) {
    let w = WATCHED.lock().unwrap_or_else(|e| e.into_inner());
    let Some((_, _, path, dont_follow)) = w.iter().find(|e| e.0 == ino && e.1 == kdev).cloned() else { return (Vec::new(), false, false) };
    drop(w);
    let same = |p: &[u8]| stat(p, !dont_follow).is_some_and(|st| st.st_ino == ino && kernel_dev(st.st_dev) == kdev);
    if same(&path) {
        return (path, dont_follow, false);
    }
    // Renamed within its directory.
    if let Some(i) = path.iter().rposition(|&b| b == b'/') {
        let dir = if i == 0 { b"/".to_vec() } else { path[..i].to_vec() };
        if let Ok(names) = sys::list_dir(&sys::cpath(&[&dir])) {
            for n in names {
                let p = [&dir[..], if dir == b"/" { b"" } else { b"/" }, &n[..]].concat();
                if same(&p) {
                    return (p, dont_follow, false);
                }
            }
        }
    }
    // Open by the program: by its name, else (removed since) as the program's fd of it,
    // `/proc/self/fd/N`, which the restart adds the watch through once that fd is restored.
    if let Ok(fds) = sys::list_dir(&sys::cpath(&[b"/proc/thread-self/fd"])) {
        let mut held = None;
        for n in fds {
            if let Ok(l) = sys::readlink(&sys::cpath(&[b"/proc/thread-self/fd/", &n])) {
                if l.starts_with(b"/") && !l.ends_with(b" (deleted)") && same(&l) {
                    return (l, dont_follow, false);
                }
                let fd = sys::cpath(&[b"/proc/self/fd/", &n]);
                if held.is_none() && l.starts_with(b"/") && stat(fd.as_bytes(), true).is_some_and(|st| st.st_ino == ino && kernel_dev(st.st_dev) == kdev) {
                    held = Some(fd.into_bytes());
                }
            }
        }
        if let Some(p) = held {
            return (p, false, false);
        }
    }
    (path, dont_follow, true)
}

/// The path of the object of a fanotify mount mark (`FAN_MARK_MOUNT`, mount id `key`) or
/// filesystem mark (`FAN_MARK_FILESYSTEM`, kernel device `key`), and whether it is gone (the
/// path is no longer on that mount or filesystem). Empty: not seen being marked. Checkpoint
/// thread, world stopped (see `bind_dir`).
pub fn marked_path(kind: u32, key: u64) -> (Vec<u8>, bool) {
    let m = MARKED.lock().unwrap_or_else(|e| e.into_inner());
    let Some(path) = m.iter().find(|e| (e.0, e.1) == (kind, key)).map(|e| e.2.clone()) else { return (Vec::new(), false) };
    drop(m);
    let same = if kind == libc::FAN_MARK_MOUNT { mount_id(&path, true) == Some(key) } else { stat(&path, true).is_some_and(|st| kernel_dev(st.st_dev) == key) };
    (path, !same)
}
