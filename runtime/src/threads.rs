//! Stopping, describing and recreating the program's threads.
//!
//! Stop: every thread but ours gets the reserved stop signal (tgkill). Its handler records what
//! the kernel will not give back later (TLS base, tid address, robust list, sigaltstack) and the
//! address of its own signal frame, then parks on a futex. The frame on the thread's stack holds
//! every register and the signal mask; the stack is part of the memory image. A thread in
//! seccomp strict mode, which may make no call but read and write, stops another way
//! (`stop_strict`, strictstop.rs).
//!
//! Restart: for each recorded thread, clone a new kernel thread with the same TLS (and, where ids
//! are exact, the same thread id: clone3 set_tid), let it re-register its robust list, rseq and
//! sigaltstack and take back its capabilities, park it, and on release make it execute
//! rt_sigreturn on its old frame: it continues exactly where it was interrupted.

use crate::log::{log, DEBUG, ERROR};
use crate::sys::{self, syscall};
use ckpt_ns::CloneArgs;
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicUsize, Ordering};

pub const MAX_THREADS: usize = 4096;
/// The reserved signal that stops threads.
pub const STOP_SIGNAL: i32 = 63;
const RSEQ_SIG: u32 = 0x5305_3053;

#[derive(Clone, Copy, Default)]
pub struct Slot {
    pub tid: i32,
    pub ucontext: u64,
    /// The stack pointer of the interrupted code, read from the frame at the stop: the frame
    /// itself is gone once the thread is resumed (its memory is the stack's again).
    pub sp: u64,
    pub fs_base: u64,
    pub tid_address: u64,
    pub robust_head: u64,
    pub robust_len: u64,
    pub ss_sp: u64,
    pub ss_size: u64,
    pub ss_flags: i32,
    pub rseq: bool,
    pub attrs: ckpt_image::ThreadAttrs,
    /// Stopped through `stop_strict` (seccomp strict mode): the checkpoint thread completes
    /// the slot (strictstop::complete).
    pub quiet: bool,
}

struct Slots(UnsafeCell<[Slot; MAX_THREADS]>);
// SAFETY: each slot is written by exactly one thread (the one that claimed its index) and read
// by the checkpoint thread only after that thread published it through STOPPED.
unsafe impl Sync for Slots {}

static SLOTS: Slots = Slots(UnsafeCell::new([Slot {
    tid: 0,
    ucontext: 0,
    sp: 0,
    fs_base: 0,
    tid_address: 0,
    robust_head: 0,
    robust_len: 0,
    ss_sp: 0,
    ss_size: 0,
    ss_flags: 0,
    rseq: false,
    attrs: ckpt_image::ThreadAttrs::ZERO,
    quiet: false,
}; MAX_THREADS]));
static CLAIMED: AtomicU32 = AtomicU32::new(0);
static STOPPED: AtomicU32 = AtomicU32::new(0);
static PUBLISHED: [AtomicI32; MAX_THREADS] = [const { AtomicI32::new(0) }; MAX_THREADS];
static RELEASE: AtomicU32 = AtomicU32::new(0);
static STOPPING: AtomicBool = AtomicBool::new(false);
/// The checkpoint's requests to the threads parked in the stop handler for a late capture of
/// their own signals (`late_capture`), and how many have answered.
static LATE_ROUND: AtomicU32 = AtomicU32::new(0);
static LATE_DONE: AtomicU32 = AtomicU32::new(0);
/// Restarted threads that have left their temporary stacks.
static LEFT: AtomicU32 = AtomicU32::new(0);

/// glibc's tid field (PR_GET_TID_ADDRESS) relative to the thread's TLS base, as the main thread
/// had it when the runtime started.
static TID_FIELD_OFFSET: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// The thread-group leader's tid word (its clear_child_tid address: the kernel zeroes it when
/// the leader exits); 0: not known.
static LEADER_TID_WORD: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// In the constructor, on the main thread; and in a forked child, on its only thread (the
/// leader's tid word is then that thread's).
pub fn measure_tid_field() {
    let mut tidp: u64 = 0;
    if syscall!(libc::SYS_prctl, libc::PR_GET_TID_ADDRESS, &mut tidp as *mut u64).is_ok() && tidp != 0 {
        TID_FIELD_OFFSET.store((tidp as i64).wrapping_sub(sys::arch_get_fs() as i64), Ordering::Relaxed);
    }
    LEADER_TID_WORD.store(tidp, Ordering::Relaxed);
}

/// Whether the thread-group leader surely still runs: its tid word is not zero yet. Read with
/// process_vm_readv (a word the program unmapped gives an error, never a fault), so that the
/// checkpoint thread's once-a-second look whether the program ended opens no fd while the
/// leader lives (an fd of ours for an instant takes the number the program's next open()
/// expects). False: not known, or gone.
pub(crate) fn leader_surely_alive() -> bool {
    let addr = LEADER_TID_WORD.load(Ordering::Relaxed);
    if addr == 0 {
        return false;
    }
    let mut word: u32 = 0;
    let local = libc::iovec { iov_base: (&mut word as *mut u32).cast(), iov_len: 4 };
    let remote = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: 4 };
    syscall!(libc::SYS_process_vm_readv, sys::getpid(), &local as *const libc::iovec, 1, &remote as *const libc::iovec, 1, 0) == Ok(4) && word != 0
}

/// glibc's rseq area, relative to each thread's TLS base (0 size: none).
pub static RSEQ_OFFSET: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
pub static RSEQ_SIZE: AtomicU32 = AtomicU32::new(0);

/// The handler of STOP_SIGNAL, installed with SA_SIGINFO | SA_RESTART and every signal masked.
/// It also carries the trigger signals the program sends itself (selfsig.rs).
pub extern "C" fn stop_handler(_sig: i32, info: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    // Taken inside a fork's window (forklock.rs), where this thread holds the runtime's locks:
    // taken again once it is closed.
    if crate::forklock::keep_for_later(info) {
        return;
    }
    // Our own system calls here are not dispatched (sud.rs), whatever the thread's state.
    let _allow = crate::sud::Allow::new();
    // Seccomp strict mode: no system call but read and write from here on.
    if let Some(tid) = crate::strictstop::marked(info) {
        return stop_strict(tid, uc);
    }
    if crate::seccomp::entering() {
        // It asked for strict mode and may be in it: its tid from glibc's (no gettid).
        let tid = (sys::thread_pointer() as i64).wrapping_add(TID_FIELD_OFFSET.load(Ordering::Relaxed));
        // SAFETY: glibc's tid field in this thread's struct pthread, at the offset measured.
        return stop_strict(unsafe { *(tid as *const i32) }, uc);
    }
    if let Some(i) = crate::selfsig::marked(info) {
        crate::selfsig::deliver(i, uc as *mut libc::ucontext_t);
        return;
    }
    // A traced thread its tracer sent here from its signal-delivery-stop: that signal is queued
    // again, and the thread stops as any other (ptraced.rs).
    // Its tracer's process may stop before ours begins to: it waits for our checkpoint as a
    // woken thread does.
    if crate::ptraced::arrived(info, uc as *mut libc::ucontext_t) && crate::tree::own_checkpoint_thread() {
        wait_stopping(crate::tree::stop_coming);
    }
    if crate::tree::woken(info) {
        // Queued by the tree's coordinator before it woke this stopped process: no instruction
        // of the program runs before the checkpoint thread stops this thread (bounded: a
        // checkpoint that never starts lets the thread go on). A child forked by a member and
        // stopped before it joined has no checkpoint thread yet: it parks at the end of its
        // fork handler instead (lib.rs).
        if !crate::tree::own_checkpoint_thread() {
            crate::tree::woken_before_joining();
            return;
        }
        wait_woken();
    }
    // The generation is read before STOPPING: a checkpoint that gives up (a thread it cannot stop)
    // clears STOPPING and then bumps RELEASE, so either this thread sees STOPPING cleared and
    // returns, or it waits for a RELEASE that comes. Read after, a handler that saw STOPPING just
    // before the give-up waited for a release that had already happened: the thread hung forever.
    let gen = RELEASE.load(Ordering::Acquire);
    if !STOPPING.load(Ordering::Acquire) {
        return; // a late stop signal from a checkpoint that has already ended
    }
    let tid = sys::gettid();
    // The threads of other processes this one traces, in signal-delivery-stops: sent into their
    // own stop handler (ptraced.rs).
    crate::ptraced::serve_tracees(tid);
    // Before the frame can be part of an image: a call this signal interrupted is re-issued.
    crate::blocked::prepare(uc as *mut libc::ucontext_t, tid);
    // A call of the program's that dispatch made safe and that the thread is about to make,
    // or will make again: dispatched again, for the snapshot that may begin now.
    crate::sud::reroute(uc as *mut libc::ucontext_t);
    // A background snapshot begins: this thread's system calls are dispatched from now on.
    if crate::sud::starting() {
        crate::sud::enable_self(uc as *mut libc::ucontext_t);
    }
    // Its pending signals' siginfo (and the process's, if it leads the group): taken and put back.
    crate::sigqueue::capture_thread();
    let idx = CLAIMED.fetch_add(1, Ordering::AcqRel) as usize;
    if idx < MAX_THREADS {
        // SAFETY: this thread's own signal frame, from the kernel.
        let sp = unsafe { (*(uc as *const libc::ucontext_t)).uc_mcontext.gregs[libc::REG_RSP as usize] } as u64;
        let mut s = Slot { tid, ucontext: uc as u64, sp, fs_base: sys::arch_get_fs(), ..Slot::default() };
        let mut tidp: u64 = 0;
        // (A seccomp filter of the program's may forbid prctl: glibc's tid field is at the same
        // place in every thread's struct pthread.)
        s.tid_address = match syscall!(libc::SYS_prctl, libc::PR_GET_TID_ADDRESS, &mut tidp as *mut u64) {
            Ok(_) => tidp,
            Err(_) => (s.fs_base as i64).wrapping_add(TID_FIELD_OFFSET.load(Ordering::Relaxed)) as u64,
        };
        let (mut head, mut len) = (0u64, 0u64);
        let _ = syscall!(libc::SYS_get_robust_list, 0, &mut head as *mut u64, &mut len as *mut u64);
        s.robust_head = head;
        s.robust_len = len;
        let mut ss: libc::stack_t = libc::stack_t { ss_sp: std::ptr::null_mut(), ss_flags: 0, ss_size: 0 };
        let _ = syscall!(libc::SYS_sigaltstack, 0, &mut ss as *mut libc::stack_t);
        s.ss_sp = ss.ss_sp as u64;
        s.ss_size = ss.ss_size as u64;
        s.ss_flags = ss.ss_flags;
        s.rseq = RSEQ_SIZE.load(Ordering::Relaxed) != 0;
        s.attrs = crate::threadattrs::capture();
        crate::ids::note_secbits(idx, tid);
        crate::seccomp::at_stop(tid);
        // SAFETY: index idx was claimed by this thread alone.
        unsafe { (*SLOTS.0.get())[idx] = s };
        PUBLISHED[idx].store(s.tid, Ordering::Release);
    }
    let mut round = LATE_ROUND.load(Ordering::Acquire);
    STOPPED.fetch_add(1, Ordering::AcqRel);
    sys::futex_wake(&STOPPED);
    while RELEASE.load(Ordering::Acquire) == gen {
        let asked = LATE_ROUND.load(Ordering::Acquire);
        if asked != round {
            round = asked;
            crate::sigqueue::recapture_thread();
            LATE_DONE.fetch_add(1, Ordering::AcqRel);
            sys::futex_wake(&LATE_DONE);
            continue;
        }
        sys::futex_wait(&RELEASE, gen, None);
    }
    crate::sigqueue::after_release();
    // The threads it traces are in their signal-delivery-stops again before its program runs.
    crate::ptraced::after_release(tid);
}

/// The stop handler of a thread in seccomp strict mode (`tid`: its id; strictstop.rs): only
/// read, write and rt_sigreturn. Its slot from memory (TLS base from the thread control block,
/// tid address at glibc's offset, stack pointer and sigaltstack from the signal frame), the
/// rest from the checkpoint thread once it is parked; it parks in a read() (no futex), and a
/// call it was blocked in restarts as the kernel restarts it (SA_RESTART; read and write only).
fn stop_strict(tid: i32, uc: *mut libc::c_void) {
    let gen = RELEASE.load(Ordering::Acquire);
    if !STOPPING.load(Ordering::Acquire) {
        return;
    }
    let idx = CLAIMED.fetch_add(1, Ordering::AcqRel) as usize;
    if idx < MAX_THREADS {
        // SAFETY: this thread's own signal frame, from the kernel.
        let ctx = unsafe { &*(uc as *const libc::ucontext_t) };
        let fs_base = sys::thread_pointer();
        let s = Slot {
            tid,
            ucontext: uc as u64,
            sp: ctx.uc_mcontext.gregs[libc::REG_RSP as usize] as u64,
            fs_base,
            tid_address: (fs_base as i64).wrapping_add(TID_FIELD_OFFSET.load(Ordering::Relaxed)) as u64,
            // The sigaltstack the kernel saved in the frame (and gives back at rt_sigreturn).
            ss_sp: ctx.uc_stack.ss_sp as u64,
            ss_size: ctx.uc_stack.ss_size as u64,
            ss_flags: ctx.uc_stack.ss_flags,
            rseq: RSEQ_SIZE.load(Ordering::Relaxed) != 0,
            quiet: true,
            ..Slot::default()
        };
        // SAFETY: index idx was claimed by this thread alone.
        unsafe { (*SLOTS.0.get())[idx] = s };
        PUBLISHED[idx].store(tid, Ordering::Release);
    }
    // (No futex wake: the checkpoint thread looks again every 20 ms.)
    STOPPED.fetch_add(1, Ordering::AcqRel);
    crate::strictstop::wait(&RELEASE, gen);
}

/// On the checkpoint thread, every program thread parked, just before the pending signals are
/// read: each parked thread takes its own queue again (sigqueue.rs `recapture_thread`), so that
/// signals directed at it that arrived after it stopped (a POSIX timer aimed at the thread, a
/// sigqueue from another process) are recorded with their siginfo rather than restored by
/// number. Whether every thread answered within 10 s (if not, the checkpoint is refused: a late
/// thread could be rewriting its records while they are read).
pub fn late_capture() -> bool {
    // (Every thread this checkpoint stopped is parked in that loop, but those in seccomp
    // strict mode, parked in strictstop's read: they cannot take their queue again, and a
    // checkpoint with signals pending for one of them alone was refused.)
    // (Counted again at each look: a strict thread counts in STOPPED a moment before it is
    // parked in its read.)
    let want = || STOPPED.load(Ordering::Acquire).saturating_sub(crate::strictstop::parked());
    if want() == 0 {
        return true;
    }
    LATE_DONE.store(0, Ordering::Release);
    LATE_ROUND.fetch_add(1, Ordering::AcqRel);
    let started = now_ms();
    loop {
        let done = LATE_DONE.load(Ordering::Acquire);
        if done >= want() {
            return true;
        }
        if now_ms() - started > 10_000 {
            return false;
        }
        // (Woken again each time: a thread between its look at LATE_ROUND and its wait on
        // RELEASE missed the wake before.)
        sys::futex_wake(&RELEASE);
        sys::futex_wait(&LATE_DONE, done, Some(1));
    }
}

/// Whether the thread-group leader is one of the program threads parked in the stop handler
/// (and took its signals: not one in seccomp strict mode, which cannot).
pub fn leader_parked() -> bool {
    let pid = sys::getpid();
    let n = (CLAIMED.load(Ordering::Acquire) as usize).min(MAX_THREADS);
    PUBLISHED[..n].iter().enumerate().any(|(i, p)| {
        // SAFETY: a published slot is no longer written by its owner.
        p.load(Ordering::Acquire) == pid && !unsafe { (*SLOTS.0.get())[i].quiet }
    })
}

/// Wait (at most `limit_ms`) until a checkpoint is stopping the threads.
/// A thread woken from a job-control stop for a checkpoint (`stop_handler`, tree.rs
/// `park_if_woken`) waits for that checkpoint to stop it: as long as the coordinator's Stop is
/// waiting for this process or its part is being taken (`tree::checkpoint_coming`), at most
/// as long as the coordinator waits for a process (60 s); without either, 300 ms (a wake whose
/// checkpoint never came, or one left from before a restart, must not hold the program).
pub fn wait_woken() -> bool {
    wait_stopping(crate::tree::checkpoint_coming)
}

/// Wait until a checkpoint is stopping the threads: at most 60 s while `coming` says it is
/// on its way, else 300 ms.
fn wait_stopping(coming: fn() -> bool) -> bool {
    let mut waited = 0u32;
    while !STOPPING.load(Ordering::Acquire) && waited < 60_000 {
        if waited >= 300 && !coming() {
            break;
        }
        let ts = sys::timespec_ms(1);
        let _ = syscall!(libc::SYS_nanosleep, &ts as *const libc::timespec, 0);
        waited += 1;
    }
    STOPPING.load(Ordering::Acquire)
}

/// Wait until the checkpoint that is stopping the threads has let them go.
pub fn wait_released() {
    while STOPPING.load(Ordering::Acquire) {
        let ts = sys::timespec_ms(1);
        let _ = syscall!(libc::SYS_nanosleep, &ts as *const libc::timespec, 0);
    }
}

/// Stop every thread of the process except the caller. Returns the stopped threads' records.
pub fn stop_all(self_tid: i32) -> Result<Vec<Slot>, String> {
    let pid = sys::getpid();
    CLAIMED.store(0, Ordering::Release);
    STOPPED.store(0, Ordering::Release);
    for p in PUBLISHED.iter() {
        p.store(0, Ordering::Relaxed);
    }
    crate::blocked::reset();
    // Where the threads of a process stopped by job control were (tree.rs): before `observe`.
    crate::tree::adopt_seen();
    crate::sigqueue::reset();
    crate::seccomp::reset();
    crate::ids::forget_secbits();
    // The threads of other processes that ours trace (before any is stopped).
    crate::ptraced::scan();
    STOPPING.store(true, Ordering::Release);
    let mut signaled: Vec<i32> = Vec::new();
    // Threads seen blocking the stop signal: (tid, since when, its CPU time then).
    let mut suspects: Vec<(i32, u64, u64)> = Vec::new();
    let task_dir = sys::cpath(&[b"/proc/self/task"]);
    let started = now_ms();
    // A thread in seccomp strict mode seen before the eventfd it waits on exists: signaled
    // once every other thread is stopped and the eventfd made (strictstop.rs).
    let mut strict_later = false;
    loop {
        let names = sys::list_dir(&task_dir).map_err(|e| format!("cannot list threads: errno {e}"))?;
        let mut new = 0;
        for n in names {
            let Ok(tid) = std::str::from_utf8(&n).unwrap_or("").parse::<i32>() else { continue };
            if tid == self_tid || signaled.contains(&tid) || is_published(tid) || is_zombie(tid) {
                continue;
            }
            // A thread in seccomp strict mode would be killed by its first other call than
            // read or write in the handler: it is told so in the signal's siginfo.
            let strict = crate::seccomp::strict_mode(tid);
            if strict && !crate::strictstop::ready() {
                strict_later = true;
                continue;
            }
            // A traced thread (in a ptrace stop) is sent into the stop handler by its tracer's
            // (ptraced.rs). What it was blocked in is not noted: the signal its stop is for
            // interrupts that call when it is delivered, as it would have (EINTR where its
            // handler makes it so), so the call is not made again for it.
            if crate::ptraced::awaited(tid) {
                signaled.push(tid);
                new += 1;
                continue;
            }
            // What the thread is blocked in, if anything: its number is not in the signal frame.
            // (In strict mode only read or write, which the kernel restarts itself.)
            if !strict {
                crate::blocked::observe(tid);
            }
            let sent = if strict { crate::strictstop::send(pid, tid, STOP_SIGNAL) } else { sys::tgkill(pid, tid, STOP_SIGNAL) };
            if sent.is_ok() {
                signaled.push(tid);
                new += 1;
            }
        }
        if new == 0 && std::mem::take(&mut strict_later) {
            if let Err(e) = crate::strictstop::ensure_fd() {
                resume_all();
                return Err(e);
            }
            continue;
        }
        if new == 0 {
            break;
        }
        // Wait until each signaled thread has parked (or died).
        loop {
            signaled.retain(|&t| is_published(t) || sys::tgkill(pid, t, 0).is_ok());
            if signaled.iter().all(|&t| is_published(t)) {
                break;
            }
            let now = now_ms();
            let waited = now - started;
            if waited > 200 {
                // A thread that blocks the stop signal for a second while it runs or sleeps
                // blocks it for good (glibc blocks every signal only for moments, except in its
                // aio and mq_notify helpers). A thread glibc has just created starts with every
                // signal blocked until it first runs: one that waits for a CPU all along (state
                // R, no CPU time since) is waited for.
                for &t in signaled.iter().filter(|&&t| !is_published(t)) {
                    if !blocks_stop_signal(t) {
                        suspects.retain(|s| s.0 != t);
                        continue;
                    }
                    let (state, cpu) = state_and_cpu(t);
                    match suspects.iter().find(|s| s.0 == t) {
                        None => suspects.push((t, now, cpu)),
                        Some(&(_, since, cpu0)) if now - since > 1000 && (state != b'R' || cpu != cpu0) => {
                            resume_all();
                            return Err(format!("thread {t} ({}) blocks every signal, the stop signal too: it cannot be stopped for a checkpoint", comm_of(t)));
                        }
                        Some(_) => {}
                    }
                }
            }
            if waited > 20_000 {
                let stuck: Vec<i32> = signaled.iter().copied().filter(|&t| !is_published(t)).collect();
                resume_all();
                return Err(format!("threads {stuck:?} did not stop within 20 s"));
            }
            let s = STOPPED.load(Ordering::Acquire);
            sys::futex_wait(&STOPPED, s, Some(20));
        }
    }
    let n = (CLAIMED.load(Ordering::Acquire) as usize).min(MAX_THREADS);
    if CLAIMED.load(Ordering::Acquire) as usize > MAX_THREADS {
        resume_all();
        return Err(format!("more than {MAX_THREADS} threads"));
    }
    if let Some(e) = crate::seccomp::refusal().or_else(crate::ptraced::refusal) {
        resume_all();
        return Err(e);
    }
    crate::blocked::stopped();
    let mut out = Vec::with_capacity(n);
    for (i, p) in PUBLISHED.iter().enumerate().take(n) {
        if p.load(Ordering::Acquire) != 0 {
            // SAFETY: published slots are no longer written by their owner.
            let mut s = unsafe { (*SLOTS.0.get())[i] };
            if s.quiet {
                if let Err(e) = crate::strictstop::complete(&mut s) {
                    resume_all();
                    return Err(e);
                }
            }
            out.push(s);
        }
    }
    log!(DEBUG, "stopped {} threads", out.len());
    Ok(out)
}

/// Whether thread `tid` has exited but still shows in /proc (the main thread after pthread_exit,
/// while other threads run): it runs no handler and has nothing to save.
pub(crate) fn is_zombie(tid: i32) -> bool {
    let stat = sys::read_file(&sys::cpath(&[b"/proc/self/task/", &sys::decimal(tid), b"/stat"])).unwrap_or_default();
    matches!(crate::kstate::stat_state(&stat), Some(b'Z') | Some(b'X'))
}

/// Whether thread `tid` has the stop signal blocked and still pending (SigBlk and SigPnd in its
/// status). One that has it blocked but no longer pending took it and is in the stop handler
/// (which runs with it blocked): slow to get there, not refusing it.
fn blocks_stop_signal(tid: i32) -> bool {
    let status = sys::read_file(&sys::cpath(&[b"/proc/self/task/", &sys::decimal(tid), b"/status"])).unwrap_or_default();
    let bit = crate::sighooks::stop_bit();
    let field = |key| crate::kstate::value(&status, key, 16).unwrap_or(0);
    field("SigBlk:") & bit != 0 && field("SigPnd:") & bit != 0
}

/// Thread `tid`'s scheduler state (`R`, `S`, `D`, ...) and the CPU time it has had (ns).
fn state_and_cpu(tid: i32) -> (u8, u64) {
    let stat = sys::read_file(&sys::cpath(&[b"/proc/self/task/", &sys::decimal(tid), b"/stat"])).unwrap_or_default();
    let state = crate::kstate::stat_state(&stat).unwrap_or(b'?');
    let sched = sys::read_file(&sys::cpath(&[b"/proc/self/task/", &sys::decimal(tid), b"/schedstat"])).unwrap_or_default();
    let digits: Vec<u8> = sched.iter().copied().take_while(u8::is_ascii_digit).collect();
    (state, std::str::from_utf8(&digits).ok().and_then(|d| d.parse().ok()).unwrap_or(0))
}

fn comm_of(tid: i32) -> String {
    let c = sys::read_file(&sys::cpath(&[b"/proc/self/task/", &sys::decimal(tid), b"/comm"])).unwrap_or_default();
    String::from_utf8_lossy(&c).trim_end().to_string()
}

fn is_published(tid: i32) -> bool {
    let n = (CLAIMED.load(Ordering::Acquire) as usize).min(MAX_THREADS);
    PUBLISHED[..n].iter().any(|p| p.load(Ordering::Acquire) == tid)
}

/// Let every stopped (or restarted) thread continue.
pub fn resume_all() {
    STOPPING.store(false, Ordering::Release);
    RELEASE.fetch_add(1, Ordering::SeqCst);
    sys::futex_wake(&RELEASE);
    crate::strictstop::release();
}

fn now_ms() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    let _ = syscall!(libc::SYS_clock_gettime, libc::CLOCK_MONOTONIC, &mut ts as *mut libc::timespec);
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

// ---- restart ----

std::arch::global_asm!(
    // long ckpt_clone(flags, stack, ptid, ctid, tls, fn, arg) ; child calls fn(arg) on `stack`.
    ".globl ckpt_clone_thread",
    ".type ckpt_clone_thread,@function",
    "ckpt_clone_thread:",
    "    mov rax, [rsp + 8]",
    "    and rsi, -16",
    "    sub rsi, 16",
    "    mov [rsi], r9",
    "    mov [rsi + 8], rax",
    "    mov r10, rcx",
    "    mov eax, 56",
    "    syscall",
    "    test rax, rax",
    "    jz .Lckpt_thread_child",
    "    ret",
    // long ckpt_clone3_thread(args, size): clone3; the child starts with rsp = stack +
    // stack_size, where the caller put fn and arg.
    ".globl ckpt_clone3_thread",
    ".type ckpt_clone3_thread,@function",
    "ckpt_clone3_thread:",
    "    mov eax, 435",
    "    syscall",
    "    test rax, rax",
    "    jz .Lckpt_thread_child",
    "    ret",
    // The child of both: pop fn and arg from its new stack and call fn(arg).
    ".Lckpt_thread_child:",
    "    xor ebp, ebp",
    "    pop rax",
    "    pop rdi",
    "    call rax",
    "    ud2",
    // void ckpt_run_on_stack(arg, top, fn): leave the current stack for good and call fn(arg) on
    // the stack below `top`.
    ".globl ckpt_run_on_stack",
    ".type ckpt_run_on_stack,@function",
    "ckpt_run_on_stack:",
    "    mov rsp, rsi",
    "    and rsp, -16",
    "    xor ebp, ebp",
    "    call rdx",
    "    ud2",
    // void ckpt_sigreturn_leave(ucontext, counter): count ourselves off the temporary stack, then
    // rt_sigreturn on the saved frame (rsp = ucontext: the kernel expects rsp = frame + 8).
    ".globl ckpt_sigreturn_leave",
    ".type ckpt_sigreturn_leave,@function",
    "ckpt_sigreturn_leave:",
    "    mov rsp, rdi",
    "    lock inc dword ptr [rsi]",
    "    mov eax, 15",
    "    syscall",
    "    ud2",
);

extern "C" {
    pub(crate) fn ckpt_clone_thread(flags: u64, stack: u64, ptid: u64, ctid: u64, tls: u64, f: extern "C" fn(u64) -> !, arg: u64) -> i64;
    fn ckpt_clone3_thread(args: *const CloneArgs, size: usize) -> i64;
    pub(crate) fn ckpt_run_on_stack(arg: u64, top: u64, f: extern "C" fn(u64) -> !) -> !;
    fn ckpt_sigreturn_leave(uc: u64, counter: *const AtomicU32) -> !;
}

const TEMP_STACK: usize = 64 * 1024;

/// clone flags for a thread of this process whose tid word (set at creation, cleared and
/// futex-woken at exit) is given as both ptid and ctid.
pub(crate) const THREAD_CLONE_FLAGS: u64 = (libc::CLONE_VM
    | libc::CLONE_FS
    | libc::CLONE_FILES
    | libc::CLONE_SIGHAND
    | libc::CLONE_THREAD
    | libc::CLONE_SYSVSEM
    | libc::CLONE_PARENT_SETTID
    | libc::CLONE_CHILD_CLEARTID) as u64;

/// A thread that exited an instant ago may still hold its tid: ask again this often, 5 ms apart.
const SET_TID_TRIES: u32 = 200;

/// A temporary stack for the restart path (freed by `wait_left_and_free`); returns its top.
pub(crate) fn temp_stack() -> Result<u64, String> {
    let stack = sys::mmap(0, TEMP_STACK, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
        .map_err(|e| format!("cannot map a thread stack: errno {e}"))?;
    push_temp_stack(stack);
    Ok((stack + TEMP_STACK) as u64)
}

/// Create a thread of this process with TLS base `fs_base` and its tid word at `tid_address`,
/// running `f(arg)` on a temporary stack; with thread id `want` when it is > 0 (clone3 set_tid,
/// which needs CAP_CHECKPOINT_RESTORE over our pid namespace; a thread that cannot have it gets
/// a new id, which is said), else any. Returns the new thread's id.
pub(crate) fn spawn_thread(want: i32, fs_base: u64, tid_address: u64, f: extern "C" fn(u64) -> !, arg: u64) -> Result<i32, String> {
    let top = temp_stack()?;
    // SAFETY: the top 16 bytes of the fresh stack hold what ckpt_clone3_thread's child pops.
    unsafe {
        *((top - 16) as *mut u64) = f as usize as u64;
        *((top - 8) as *mut u64) = arg;
    }
    let tids = [want];
    let mut a = CloneArgs {
        flags: THREAD_CLONE_FLAGS | libc::CLONE_SETTLS as u64,
        child_tid: tid_address,
        parent_tid: tid_address,
        stack: top - TEMP_STACK as u64,
        stack_size: TEMP_STACK as u64 - 16,
        tls: fs_base,
        ..CloneArgs::default()
    };
    if want > 0 {
        a.set_tid = tids.as_ptr() as u64;
        a.set_tid_size = 1;
    }
    let mut tries = 0;
    loop {
        // SAFETY: a new thread sharing our memory, with the given TLS; it only runs f(arg) on
        // its own temporary stack.
        let r = unsafe { ckpt_clone3_thread(&a, std::mem::size_of::<CloneArgs>()) };
        if r > 0 {
            return Ok(r as i32);
        }
        let e = -r as i32;
        if a.set_tid == 0 && e == libc::ENOSYS {
            // clone3 forbidden (a seccomp filter the creating thread runs under, as glibc
            // expects of some sandboxes): clone.
            // SAFETY: as above, with clone.
            let r = unsafe { ckpt_clone_thread(a.flags, top, tid_address, tid_address, fs_base, f, arg) };
            if r > 0 {
                return Ok(r as i32);
            }
            return Err(format!("cannot create a thread: {}", crate::checkpoint::strerror(-r as i32)));
        }
        if a.set_tid == 0 {
            return Err(format!("cannot create a thread: {}", crate::checkpoint::strerror(e)));
        }
        if e == libc::EEXIST && tries < SET_TID_TRIES {
            tries += 1;
            let ts = sys::timespec_ms(5);
            let _ = syscall!(libc::SYS_nanosleep, &ts as *const libc::timespec, 0);
            continue;
        }
        log!(ERROR, "thread {want} restarts with a new thread id: {}", crate::checkpoint::strerror(e));
        a.set_tid = 0;
        a.set_tid_size = 0;
    }
}

/// Body of a recreated thread, on a temporary stack with the old thread's TLS.
extern "C" fn restored_thread(slot_addr: u64) -> ! {
    // SAFETY: the checkpoint thread keeps the slot array alive and unchanged until we leave.
    become_restored(unsafe { &*(slot_addr as *const Slot) }, false)
}

/// The calling thread, which already has `s`'s TLS base, takes over the rest of thread `s` of
/// the image: (for the thread-group leader, also the kernel's tid word) robust list, rseq,
/// sigaltstack and capabilities; it parks until `resume_all` and then returns through its
/// signal frame into the code it was interrupted in.
pub fn become_restored(s: &Slot, leader: bool) -> ! {
    let gen = RELEASE.load(Ordering::Acquire);
    if leader {
        let _ = syscall!(libc::SYS_set_tid_address, s.tid_address);
    }
    // These calls do not fail unless a seccomp filter the thread now runs under forbids them
    // (threads that shared their filters take their state back under them): say what is lost.
    if s.robust_head != 0 {
        if let Err(e) = syscall!(libc::SYS_set_robust_list, s.robust_head, s.robust_len) {
            log!(ERROR, "warning: thread {}: its robust futex list is not restored ({}): robust mutexes it holds are not released if it dies", s.tid, crate::checkpoint::strerror(e));
        }
    }
    if !crate::threadattrs::restore(&s.attrs, s.tid) {
        register_rseq(s.fs_base, s.rseq);
    }
    if s.ss_flags & libc::SS_DISABLE == 0 && s.ss_sp != 0 {
        let ss = libc::stack_t { ss_sp: s.ss_sp as *mut libc::c_void, ss_flags: 0, ss_size: s.ss_size as usize };
        // (Under a filter that forbids it, the rt_sigreturn through the thread's frame sets it
        // again from the frame's uc_stack, which no filter sees.)
        let _ = syscall!(libc::SYS_sigaltstack, &ss as *const libc::stack_t, 0);
    }
    crate::sigqueue::restore_thread(s.tid);
    let filters_need_admin = s.attrs.no_new_privs == 0 && crate::seccomp::has_chain();
    // (Before its own capabilities: the threads it creates take theirs back from the
    // restart's, as those the checkpoint thread creates do.)
    spawn_deferred(s.tid, filters_need_admin);
    // Its own user and group ids, from the process's (threadcreds.rs).
    if let Err(line) = crate::threadcreds::restore(&s.attrs.creds, s.tid) {
        crate::ids::end(&line);
    }
    // Its capabilities; CAP_SYS_ADMIN kept until its seccomp filters are in again, if it
    // must install them without no_new_privs (a process of root's that dropped to other ids).
    let kept = crate::ids::restore_caps(s.tid, filters_need_admin);
    STOPPED.fetch_add(1, Ordering::AcqRel);
    sys::futex_wake(&STOPPED);
    while RELEASE.load(Ordering::Acquire) == gen {
        sys::futex_wait(&RELEASE, gen, None);
    }
    // Tracing taken up again, before the filters (which may forbid ptrace): ptraced.rs.
    crate::ptraced::restored(s.tid);
    // Its seccomp filters last: they may forbid the calls above. Then, the very last call,
    // the CAP_SYS_ADMIN they needed goes (none kept: no call; strict mode keeps none).
    crate::seccomp::reinstall(s.tid);
    crate::ids::drop_kept(s.tid, kept);
    // SAFETY: ucontext is this thread's signal frame from the stop handler, intact in memory.
    unsafe { ckpt_sigreturn_leave(s.ucontext, &LEFT) }
}

pub fn register_rseq(fs_base: u64, want: bool) {
    let size = RSEQ_SIZE.load(Ordering::Relaxed);
    if !want || size == 0 {
        return;
    }
    let area = (fs_base as i64 + RSEQ_OFFSET.load(Ordering::Relaxed)) as u64;
    if let Err(e) = syscall!(libc::SYS_rseq, area, size, 0, RSEQ_SIG) {
        log!(DEBUG, "rseq registration failed: errno {e}");
    }
}

/// Recreate the threads of an image (restart path), all but the one whose tid is `skip` (the
/// main thread, which the thread-group leader becomes itself when ids are exact); with their old
/// thread ids when `exact`. They park until `resume_all`: wait for them with `wait_parked`, and
/// after releasing them call `wait_left_and_free` before freeing anything.
///
/// When every thread ran under seccomp filters they shared (seccomp.rs, `plan_shared`), one of
/// them creates the others once its own state is back and it has installed those filters, so
/// that they inherit them, shared, as the kernel gave them: the thread `skip` (which the caller
/// makes itself) if there is one, else the first of `slots`. See `spawn_deferred`.
pub fn recreate(slots: &[Slot], exact: bool, skip: i32) -> Result<(), String> {
    STOPPED.store(0, Ordering::Release);
    LEFT.store(0, Ordering::Release);
    DEFERRED.store(0, Ordering::Release);
    if slots.len() > 1 && crate::seccomp::plan_shared(slots.iter().map(|s| s.fs_base)) {
        let creator = slots.iter().find(|s| s.tid == skip).unwrap_or(&slots[0]);
        DEFER_SLOTS.store(slots.as_ptr() as usize, Ordering::Relaxed);
        DEFER_N.store(slots.len(), Ordering::Relaxed);
        DEFER_EXACT.store(exact, Ordering::Relaxed);
        DEFER_SKIP.store(skip, Ordering::Relaxed);
        DEFERRED.store(creator.tid, Ordering::Release);
        if creator.tid != skip {
            spawn_one(creator, exact)?;
        }
        return Ok(());
    }
    for s in slots.iter().filter(|s| s.tid != skip) {
        spawn_one(s, exact)?;
    }
    Ok(())
}

fn spawn_one(s: &Slot, exact: bool) -> Result<(), String> {
    let tid = spawn_thread(if exact { s.tid } else { 0 }, s.fs_base, s.tid_address, restored_thread, s as *const Slot as u64)?;
    log!(DEBUG, "thread {} restarted as {}", s.tid, tid);
    Ok(())
}

/// The threads `recreate` left to one of them to create (see there): the slot array, its
/// length, exact ids, the tid the caller makes itself.
static DEFER_SLOTS: AtomicUsize = AtomicUsize::new(0);
static DEFER_N: AtomicUsize = AtomicUsize::new(0);
static DEFER_EXACT: AtomicBool = AtomicBool::new(false);
static DEFER_SKIP: AtomicI32 = AtomicI32::new(0);
/// The old tid of the thread that creates the others at this restart; 0: none.
static DEFERRED: AtomicI32 = AtomicI32::new(0);

/// In a recreated thread (old tid `tid`) whose own state but its capabilities is back: if it
/// is the one that creates the others, install the filters they all share (with CAP_SYS_ADMIN
/// effective when `needs_admin`: no no_new_privs), then create them. A thread that
/// cannot be made ends the restarted process with one line.
fn spawn_deferred(tid: i32, needs_admin: bool) {
    if DEFERRED.load(Ordering::Acquire) != tid || tid == 0 {
        return;
    }
    if needs_admin {
        crate::ids::raise_admin();
    }
    crate::seccomp::install_shared(tid);
    let (skip, exact) = (DEFER_SKIP.load(Ordering::Relaxed), DEFER_EXACT.load(Ordering::Relaxed));
    // SAFETY: the slot array `recreate` was given, which the checkpoint thread keeps alive
    // and unchanged until every thread has left (wait_left_and_free).
    let slots = unsafe { std::slice::from_raw_parts(DEFER_SLOTS.load(Ordering::Relaxed) as *const Slot, DEFER_N.load(Ordering::Relaxed)) };
    for s in slots.iter().filter(|s| s.tid != skip && s.tid != tid) {
        if let Err(e) = spawn_one(s, exact) {
            log!(ERROR, "{e}");
            let _ = syscall!(libc::SYS_exit_group, 1);
        }
    }
}

/// Wait until `n` restored threads have registered their state and parked.
pub fn wait_parked(n: usize) {
    while (STOPPED.load(Ordering::Acquire) as usize) < n {
        let v = STOPPED.load(Ordering::Acquire);
        sys::futex_wait(&STOPPED, v, Some(10));
    }
}

static TEMP: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static TEMP_LIST: [std::sync::atomic::AtomicUsize; MAX_THREADS] = [const { std::sync::atomic::AtomicUsize::new(0) }; MAX_THREADS];

fn push_temp_stack(addr: usize) {
    let i = TEMP.fetch_add(1, Ordering::AcqRel);
    if i < MAX_THREADS {
        TEMP_LIST[i].store(addr, Ordering::Release);
    }
}

/// After resume_all at restart: wait until `n` threads have left their temporary stacks, then
/// free them.
pub fn wait_left_and_free(n: usize) {
    let start = now_ms();
    while (LEFT.load(Ordering::Acquire) as usize) < n {
        if now_ms() - start > 10_000 {
            log!(ERROR, "restarted threads did not all resume; keeping their temporary stacks");
            return;
        }
        let _ = syscall!(libc::SYS_sched_yield);
    }
    let k = TEMP.swap(0, Ordering::AcqRel).min(MAX_THREADS);
    for t in TEMP_LIST.iter().take(k) {
        let a = t.swap(0, Ordering::AcqRel);
        if a != 0 {
            sys::munmap(a, TEMP_STACK);
        }
    }
}
