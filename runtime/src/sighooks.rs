//! The program's view of the signals the runtime reserves: the trigger signals (checkpoint, and
//! stop-and-exit if asked for) and the stop signal (63, which stops threads during a checkpoint).
//!
//! Dispositions: for a reserved signal, sigaction, signal, bsd_signal, sysv_signal, sigset,
//! sigignore and siginterrupt read and write a virtual disposition (`VIRTUAL`); the real one
//! stays the runtime's. The program's handler of a trigger signal runs when the program sends it
//! the signal itself (selfsig.rs).
//!
//! Masks: the stop signal is never blocked, the trigger signals always are in program threads
//! (selfsig.rs keeps what the program asked for as a virtual mask). sigprocmask,
//! pthread_sigmask, sighold, sigrelse, sigsuspend, sigpending, ppoll and pselect translate; the
//! masks the program passes to other handlers (sa_mask) lose the stop signal.

use crate::gate;
use crate::hooks::RealFn;
use crate::selfsig;
use std::cell::UnsafeCell;
use std::ffi::c_int;
use std::sync::atomic::{AtomicU64, Ordering};

static REAL_SIGPROCMASK: RealFn = RealFn::new(b"sigprocmask\0");
static REAL_PTHREAD_SIGMASK: RealFn = RealFn::new(b"pthread_sigmask\0");
static REAL_SIGNAL: RealFn = RealFn::new(b"signal\0");
static REAL_SIGSET: RealFn = RealFn::new(b"sigset\0");
static REAL_SYSV_SIGNAL: RealFn = RealFn::new(b"sysv_signal\0");
static REAL_SIGIGNORE: RealFn = RealFn::new(b"sigignore\0");
static REAL_SIGINTERRUPT: RealFn = RealFn::new(b"siginterrupt\0");
static REAL_SIGHOLD: RealFn = RealFn::new(b"sighold\0");
static REAL_SIGRELSE: RealFn = RealFn::new(b"sigrelse\0");
static REAL_SIGSUSPEND: RealFn = RealFn::new(b"sigsuspend\0");
static REAL_SIGPENDING: RealFn = RealFn::new(b"sigpending\0");
static REAL_PPOLL: RealFn = RealFn::new(b"ppoll\0");
static REAL_PSELECT: RealFn = RealFn::new(b"pselect\0");

type SignalFn = unsafe extern "C" fn(c_int, libc::sighandler_t) -> libc::sighandler_t;
type MaskFn = unsafe extern "C" fn(c_int, *const libc::sigset_t, *mut libc::sigset_t) -> c_int;
type SigFn = unsafe extern "C" fn(c_int) -> c_int;
type SetFn = unsafe extern "C" fn(*const libc::sigset_t) -> c_int;

pub fn resolve() {
    for f in [
        &REAL_SIGPROCMASK,
        &REAL_PTHREAD_SIGMASK,
        &REAL_SIGNAL,
        &REAL_SIGSET,
        &REAL_SYSV_SIGNAL,
        &REAL_SIGIGNORE,
        &REAL_SIGINTERRUPT,
        &REAL_SIGHOLD,
        &REAL_SIGRELSE,
        &REAL_SIGSUSPEND,
        &REAL_SIGPENDING,
        &REAL_PPOLL,
        &REAL_PSELECT,
    ] {
        f.get();
    }
}

/// libc's function behind `$f`, as type `$t` (inside the unsafe block that calls it).
macro_rules! real {
    ($f:expr, $t:ty) => {
        std::mem::transmute::<usize, $t>($f.get())
    };
}

// ---- masks ----

/// The stop signal's bit in a kernel sigset.
pub const fn stop_bit() -> u64 {
    1u64 << (crate::threads::STOP_SIGNAL - 1)
}

/// A real signal mask as a program thread must have it: the stop signal unblocked, the trigger
/// signals blocked.
pub fn sanitize_mask(mask: u64) -> u64 {
    // While syscalls are dispatched (background snapshot, sud.rs), SIGSYS stays unblocked too.
    let sys = if crate::sud::engaged() { crate::sud::SIGSYS_BIT } else { 0 };
    (mask & !stop_bit() & !sys) | selfsig::triggers()
}

fn word(set: &libc::sigset_t) -> u64 {
    // SAFETY: the first word of a sigset_t holds signals 1..64.
    unsafe { *(set as *const libc::sigset_t as *const u64) }
}

fn set_word(set: &mut libc::sigset_t, w: u64) {
    // SAFETY: as above.
    unsafe { *(set as *mut libc::sigset_t as *mut u64) = w };
}

fn empty_set() -> libc::sigset_t {
    // SAFETY: an all-zero sigset_t is the empty set.
    unsafe { std::mem::zeroed() }
}

/// A copy of a mask the program passes to a call that installs it (null stays null).
fn sanitized(set: *const libc::sigset_t, buf: &mut libc::sigset_t) -> *const libc::sigset_t {
    if set.is_null() || !crate::is_active() {
        return set;
    }
    // SAFETY: the caller's sigset.
    *buf = unsafe { *set };
    set_word(buf, sanitize_mask(word(buf)));
    buf
}

/// sigprocmask / pthread_sigmask: the real mask as the runtime needs it, the virtual trigger
/// bits as the program asked; the program reads back its own view.
unsafe fn mask_common(real: &RealFn, how: c_int, set: *const libc::sigset_t, old: *mut libc::sigset_t) -> c_int {
    // SAFETY: forwarding to libc.
    let f = unsafe { real!(real, MaskFn) };
    if !crate::is_active() {
        // SAFETY: as for libc.
        return unsafe { f(how, set, old) };
    }
    let mut prev = empty_set();
    let shown_prev = |prev: &libc::sigset_t| {
        let mut p = *prev;
        set_word(&mut p, selfsig::shown_mask(word(prev)));
        p
    };
    if set.is_null() {
        // SAFETY: as for libc.
        let r = unsafe { f(how, set, &mut prev) };
        if r == 0 && !old.is_null() {
            // SAFETY: the caller's out-parameter.
            unsafe { *old = shown_prev(&prev) };
        }
        return r;
    }
    // SAFETY: the caller's sigset (copied first: old may be the same object).
    let mut s = unsafe { *set };
    let (real_word, v) = selfsig::split_mask(how, word(&s));
    set_word(&mut s, real_word);
    // SAFETY: as for libc.
    let r = unsafe { f(how, &s, &mut prev) };
    if r != 0 {
        return r;
    }
    if !old.is_null() {
        // SAFETY: the caller's out-parameter.
        unsafe { *old = shown_prev(&prev) };
    }
    let before = selfsig::vblocked();
    selfsig::set_vblocked(v);
    if before & !v != 0 {
        selfsig::flush();
    }
    0
}

/// # Safety
/// libc's contract for sigprocmask.
#[no_mangle]
pub unsafe extern "C" fn sigprocmask(how: c_int, set: *const libc::sigset_t, old: *mut libc::sigset_t) -> c_int {
    // SAFETY: as for libc.
    unsafe { mask_common(&REAL_SIGPROCMASK, how, set, old) }
}

/// # Safety
/// libc's contract for pthread_sigmask.
#[no_mangle]
pub unsafe extern "C" fn pthread_sigmask(how: c_int, set: *const libc::sigset_t, old: *mut libc::sigset_t) -> c_int {
    // SAFETY: as for libc.
    unsafe { mask_common(&REAL_PTHREAD_SIGMASK, how, set, old) }
}

/// sighold / sigrelse: block or unblock one signal.
fn hold(sig: c_int, how: c_int, real: &RealFn) -> c_int {
    if !crate::is_reserved(sig) {
        // SAFETY: forwarding to libc.
        return unsafe { real!(real, SigFn)(sig) };
    }
    let mut s = empty_set();
    set_word(&mut s, 1u64 << (sig - 1));
    // SAFETY: a valid sigset.
    unsafe { sigprocmask(how, &s, std::ptr::null_mut()) }
}

/// # Safety
/// libc's contract for sighold.
#[no_mangle]
pub unsafe extern "C" fn sighold(sig: c_int) -> c_int {
    hold(sig, libc::SIG_BLOCK, &REAL_SIGHOLD)
}

/// # Safety
/// libc's contract for sigrelse.
#[no_mangle]
pub unsafe extern "C" fn sigrelse(sig: c_int) -> c_int {
    hold(sig, libc::SIG_UNBLOCK, &REAL_SIGRELSE)
}

/// # Safety
/// libc's contract for sigsuspend.
#[no_mangle]
pub unsafe extern "C" fn sigsuspend(mask: *const libc::sigset_t) -> c_int {
    // SAFETY: forwarding to libc.
    let f = unsafe { real!(REAL_SIGSUSPEND, SetFn) };
    if mask.is_null() || !crate::is_active() {
        // SAFETY: as for libc.
        return unsafe { f(mask) };
    }
    let before = selfsig::vblocked();
    // SAFETY: the caller's mask.
    let m = unsafe { *mask };
    selfsig::set_vblocked(word(&m) & selfsig::triggers());
    // A signal of ours that the suspend mask lets through ends it at once, as the kernel would.
    let r = if selfsig::flush() {
        crate::sys::set_errno(libc::EINTR);
        -1
    } else {
        let mut buf = empty_set();
        // SAFETY: as for libc.
        unsafe { f(sanitized(&m, &mut buf)) }
    };
    selfsig::set_vblocked(before);
    r
}

/// # Safety
/// libc's contract for sigpending.
#[no_mangle]
pub unsafe extern "C" fn sigpending(set: *mut libc::sigset_t) -> c_int {
    // SAFETY: forwarding to libc.
    let r = unsafe { real!(REAL_SIGPENDING, unsafe extern "C" fn(*mut libc::sigset_t) -> c_int)(set) };
    if r == 0 && !set.is_null() && crate::is_active() {
        let t = selfsig::triggers();
        // SAFETY: the caller's sigset, just filled in.
        let s = unsafe { &mut *set };
        set_word(s, (word(s) & !t) | selfsig::pending());
    }
    r
}

/// # Safety
/// libc's contract for ppoll.
#[no_mangle]
pub unsafe extern "C" fn ppoll(fds: *mut libc::pollfd, n: libc::nfds_t, ts: *const libc::timespec, mask: *const libc::sigset_t) -> c_int {
    type F = unsafe extern "C" fn(*mut libc::pollfd, libc::nfds_t, *const libc::timespec, *const libc::sigset_t) -> c_int;
    let mut buf = empty_set();
    // SAFETY: forwarding to libc.
    unsafe { real!(REAL_PPOLL, F)(fds, n, ts, sanitized(mask, &mut buf)) }
}

/// # Safety
/// libc's contract for pselect.
#[no_mangle]
pub unsafe extern "C" fn pselect(
    n: c_int,
    r: *mut libc::fd_set,
    w: *mut libc::fd_set,
    e: *mut libc::fd_set,
    ts: *const libc::timespec,
    mask: *const libc::sigset_t,
) -> c_int {
    type F = unsafe extern "C" fn(c_int, *mut libc::fd_set, *mut libc::fd_set, *mut libc::fd_set, *const libc::timespec, *const libc::sigset_t) -> c_int;
    let mut buf = empty_set();
    // SAFETY: forwarding to libc.
    unsafe { real!(REAL_PSELECT, F)(n, r, w, e, ts, sanitized(mask, &mut buf)) }
}

// ---- dispositions ----

struct Virtual(UnsafeCell<[libc::sigaction; 65]>);
// SAFETY: hooks write entries under the gate (shared); every access is a whole-entry copy. The
// stop handler reads an entry without the gate (it must not wait for a checkpoint): a program
// racing sigaction on its checkpoint signal against sending it to itself races as with libc.
unsafe impl Sync for Virtual {}
// SAFETY: sigaction is plain data; all-zero is SIG_DFL with an empty mask.
static VIRTUAL: Virtual = Virtual(UnsafeCell::new(unsafe { std::mem::zeroed() }));

/// The program's disposition of reserved signal `sig`.
pub fn virtual_action(sig: c_int) -> libc::sigaction {
    // SAFETY: sig is in 1..=64 (callers check); a whole-entry copy.
    unsafe { (*VIRTUAL.0.get())[sig as usize] }
}

/// SA_RESETHAND: back to SIG_DFL when the handler is entered.
pub fn reset_virtual(sig: c_int) {
    // SAFETY: as above.
    unsafe { (*VIRTUAL.0.get())[sig as usize] = std::mem::zeroed() };
}

/// Replace the program's disposition of reserved signal `sig`; the old one.
fn swap_virtual(sig: c_int, act: Option<&libc::sigaction>) -> libc::sigaction {
    let _g = gate::enter();
    // SAFETY: sig is a reserved signal, in 1..=64.
    let v = unsafe { &mut (*VIRTUAL.0.get())[sig as usize] };
    let old = *v;
    if let Some(a) = act {
        *v = *a;
    }
    old
}

fn action(handler: libc::sighandler_t, mask: u64, flags: c_int) -> libc::sigaction {
    // SAFETY: all-zero is a valid sigaction.
    let mut a: libc::sigaction = unsafe { std::mem::zeroed() };
    a.sa_sigaction = handler;
    set_word(&mut a.sa_mask, mask);
    a.sa_flags = flags;
    a
}

/// # Safety
/// libc's contract for sigaction.
#[no_mangle]
pub unsafe extern "C" fn sigaction(sig: c_int, act: *const libc::sigaction, old: *mut libc::sigaction) -> c_int {
    if crate::is_reserved(sig) {
        // SAFETY: act is the caller's valid pointer or null.
        let o = swap_virtual(sig, unsafe { act.as_ref() });
        if !old.is_null() {
            // SAFETY: the caller's out-parameter.
            unsafe { *old = o };
        }
        return 0;
    }
    let real = crate::hooks::real_sigaction();
    if !act.is_null() && crate::is_active() {
        // The stop signal is never blocked, not even while a handler of the program runs.
        // SAFETY: the caller's sigaction.
        let mut a = unsafe { *act };
        let m = word(&a.sa_mask) & !stop_bit();
        set_word(&mut a.sa_mask, m);
        if sig == libc::SIGHUP && crate::hupgate::involved() {
            return crate::hupgate::sigaction(real, Some(&a), old);
        }
        // SAFETY: forwarding to libc's sigaction.
        return unsafe { real(sig, &a, old) };
    }
    if sig == libc::SIGHUP && crate::hupgate::involved() {
        // SAFETY: act is the caller's valid pointer or null.
        return crate::hupgate::sigaction(real, unsafe { act.as_ref() }, old);
    }
    // SAFETY: forwarding to libc's sigaction.
    unsafe { real(sig, act, old) }
}

/// signal, bsd_signal: BSD semantics (the signal blocked in its handler, SA_RESTART unless
/// siginterrupt asked otherwise).
fn bsd_semantics(sig: c_int, handler: libc::sighandler_t) -> libc::sighandler_t {
    let flags = if SIGINTR.load(Ordering::Relaxed) & (1u64 << (sig - 1)) != 0 { 0 } else { libc::SA_RESTART };
    swap_virtual(sig, Some(&action(handler, 1u64 << (sig - 1), flags))).sa_sigaction
}

/// Reserved signals for which siginterrupt(sig, 1) was called (what glibc keeps in _sigintr).
static SIGINTR: AtomicU64 = AtomicU64::new(0);

/// # Safety
/// libc's contract for signal.
#[no_mangle]
pub unsafe extern "C" fn signal(sig: c_int, handler: libc::sighandler_t) -> libc::sighandler_t {
    if crate::is_reserved(sig) {
        return bsd_semantics(sig, handler);
    }
    // SAFETY: forwarding to libc's signal.
    crate::hupgate::rewrap(sig, unsafe { real!(REAL_SIGNAL, SignalFn)(sig, handler) })
}

/// # Safety
/// libc's contract for bsd_signal.
#[no_mangle]
pub unsafe extern "C" fn bsd_signal(sig: c_int, handler: libc::sighandler_t) -> libc::sighandler_t {
    // SAFETY: glibc's bsd_signal is its signal.
    unsafe { signal(sig, handler) }
}

/// # Safety
/// libc's contract for sysv_signal.
#[no_mangle]
pub unsafe extern "C" fn sysv_signal(sig: c_int, handler: libc::sighandler_t) -> libc::sighandler_t {
    if crate::is_reserved(sig) {
        // System V semantics: reset on delivery, not blocked in the handler, no restart.
        return swap_virtual(sig, Some(&action(handler, 0, libc::SA_RESETHAND | libc::SA_NODEFER))).sa_sigaction;
    }
    // SAFETY: forwarding to libc.
    crate::hupgate::rewrap(sig, unsafe { real!(REAL_SYSV_SIGNAL, SignalFn)(sig, handler) })
}

/// # Safety
/// libc's contract for __sysv_signal.
#[no_mangle]
pub unsafe extern "C" fn __sysv_signal(sig: c_int, handler: libc::sighandler_t) -> libc::sighandler_t {
    // SAFETY: the same function under its other name.
    unsafe { sysv_signal(sig, handler) }
}

const SIG_HOLD: libc::sighandler_t = 2;

/// # Safety
/// libc's contract for sigset.
#[no_mangle]
pub unsafe extern "C" fn sigset(sig: c_int, disp: libc::sighandler_t) -> libc::sighandler_t {
    if !crate::is_reserved(sig) {
        // SAFETY: forwarding to libc.
        return crate::hupgate::rewrap(sig, unsafe { real!(REAL_SIGSET, SignalFn)(sig, disp) });
    }
    let mut s = empty_set();
    set_word(&mut s, 1u64 << (sig - 1));
    let mut before = empty_set();
    let how = if disp == SIG_HOLD { libc::SIG_BLOCK } else { libc::SIG_UNBLOCK };
    let old = if disp == SIG_HOLD { virtual_action(sig) } else { swap_virtual(sig, Some(&action(disp, 0, 0))) };
    // SAFETY: valid sigsets.
    unsafe { sigprocmask(how, &s, &mut before) };
    if word(&before) & (1u64 << (sig - 1)) != 0 {
        SIG_HOLD
    } else {
        old.sa_sigaction
    }
}

/// # Safety
/// libc's contract for sigignore.
#[no_mangle]
pub unsafe extern "C" fn sigignore(sig: c_int) -> c_int {
    if crate::is_reserved(sig) {
        swap_virtual(sig, Some(&action(libc::SIG_IGN, 0, 0)));
        return 0;
    }
    // SAFETY: forwarding to libc.
    unsafe { real!(REAL_SIGIGNORE, SigFn)(sig) }
}

/// # Safety
/// libc's contract for siginterrupt.
#[no_mangle]
pub unsafe extern "C" fn siginterrupt(sig: c_int, flag: c_int) -> c_int {
    if crate::is_reserved(sig) {
        let b = 1u64 << (sig - 1);
        let mut a = virtual_action(sig);
        if flag != 0 {
            SIGINTR.fetch_or(b, Ordering::Relaxed);
            a.sa_flags &= !libc::SA_RESTART;
        } else {
            SIGINTR.fetch_and(!b, Ordering::Relaxed);
            a.sa_flags |= libc::SA_RESTART;
        }
        swap_virtual(sig, Some(&a));
        return 0;
    }
    // SAFETY: forwarding to libc.
    unsafe { real!(REAL_SIGINTERRUPT, unsafe extern "C" fn(c_int, c_int) -> c_int)(sig, flag) }
}

/// In a forked child (which the runtime does not manage): give the program back the trigger
/// signals, with the dispositions and the mask it asked for.
pub fn hand_back_signals() {
    let t = selfsig::configured();
    for sig in crate::trigger_signals() {
        if sig > 0 {
            crate::hooks::install(sig, &virtual_action(sig));
        }
    }
    let unblock = t & !selfsig::vblocked();
    let _ = crate::sys::syscall!(libc::SYS_rt_sigprocmask, libc::SIG_UNBLOCK, &unblock as *const u64, 0, 8);
}
