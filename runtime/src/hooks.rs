//! Interposed libc functions. For the core: `__libc_start_main` (to start the checkpoint thread
//! just before `main`), and the signal functions, so the reserved signals (checkpoint trigger and
//! thread stop) stay the runtime's even when the program installs handlers for them or blocks
//! them. The program sees its own (virtual) dispositions for those signals. `_exit` and `_Exit`
//! wait for a checkpoint being taken (as exit() does through an atexit handler).
//! Real functions are found with dlsym(RTLD_NEXT), lazily, so hooks work before our constructor.

use crate::gate;
use std::cell::UnsafeCell;
use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};

pub(crate) struct RealFn(AtomicUsize, &'static [u8]);

impl RealFn {
    pub(crate) const fn new(name: &'static [u8]) -> Self {
        RealFn(AtomicUsize::new(0), name)
    }
    pub(crate) fn get(&self) -> usize {
        let p = self.0.load(Ordering::Acquire);
        if p != 0 {
            return p;
        }
        // SAFETY: name is NUL-terminated; dlsym is safe to call outside a checkpoint.
        let p = unsafe { libc::dlsym(libc::RTLD_NEXT, self.1.as_ptr() as *const c_char) } as usize;
        self.0.store(p, Ordering::Release);
        p
    }
}

static REAL_START_MAIN: RealFn = RealFn::new(b"__libc_start_main\0");
static REAL_SIGACTION: RealFn = RealFn::new(b"sigaction\0");
static REAL_SIGNAL: RealFn = RealFn::new(b"signal\0");
static REAL_SIGPROCMASK: RealFn = RealFn::new(b"sigprocmask\0");
static REAL_PTHREAD_SIGMASK: RealFn = RealFn::new(b"pthread_sigmask\0");

type MainFn = unsafe extern "C" fn(c_int, *mut *mut c_char, *mut *mut c_char) -> c_int;
type StartMainFn = unsafe extern "C" fn(MainFn, c_int, *mut *mut c_char, usize, usize, usize, *mut c_void) -> c_int;
type SigactionFn = unsafe extern "C" fn(c_int, *const libc::sigaction, *mut libc::sigaction) -> c_int;
type SignalFn = unsafe extern "C" fn(c_int, libc::sighandler_t) -> libc::sighandler_t;
type MaskFn = unsafe extern "C" fn(c_int, *const libc::sigset_t, *mut libc::sigset_t) -> c_int;

pub fn resolve() {
    for f in [&REAL_START_MAIN, &REAL_SIGACTION, &REAL_SIGNAL, &REAL_SIGPROCMASK, &REAL_PTHREAD_SIGMASK, &REAL_EXIT, &REAL_EXIT2] {
        f.get();
    }
}

/// Install a handler with libc's real sigaction (which sets up the signal restorer).
pub fn install(sig: c_int, act: &libc::sigaction) -> bool {
    let f = REAL_SIGACTION.get();
    if f == 0 {
        return false;
    }
    // SAFETY: f is libc's sigaction.
    unsafe { std::mem::transmute::<usize, SigactionFn>(f)(sig, act, std::ptr::null_mut()) == 0 }
}

// ---- main ----

static REAL_MAIN: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn main_wrapper(argc: c_int, argv: *mut *mut c_char, envp: *mut *mut c_char) -> c_int {
    crate::start_checkpoint_thread();
    // SAFETY: REAL_MAIN is the program's main, stored just before libc called us.
    unsafe { std::mem::transmute::<usize, MainFn>(REAL_MAIN.load(Ordering::Acquire))(argc, argv, envp) }
}

/// # Safety
/// Called by the program's `_start` with libc's arguments.
#[no_mangle]
pub unsafe extern "C" fn __libc_start_main(
    main: MainFn,
    argc: c_int,
    argv: *mut *mut c_char,
    init: usize,
    fini: usize,
    rtld_fini: usize,
    stack_end: *mut c_void,
) -> c_int {
    let real = REAL_START_MAIN.get();
    let main = if crate::is_active() {
        REAL_MAIN.store(main as usize, Ordering::Release);
        main_wrapper as MainFn
    } else {
        main
    };
    // SAFETY: forwarding to libc's __libc_start_main with the same arguments.
    unsafe { std::mem::transmute::<usize, StartMainFn>(real)(main, argc, argv, init, fini, rtld_fini, stack_end) }
}

// ---- exit ----

static REAL_EXIT: RealFn = RealFn::new(b"_exit\0");
static REAL_EXIT2: RealFn = RealFn::new(b"_Exit\0");

/// # Safety
/// libc's contract for _exit.
#[no_mangle]
pub unsafe extern "C" fn _exit(status: c_int) -> ! {
    crate::checkpoint::wait_in_flight();
    // SAFETY: forwarding to libc's _exit.
    unsafe { std::mem::transmute::<usize, unsafe extern "C" fn(c_int) -> !>(REAL_EXIT.get())(status) }
}

/// # Safety
/// libc's contract for _Exit.
#[no_mangle]
pub unsafe extern "C" fn _Exit(status: c_int) -> ! {
    crate::checkpoint::wait_in_flight();
    // SAFETY: forwarding to libc's _Exit.
    unsafe { std::mem::transmute::<usize, unsafe extern "C" fn(c_int) -> !>(REAL_EXIT2.get())(status) }
}

// ---- signals ----

struct Virtual(UnsafeCell<[libc::sigaction; 65]>);
// SAFETY: accessed only under the gate (shared), and each access is a whole-entry copy; the
// program racing sigaction calls on the same reserved signal is its own race, as with libc.
unsafe impl Sync for Virtual {}
// SAFETY: sigaction is plain data; all-zero is SIG_DFL with an empty mask.
static VIRTUAL: Virtual = Virtual(UnsafeCell::new(unsafe { std::mem::zeroed() }));

fn strip_reserved(set: &mut libc::sigset_t) {
    for s in crate::reserved_signals() {
        // SAFETY: set is a valid sigset_t.
        unsafe { libc::sigdelset(set, s) };
    }
}

/// # Safety
/// libc's contract for sigaction.
#[no_mangle]
pub unsafe extern "C" fn sigaction(sig: c_int, act: *const libc::sigaction, old: *mut libc::sigaction) -> c_int {
    if crate::is_reserved(sig) {
        let _g = gate::enter();
        // SAFETY: sig is in 1..=64; act/old are the caller's valid pointers or null.
        unsafe {
            let v = &mut (*VIRTUAL.0.get())[sig as usize];
            if !old.is_null() {
                *old = *v;
            }
            if !act.is_null() {
                *v = *act;
            }
        }
        return 0;
    }
    let f = REAL_SIGACTION.get();
    // SAFETY: forwarding to libc's sigaction, with our signals removed from the handler's mask.
    unsafe {
        let real = std::mem::transmute::<usize, SigactionFn>(f);
        if !act.is_null() && crate::is_active() {
            let mut a = *act;
            strip_reserved(&mut a.sa_mask);
            return real(sig, &a, old);
        }
        real(sig, act, old)
    }
}

/// # Safety
/// libc's contract for signal.
#[no_mangle]
pub unsafe extern "C" fn signal(sig: c_int, handler: libc::sighandler_t) -> libc::sighandler_t {
    if crate::is_reserved(sig) {
        let _g = gate::enter();
        // SAFETY: sig is in 1..=64.
        unsafe {
            let v = &mut (*VIRTUAL.0.get())[sig as usize];
            let old = v.sa_sigaction;
            v.sa_sigaction = handler;
            v.sa_flags = libc::SA_RESTART;
            return old;
        }
    }
    // SAFETY: forwarding to libc's signal.
    unsafe { std::mem::transmute::<usize, SignalFn>(REAL_SIGNAL.get())(sig, handler) }
}

unsafe fn mask_common(real: &RealFn, how: c_int, set: *const libc::sigset_t, old: *mut libc::sigset_t) -> c_int {
    // SAFETY: forwarding to libc, with our signals removed from what gets blocked.
    unsafe {
        let f = std::mem::transmute::<usize, MaskFn>(real.get());
        if !set.is_null() && how != libc::SIG_UNBLOCK && crate::is_active() {
            let mut s = *set;
            strip_reserved(&mut s);
            return f(how, &s, old);
        }
        f(how, set, old)
    }
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

/// In a forked child (which the runtime does not manage): give the program back the signals the
/// runtime reserved for itself (checkpoint and stop signals), with the dispositions it asked for.
pub fn hand_back_signals() {
    for sig in crate::reserved_signals() {
        if sig <= 0 || sig == crate::threads::STOP_SIGNAL {
            continue;
        }
        // SAFETY: sig is in 1..=64; a whole-entry copy (the child has one thread).
        let v = unsafe { (*VIRTUAL.0.get())[sig as usize] };
        install(sig, &v);
    }
}
