//! Hooks for what /proc cannot tell about fds: the path each inotify watch was added with
//! (fdinfo shows only the watched inode). Recorded by (inode, device) and looked up at
//! checkpoint time.

use crate::gate;
use crate::hooks::RealFn;
use crate::sys::{self, syscall};
use std::ffi::{c_char, c_int, CStr};
use std::sync::Mutex;

static REAL_INOTIFY_ADD_WATCH: RealFn = RealFn::new(b"inotify_add_watch\0");

type AddWatchFn = unsafe extern "C" fn(c_int, *const c_char, u32) -> c_int;

/// (inode, kernel-encoded device, absolute path) of every path a watch was added for.
static WATCHED: Mutex<Vec<(u64, u64, Vec<u8>)>> = Mutex::new(Vec::new());

pub fn resolve() {
    REAL_INOTIFY_ADD_WATCH.get();
}

/// The kernel's internal dev_t encoding (as fdinfo prints it) of a user-space st_dev.
fn kernel_dev(dev: u64) -> u64 {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major << 20) | minor
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
    // SAFETY: path is the caller's C string.
    let p = unsafe { CStr::from_ptr(path) }.to_bytes();
    let mut abs = Vec::new();
    if !p.starts_with(b"/") {
        let mut cwd = vec![0u8; 4096];
        if let Ok(n) = syscall!(libc::SYS_getcwd, cwd.as_mut_ptr(), cwd.len()) {
            abs.extend_from_slice(&cwd[..(n as usize).saturating_sub(1)]);
            abs.push(b'/');
        }
    }
    abs.extend_from_slice(p);
    // SAFETY: an all-zero struct stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let c = sys::cpath(&[&abs]);
    if syscall!(libc::SYS_newfstatat, libc::AT_FDCWD, c.as_ptr(), &mut st as *mut libc::stat, 0).is_err() {
        return wd;
    }
    let _g = gate::enter();
    let mut w = WATCHED.lock().unwrap_or_else(|e| e.into_inner());
    let key = (st.st_ino, kernel_dev(st.st_dev));
    w.retain(|e| (e.0, e.1) != key);
    w.push((key.0, key.1, abs));
    wd
}

/// The path recorded for a watched inode (empty if unknown). Checkpoint thread, world stopped:
/// no hook holds the lock (hooks take it only inside the gate).
pub fn watch_path(ino: u64, kdev: u64) -> Vec<u8> {
    let w = WATCHED.lock().unwrap_or_else(|e| e.into_inner());
    w.iter().find(|e| e.0 == ino && e.1 == kdev).map(|e| e.2.clone()).unwrap_or_default()
}
