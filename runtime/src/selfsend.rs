//! Hooks of the calls a program sends signals to its own threads with (raise, pthread_kill,
//! pthread_sigqueue): a trigger signal goes to the program through selfsig.rs (the target thread
//! blocks it for real); any other signal goes to libc. (kill, sigqueue and tgkill are in vids.rs,
//! which translates their ids.)

use crate::hooks::RealFn;
use crate::sys::syscall;
use crate::selfsig::{SI_QUEUE, SI_TKILL};
use crate::vids::errno_result;
use std::ffi::c_int;
use std::sync::atomic::{AtomicI32, Ordering};

pub fn init() {
    for f in [&REAL_PTHREAD_KILL, &REAL_PTHREAD_SIGQUEUE, &REAL_RAISE] {
        f.get();
    }
    measure_tid_offset();
}

/// Offset of glibc's tid field in its thread descriptor (pthread_t), measured on the main thread.
static TID_OFFSET: AtomicI32 = AtomicI32::new(-1);

fn measure_tid_offset() {
    let mut addr: u64 = 0;
    let _ = syscall!(libc::SYS_prctl, libc::PR_GET_TID_ADDRESS, &mut addr as *mut u64);
    // SAFETY: pthread_self has no preconditions.
    let me = unsafe { libc::pthread_self() } as u64;
    if addr > me && addr - me < 4096 {
        TID_OFFSET.store((addr - me) as i32, Ordering::Relaxed);
    }
}

/// The real tid of thread `th` of this process (0: it has exited; None: unknown layout).
fn tid_of(th: libc::pthread_t) -> Option<i32> {
    let off = TID_OFFSET.load(Ordering::Relaxed);
    // SAFETY: th is a live thread's descriptor (the caller's contract), tid at a fixed offset.
    (off > 0).then(|| unsafe { ((th as usize + off as usize) as *const i32).read_volatile() })
}

static REAL_PTHREAD_KILL: RealFn = RealFn::new(b"pthread_kill\0");
static REAL_PTHREAD_SIGQUEUE: RealFn = RealFn::new(b"pthread_sigqueue\0");
static REAL_RAISE: RealFn = RealFn::new(b"raise\0");

/// A trigger signal for thread `th` of ours: delivered by the runtime. Returns an error number.
fn to_own_thread(th: libc::pthread_t, sig: c_int, code: i32, value: u64) -> Option<c_int> {
    if sig <= 0 || crate::selfsig::triggers() & (1u64 << (sig - 1)) == 0 {
        return None;
    }
    let tid = tid_of(th)?;
    if tid <= 0 {
        return Some(libc::ESRCH);
    }
    Some(match crate::selfsig::send_own(Some(tid), sig, code, value) {
        Ok(()) => 0,
        Err(e) => e,
    })
}

/// # Safety
/// libc's contract for pthread_kill.
#[no_mangle]
pub unsafe extern "C" fn pthread_kill(th: libc::pthread_t, sig: c_int) -> c_int {
    if let Some(r) = to_own_thread(th, sig, SI_TKILL, 0) {
        return r;
    }
    // SAFETY: forwarding to libc.
    unsafe { std::mem::transmute::<usize, unsafe extern "C" fn(libc::pthread_t, c_int) -> c_int>(REAL_PTHREAD_KILL.get())(th, sig) }
}

/// # Safety
/// libc's contract for pthread_sigqueue.
#[no_mangle]
pub unsafe extern "C" fn pthread_sigqueue(th: libc::pthread_t, sig: c_int, v: libc::sigval) -> c_int {
    if let Some(r) = to_own_thread(th, sig, SI_QUEUE, v.sival_ptr as u64) {
        return r;
    }
    type F = unsafe extern "C" fn(libc::pthread_t, c_int, libc::sigval) -> c_int;
    // SAFETY: forwarding to libc.
    unsafe { std::mem::transmute::<usize, F>(REAL_PTHREAD_SIGQUEUE.get())(th, sig, v) }
}

/// # Safety
/// libc's contract for raise.
#[no_mangle]
pub unsafe extern "C" fn raise(sig: c_int) -> c_int {
    // SAFETY: pthread_self has no preconditions.
    if let Some(r) = to_own_thread(unsafe { libc::pthread_self() }, sig, SI_TKILL, 0) {
        return errno_result(if r == 0 { Ok(()) } else { Err(r) });
    }
    // SAFETY: forwarding to libc.
    unsafe { std::mem::transmute::<usize, unsafe extern "C" fn(c_int) -> c_int>(REAL_RAISE.get())(sig) }
}
