//! Threads traced (ptrace) by a thread of another process of the tree and sitting in a
//! signal-delivery-stop (a child that called PTRACE_TRACEME got a signal; its parent holds the
//! stop report, reads PTRACE_GETSIGINFO and lets it go on with PTRACE_CONT).
//!
//! Such a thread cannot run the stop handler, and only its tracer thread may ask ptrace about
//! it. So at a checkpoint:
//! - the tracer's checkpoint thread finds the threads its own threads trace (`scan`, TracerPid in
//!   /proc); the tracer thread, in its stop handler, checks that each is in a signal-delivery-stop
//!   (the wait report is CLD_TRAPPED with a plain signal, PTRACE_GETSIGINFO answers and is not a
//!   syscall or event trap), keeps the stop's siginfo in its own memory (the image holds it),
//!   and replaces the signal being delivered by the runtime's stop signal, marked, with
//!   PTRACE_SETSIGINFO and PTRACE_CONT (`serve_tracees`): the thread runs the stop handler, not
//!   program code;
//! - there the traced thread reads the stop's siginfo from its tracer's memory and queues it to
//!   itself (`arrived`): it is then one of its pending signals, which the stop handler records
//!   and which a restart queues again. The tracee's checkpoint thread does not send it the stop
//!   signal (that would make a stop its tracer's program sees): it waits for it (`awaited`).
//! - when the threads go on, the traced thread takes that signal first and, being traced, is in
//!   the same signal-delivery-stop again, with the same siginfo; the tracer thread waits for that
//!   stop before its program goes on (`after_release`), so its program finds the wait report
//!   and the siginfo as they were.
//! - at a restart, the tracer thread attaches again (PTRACE_SEIZE: no SIGSTOP) and waits for
//!   the stop; the traced thread waits until it is traced before its program goes on
//!   (`restored`).
//! - a traced thread stopped inside a call with a signal mask of its own (sigsuspend, ppoll,
//!   pselect6, epoll_pwait) for a signal its mask outside the call blocks makes that call again
//!   after its stop handler, so that the signal is delivered and the stop comes back
//!   (`reissue_masked_call`; refused where the call watches descriptors);
//! - a tracer program that seized a thread (PTRACE_SEIZE) or set ptrace options
//!   (PTRACE_SETOPTIONS), which the kernel does not tell, refuses the checkpoint of the threads it
//!   traces: the libc `ptrace` hook notes it (`OPTIONED`).
//!
//! Everything else about tracing (a tracee that runs, syscall-stops, PTRACE_EVENT stops,
//! group-stops, a tracer outside the tree) is refused by the coordinator or here in one line.

use crate::sys::{self, syscall};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

const MAX: usize = 64;

/// The program seized a thread or set ptrace options (`ptrace` hook): a restart would not
/// make them again.
static OPTIONED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static REAL_PTRACE: crate::hooks::RealFn = crate::hooks::RealFn::new(b"ptrace\0");
type PtraceFn = unsafe extern "C" fn(std::ffi::c_int, libc::pid_t, *mut std::ffi::c_void, *mut std::ffi::c_void) -> std::ffi::c_long;

/// libc's ptrace (variadic there; its callers pass the request, pid, addr and data, which the
/// x86-64 calling convention places as for these four arguments): noted when it seizes or sets
/// options, then the real one.
///
/// # Safety
/// As libc's ptrace.
#[no_mangle]
pub unsafe extern "C" fn ptrace(req: std::ffi::c_int, pid: libc::pid_t, addr: *mut std::ffi::c_void, data: *mut std::ffi::c_void) -> std::ffi::c_long {
    let real = REAL_PTRACE.get();
    if real == 0 {
        sys::set_errno(libc::ENOSYS);
        return -1;
    }
    // SAFETY: libc's ptrace, resolved by name.
    let r = unsafe { std::mem::transmute::<usize, PtraceFn>(real)(req, pid, addr, data) };
    let seize_or_options = req as u32 == libc::PTRACE_SEIZE || (req as u32 == libc::PTRACE_SETOPTIONS && !data.is_null());
    if seize_or_options && r == 0 {
        OPTIONED.store(true, Ordering::Release);
    }
    r
}
/// si_errno of the stop signal a tracer injects ("ckpt" in ASCII).
const MARK: i32 = 0x636b_7074;
const SIGINFO: usize = 128;

/// A thread traced by one of ours: tracer tid, its pid and tid, the stop's siginfo.
#[derive(Clone, Copy)]
struct Tracee {
    tracer: i32,
    pid: i32,
    tid: i32,
    info: [u8; SIGINFO],
}

struct Table(UnsafeCell<[Tracee; MAX]>);
// SAFETY: entries are written by the checkpoint thread (`scan`) before it stops the threads, and
// each entry's `info` then only by its tracer thread (its stop handler), before it publishes
// the entry's state.
unsafe impl Sync for Table {}

static TRACEES: Table = Table(UnsafeCell::new([Tracee { tracer: 0, pid: 0, tid: 0, info: [0; SIGINFO] }; MAX]));
static COUNT: AtomicUsize = AtomicUsize::new(0);
/// Per entry: 0 found, 1 sent into its stop handler (its stop is to come back), 2 refused.
static STATE: [AtomicU32; MAX] = [const { AtomicU32::new(0) }; MAX];
/// The first refusal of this checkpoint (an entry's index + 1, and why: `WHY`).
static REFUSED: AtomicUsize = AtomicUsize::new(0);
static WHY: [AtomicU32; MAX] = [const { AtomicU32::new(0) }; MAX];
const WHY_RUNNING: u32 = 1;
const WHY_GROUP: u32 = 2;
const WHY_TRAP: u32 = 3;
const WHY_OURS: u32 = 4;
const WHY_OPTIONS: u32 = 5;

/// Our threads that arrived traced: (tid << 32 | tracer tid); 0: free.
static TRACED: [AtomicU64; MAX] = [const { AtomicU64::new(0) }; MAX];

fn entries() -> &'static mut [Tracee] {
    let n = COUNT.load(Ordering::Acquire).min(MAX);
    // SAFETY: see `Table`.
    unsafe { &mut (&mut *TRACEES.0.get())[..n] }
}

/// A thread's tracer's pid from its /proc status text (0: none).
fn tracer_of(status: &[u8]) -> i32 {
    crate::kstate::value(status, "TracerPid:", 10).unwrap_or(0) as i32
}

/// On the checkpoint thread, before it stops the threads: forget the last checkpoint's records
/// and find the threads of other processes that our threads trace.
pub fn scan() {
    COUNT.store(0, Ordering::Release);
    REFUSED.store(0, Ordering::Release);
    // Only a tree's processes trace threads that take part (the coordinator refuses the rest).
    if !crate::tree::is_member() {
        return;
    }
    let ours: Vec<i32> = sys::list_dir(&sys::cpath(&[b"/proc/self/task"])).unwrap_or_default().iter().filter_map(|n| std::str::from_utf8(n).ok()?.parse().ok()).collect();
    let me = sys::getpid();
    let Ok(pids) = sys::list_dir(&sys::cpath(&[b"/proc"])) else { return };
    let mut n = 0;
    for p in pids {
        let Some(pid) = std::str::from_utf8(&p).ok().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let Ok(tids) = sys::list_dir(&sys::cpath(&[b"/proc/", &p, b"/task"])) else { continue };
        for t in tids {
            let Some(tid) = std::str::from_utf8(&t).ok().and_then(|s| s.parse::<i32>().ok()) else { continue };
            let status = sys::read_file(&sys::cpath(&[b"/proc/", &p, b"/task/", &t, b"/status"])).unwrap_or_default();
            let tracer = tracer_of(&status);
            if tracer != 0 && ours.contains(&tracer) && n < MAX {
                // SAFETY: no thread reads the table before the threads are stopped.
                unsafe { (*TRACEES.0.get())[n] = Tracee { tracer, pid, tid, info: [0; SIGINFO] } };
                STATE[n].store(0, Ordering::Relaxed);
                n += 1;
            }
        }
    }
    COUNT.store(n, Ordering::Release);
    crate::log::log!(crate::log::DEBUG, "ptraced: {n} threads traced by ours {ours:?}");
}

/// On the tracee's checkpoint thread, for each of its threads: whether thread `tid` is traced.
/// Its tracer's stop handler brings it into the stop handler (no stop signal for it: that would
/// stop it for its tracer's program to see). It may have left its ptrace stop already (sent by
/// its tracer): the coordinator checked that it was in one when the checkpoint began, and one
/// its tracer finds elsewhere is refused there; it then never arrives and the stop fails after
/// its bound (20 s) with the tracer's line.
pub fn awaited(tid: i32) -> bool {
    if !crate::tree::is_member() {
        return false;
    }
    let status = sys::read_file(&sys::cpath(&[b"/proc/self/task/", &sys::decimal(tid), b"/status"])).unwrap_or_default();
    tracer_of(&status) != 0
}

/// In the stop handler of each program thread (`tid`): the threads it traces (found by `scan`)
/// are checked and sent into their own stop handler (see the module comment). No allocation:
/// the other threads may be stopped anywhere.
pub fn serve_tracees(tid: i32) {
    for (i, e) in entries().iter_mut().enumerate() {
        if e.tracer != tid {
            continue;
        }
        let why = serve(e);
        crate::log::log!(crate::log::DEBUG, "ptraced: thread {tid} served {}: {why}", e.tid);
        if why == 0 {
            STATE[i].store(1, Ordering::Release);
        } else {
            STATE[i].store(2, Ordering::Release);
            WHY[i].store(why, Ordering::Release);
            let _ = REFUSED.compare_exchange(0, i + 1, Ordering::AcqRel, Ordering::Acquire);
        }
    }
}

fn serve(e: &mut Tracee) -> u32 {
    if OPTIONED.load(Ordering::Acquire) {
        return WHY_OPTIONS;
    }
    // SAFETY: an all-zero siginfo is valid; waitid fills it.
    let mut si: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WSTOPPED | libc::WNOHANG | libc::WNOWAIT | libc::__WALL;
    if syscall!(libc::SYS_waitid, libc::P_PID, e.tid, &mut si as *mut libc::siginfo_t, flags, 0).is_err() {
        return WHY_RUNNING;
    }
    // SAFETY: waitid filled the _sigchld member.
    let (pid, status) = unsafe { (si.si_pid(), si.si_status()) };
    if pid != e.tid || si.si_code != libc::CLD_TRAPPED {
        return WHY_RUNNING;
    }
    if status == crate::threads::STOP_SIGNAL {
        return WHY_OURS;
    }
    // A syscall-stop (SIGTRAP | 0x80) or a PTRACE_EVENT stop (event << 8): not a plain signal.
    if !(1..=64).contains(&status) {
        return WHY_TRAP;
    }
    let mut info = [0u8; SIGINFO];
    // A group-stop has no siginfo (EINVAL).
    if syscall!(libc::SYS_ptrace, libc::PTRACE_GETSIGINFO, e.tid, 0, info.as_mut_ptr()).is_err() {
        return WHY_GROUP;
    }
    let signo = i32::from_ne_bytes([info[0], info[1], info[2], info[3]]);
    let code = i32::from_ne_bytes([info[8], info[9], info[10], info[11]]);
    // A syscall-stop without PTRACE_O_TRACESYSGOOD reports SIGTRAP with si_code SIGTRAP.
    if signo != status || (signo == libc::SIGTRAP && (code & 0x7f) == libc::SIGTRAP) {
        return WHY_TRAP;
    }
    e.info = info;
    // The system call the thread stopped in (orig_rax; -1: none), for `arrived`.
    // SAFETY: an all-zero user_regs_struct is valid; PTRACE_GETREGS fills it.
    let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
    let nr = match syscall!(libc::SYS_ptrace, libc::PTRACE_GETREGS, e.tid, 0, &mut regs as *mut libc::user_regs_struct) {
        Ok(_) => regs.orig_rax,
        Err(_) => u64::MAX,
    };
    let mut mark = [0u8; SIGINFO];
    mark[0..4].copy_from_slice(&crate::threads::STOP_SIGNAL.to_ne_bytes());
    mark[4..8].copy_from_slice(&MARK.to_ne_bytes());
    mark[8..12].copy_from_slice(&libc::SI_QUEUE.to_ne_bytes());
    mark[16..20].copy_from_slice(&sys::getpid().to_ne_bytes());
    mark[20..24].copy_from_slice(&e.tracer.to_ne_bytes());
    mark[24..32].copy_from_slice(&(e.info.as_ptr() as u64).to_ne_bytes());
    mark[32..40].copy_from_slice(&nr.to_ne_bytes());
    if syscall!(libc::SYS_ptrace, libc::PTRACE_SETSIGINFO, e.tid, 0, mark.as_ptr()).is_err() {
        return WHY_RUNNING;
    }
    if syscall!(libc::SYS_ptrace, libc::PTRACE_CONT, e.tid, 0, crate::threads::STOP_SIGNAL).is_err() {
        return WHY_RUNNING;
    }
    0
}

/// On the checkpoint thread, the threads stopped: why the checkpoint cannot be taken, if one
/// of the threads ours trace is not in a signal-delivery-stop.
pub fn refusal() -> Option<String> {
    let masked = MASKED_CALL.load(Ordering::Acquire);
    if masked != 0 {
        let call = match (masked >> 32) as i64 {
            libc::SYS_ppoll => "ppoll",
            libc::SYS_pselect6 => "pselect",
            _ => "epoll_pwait",
        };
        return Some(format!(
            "traced thread {} is in a signal-delivery-stop inside {call}, for a signal the program blocks outside that call, watching descriptors: made again after the checkpoint, the call could return a ready descriptor instead of the signal, which would stay blocked",
            masked as u32 as i32
        ));
    }
    let i = REFUSED.load(Ordering::Acquire).checked_sub(1)?;
    let e = entries().get(i)?;
    let what = match WHY[i].load(Ordering::Acquire) {
        WHY_RUNNING => "is no longer stopped",
        WHY_GROUP => "is in a group-stop",
        WHY_TRAP => "is in a syscall-stop or a PTRACE_EVENT stop",
        WHY_OPTIONS => "was seized (PTRACE_SEIZE) or given ptrace options (PTRACE_SETOPTIONS), which a restart would not give again",
        _ => "is stopped by ckpt's own stop signal",
    };
    Some(format!("thread {} of process {} traced by our thread {} {what}: ckpt checkpoints a traced thread only in a signal-delivery-stop", e.tid, e.pid, e.tracer))
}

/// In the stop handler, first: whether `info` is a tracer's marked stop signal; if so, the
/// stop's siginfo is read from the tracer's memory and queued to this thread again, and the
/// thread is noted as traced (for a restart).
pub fn arrived(info: *const libc::siginfo_t, uc: *mut libc::ucontext_t) -> bool {
    // SAFETY: the kernel's siginfo for this handler.
    let w = unsafe { std::ptr::read_unaligned(info as *const [u64; 5]) };
    if (w[0] >> 32) as u32 as i32 != MARK || w[1] as u32 as i32 != libc::SI_QUEUE {
        return false;
    }
    let (pid, tracer, addr) = (w[2] as u32 as i32, (w[2] >> 32) as u32 as i32, w[3]);
    let mut s = [0u8; SIGINFO];
    let local = libc::iovec { iov_base: s.as_mut_ptr().cast(), iov_len: SIGINFO };
    let remote = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: SIGINFO };
    let tid = sys::gettid();
    if syscall!(libc::SYS_process_vm_readv, pid, &local as *const libc::iovec, 1, &remote as *const libc::iovec, 1, 0) != Ok(SIGINFO as i64) {
        crate::log::log!(crate::log::ERROR, "thread {tid}: the siginfo of its signal-delivery-stop cannot be read from its tracer {pid}: the signal is lost");
        return true;
    }
    let signo = i32::from_ne_bytes([s[0], s[1], s[2], s[3]]);
    let _ = syscall!(libc::SYS_rt_tgsigqueueinfo, sys::getpid(), tid, signo, s.as_ptr());
    reissue_masked_call(uc, w[4] as i64, signo, tid);
    // (A free entry: each is freed by its thread once it goes on, `forget`.)
    let word = ((tid as u32 as u64) << 32) | tracer as u32 as u64;
    let _ = TRACED.iter().any(|t| t.compare_exchange(0, word, Ordering::AcqRel, Ordering::Acquire).is_ok());
    true
}

/// A traced thread of ours stopped in a call with a signal mask of its own that the stop's
/// signal interrupted, and that signal blocked outside the call (`tid`, or 0).
static MASKED_CALL: AtomicU64 = AtomicU64::new(0);

/// In the stop handler of traced thread `tid`, its stop's signal `signo` queued again: if it
/// stopped in a call that sets its own signal mask (`nr`, its tracer read orig_rax) and the
/// mask the thread returns to (the frame's: for these calls the kernel saves the mask from
/// before the call there) blocks `signo`, the queued signal would stay pending once the handler
/// returns and the stop would not come back. The frame is set to make that call again instead
/// (rip back onto its `syscall` instruction, rax its number, the arguments untouched, as the
/// kernel restarts a call): it takes the call's mask, the signal is delivered in it and the
/// thread is in the same stop, the call ends with EINTR and the program's mask is back, as
/// without the checkpoint. A sigsuspend always ends so, and a ppoll or pselect6 watching no
/// descriptor too (a pending signal ends them before their timeout is looked at); one that
/// watches descriptors, or an epoll_pwait, made again could find a descriptor ready and return
/// it with the signal still blocked (the stop would not come back): refused (`refusal`), the
/// frame set all the same so that the program goes on as it was. A call of the runtime's own
/// (`blocked::prepare` makes it again) is left alone.
fn reissue_masked_call(uc: *mut libc::ucontext_t, nr: i64, signo: i32, tid: i32) {
    const CALLS: [i64; 5] = [libc::SYS_rt_sigsuspend, libc::SYS_ppoll, libc::SYS_pselect6, libc::SYS_epoll_pwait, libc::SYS_epoll_pwait2];
    if !CALLS.contains(&nr) || !(1..=64).contains(&signo) {
        return;
    }
    // SAFETY: uc is the signal frame the kernel gave this handler, in this thread's memory.
    let uc = unsafe { &mut *uc };
    let rip = uc.uc_mcontext.gregs[libc::REG_RIP as usize] as u64;
    let rax = uc.uc_mcontext.gregs[libc::REG_RAX as usize];
    if rax != -(libc::EINTR as i64) || rip == crate::blocked::reissue_end() {
        return;
    }
    // SAFETY: the kernel stopped this thread at rip after a system call: the two bytes before
    // it are the instruction that entered the kernel, mapped code.
    if unsafe { std::ptr::read_unaligned((rip - 2) as *const [u8; 2]) } != [0x0f, 0x05] {
        return;
    }
    // SAFETY: the first 8 bytes of uc_sigmask are the kernel's sigset.
    let mask = unsafe { std::ptr::read_unaligned(std::ptr::addr_of!(uc.uc_sigmask) as *const u64) };
    if mask & (1u64 << (signo - 1)) == 0 {
        return;
    }
    uc.uc_mcontext.gregs[libc::REG_RIP as usize] = (rip - 2) as i64;
    uc.uc_mcontext.gregs[libc::REG_RAX as usize] = nr;
    crate::log::log!(crate::log::DEBUG, "ptraced: thread {tid} makes its call {nr} again for signal {signo}");
    let g = |r: libc::c_int| uc.uc_mcontext.gregs[r as usize];
    let watches = match nr {
        libc::SYS_rt_sigsuspend => false,
        libc::SYS_ppoll => g(libc::REG_RSI) != 0,
        libc::SYS_pselect6 => g(libc::REG_RDI) != 0,
        _ => true, // an epoll set (what it holds is not known here)
    };
    if watches {
        MASKED_CALL.store(((nr as u64) << 32) | tid as u32 as u64, Ordering::Release);
    }
}

/// Whether thread `tid` arrived traced at this checkpoint (then forgets it when `forget`: the
/// thread goes on, and the images taken hold the note).
fn traced_here(tid: i32, forget: bool) -> bool {
    let mut found = false;
    for t in TRACED.iter() {
        let w = t.load(Ordering::Acquire);
        if w != 0 && (w >> 32) as u32 as i32 == tid {
            found = true;
            if forget {
                t.store(0, Ordering::Release);
            }
        }
    }
    found
}

/// In the stop handler of tracer thread `tid`, once released: wait until each thread it sent
/// into its stop handler is in its signal-delivery-stop again (or ended), so that its program
/// finds the stop as it was.
pub fn after_release(tid: i32) {
    traced_here(tid, true);
    // (Its refusal was read before the release; a thread may arrive before its checkpoint
    // thread begins, so it is not forgotten at the start.)
    let masked = MASKED_CALL.load(Ordering::Acquire);
    if masked != 0 && masked as u32 as i32 == tid {
        let _ = MASKED_CALL.compare_exchange(masked, 0, Ordering::AcqRel, Ordering::Acquire);
    }
    for (i, e) in entries().iter().enumerate() {
        if e.tracer == tid && STATE[i].load(Ordering::Acquire) == 1 {
            wait_stopped(e.tid);
        }
    }
}

fn wait_stopped(tid: i32) {
    // SAFETY: an all-zero siginfo is valid; waitid fills it.
    let mut si: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WSTOPPED | libc::WEXITED | libc::WNOWAIT | libc::__WALL;
    while syscall!(libc::SYS_waitid, libc::P_PID, tid, &mut si as *mut libc::siginfo_t, flags, 0) == Err(libc::EINTR) {}
}

/// At a restart, in restarted thread `tid` once released, before its program runs: a tracer
/// thread attaches again to each thread it had sent into the stop handler and waits for its
/// stop; a traced thread waits until it is traced again (its pending signal then stops it for
/// its tracer). Bounded: 30 s.
///
/// PTRACE_ATTACH, not PTRACE_SEIZE: the thread was traced by PTRACE_TRACEME or PTRACE_ATTACH
/// (a tracer that seized or set options refuses the checkpoint: `OPTIONED`), and a seized one
/// reports its group-stops and an exec otherwise. ATTACH sends the thread a SIGSTOP of its own
/// (to it alone), which it takes in runtime code while every other signal is blocked, its
/// pending one among them: its stop for it is taken here and the SIGSTOP suppressed
/// (PTRACE_CONT with no signal), and the program sees only the stop it had.
pub fn restored(tid: i32) {
    for (i, e) in entries().iter().enumerate() {
        if e.tracer != tid || STATE[i].load(Ordering::Acquire) != 1 {
            continue;
        }
        let mut r = Err(0);
        for _ in 0..30_000 {
            r = syscall!(libc::SYS_ptrace, libc::PTRACE_ATTACH, e.tid, 0, 0);
            if r.is_ok() {
                break;
            }
            nap();
        }
        if let Err(er) = r {
            crate::log::log!(crate::log::ERROR, "thread {tid} cannot trace thread {} again: {}", e.tid, crate::checkpoint::strerror(er));
            continue;
        }
        // SAFETY: an all-zero siginfo is valid; waitid fills it.
        let mut si: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let flags = libc::WSTOPPED | libc::WEXITED | libc::__WALL;
        while syscall!(libc::SYS_waitid, libc::P_PID, e.tid, &mut si as *mut libc::siginfo_t, flags, 0) == Err(libc::EINTR) {}
        // SAFETY: waitid filled the _sigchld member.
        let status = unsafe { si.si_status() };
        if si.si_code != libc::CLD_TRAPPED || status != libc::SIGSTOP {
            crate::log::log!(crate::log::ERROR, "thread {tid}: thread {} it traces again stopped otherwise than for the attach (code {}, status {status})", e.tid, si.si_code);
            continue;
        }
        let _ = syscall!(libc::SYS_ptrace, libc::PTRACE_CONT, e.tid, 0, 0);
        wait_stopped(e.tid);
    }
    if !traced_here(tid, true) {
        return;
    }
    let path = sys::cpath(&[b"/proc/self/task/", &sys::decimal(tid), b"/status"]);
    for _ in 0..30_000 {
        let mut buf = [0u8; 2048];
        let len = sys::read_start(&path, &mut buf).unwrap_or(0);
        if tracer_of(&buf[..len]) != 0 {
            // (Its next return from a system call takes the attach's SIGSTOP.)
            return;
        }
        nap();
    }
    crate::log::log!(crate::log::ERROR, "thread {tid} is not traced again by its tracer: its signal-delivery-stop goes to its handler");
}

fn nap() {
    let ts = sys::timespec_ms(1);
    let _ = syscall!(libc::SYS_nanosleep, &ts as *const libc::timespec, 0);
}
