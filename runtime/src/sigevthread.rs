//! POSIX timers that notify by starting a thread (timer_create with SIGEV_THREAD), done by the
//! runtime instead of glibc. glibc's helper thread blocks every signal, the stop signal too, so
//! no checkpoint could ever stop it (vim, DMTCP's timer2). Here the kernel timer is created with
//! SIGEV_THREAD_ID aimed at a helper thread of the runtime: an ordinary thread the stop signal
//! reaches, recreated at restart like any other, which waits for the timer signal and, as glibc
//! does, starts a new detached thread per expiration that calls the notification function with
//! the timer's sigev_value (with the thread attributes the program gave, and the signal mask
//! of the thread that created the timer). The timer_t is the kernel's timer id, which glibc's
//! timer_settime, timer_gettime, timer_getoverrun and timer_delete take as it is; kstate.rs
//! recreates the kernel timers at restart with their ids, aimed at the helper's new tid.

use crate::hooks::RealFn;
use crate::sys::{self, syscall};
use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// The signal our timers send to the helper (glibc's SIGTIMER: reserved, no program uses it).
const SIGTIMER: c_int = 32;
const SI_TIMER: c_int = -2;
const MAX: usize = 1024;

/// One SIGEV_THREAD timer. `gen` changes each time the slot is reused, so that an expiration
/// queued for a deleted timer is not taken for its successor's.
struct Timer {
    /// 0: free; else the kernel timer id + 1.
    id: AtomicI32,
    gen: AtomicU32,
    func: AtomicUsize,
    value: AtomicU64,
    mask: AtomicU64,
    stack_size: AtomicUsize,
}

static TIMERS: [Timer; MAX] = [const {
    Timer { id: AtomicI32::new(0), gen: AtomicU32::new(0), func: AtomicUsize::new(0), value: AtomicU64::new(0), mask: AtomicU64::new(0), stack_size: AtomicUsize::new(0) }
}; MAX];
/// Real tid of the helper thread (0: not started).
static HELPER: AtomicI32 = AtomicI32::new(0);
static HELPER_LOCK: AtomicU32 = AtomicU32::new(0);

static REAL_TIMER_CREATE: RealFn = RealFn::new(b"timer_create\0");
static REAL_TIMER_DELETE: RealFn = RealFn::new(b"timer_delete\0");

pub fn resolve() {
    REAL_TIMER_CREATE.get();
    REAL_TIMER_DELETE.get();
}

/// In a forked child: no helper, no timers (POSIX timers are not inherited).
pub fn after_fork() {
    HELPER.store(0, Ordering::Release);
    for t in &TIMERS {
        t.id.store(0, Ordering::Release);
    }
}

fn set_errno(e: c_int) -> c_int {
    crate::sys::set_errno(e);
    -1
}

/// The helper's real tid, starting it if needed.
fn helper() -> Result<i32, c_int> {
    let tid = HELPER.load(Ordering::Acquire);
    if tid != 0 {
        return Ok(tid);
    }
    while HELPER_LOCK.swap(1, Ordering::AcqRel) != 0 {
        let _ = syscall!(libc::SYS_sched_yield);
    }
    let r = start_helper();
    HELPER_LOCK.store(0, Ordering::Release);
    r
}

fn start_helper() -> Result<i32, c_int> {
    if HELPER.load(Ordering::Acquire) != 0 {
        return Ok(HELPER.load(Ordering::Acquire));
    }
    if !start_runtime_thread(helper_main) {
        return Err(libc::EAGAIN);
    }
    while HELPER.load(Ordering::Acquire) == 0 {
        let _ = syscall!(libc::SYS_sched_yield);
    }
    Ok(HELPER.load(Ordering::Acquire))
}

/// The helper thread's real tid, starting it if needed (also for `mqnotify`).
pub fn helper_tid() -> Result<i32, c_int> {
    helper()
}

/// After a restart: the helper thread's tid now (`new` of its tid at the checkpoint).
pub fn helper_restarted(new: impl Fn(i32) -> i32) {
    let old = HELPER.load(Ordering::Acquire);
    if old != 0 {
        let now = new(old);
        if now > 0 {
            HELPER.store(now, Ordering::Release);
        }
    }
}

/// Start a detached thread of the runtime's running `f`, with every signal blocked but the stop
/// signal and SIGSETXID (the program's signals are not for it; checkpoints must stop it).
pub fn start_runtime_thread(f: extern "C" fn(*mut c_void) -> *mut c_void) -> bool {
    let mask: u64 = !(crate::sighooks::stop_bit() | 1u64 << (33 - 1));
    let mut old: u64 = 0;
    let _ = syscall!(libc::SYS_rt_sigprocmask, libc::SIG_SETMASK, &mask as *const u64, &mut old as *mut u64, 8);
    let mut th: libc::pthread_t = 0;
    // SAFETY: a plain thread creation (it inherits the mask above); f takes no argument.
    let r = unsafe { libc::pthread_create(&mut th, std::ptr::null(), f, std::ptr::null_mut()) };
    let _ = syscall!(libc::SYS_rt_sigprocmask, libc::SIG_SETMASK, &old as *const u64, 0, 8);
    if r == 0 {
        // SAFETY: th is the thread just created.
        unsafe { libc::pthread_detach(th) };
    }
    r == 0
}

extern "C" fn helper_main(_: *mut c_void) -> *mut c_void {
    let set: u64 = 1u64 << (SIGTIMER - 1);
    // glibc unblocks SIGCANCEL (= SIGTIMER) in every new thread; we wait for it synchronously.
    let _ = syscall!(libc::SYS_rt_sigprocmask, libc::SIG_BLOCK, &set as *const u64, 0, 8);
    let _ = syscall!(libc::SYS_prctl, libc::PR_SET_NAME, c"ckpt-timers".as_ptr());
    HELPER.store(sys::gettid(), Ordering::Release);
    loop {
        let mut info = [0u64; 16];
        // Interrupted by checkpoints (EINTR): wait again.
        let Ok(sig) = syscall!(libc::SYS_rt_sigtimedwait, &set as *const u64, info.as_mut_ptr(), 0, 8) else { continue };
        // siginfo: si_code at byte 8, si_value at byte 24 (the timer's: slot and generation).
        let code = info[1] as u32 as i32;
        if sig == SIGTIMER as i64 && code > 0 {
            // POLL_IN...: the mq_notify socket has a notification (`mqnotify`).
            crate::mqnotify::ready();
            continue;
        }
        if sig != SIGTIMER as i64 || code != SI_TIMER {
            continue;
        }
        let (slot, gen) = ((info[3] & 0xffff_ffff) as usize, (info[3] >> 32) as u32);
        if let Some(t) = TIMERS.get(slot).filter(|t| t.id.load(Ordering::Acquire) != 0 && t.gen.load(Ordering::Acquire) == gen) {
            notify(t);
        }
    }
}

/// What a notification thread needs: the function, its value and the mask to run it with.
struct Notice {
    func: usize,
    value: u64,
    mask: u64,
}

fn notify(t: &Timer) {
    start_notice(t.func.load(Ordering::Acquire), t.value.load(Ordering::Acquire), t.mask.load(Ordering::Acquire), t.stack_size.load(Ordering::Acquire));
}

/// Start a detached thread (of stack size `ss`, 0: the default) that calls the program's
/// notification function `func` with `value`, with signal mask `mask` (also for POSIX AIO).
pub fn start_notice(func: usize, value: u64, mask: u64, ss: usize) {
    let n = Box::new(Notice { func, value, mask });
    // SAFETY: attribute calls on a local attribute object; the thread gets the Box and frees it.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        libc::pthread_attr_init(&mut attr);
        libc::pthread_attr_setdetachstate(&mut attr, libc::PTHREAD_CREATE_DETACHED);
        if ss != 0 {
            libc::pthread_attr_setstacksize(&mut attr, ss);
        }
        let mut th: libc::pthread_t = 0;
        let p = Box::into_raw(n);
        if libc::pthread_create(&mut th, &attr, notice_main, p as *mut c_void) != 0 {
            drop(Box::from_raw(p)); // as glibc: nothing more to do if no thread can start
        }
        libc::pthread_attr_destroy(&mut attr);
    }
}

extern "C" fn notice_main(p: *mut c_void) -> *mut c_void {
    // SAFETY: the Box notify() made for this thread.
    let n = unsafe { Box::from_raw(p as *mut Notice) };
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: the first word of a sigset_t holds signals 1..64; through the hook, which keeps the
    // runtime's signals as they must be.
    unsafe {
        *(&mut set as *mut libc::sigset_t as *mut u64) = n.mask;
        crate::sighooks::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
    // SAFETY: the program's sigev_notify_function, called with its sigev_value (passed by value
    // as a union of one pointer-sized word).
    let f: extern "C" fn(u64) = unsafe { std::mem::transmute(n.func) };
    f(n.value);
    std::ptr::null_mut()
}

/// struct sigevent as the kernel and glibc lay it out (64 bytes; also in glibc's aiocb).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SigEvent {
    pub value: u64,
    pub signo: c_int,
    pub notify: c_int,
    /// sigev_notify_function, or the target tid for SIGEV_THREAD_ID.
    pub func_or_tid: u64,
    pub attributes: *const libc::pthread_attr_t,
    pub pad: [u64; 4],
}

/// # Safety
/// libc's contract for timer_create.
#[no_mangle]
pub unsafe extern "C" fn timer_create(clock: libc::clockid_t, sev: *mut libc::sigevent, id: *mut libc::timer_t) -> c_int {
    type F = unsafe extern "C" fn(libc::clockid_t, *mut libc::sigevent, *mut libc::timer_t) -> c_int;
    let clock = crate::cpuclock::real_clock(clock);
    // SAFETY: sigevent is 64 bytes; read it as the kernel's layout.
    let ev = unsafe { sev.cast::<SigEvent>().as_ref() };
    let Some(ev) = ev.filter(|e| e.notify == libc::SIGEV_THREAD && crate::is_active()) else {
        // SAFETY: forwarding to libc.
        return unsafe { std::mem::transmute::<usize, F>(REAL_TIMER_CREATE.get())(clock, sev, id) };
    };
    let tid = match helper() {
        Ok(t) => t,
        Err(e) => return set_errno(e),
    };
    let Some(slot) = TIMERS.iter().position(|t| t.id.compare_exchange(0, -1, Ordering::AcqRel, Ordering::Relaxed).is_ok()) else {
        return set_errno(libc::EAGAIN);
    };
    let t = &TIMERS[slot];
    let gen = t.gen.fetch_add(1, Ordering::AcqRel) + 1;
    t.func.store(ev.func_or_tid as usize, Ordering::Release);
    t.value.store(ev.value, Ordering::Release);
    let mut mask = [0u64; 16];
    // SAFETY: querying the calling thread's mask through the hook (the program's view).
    unsafe { crate::sighooks::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), mask.as_mut_ptr() as *mut libc::sigset_t) };
    t.mask.store(mask[0], Ordering::Release);
    let mut ss: usize = 0;
    if !ev.attributes.is_null() {
        // SAFETY: the program's attribute object.
        unsafe { libc::pthread_attr_getstacksize(ev.attributes, &mut ss) };
    }
    t.stack_size.store(ss, Ordering::Release);
    let kev = SigEvent {
        value: slot as u64 | (gen as u64) << 32,
        signo: SIGTIMER,
        notify: libc::SIGEV_THREAD_ID,
        func_or_tid: tid as u64,
        attributes: std::ptr::null(),
        pad: [0; 4],
    };
    let mut kid: c_int = 0;
    match syscall!(libc::SYS_timer_create, clock, &kev as *const SigEvent, &mut kid as *mut c_int) {
        Ok(_) => {
            t.id.store(kid + 1, Ordering::Release);
            // SAFETY: the caller's out-parameter; glibc takes a non-negative timer_t as the
            // kernel's id.
            unsafe { *id = kid as usize as libc::timer_t };
            0
        }
        Err(e) => {
            t.id.store(0, Ordering::Release);
            set_errno(e)
        }
    }
}

/// # Safety
/// libc's contract for timer_delete.
#[no_mangle]
pub unsafe extern "C" fn timer_delete(id: libc::timer_t) -> c_int {
    let kid = id as usize as i64;
    if (0..i32::MAX as i64).contains(&kid) {
        if let Some(t) = TIMERS.iter().find(|t| t.id.load(Ordering::Acquire) == kid as i32 + 1) {
            t.gen.fetch_add(1, Ordering::AcqRel);
            t.id.store(0, Ordering::Release);
        }
    }
    // SAFETY: forwarding to libc.
    unsafe { std::mem::transmute::<usize, unsafe extern "C" fn(libc::timer_t) -> c_int>(REAL_TIMER_DELETE.get())(id) }
}
