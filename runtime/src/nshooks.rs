//! Namespaces the program enters itself, through libc's unshare and setns (and syscall()).
//!
//! - Calls that need a single-threaded process (unshare(CLONE_NEWUSER) and of CLONE_THREAD,
//!   CLONE_SIGHAND or CLONE_VM; setns to a user or a time namespace) fail under ckpt-run, whose
//!   checkpoint thread is a second thread (EINVAL, EUSERS). When the program has no other
//!   thread, the checkpoint thread leaves for the call and comes back (`leave`): the call is
//!   made again, as natively. A program with threads of its own gets the kernel's error, which
//!   it would get natively too, and one line says why.
//! - A thread that entered a namespace other than the runtime's (its own mounts, network, IPC
//!   objects, host name, user) would come back in ckpt's: once such a call has succeeded, every
//!   checkpoint compares the stopped threads' namespaces with those the runtime started in and
//!   is refused in one line naming the thread and the namespace when one differs (`refusal`).

use crate::hooks::RealFn;
use crate::leave::{self, KINDS};
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

pub fn resolve() {
    REAL_UNSHARE.get();
    REAL_SETNS.get();
}

fn errno() -> i32 {
    // SAFETY: glibc's thread-local errno.
    unsafe { *libc::__errno_location() }
}

/// What `call` (libc's or a raw system call: result, errno) failed with for being made in a
/// process of several threads: when the program has no thread but this one, the checkpoint
/// thread leaves and the call is made again; else one line says why (the kernel would refuse
/// it natively too). Returns the final result and errno.
fn single_threaded_only(what: &str, first: (i64, i32), call: impl Fn() -> (i64, i32)) -> (i64, i32) {
    if !crate::is_active() {
        return first;
    }
    if let Some(r) = leave::without_checkpoint_thread(call) {
        if r.0 != 0 && r.1 == first.1 && sys::gettid() != sys::getpid() {
            log!(ERROR, "{what} failed ({}): the kernel allows it only in a single-threaded process whose first thread is alive, and since the restart (without exact ids: no user namespaces) the program's main thread is not the process's first thread", crate::checkpoint::strerror(r.1));
        }
        return r;
    }
    if crate::CKPT_THREAD.tid.load(Ordering::Acquire) != sys::gettid() {
        log!(ERROR, "{what} failed ({}): the kernel allows it only in a single-threaded process, and the program has threads of its own (it would fail without ckpt too)", crate::checkpoint::strerror(first.1));
    }
    first
}

/// Whether unshare(`flags`) failing with `e` may be for the threads of the process.
fn unshare_needs_one_thread(flags: c_int, e: i32) -> bool {
    e == libc::EINVAL && flags & (libc::CLONE_NEWUSER | libc::CLONE_THREAD | libc::CLONE_SIGHAND | libc::CLONE_VM) != 0
}

/// Whether setns(fd, `nstype`) failing with `e` may be for the threads of the process.
fn setns_needs_one_thread(fd: c_int, nstype: c_int, e: i32) -> Option<&'static str> {
    let kind = if nstype != 0 { nstype } else { sys::syscall!(libc::SYS_ioctl, fd, NS_GET_NSTYPE).unwrap_or(0) as c_int };
    match e {
        libc::EUSERS if kind & CLONE_NEWTIME != 0 => Some("setns to a time namespace"),
        libc::EINVAL if kind & libc::CLONE_NEWUSER != 0 => Some("setns to a user namespace"),
        _ => None,
    }
}

/// The outcome of a call of the program's: note a success, set errno on a failure.
fn outcome((r, e): (i64, i32)) -> i64 {
    if r == 0 {
        ENTERED.store(true, Ordering::Release);
    } else {
        sys::set_errno(e);
    }
    r
}

/// # Safety
/// libc's contract for unshare.
#[no_mangle]
pub unsafe extern "C" fn unshare(flags: c_int) -> c_int {
    // SAFETY: forwarding to libc's unshare.
    let call = || (unsafe { std::mem::transmute::<usize, UnshareFn>(REAL_UNSHARE.get())(flags) } as i64, errno());
    let first = call();
    let r = if first.0 != 0 && unshare_needs_one_thread(flags, first.1) { single_threaded_only("unshare", first, call) } else { first };
    outcome(r) as c_int
}

/// # Safety
/// libc's contract for setns.
#[no_mangle]
pub unsafe extern "C" fn setns(fd: c_int, nstype: c_int) -> c_int {
    // SAFETY: forwarding to libc's setns.
    let call = || (unsafe { std::mem::transmute::<usize, SetnsFn>(REAL_SETNS.get())(fd, nstype) } as i64, errno());
    let first = call();
    let r = match (first.0, setns_needs_one_thread(fd, nstype, first.1)) {
        (0, _) | (_, None) => first,
        (_, Some(what)) => single_threaded_only(what, first, call),
    };
    outcome(r) as c_int
}

/// syscall(SYS_unshare or SYS_setns, ...) through libc's syscall(): as the hooks above, with
/// `real` making the call (-1 and errno on failure). None for any other call.
pub fn raw_call(n: i64, a: i64, b: i64, real: impl Fn() -> i64) -> Option<i64> {
    if n != libc::SYS_unshare && n != libc::SYS_setns {
        return None;
    }
    let call = || {
        let r = real();
        (r, if r < 0 { errno() } else { 0 })
    };
    let first = call();
    let r = match first.0 {
        0 => first,
        _ if n == libc::SYS_unshare && unshare_needs_one_thread(a as c_int, first.1) => single_threaded_only("unshare", first, call),
        _ => match (n == libc::SYS_setns).then(|| setns_needs_one_thread(a as c_int, b as c_int, first.1)).flatten() {
            Some(what) => single_threaded_only(what, first, call),
            None => first,
        },
    };
    Some(outcome(r))
}

/// Why a checkpoint cannot be taken (threads stopped, on the checkpoint thread): a stopped
/// thread in a namespace other than ours; None when every thread shares ours, or the program
/// never entered one.
pub fn refusal(tids: &[i32]) -> Option<String> {
    if !ENTERED.load(Ordering::Acquire) {
        return None;
    }
    for (i, kind) in KINDS.iter().enumerate() {
        let ours = leave::base(i);
        if ours == 0 {
            continue;
        }
        for &tid in tids {
            let theirs = sys::readlink(&sys::cpath(&[b"/proc/self/task/", &sys::decimal(tid), b"/ns/", kind])).unwrap_or_default();
            // The leader's namespace for children, recorded in its image (timens.rs).
            let kept = *kind == b"time_for_children" && tid == sys::getpid() && crate::timens::captured();
            if !theirs.is_empty() && leave::ns_inode(&theirs) != ours && !kept {
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
