//! Interposed libc functions, the core: `__libc_start_main` (to start the checkpoint thread just
//! before `main`), `_exit` and `_Exit` (they wait for a checkpoint being taken, as exit() does
//! through an atexit handler, and a task of a step reports its end: stepend.rs), and how every hook finds the real function (`RealFn`):
//! dlsym(RTLD_NEXT), lazily, so hooks work before our constructor. The signal functions are in
//! sighooks.rs.

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

type MainFn = unsafe extern "C" fn(c_int, *mut *mut c_char, *mut *mut c_char) -> c_int;
type StartMainFn = unsafe extern "C" fn(MainFn, c_int, *mut *mut c_char, usize, usize, usize, *mut c_void) -> c_int;
pub(crate) type SigactionFn = unsafe extern "C" fn(c_int, *const libc::sigaction, *mut libc::sigaction) -> c_int;

pub fn resolve() {
    for f in [&REAL_START_MAIN, &REAL_SIGACTION, &REAL_EXIT, &REAL_EXIT2] {
        f.get();
    }
    crate::sighooks::resolve();
}

/// libc's sigaction (for hooks that forward to it).
pub(crate) fn real_sigaction() -> SigactionFn {
    // SAFETY: REAL_SIGACTION resolves to libc's sigaction.
    unsafe { std::mem::transmute::<usize, SigactionFn>(REAL_SIGACTION.get()) }
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
    crate::stepend::exiting(status);
    // SAFETY: forwarding to libc's _exit.
    unsafe { std::mem::transmute::<usize, unsafe extern "C" fn(c_int) -> !>(REAL_EXIT.get())(status) }
}

/// # Safety
/// libc's contract for _Exit.
#[no_mangle]
pub unsafe extern "C" fn _Exit(status: c_int) -> ! {
    crate::checkpoint::wait_in_flight();
    crate::stepend::exiting(status);
    // SAFETY: forwarding to libc's _Exit.
    unsafe { std::mem::transmute::<usize, unsafe extern "C" fn(c_int) -> !>(REAL_EXIT2.get())(status) }
}
