//! Per-thread attributes that a restart gives back: scheduling policy and priority (with
//! SCHED_RESET_ON_FORK), nice value, I/O priority, timer slack, parent-death signal,
//! no_new_privs, personality, an rseq area the program registered itself, and the leader's time
//! namespace for its children (timens.rs).
//!
//! Each stopped thread reads its own in the stop handler (`capture`, raw system calls only);
//! after a restart each recreated thread sets them on itself (`restore`) before it resumes. What
//! an unprivileged process may not do (a lower nice value than ckpt-restart's, a real-time policy
//! without RLIMIT_RTPRIO, the real-time I/O class) is left as it is, with a warning.
//!
//! rseq: glibc registers an area per thread, which the restart registers again (ThreadState::rseq).
//! A program that unregisters it and registers its own (rseq(2) through libc's `syscall()`, as
//! librseq and CRIU's tests do) is seen by the `syscall` hook below, which keeps the thread's
//! registration in a thread-local; the restart then registers that area instead. (It also
//! passes seccomp(2) to seccomp.rs.)

use crate::log::{log, ERROR};
use crate::sys::{self, syscall};
use std::sync::atomic::{AtomicI64, Ordering};
use ckpt_image::{ThreadAttrs, RSEQ_GLIBC, RSEQ_NONE, RSEQ_OWN};
use std::cell::Cell;
use std::ffi::c_long;

/// struct sched_attr (SCHED_ATTR_SIZE_VER0: no utilization clamps).
#[repr(C)]
#[derive(Default)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
}

const SCHED_FLAG_RESET_ON_FORK: u64 = 1;
const IOPRIO_WHO_PROCESS: i64 = 1;
const RSEQ_FLAG_UNREGISTER: c_long = 1;

fn sched() -> SchedAttr {
    sched_of(0)
}

/// Thread `tid`'s (0: the caller's).
fn sched_of(tid: i32) -> SchedAttr {
    let mut a = SchedAttr::default();
    let _ = syscall!(libc::SYS_sched_getattr, tid, &mut a as *mut SchedAttr, std::mem::size_of::<SchedAttr>(), 0);
    a
}

fn ioprio() -> i32 {
    ioprio_of(0)
}

fn ioprio_of(tid: i32) -> i32 {
    syscall!(libc::SYS_ioprio_get, IOPRIO_WHO_PROCESS, tid).unwrap_or(0) as i32
}

fn timerslack() -> u64 {
    syscall!(libc::SYS_prctl, libc::PR_GET_TIMERSLACK).unwrap_or(0) as u64
}

/// The calling thread's attributes (in the stop handler: raw system calls, no allocation).
pub fn capture() -> ThreadAttrs {
    let s = sched();
    let mut pdeathsig: i32 = 0;
    let _ = syscall!(libc::SYS_prctl, libc::PR_GET_PDEATHSIG, &mut pdeathsig as *mut i32);
    let (rseq_state, rseq_area, rseq_len, rseq_sig) = own_rseq();
    let (timens_children, timens_monotonic, timens_boottime) = crate::timens::capture();
    ThreadAttrs {
        policy: s.policy,
        sched_flags: s.flags & SCHED_FLAG_RESET_ON_FORK,
        nice: s.nice,
        priority: s.priority,
        ioprio: ioprio(),
        timerslack: timerslack(),
        pdeathsig,
        // (A seccomp filter of the program's may forbid prctl: then its status says.)
        no_new_privs: syscall!(libc::SYS_prctl, libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)
            .map_or_else(|_| crate::seccomp::own_status().map_or(0, |s| s.2), |v| v as u32),
        personality: syscall!(libc::SYS_personality, 0xffff_ffffu32).map_or(0, |v| v as u32),
        rseq_state,
        rseq_area,
        rseq_len,
        rseq_sig,
        timens_children,
        timens_monotonic,
        timens_boottime,
        // (The checkpoint thread reads each thread's from /proc: threadcreds.rs.)
        creds: ckpt_image::ThreadCreds::ZERO,
    }
}

/// Thread `tid`'s attributes (TLS base `fs_base`, /proc `status`), read by the checkpoint
/// thread while it is stopped in seccomp strict mode, where it can read none itself
/// (strictstop.rs): those noted when it entered strict mode through libc (`noted`), which it
/// cannot have changed since, else what /proc and its TLS tell (no_new_privs, personality,
/// its rseq registration; its timer slack and parent-death signal are not known: a restart
/// leaves the defaults); its scheduling and I/O priority, which other threads may change, as
/// they are now.
pub fn capture_of(tid: i32, fs_base: u64, status: &[u8], noted: Option<ThreadAttrs>) -> ThreadAttrs {
    let mut a = noted.unwrap_or_else(|| {
        let (rseq_state, rseq_area, rseq_len, rseq_sig) = rseq_at(fs_base);
        let nnp = status.windows(13).position(|w| w == b"\nNoNewPrivs:\t").and_then(|i| status.get(i + 13)).is_some_and(|&b| b == b'1');
        let pers = sys::read_file(&sys::cpath(&[b"/proc/self/task/", &sys::decimal(tid), b"/personality"])).unwrap_or_default();
        let pers = std::str::from_utf8(&pers).ok().and_then(|p| u32::from_str_radix(p.trim(), 16).ok()).unwrap_or(0);
        ThreadAttrs { no_new_privs: nnp as u32, personality: pers, rseq_state, rseq_area, rseq_len, rseq_sig, ..ThreadAttrs::ZERO }
    });
    let s = sched_of(tid);
    (a.policy, a.sched_flags, a.nice, a.priority) = (s.policy, s.flags & SCHED_FLAG_RESET_ON_FORK, s.nice, s.priority);
    a.ioprio = ioprio_of(tid);
    a
}

/// Set the attributes on the calling thread (a recreated thread, before it resumes). Returns
/// whether its rseq registration was taken care of here (else glibc's is registered).
pub fn restore(a: &ThreadAttrs, old_tid: i32) -> bool {
    let now = sched();
    if (now.policy, now.flags & SCHED_FLAG_RESET_ON_FORK, now.nice, now.priority) != (a.policy, a.sched_flags, a.nice, a.priority) {
        let want = SchedAttr { size: 48, policy: a.policy, flags: a.sched_flags, nice: a.nice, priority: a.priority, ..Default::default() };
        if let Err(e) = syscall!(libc::SYS_sched_setattr, 0, &want as *const SchedAttr, 0) {
            log!(ERROR, "warning: thread {old_tid}: its scheduling policy {} (priority {}, nice {}) cannot be restored (errno {e}): it runs with policy {}, nice {}", a.policy, a.priority, a.nice, now.policy, now.nice);
        }
    }
    if a.ioprio != ioprio() {
        if let Err(e) = syscall!(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, a.ioprio) {
            log!(ERROR, "warning: thread {old_tid}: its I/O priority {:#x} cannot be restored (errno {e})", a.ioprio);
        }
    }
    if a.timerslack != timerslack() {
        let _ = syscall!(libc::SYS_prctl, libc::PR_SET_TIMERSLACK, a.timerslack);
    }
    if a.pdeathsig != 0 {
        let _ = syscall!(libc::SYS_prctl, libc::PR_SET_PDEATHSIG, a.pdeathsig);
    }
    if a.no_new_privs == 1 {
        let _ = syscall!(libc::SYS_prctl, libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    }
    if a.timens_children == 1 {
        crate::timens::restore(a.timens_monotonic, a.timens_boottime);
    }
    if syscall!(libc::SYS_personality, 0xffff_ffffu32).map_or(0, |v| v as u32) != a.personality {
        let _ = syscall!(libc::SYS_personality, a.personality);
    }
    // (The thread-local that says so is in the restored memory already.)
    match a.rseq_state {
        RSEQ_NONE => true,
        RSEQ_OWN => {
            if let Err(e) = syscall!(libc::SYS_rseq, a.rseq_area, a.rseq_len, 0, a.rseq_sig) {
                log!(ERROR, "warning: thread {old_tid}: its rseq area {:#x} cannot be registered again (errno {e})", a.rseq_area);
            }
            true
        }
        _ => false,
    }
}

type RseqNote = Cell<(u32, u64, u32, u32)>;

thread_local! {
    /// The thread's rseq registration as the program changed it: (RSEQ_*, area, len, sig).
    static RSEQ: RseqNote = const { Cell::new((RSEQ_GLIBC, 0, 0, 0)) };
}

/// Where RSEQ lies from the thread pointer (fs base). The runtime is loaded with the program,
/// so its thread-locals are in the static TLS block, at the same offset in every thread: the
/// stop handler finds the calling thread's RSEQ there, without __tls_get_addr (which may
/// allocate when the program has dlopen'ed modules with TLS since the thread started).
static RSEQ_TLS_OFFSET: AtomicI64 = AtomicI64::new(i64::MIN);

/// The calling thread's RSEQ, through the thread pointer (a signal handler may call this).
fn own_rseq() -> (u32, u64, u32, u32) {
    rseq_at(sys::arch_get_fs())
}

/// The RSEQ of the thread whose TLS base is `fs` (the caller, or a stopped thread).
fn rseq_at(fs: u64) -> (u32, u64, u32, u32) {
    let off = RSEQ_TLS_OFFSET.load(Ordering::Relaxed);
    if off == i64::MIN || fs == 0 {
        return (RSEQ_GLIBC, 0, 0, 0);
    }
    let at = (fs as i64).wrapping_add(off) as *const RseqNote;
    // SAFETY: RSEQ of that thread: the same offset from its thread pointer as in the thread
    // that measured it (static TLS); Cell::get of a Copy value, which its owner (the caller,
    // or a thread parked in the stop handler) does not write meanwhile.
    unsafe { (*at).get() }
}

static REAL_SYSCALL: crate::hooks::RealFn = crate::hooks::RealFn::new(b"syscall\0");

type SyscallFn = unsafe extern "C" fn(c_long, c_long, c_long, c_long, c_long, c_long, c_long) -> c_long;

pub fn resolve() {
    REAL_SYSCALL.get();
    // (In the constructor, on the main thread: measure where RSEQ lies from the thread pointer.)
    let at = RSEQ.with(|r| r as *const RseqNote as i64);
    RSEQ_TLS_OFFSET.store(at.wrapping_sub(sys::arch_get_fs() as i64), Ordering::Relaxed);
}

/// libc's `syscall()`: passed on unchanged; for rseq(2), the thread's registration is noted;
/// for fanotify_mark(2), where the marked object is (fdhooks.rs);
/// clone(2) of a plain child process makes it a member of the tree (`clonehook::raw_clone`);
/// unshare(2) and setns(2) as libc's (`nshooks::raw_call`).
/// (Declared with six arguments: on x86-64 a variadic call passes them as a plain call does,
/// and the unused ones, like libc's own implementation, are read and ignored.)
///
/// # Safety
/// libc's contract for syscall.
#[no_mangle]
pub unsafe extern "C" fn syscall(n: c_long, a: c_long, b: c_long, c: c_long, d: c_long, e: c_long, f: c_long) -> c_long {
    // SAFETY: forwarding to libc's syscall with the same arguments.
    let real = || unsafe { std::mem::transmute::<usize, SyscallFn>(REAL_SYSCALL.get())(n, a, b, c, d, e, f) };
    if n == libc::SYS_seccomp {
        return crate::seccomp::seccomp_call(a, b, c, real);
    }
    if n == libc::SYS_clone {
        if let Some(r) = crate::clonehook::raw_clone(a, b) {
            return r;
        }
    }
    if let Some(r) = crate::nshooks::raw_call(n, a, b, real) {
        return r;
    }
    let r = real();
    if n == libc::SYS_fanotify_mark && r == 0 {
        // SAFETY: the arguments the kernel just accepted (e: the path, or null).
        unsafe { crate::fdhooks::fanotify_marked(b as u32, d as i32, e as *const std::ffi::c_char) };
    }
    if n == libc::SYS_madvise && r == 0 {
        crate::forkadvice::note(c);
    }
    if n == libc::SYS_rseq && r == 0 {
        let v = if c & RSEQ_FLAG_UNREGISTER != 0 { (RSEQ_NONE, 0, 0, 0) } else { (RSEQ_OWN, a as u64, b as u32, d as u32) };
        RSEQ.with(|x| x.set(v));
    }
    r
}
