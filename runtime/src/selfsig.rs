//! The trigger signals (the checkpoint signal, and the stop-and-exit signal if one was asked for)
//! as the program sees them.
//!
//! The runtime keeps them blocked in every program thread, so that one sent from outside
//! (`kill -USR2`, `scancel -s`) reaches only the checkpoint thread, the one thread that leaves
//! them unblocked, and never interrupts a call of the program. The program sees instead a
//! virtual per-thread mask (`vblocked`, in a pthread key; the hooks of sigprocmask and friends
//! keep it), virtual dispositions (hooks.rs) and virtual pending signals (`POOL` entries).
//!
//! A trigger signal the program sends itself (raise, pthread_kill, tgkill, pthread_sigqueue, kill
//! and sigqueue to its own pid: the hooks; anything else the checkpoint thread receives with
//! si_pid = our pid, forwarded by the checkpoint loop) is the program's: it is carried by the
//! stop signal with a marker (rt_tgsigqueueinfo, si_value naming a `POOL` entry that holds the
//! real siginfo) to the target thread, whose stop handler calls `deliver`: the program's handler
//! runs there with the kernel's semantics (siginfo, ucontext of the interrupted code, the
//! handler's mask plus the signal unless SA_NODEFER, SA_RESETHAND), or the default action is
//! taken (terminate with that very signal, stop, or nothing), or nothing for SIG_IGN. A signal
//! the target blocks (virtually) stays pending until the thread unblocks it (`flush`).

use crate::sys::{self, syscall};
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};

/// si_value of a marked stop signal: MARK | pool index.
const MARK: u64 = 0x636b_7074 << 32;
pub const SI_QUEUE: i32 = -1;
pub const SI_USER: i32 = 0;
pub const SI_TKILL: i32 = -6;
const SI_KERNEL: i32 = 0x80;

const FREE: u32 = 0;
/// Being filled, or on its way to its thread.
const BUSY: u32 = 1;
/// Blocked by its target: waits for `flush`.
const PENDING: u32 = 2;
/// Received by the checkpoint thread: the checkpoint loop sends it on (`forward_queued`).
const FORWARD: u32 = 3;
/// Target of a process-directed signal.
const PROCESS: i32 = 0;

struct Delivery {
    state: AtomicU32,
    sig: AtomicI32,
    /// The program's (virtual) tid of the target thread, or PROCESS.
    target: AtomicI32,
    info: [AtomicU64; 16],
}

const N: usize = 64;
static POOL: [Delivery; N] = [const { Delivery { state: AtomicU32::new(FREE), sig: AtomicI32::new(0), target: AtomicI32::new(0), info: [const { AtomicU64::new(0) }; 16] } }; N];

const NO_KEY: u32 = u32::MAX;
/// pthread key whose value is the thread's virtually blocked trigger signals (kernel sigset bits).
static KEY: AtomicU32 = AtomicU32::new(NO_KEY);

pub type Info = [u64; 16];

/// Kernel sigset bits of the trigger signals (0 when the runtime is not active).
pub fn triggers() -> u64 {
    if !crate::is_active() {
        return 0;
    }
    configured()
}

/// The same, whether or not the runtime is active here (a forked child hands them back).
pub fn configured() -> u64 {
    crate::trigger_signals().iter().filter(|&&s| s > 0).fold(0, |m, &s| m | bit(s))
}

fn bit(sig: i32) -> u64 {
    1u64 << (sig - 1)
}

/// Constructor, one thread: the key, and the main thread's real mask. Whatever of the trigger
/// signals the program inherited blocked stays blocked for it, virtually.
pub fn init() {
    let mut k: libc::pthread_key_t = 0;
    // SAFETY: a plain key without destructor.
    if unsafe { libc::pthread_key_create(&mut k, None) } == 0 {
        KEY.store(k, Ordering::Release);
    }
}

/// Block the trigger signals in the calling (program) thread for real; what it blocked before
/// becomes its virtual mask.
pub fn take_over_thread() {
    let t = triggers();
    let mut old: u64 = 0;
    let _ = syscall!(libc::SYS_rt_sigprocmask, libc::SIG_BLOCK, &t as *const u64, &mut old as *mut u64, 8);
    set_vblocked(old & t);
}

/// The calling thread's virtually blocked trigger signals.
pub fn vblocked() -> u64 {
    let key = KEY.load(Ordering::Acquire);
    if key == NO_KEY {
        return 0;
    }
    // SAFETY: reading this thread's value of our key (no lock, no allocation).
    unsafe { libc::pthread_getspecific(key) as u64 }
}

pub fn set_vblocked(bits: u64) {
    let key = KEY.load(Ordering::Acquire);
    if key != NO_KEY {
        // SAFETY: storing a plain number as this thread's value of our key.
        unsafe { libc::pthread_setspecific(key, bits as usize as *const libc::c_void) };
    }
}

/// A real mask the program asked for, as the calling thread must really have it, and the
/// virtual trigger bits it means. (The stop signal is never blocked, the triggers always.)
pub fn split_mask(how: i32, set: u64) -> (u64, u64) {
    let t = triggers();
    let vb = vblocked();
    let v = match how {
        libc::SIG_BLOCK => vb | (set & t),
        libc::SIG_UNBLOCK => vb & !(set & t),
        _ => set & t,
    };
    let real = match how {
        libc::SIG_UNBLOCK => set & !t,
        _ => crate::sighooks::sanitize_mask(set),
    };
    (real & !crate::sighooks::stop_bit(), v)
}

/// A real mask as the program must see it: the virtual trigger bits in place of the real ones.
pub fn shown_mask(real: u64) -> u64 {
    let t = triggers();
    (real & !t) | (vblocked() & t)
}

/// The virtual pending trigger signals of the calling thread (and of the process).
pub fn pending() -> u64 {
    let me = crate::vids::gettid();
    POOL.iter()
        .filter(|d| d.state.load(Ordering::Acquire) == PENDING)
        .filter(|d| matches!(d.target.load(Ordering::Acquire), PROCESS) || d.target.load(Ordering::Acquire) == me)
        .fold(0, |m, d| m | bit(d.sig.load(Ordering::Acquire)))
}

// ---- sending ----

fn claim() -> Option<usize> {
    POOL.iter().position(|d| d.state.compare_exchange(FREE, BUSY, Ordering::AcqRel, Ordering::Relaxed).is_ok())
}

fn fill(i: usize, sig: i32, target: i32, info: &Info) {
    let d = &POOL[i];
    d.sig.store(sig, Ordering::Relaxed);
    d.target.store(target, Ordering::Relaxed);
    for (w, v) in d.info.iter().zip(info) {
        w.store(*v, Ordering::Relaxed);
    }
}

/// The siginfo a kill (SI_USER), tgkill (SI_TKILL) or sigqueue (SI_QUEUE, `value`) from this
/// process would carry.
pub fn user_info(sig: i32, code: i32, value: u64) -> Info {
    let mut info = [0u64; 16];
    info[0] = sig as u32 as u64; // si_errno 0
    info[1] = code as u32 as u64;
    let uid = syscall!(libc::SYS_getuid).unwrap_or(0) as u32 as u64;
    info[2] = crate::vids::getpid() as u32 as u64 | uid << 32;
    info[3] = value;
    info
}

/// Send entry `i` to the thread with real tid `tid` (marked stop signal).
fn post(i: usize, tid: i32) -> Result<(), i32> {
    let mut info = [0u64; 16];
    info[0] = crate::threads::STOP_SIGNAL as u32 as u64;
    info[1] = SI_QUEUE as u32 as u64;
    let uid = syscall!(libc::SYS_getuid).unwrap_or(0) as u32 as u64;
    info[2] = sys::getpid() as u32 as u64 | uid << 32;
    info[3] = MARK | i as u64;
    syscall!(libc::SYS_rt_tgsigqueueinfo, sys::getpid(), tid, crate::threads::STOP_SIGNAL, info.as_ptr()).map(|_| ())
}

/// Deliver `sig` with `info` to the program thread whose real tid is `tid` (`process`: the
/// signal was for the whole process; the thread is just where it is delivered). Errors are
/// errno values (EAGAIN: too many undelivered signals).
pub fn send(tid: i32, sig: i32, info: &Info, process: bool) -> Result<(), i32> {
    let i = claim().ok_or(libc::EAGAIN)?;
    let target = if process { PROCESS } else { crate::vids::virt_of_tid(tid) };
    fill(i, sig, target, info);
    post(i, tid).inspect_err(|_| POOL[i].state.store(FREE, Ordering::Release))
}

/// A trigger signal the program sends itself, from a hook: to its thread with real tid `tid`, or
/// to its whole process (`tid` None: the calling thread takes it unless it blocks it, as the
/// kernel prefers; then it waits as pending for the process). `code`/`value`: the siginfo of the
/// call (SI_USER for kill, SI_TKILL for tgkill/pthread_kill/raise, SI_QUEUE and its value).
pub fn send_own(tid: Option<i32>, sig: i32, code: i32, value: u64) -> Result<(), i32> {
    let info = user_info(sig, code, value);
    match tid {
        Some(t) => send(t, sig, &info, false),
        None => send(sys::gettid(), sig, &info, true),
    }
}

/// Whether a signal the checkpoint thread received is the program's own (sent by itself, or by
/// the kernel for something the program set up: a timer, SIGIO, SIGCHLD): not a checkpoint.
///
/// In the program's own namespace (ckpt-ns), a signal from another process of the namespace
/// (its pid is seen there; senders outside show 0, and ckpt's outer process forwards with
/// `FORWARD_MARK`) is the program's too: its processes signal each other (a parent's TERM to its
/// worker), while checkpoint requests come from outside.
pub fn is_programs(info: &libc::siginfo_t) -> bool {
    let code = info.si_code;
    if matches!(code, SI_USER | SI_QUEUE | SI_TKILL) {
        // SAFETY: kill/sigqueue/tgkill siginfo carries the sender's pid.
        let pid = unsafe { info.si_pid() };
        // SAFETY: a queued signal's value (0 for the others).
        let forwarded = code == SI_QUEUE && unsafe { info.si_value().sival_ptr } as usize as i32 == ckpt_ns::FORWARD_MARK;
        return pid == sys::getpid() || (crate::ids::in_namespace() && pid > 1 && !forwarded);
    }
    code != SI_KERNEL
}

/// From the checkpoint thread's trigger handler: keep `info` for the checkpoint loop to send on
/// (async-signal-safe). False if there is no room (the signal is lost, as a full queue loses it).
pub fn queue_forward(sig: i32, info: &libc::siginfo_t) -> bool {
    let Some(i) = claim() else { return false };
    // SAFETY: siginfo_t is 128 bytes of plain data.
    let words = unsafe { std::ptr::read_unaligned(info as *const libc::siginfo_t as *const Info) };
    fill(i, sig, PROCESS, &words);
    POOL[i].state.store(FORWARD, Ordering::Release);
    true
}

/// Checkpoint loop: send the signals the program sent its own process on to one of its threads
/// (the main thread if it is still there).
pub fn forward_queued() {
    for (i, d) in POOL.iter().enumerate() {
        if d.state.compare_exchange(FORWARD, BUSY, Ordering::AcqRel, Ordering::Relaxed).is_err() {
            continue;
        }
        // si_pid is the real pid; the program knows its own as getpid() shows it.
        let w = &d.info[2];
        let v = w.load(Ordering::Relaxed);
        if v as u32 as i32 == sys::getpid() {
            w.store((v & !0xffff_ffff) | crate::vids::getpid() as u32 as u64, Ordering::Relaxed);
        }
        if let Some(tid) = a_program_thread() {
            if post(i, tid).is_ok() {
                continue;
            }
        }
        d.state.store(FREE, Ordering::Release);
    }
}

fn a_program_thread() -> Option<i32> {
    let pid = sys::getpid();
    if sys::tgkill(pid, pid, 0).is_ok() {
        return Some(pid);
    }
    let me = sys::gettid();
    sys::list_dir(&sys::cpath(&[b"/proc/self/task"]))
        .ok()?
        .iter()
        .filter_map(|n| std::str::from_utf8(n).ok()?.parse::<i32>().ok())
        .find(|&t| t != me)
}

// ---- receiving (in the stop handler) ----

/// The pool entry a marked stop signal carries.
pub fn marked(info: *const libc::siginfo_t) -> Option<usize> {
    // SAFETY: the kernel's siginfo for this handler.
    let words = unsafe { std::ptr::read_unaligned(info as *const Info) };
    let ok = words[1] as u32 as i32 == SI_QUEUE && words[2] as u32 as i32 == sys::getpid() && words[3] & !0xffff_ffff == MARK;
    let i = (words[3] & 0xffff_ffff) as usize;
    (ok && i < N).then_some(i)
}

/// Deliver pool entry `i` to the calling thread, interrupted at `uc` (stop handler, every signal
/// blocked).
pub fn deliver(i: usize, uc: *mut libc::ucontext_t) {
    let d = &POOL[i];
    let sig = d.sig.load(Ordering::Acquire);
    if sig <= 0 || sig > 64 || d.state.load(Ordering::Acquire) != BUSY {
        return;
    }
    if vblocked() & bit(sig) != 0 {
        // Natively a standard signal already pending is not queued twice.
        let target = d.target.load(Ordering::Relaxed);
        let dup = sig < libc::SIGRTMIN() && POOL.iter().any(|o| o.state.load(Ordering::Acquire) == PENDING && o.sig.load(Ordering::Relaxed) == sig && o.target.load(Ordering::Relaxed) == target);
        d.state.store(if dup { FREE } else { PENDING }, Ordering::Release);
        return;
    }
    let mut info: Info = [0; 16];
    for (v, w) in info.iter_mut().zip(&d.info) {
        *v = w.load(Ordering::Relaxed);
    }
    d.state.store(FREE, Ordering::Release);
    dispatch(sig, &mut info, uc);
}

/// After the calling thread unblocked signals (virtually): deliver what it may now receive.
/// Returns whether anything was delivered (its handlers have run when this returns).
pub fn flush() -> bool {
    let vb = vblocked();
    let me = crate::vids::gettid();
    let mut any = false;
    for (i, d) in POOL.iter().enumerate() {
        let target = d.target.load(Ordering::Acquire);
        if (target != PROCESS && target != me) || vb & bit(d.sig.load(Ordering::Acquire)) != 0 {
            continue;
        }
        if d.state.compare_exchange(PENDING, BUSY, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            // Delivered by our own stop handler before the system call returns.
            if post(i, sys::gettid()).is_ok() {
                any = true;
            } else {
                d.state.store(PENDING, Ordering::Release);
            }
        }
    }
    any
}

fn dispatch(sig: i32, info: &mut Info, uc: *mut libc::ucontext_t) {
    let act = crate::sighooks::virtual_action(sig);
    match act.sa_sigaction {
        libc::SIG_IGN => {}
        libc::SIG_DFL => default_action(sig),
        h => run_handler(sig, h, &act, info, uc),
    }
}

/// What the kernel does with a signal nobody handles.
fn default_action(sig: i32) {
    match sig {
        libc::SIGCHLD | libc::SIGCONT | libc::SIGURG | libc::SIGWINCH => {}
        libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU => {
            let _ = syscall!(libc::SYS_kill, sys::getpid(), libc::SIGSTOP);
        }
        _ => {
            // Die of this very signal: default disposition, unblocked, sent to ourselves.
            let dfl = [0u64; 4];
            let _ = syscall!(libc::SYS_rt_sigaction, sig, dfl.as_ptr(), 0, 8);
            let b = bit(sig);
            let _ = syscall!(libc::SYS_rt_sigprocmask, libc::SIG_UNBLOCK, &b as *const u64, 0, 8);
            let _ = sys::tgkill(sys::getpid(), sys::gettid(), sig);
            loop {
                let _ = syscall!(libc::SYS_exit_group, 128 + sig);
            }
        }
    }
}

fn mask_of(uc: *mut libc::ucontext_t) -> &'static mut u64 {
    // SAFETY: the first word of uc_sigmask is the kernel's sigset; uc is our frame.
    unsafe { &mut *(std::ptr::addr_of_mut!((*uc).uc_sigmask) as *mut u64) }
}

fn run_handler(sig: i32, h: usize, act: &libc::sigaction, info: &mut Info, uc: *mut libc::ucontext_t) {
    let t = triggers();
    // SAFETY: sa_mask's first word holds signals 1..64.
    let sa_mask = unsafe { *(&act.sa_mask as *const libc::sigset_t as *const u64) };
    if act.sa_flags & libc::SA_RESETHAND != 0 {
        crate::sighooks::reset_virtual(sig);
    }
    let old_v = vblocked();
    let mut during_v = old_v | (sa_mask & t);
    if act.sa_flags & libc::SA_NODEFER == 0 {
        during_v |= bit(sig);
    }
    // The program sees its interrupted mask with the virtual trigger bits.
    let real_interrupted = *mask_of(uc);
    *mask_of(uc) = (real_interrupted & !t) | (old_v & t);
    let during_real = crate::sighooks::sanitize_mask(real_interrupted | sa_mask);
    set_vblocked(during_v & t);
    let _ = syscall!(libc::SYS_rt_sigprocmask, libc::SIG_SETMASK, &during_real as *const u64, 0, 8);
    if act.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the program's SA_SIGINFO handler, with a siginfo and our frame's ucontext.
        let f: extern "C" fn(i32, *mut Info, *mut libc::c_void) = unsafe { std::mem::transmute(h) };
        f(sig, info, uc as *mut libc::c_void);
    } else {
        // SAFETY: the program's plain handler.
        let f: extern "C" fn(i32) = unsafe { std::mem::transmute(h) };
        f(sig);
    }
    let all: u64 = !0;
    let _ = syscall!(libc::SYS_rt_sigprocmask, libc::SIG_SETMASK, &all as *const u64, 0, 8);
    // What the handler left in uc_sigmask is the mask after it, virtual bits included.
    let after = *mask_of(uc);
    set_vblocked(after & t);
    *mask_of(uc) = crate::sighooks::sanitize_mask(after);
    // Signals the handler's return unblocks arrive right after it.
    if POOL.iter().any(|d| d.state.load(Ordering::Acquire) == PENDING) {
        flush();
    }
}
