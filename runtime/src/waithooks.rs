//! Hooks on libc's timed waits whose remaining time the kernel does not write back (nanosleep
//! and clock_nanosleep without `rem`, usleep, thrd_sleep, poll, epoll_wait, epoll_pwait,
//! epoll_pwait2, sigtimedwait, semtimedop). Each notes when its wait started and how long it was
//! to last, so that a wait a checkpoint interrupts goes on for the time that was left instead of
//! the whole timeout again (blocked.rs). They also keep the stop signal out of the masks
//! epoll_pwait and epoll_pwait2 install and out of the sets sigwait* wait for, so that no
//! thread can block it or take it.
//!
//! The note lives on the hook's stack; a pthread key points at the innermost one of the thread.
//! pthread_getspecific reads the thread descriptor without locks or allocation, so the stop
//! handler can use it (a Rust thread-local could make glibc grow the thread's TLS vector, with
//! malloc, after a dlopen). Notes carry the restart count: one made before a restart measured
//! another process's clock and is ignored.

use crate::hooks::RealFn;
use std::ffi::{c_int, c_uint, c_void};
use std::sync::atomic::{AtomicU32, Ordering};

/// The kind of wait a note is for (what blocked.rs matches it against).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Sleep,
    Poll,
    Epoll,
    SigWait,
    Semop,
}

#[repr(C)]
struct Note {
    kind: Kind,
    /// The wait's relative timeout, ns.
    timeout: u64,
    /// CLOCK_MONOTONIC when it started, ns.
    start: u64,
    restarts: u64,
    prev: *mut c_void,
}

const NO_KEY: u32 = u32::MAX;
static KEY: AtomicU32 = AtomicU32::new(NO_KEY);

static REAL_NANOSLEEP: RealFn = RealFn::new(b"nanosleep\0");
static REAL_CLOCK_NANOSLEEP: RealFn = RealFn::new(b"clock_nanosleep\0");
static REAL_USLEEP: RealFn = RealFn::new(b"usleep\0");
static REAL_THRD_SLEEP: RealFn = RealFn::new(b"thrd_sleep\0");
static REAL_POLL: RealFn = RealFn::new(b"poll\0");
static REAL_POLL_CHK: RealFn = RealFn::new(b"__poll_chk\0");
static REAL_EPOLL_WAIT: RealFn = RealFn::new(b"epoll_wait\0");
static REAL_EPOLL_PWAIT: RealFn = RealFn::new(b"epoll_pwait\0");
static REAL_EPOLL_PWAIT2: RealFn = RealFn::new(b"epoll_pwait2\0");
static REAL_SIGTIMEDWAIT: RealFn = RealFn::new(b"sigtimedwait\0");
static REAL_SIGWAITINFO: RealFn = RealFn::new(b"sigwaitinfo\0");
static REAL_SIGWAIT: RealFn = RealFn::new(b"sigwait\0");
static REAL_SEMTIMEDOP: RealFn = RealFn::new(b"semtimedop\0");

/// Resolve the real functions; in the managed process, create the key (constructor, one thread).
pub fn init(active: bool) {
    for f in [
        &REAL_NANOSLEEP,
        &REAL_CLOCK_NANOSLEEP,
        &REAL_USLEEP,
        &REAL_THRD_SLEEP,
        &REAL_POLL,
        &REAL_POLL_CHK,
        &REAL_EPOLL_WAIT,
        &REAL_EPOLL_PWAIT,
        &REAL_EPOLL_PWAIT2,
        &REAL_SIGTIMEDWAIT,
        &REAL_SIGWAITINFO,
        &REAL_SIGWAIT,
        &REAL_SEMTIMEDOP,
    ] {
        f.get();
    }
    if active {
        let mut k: libc::pthread_key_t = 0;
        // SAFETY: a plain key without destructor.
        if unsafe { libc::pthread_key_create(&mut k, None) } == 0 {
            KEY.store(k, Ordering::Release);
        }
    }
}

/// The start time of the thread's innermost noted wait, if it is a `kind` wait of `timeout` ns
/// noted in this process (stop handler).
pub fn started(kind: Kind, timeout: u64) -> Option<u64> {
    let key = KEY.load(Ordering::Acquire);
    if key == NO_KEY {
        return None;
    }
    // SAFETY: reading this thread's value of our key.
    let p = unsafe { libc::pthread_getspecific(key) } as *const Note;
    if p.is_null() {
        return None;
    }
    // SAFETY: the note of a hook of this thread that has not returned yet (it clears the key).
    let n = unsafe { &*p };
    (n.kind == kind && n.timeout == timeout && n.restarts == crate::blocked::restarts()).then_some(n.start)
}

/// Run `f` (the real wait) with a note of its start, when it has a timeout.
fn noted<R>(kind: Kind, timeout: Option<u64>, f: impl FnOnce() -> R) -> R {
    let key = KEY.load(Ordering::Acquire);
    let Some(timeout) = timeout.filter(|_| key != NO_KEY && crate::is_active()) else { return f() };
    // SAFETY: reading this thread's value of our key.
    let prev = unsafe { libc::pthread_getspecific(key) };
    let note = Note { kind, timeout, start: mono_ns(), restarts: crate::blocked::restarts(), prev };
    // SAFETY: the note outlives its registration: the key is set back before it goes.
    unsafe { libc::pthread_setspecific(key, &note as *const Note as *const c_void) };
    let r = f();
    // SAFETY: as above; pthread_setspecific does not touch errno on success.
    unsafe { libc::pthread_setspecific(key, note.prev) };
    r
}

/// CLOCK_MONOTONIC in ns through the vDSO (the same clock as the runtime's raw system call, for
/// a fraction of its cost: these hooks wrap every timed wait).
fn mono_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid out-parameter.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn ts_ns(ts: *const libc::timespec) -> Option<u64> {
    if ts.is_null() {
        return None;
    }
    // SAFETY: the caller's timespec.
    let t = unsafe { *ts };
    (t.tv_sec >= 0 && (0..1_000_000_000).contains(&t.tv_nsec)).then(|| t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64)
}

fn ms_ns(ms: c_int) -> Option<u64> {
    (ms >= 0).then(|| ms as u64 * 1_000_000)
}

/// A copy of a sigset the program passed, with the stop signal taken out (null stays null).
fn without_stop(set: *const libc::sigset_t, buf: &mut libc::sigset_t) -> *const libc::sigset_t {
    if set.is_null() || !crate::is_active() {
        return set;
    }
    // SAFETY: the caller's sigset; buf is ours.
    unsafe {
        *buf = *set;
        libc::sigdelset(buf, crate::threads::STOP_SIGNAL);
    }
    buf
}

/// A copy of a signal mask the program passed, as the runtime wants masks (hooks::sanitize_mask).
fn sanitized(set: *const libc::sigset_t, buf: &mut libc::sigset_t) -> *const libc::sigset_t {
    if set.is_null() || !crate::is_active() {
        return set;
    }
    // SAFETY: the caller's sigset; buf is ours; the first word holds signals 1..64.
    unsafe {
        *buf = *set;
        let w = buf as *mut libc::sigset_t as *mut u64;
        *w = crate::sighooks::sanitize_mask(*w);
    }
    buf
}

/// libc's function behind `$f`, as type `$t` (use inside the unsafe block that calls it).
macro_rules! real {
    ($f:expr, $t:ty) => {
        std::mem::transmute::<usize, $t>($f.get())
    };
}

type TsTs = unsafe extern "C" fn(*const libc::timespec, *mut libc::timespec) -> c_int;

/// # Safety
/// libc's contract for nanosleep.
#[no_mangle]
pub unsafe extern "C" fn nanosleep(req: *const libc::timespec, rem: *mut libc::timespec) -> c_int {
    // SAFETY: forwarding to libc.
    noted(Kind::Sleep, ts_ns(req), || unsafe { real!(REAL_NANOSLEEP, TsTs)(req, rem) })
}

/// # Safety
/// libc's contract for thrd_sleep.
#[no_mangle]
pub unsafe extern "C" fn thrd_sleep(req: *const libc::timespec, rem: *mut libc::timespec) -> c_int {
    // SAFETY: forwarding to libc.
    noted(Kind::Sleep, ts_ns(req), || unsafe { real!(REAL_THRD_SLEEP, TsTs)(req, rem) })
}

/// # Safety
/// libc's contract for clock_nanosleep.
#[no_mangle]
pub unsafe extern "C" fn clock_nanosleep(clock: libc::clockid_t, flags: c_int, req: *const libc::timespec, rem: *mut libc::timespec) -> c_int {
    type F = unsafe extern "C" fn(libc::clockid_t, c_int, *const libc::timespec, *mut libc::timespec) -> c_int;
    let clock = crate::cpuclock::real_clock(clock);
    let timeout = if flags & libc::TIMER_ABSTIME == 0 { ts_ns(req) } else { None };
    // SAFETY: forwarding to libc.
    noted(Kind::Sleep, timeout, || unsafe { real!(REAL_CLOCK_NANOSLEEP, F)(clock, flags, req, rem) })
}

/// # Safety
/// libc's contract for usleep.
#[no_mangle]
pub unsafe extern "C" fn usleep(usec: c_uint) -> c_int {
    type F = unsafe extern "C" fn(c_uint) -> c_int;
    // SAFETY: forwarding to libc.
    noted(Kind::Sleep, Some(usec as u64 * 1000), || unsafe { real!(REAL_USLEEP, F)(usec) })
}

type PollFn = unsafe extern "C" fn(*mut libc::pollfd, libc::nfds_t, c_int) -> c_int;

/// # Safety
/// libc's contract for poll.
#[no_mangle]
pub unsafe extern "C" fn poll(fds: *mut libc::pollfd, n: libc::nfds_t, ms: c_int) -> c_int {
    // SAFETY: forwarding to libc.
    noted(Kind::Poll, ms_ns(ms), || unsafe { real!(REAL_POLL, PollFn)(fds, n, ms) })
}

/// # Safety
/// libc's contract for __poll_chk (poll with _FORTIFY_SOURCE).
#[no_mangle]
pub unsafe extern "C" fn __poll_chk(fds: *mut libc::pollfd, n: libc::nfds_t, ms: c_int, len: usize) -> c_int {
    type F = unsafe extern "C" fn(*mut libc::pollfd, libc::nfds_t, c_int, usize) -> c_int;
    // SAFETY: forwarding to libc.
    noted(Kind::Poll, ms_ns(ms), || unsafe { real!(REAL_POLL_CHK, F)(fds, n, ms, len) })
}

/// # Safety
/// libc's contract for epoll_wait.
#[no_mangle]
pub unsafe extern "C" fn epoll_wait(fd: c_int, ev: *mut libc::epoll_event, max: c_int, ms: c_int) -> c_int {
    type F = unsafe extern "C" fn(c_int, *mut libc::epoll_event, c_int, c_int) -> c_int;
    // SAFETY: forwarding to libc.
    noted(Kind::Epoll, ms_ns(ms), || unsafe { real!(REAL_EPOLL_WAIT, F)(fd, ev, max, ms) })
}

/// # Safety
/// libc's contract for epoll_pwait.
#[no_mangle]
pub unsafe extern "C" fn epoll_pwait(fd: c_int, ev: *mut libc::epoll_event, max: c_int, ms: c_int, set: *const libc::sigset_t) -> c_int {
    type F = unsafe extern "C" fn(c_int, *mut libc::epoll_event, c_int, c_int, *const libc::sigset_t) -> c_int;
    // SAFETY: an all-zero sigset is valid.
    let mut buf: libc::sigset_t = unsafe { std::mem::zeroed() };
    let set = sanitized(set, &mut buf);
    // SAFETY: forwarding to libc.
    noted(Kind::Epoll, ms_ns(ms), || unsafe { real!(REAL_EPOLL_PWAIT, F)(fd, ev, max, ms, set) })
}

/// # Safety
/// libc's contract for epoll_pwait2.
#[no_mangle]
pub unsafe extern "C" fn epoll_pwait2(fd: c_int, ev: *mut libc::epoll_event, max: c_int, ts: *const libc::timespec, set: *const libc::sigset_t) -> c_int {
    type F = unsafe extern "C" fn(c_int, *mut libc::epoll_event, c_int, *const libc::timespec, *const libc::sigset_t) -> c_int;
    // SAFETY: an all-zero sigset is valid.
    let mut buf: libc::sigset_t = unsafe { std::mem::zeroed() };
    let set = sanitized(set, &mut buf);
    // SAFETY: forwarding to libc.
    noted(Kind::Epoll, ts_ns(ts), || unsafe { real!(REAL_EPOLL_PWAIT2, F)(fd, ev, max, ts, set) })
}

/// # Safety
/// libc's contract for sigtimedwait.
#[no_mangle]
pub unsafe extern "C" fn sigtimedwait(set: *const libc::sigset_t, info: *mut libc::siginfo_t, ts: *const libc::timespec) -> c_int {
    type F = unsafe extern "C" fn(*const libc::sigset_t, *mut libc::siginfo_t, *const libc::timespec) -> c_int;
    // SAFETY: an all-zero sigset is valid.
    let mut buf: libc::sigset_t = unsafe { std::mem::zeroed() };
    let set = without_stop(set, &mut buf);
    // SAFETY: forwarding to libc.
    noted(Kind::SigWait, ts_ns(ts), || unsafe { real!(REAL_SIGTIMEDWAIT, F)(set, info, ts) })
}

/// # Safety
/// libc's contract for sigwaitinfo.
#[no_mangle]
pub unsafe extern "C" fn sigwaitinfo(set: *const libc::sigset_t, info: *mut libc::siginfo_t) -> c_int {
    type F = unsafe extern "C" fn(*const libc::sigset_t, *mut libc::siginfo_t) -> c_int;
    // SAFETY: an all-zero sigset is valid.
    let mut buf: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: forwarding to libc.
    unsafe { real!(REAL_SIGWAITINFO, F)(without_stop(set, &mut buf), info) }
}

/// # Safety
/// libc's contract for sigwait.
#[no_mangle]
pub unsafe extern "C" fn sigwait(set: *const libc::sigset_t, sig: *mut c_int) -> c_int {
    type F = unsafe extern "C" fn(*const libc::sigset_t, *mut c_int) -> c_int;
    // SAFETY: an all-zero sigset is valid.
    let mut buf: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: forwarding to libc.
    unsafe { real!(REAL_SIGWAIT, F)(without_stop(set, &mut buf), sig) }
}

/// # Safety
/// libc's contract for semtimedop.
#[no_mangle]
pub unsafe extern "C" fn semtimedop(id: c_int, sops: *mut libc::sembuf, n: usize, ts: *const libc::timespec) -> c_int {
    type F = unsafe extern "C" fn(c_int, *mut libc::sembuf, usize, *const libc::timespec) -> c_int;
    // SAFETY: forwarding to libc.
    noted(Kind::Semop, ts_ns(ts), || unsafe { real!(REAL_SEMTIMEDOP, F)(id, sops, n, ts) })
}
