//! The program's view of its own ids across restarts ("virtual ids"). After a restart the
//! process has the restarter's pid and new thread ids; these hooks make getpid() and gettid()
//! return what they returned before the first checkpoint, and translate those ids back to the
//! real ones in kill, tgkill and sigqueue, so a program that kept its pid or a tid can still
//! signal itself. pthread_kill and raise need nothing: glibc's thread descriptor holds the real
//! tid (the restart path updates it). Before any restart every id is real and nothing changes.
//! A trigger signal (checkpoint, stop) sent to the program's own pid or threads is handed to
//! selfsig.rs, which delivers it to the program instead of starting a checkpoint.
//!
//! This is the fallback. Where ckpt-run and ckpt-restart run the program in a user+pid
//! namespace of their own (ckpt-ns), a restart gives it its exact ids back (ids.rs): the real ids
//! are the recorded ones again and nothing here translates anything. Virtual ids remain for
//! restarts without a namespace (--no-namespace, or where user namespaces are unavailable); they
//! cannot help with ids the program stored elsewhere (glibc's mutex owners). See
//! docs/namespaces.md.

use crate::hooks::RealFn;
use crate::sys::{self, syscall};
use crate::threads::Slot;
use std::ffi::c_int;
use std::sync::atomic::{AtomicI32, Ordering};

const MAX: usize = 4096;
/// The pid the program saw first (the ckpt-run pid), kept across restarts in memory.
static ORIG_PID: AtomicI32 = AtomicI32::new(0);
/// The real pid since the last restart (0 before any restart).
static REAL_PID: AtomicI32 = AtomicI32::new(0);
/// (virtual, real) thread ids of the threads that existed at the last restart.
static TIDS: [(AtomicI32, AtomicI32); MAX] = [const { (AtomicI32::new(0), AtomicI32::new(0)) }; MAX];

static REAL_KILL: RealFn = RealFn::new(b"kill\0");
static REAL_SIGQUEUE: RealFn = RealFn::new(b"sigqueue\0");

/// In a child forked by a member of the process tree (exact ids): its own pid is its real one.
pub fn forked_member() {
    ORIG_PID.store(sys::getpid(), Ordering::Relaxed);
    REAL_PID.store(0, Ordering::Relaxed);
}

pub fn init() {
    ORIG_PID.store(sys::getpid(), Ordering::Relaxed);
    REAL_KILL.get();
    REAL_SIGQUEUE.get();
}

/// The real pid of the managed process: the one ckpt-run started, or since a restart the
/// restarter's (a child the program forked or vforked has another).
pub fn real_pid() -> i32 {
    match REAL_PID.load(Ordering::Relaxed) {
        0 => ORIG_PID.load(Ordering::Relaxed),
        p => p,
    }
}

/// Whether ids are virtual here: a restarted process, not a child it forked.
fn translating() -> Option<(i32, i32)> {
    let real = REAL_PID.load(Ordering::Relaxed);
    if real == 0 || !crate::is_active() || sys::getpid() != real {
        return None;
    }
    Some((ORIG_PID.load(Ordering::Relaxed), real))
}

/// Whether getpid()/gettid() are being translated now.
pub fn translating_now() -> bool {
    translating().is_some()
}

fn virt_of(real: i32) -> i32 {
    TIDS.iter().take_while(|t| t.1.load(Ordering::Relaxed) != 0).find(|t| t.1.load(Ordering::Relaxed) == real).map_or(real, |t| t.0.load(Ordering::Relaxed))
}

fn real_of(virt: i32) -> i32 {
    TIDS.iter().take_while(|t| t.1.load(Ordering::Relaxed) != 0).find(|t| t.0.load(Ordering::Relaxed) == virt).map_or(virt, |t| t.1.load(Ordering::Relaxed))
}

/// Restart path: threads recreated (their new tids are in glibc's tid fields), `pid` is real.
pub fn restarted(slots: &[Slot], pid: i32) {
    let mut new = [(0i32, 0i32); MAX];
    for (n, s) in new.iter_mut().zip(slots.iter().filter(|s| s.tid_address != 0)) {
        // SAFETY: glibc's tid field of the recreated thread, set by clone.
        let real = unsafe { (s.tid_address as *const i32).read_volatile() };
        *n = (virt_of(s.tid), real);
    }
    for (t, n) in TIDS.iter().zip(new.iter()) {
        t.0.store(n.0, Ordering::Relaxed);
        t.1.store(n.1, Ordering::Relaxed);
    }
    REAL_PID.store(pid, Ordering::Release);
}

/// The real pid for a pid the program knows (unchanged when ids are not virtual).
pub fn real_pid_of(pid: i32) -> i32 {
    to_real_pid(pid)
}

/// The real tid for a thread id the program knows.
pub fn real_tid(tid: i32) -> i32 {
    if translating().is_some() {
        real_of(tid)
    } else {
        tid
    }
}

/// The thread id the program knows for a real one.
pub fn virtual_tid(tid: i32) -> i32 {
    if translating().is_some() {
        virt_of(tid)
    } else {
        tid
    }
}

fn to_real_pid(pid: i32) -> i32 {
    match translating() {
        Some((orig, real)) if pid == orig => real,
        Some((orig, real)) if pid == -orig => -real,
        Some(_) if pid > 0 => real_of(pid),
        _ => pid,
    }
}

#[no_mangle]
pub extern "C" fn getpid() -> libc::pid_t {
    match translating() {
        Some((orig, _)) => orig,
        None => sys::getpid(),
    }
}

#[no_mangle]
pub extern "C" fn gettid() -> libc::pid_t {
    let tid = sys::gettid();
    if translating().is_some() {
        virt_of(tid)
    } else {
        tid
    }
}

type KillFn = unsafe extern "C" fn(libc::pid_t, c_int) -> c_int;
type SigqueueFn = unsafe extern "C" fn(libc::pid_t, c_int, libc::sigval) -> c_int;

/// A libc-style result: 0, or -1 with errno set.
pub(crate) fn errno_result(r: Result<(), i32>) -> c_int {
    match r {
        Ok(()) => 0,
        Err(e) => {
            // SAFETY: setting the calling thread's errno.
            unsafe { *libc::__errno_location() = e };
            -1
        }
    }
}

/// Whether `sig` sent to (real) pid `pid` is a trigger signal the program sends its own process:
/// the runtime delivers it to the program (selfsig.rs), it must not start a checkpoint.
fn own_trigger(pid: i32, sig: c_int) -> bool {
    sig > 0 && crate::selfsig::triggers() & (1u64 << (sig - 1)) != 0 && pid == sys::getpid()
}

/// # Safety
/// libc's contract for kill.
#[no_mangle]
pub unsafe extern "C" fn kill(pid: libc::pid_t, sig: c_int) -> c_int {
    let pid = to_real_pid(pid);
    if own_trigger(pid, sig) {
        return errno_result(crate::selfsig::send_own(None, sig, crate::selfsig::SI_USER, 0));
    }
    // SAFETY: forwarding to libc's kill.
    unsafe { std::mem::transmute::<usize, KillFn>(REAL_KILL.get())(pid, sig) }
}

/// # Safety
/// libc's contract for sigqueue.
#[no_mangle]
pub unsafe extern "C" fn sigqueue(pid: libc::pid_t, sig: c_int, v: libc::sigval) -> c_int {
    let pid = to_real_pid(pid);
    if own_trigger(pid, sig) {
        return errno_result(crate::selfsig::send_own(None, sig, crate::selfsig::SI_QUEUE, v.sival_ptr as u64));
    }
    // SAFETY: forwarding to libc's sigqueue.
    unsafe { std::mem::transmute::<usize, SigqueueFn>(REAL_SIGQUEUE.get())(pid, sig, v) }
}

/// glibc's tgkill wrapper is a plain system call; this one translates the ids first.
#[no_mangle]
pub extern "C" fn tgkill(tgid: libc::pid_t, tid: libc::pid_t, sig: c_int) -> c_int {
    let (tgid, tid) = match translating() {
        Some(_) => (to_real_pid(tgid), real_of(tid)),
        None => (tgid, tid),
    };
    if own_trigger(tgid, sig) && tid > 0 {
        return errno_result(crate::selfsig::send_own(Some(tid), sig, crate::selfsig::SI_TKILL, 0));
    }
    errno_result(syscall!(libc::SYS_tgkill, tgid, tid, sig).map(|_| ()))
}

/// The program's tid of the thread whose real tid is `real`.
pub fn virt_of_tid(real: i32) -> i32 {
    if translating().is_some() {
        virt_of(real)
    } else {
        real
    }
}
