//! Namespaces the program enters itself, through libc's unshare and setns.
//!
//! - Calls that need a single-threaded process (unshare(CLONE_NEWUSER); setns to a user or a
//!   time namespace) fail under ckpt-run, whose checkpoint thread is a second thread (EINVAL,
//!   EUSERS): the program gets the kernel's error as before, and one line says why.
//! - A thread that entered a namespace other than the runtime's (its own mounts, network, IPC
//!   objects, host name) would come back in ckpt's: once such a call has succeeded, every
//!   checkpoint compares the stopped threads' namespaces with the checkpoint thread's and is
//!   refused in one line naming the thread and the namespace when one differs (`refusal`).

use crate::hooks::RealFn;
use crate::log::{log, ERROR};
use crate::sys;
use std::ffi::c_int;
use std::sync::atomic::{AtomicBool, Ordering};

static REAL_UNSHARE: RealFn = RealFn::new(b"unshare\0");
static REAL_SETNS: RealFn = RealFn::new(b"setns\0");
/// Set once an unshare or setns of the program's has succeeded.
static ENTERED: AtomicBool = AtomicBool::new(false);

type UnshareFn = unsafe extern "C" fn(c_int) -> c_int;
type SetnsFn = unsafe extern "C" fn(c_int, c_int) -> c_int;

/// ioctl(NS_GET_NSTYPE) on a namespace fd: its CLONE_NEW* type.
const NS_GET_NSTYPE: u64 = 0xb703;
const CLONE_NEWTIME: c_int = 0x80;

/// Namespaces a thread may enter, as /proc/PID/task/TID/ns names them.
const KINDS: [&[u8]; 9] = [b"mnt", b"net", b"ipc", b"uts", b"user", b"cgroup", b"time", b"time_for_children", b"pid_for_children"];

pub fn resolve() {
    REAL_UNSHARE.get();
    REAL_SETNS.get();
}

fn errno() -> i32 {
    // SAFETY: glibc's thread-local errno.
    unsafe { *libc::__errno_location() }
}

/// Whether the program has only the one thread besides the checkpoint thread (so that the call
/// would have worked without ckpt).
fn alone_but_us() -> bool {
    let status = sys::read_file(&sys::cpath(&[b"/proc/thread-self/status"])).unwrap_or_default();
    let threads = status.split(|&b| b == b'\n').find_map(|l| l.strip_prefix(b"Threads:")).map(|v| String::from_utf8_lossy(v).trim().to_string());
    threads.as_deref() == Some("2")
}

fn single_threaded_only(call: &str, e: i32) {
    if crate::is_active() && alone_but_us() {
        log!(ERROR, "{call} failed ({}): the kernel allows it only in a single-threaded process, and under ckpt-run the runtime's checkpoint thread is a second thread (README, Known limits)", crate::checkpoint::strerror(e));
    }
}

/// # Safety
/// libc's contract for unshare.
#[no_mangle]
pub unsafe extern "C" fn unshare(flags: c_int) -> c_int {
    // SAFETY: forwarding to libc's unshare.
    let r = unsafe { std::mem::transmute::<usize, UnshareFn>(REAL_UNSHARE.get())(flags) };
    if r == 0 {
        ENTERED.store(true, Ordering::Release);
    } else if flags & libc::CLONE_NEWUSER != 0 && errno() == libc::EINVAL {
        let e = errno();
        single_threaded_only("unshare(CLONE_NEWUSER)", e);
        // The caller gets the kernel's errno back (the line may have changed it).
        sys::set_errno(e);
    }
    r
}

/// # Safety
/// libc's contract for setns.
#[no_mangle]
pub unsafe extern "C" fn setns(fd: c_int, nstype: c_int) -> c_int {
    // SAFETY: forwarding to libc's setns.
    let r = unsafe { std::mem::transmute::<usize, SetnsFn>(REAL_SETNS.get())(fd, nstype) };
    if r == 0 {
        ENTERED.store(true, Ordering::Release);
        return r;
    }
    let e = errno();
    let kind = if nstype != 0 { nstype } else { sys::syscall!(libc::SYS_ioctl, fd, NS_GET_NSTYPE).unwrap_or(0) as c_int };
    match (kind, e) {
        (CLONE_NEWTIME, libc::EUSERS) => single_threaded_only("setns to a time namespace", e),
        (libc::CLONE_NEWUSER, libc::EINVAL) => single_threaded_only("setns to a user namespace", e),
        _ => {}
    }
    sys::set_errno(e);
    r
}

/// Why a checkpoint cannot be taken (threads stopped, on the checkpoint thread): a stopped
/// thread in a namespace other than ours; None when every thread shares ours, or the program
/// never entered one.
pub fn refusal(tids: &[i32]) -> Option<String> {
    if !ENTERED.load(Ordering::Acquire) {
        return None;
    }
    for kind in KINDS {
        let ours = sys::readlink(&sys::cpath(&[b"/proc/thread-self/ns/", kind])).ok()?;
        for &tid in tids {
            let theirs = sys::readlink(&sys::cpath(&[b"/proc/self/task/", &sys::decimal(tid), b"/ns/", kind])).unwrap_or_default();
            // The leader's namespace for children, recorded in its image (timens.rs).
            let kept = kind == b"time_for_children" && tid == sys::getpid() && crate::timens::captured();
            if !theirs.is_empty() && theirs != ours && !kept {
                return Some(format!(
                    "thread {tid} entered a namespace of its own ({} {}; unshare or setns): it would come back in ckpt's, so no checkpoint is taken",
                    String::from_utf8_lossy(kind),
                    String::from_utf8_lossy(&theirs)
                ));
            }
        }
    }
    None
}
