//! What makes the checkpoint thread act, and the loop it runs: the checkpoint signal, the stop
//! signal (checkpoint, then exit), the periodic timer and requests from the control socket.
//!
//! Signal handlers only set bits in `PENDING` and wake the thread (futex, plus the control
//! module's eventfd when it polls). Settings come from `ckpt-run` (`launch`): the interval, the
//! stop signal, the generations to keep, and the requeue command (with SLURM_JOB_ID).

use crate::log::{log, DEBUG, ERROR};
use crate::{checkpoint, control, sys};
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};

/// Exit status after a checkpoint-and-exit whose image was written (EX_TEMPFAIL: run again).
pub const EXIT_STOPPED: i32 = 75;
/// Exit status after a stop request whose checkpoint failed (EX_IOERR).
pub const EXIT_STOP_FAILED: i32 = 74;

pub const REQ_CHECKPOINT: u32 = 1;
pub const REQ_STOP: u32 = 2;
/// The program sent itself a trigger signal: pass it on to one of its threads.
pub const REQ_FORWARD: u32 = 4;
/// A program thread waits for this thread to leave for a call of its own (`leave`).
pub const REQ_LEAVE: u32 = 8;

/// Requests not yet served (REQ_* bits); also the futex word the thread sleeps on.
static PENDING: AtomicU32 = AtomicU32::new(0);
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);
static INTERVAL_MS: AtomicU64 = AtomicU64::new(0);
/// The interval ckpt-run was given, also in a child of the tree (which runs no timer until it is
/// the tree's root: `take_timer`).
static CONFIGURED_MS: AtomicU64 = AtomicU64::new(0);
/// CLOCK_MONOTONIC deadline of the next periodic checkpoint, in ms (0: not armed).
static NEXT_MS: AtomicU64 = AtomicU64::new(0);

/// `scontrol requeue JOBID` command after a checkpoint-and-exit (built once, at init).
struct Requeue {
    argv: Vec<CString>,
}
static REQUEUE: std::sync::atomic::AtomicPtr<Requeue> = std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());

/// Take the trigger settings (called from the constructor, one thread); `slurm_job` is
/// SLURM_JOB_ID, for --requeue.
pub fn init(launch: &ckpt_image::Launch, slurm_job: Option<Vec<u8>>) {
    CONFIGURED_MS.store(launch.interval_ms, Ordering::Relaxed);
    INTERVAL_MS.store(if launch.tree_child { 0 } else { launch.interval_ms }, Ordering::Relaxed);
    STOP_SIGNAL.store(launch.stop_signal, Ordering::Relaxed);
    crate::generations::set_keep(launch.keep);
    if let (false, Some(job)) = (launch.requeue_cmd.is_empty(), slurm_job) {
        let argv = [launch.requeue_cmd.clone(), b"requeue".to_vec(), job].into_iter().filter_map(|a| CString::new(a).ok()).collect::<Vec<_>>();
        if argv.len() == 3 {
            REQUEUE.store(Box::into_raw(Box::new(Requeue { argv })), Ordering::Release);
        }
    }
}

pub fn stop_signal() -> i32 {
    STOP_SIGNAL.load(Ordering::Relaxed)
}

/// Install the handler of a trigger signal (none: nothing to do). It runs on the checkpoint
/// thread only (program threads block the trigger signals).
pub fn install_handler(sig: i32) -> bool {
    if sig <= 0 {
        return true;
    }
    // SAFETY: a plain sigaction struct.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = on_trigger as *const () as usize;
    act.sa_flags = libc::SA_RESTART | libc::SA_SIGINFO;
    crate::hooks::install(sig, &act)
}

/// A trigger signal: a request from outside, or the program's own signal to pass on to it.
extern "C" fn on_trigger(sig: i32, info: *mut libc::siginfo_t, _uc: *mut libc::c_void) {
    // SAFETY: the kernel's siginfo for this delivery.
    let info = unsafe { &*info };
    if crate::selfsig::is_programs(info) {
        if crate::selfsig::queue_forward(sig, info) {
            request(REQ_FORWARD);
        }
    } else if sig == stop_signal() {
        crate::step::note_trigger();
        request(REQ_STOP);
    } else {
        checkpoint_signal(info);
    }
}

/// A checkpoint request is served by any checkpoint whose cut (the moment the program's threads
/// are stopped and its state is read) comes after the request was sent: that image holds the
/// state the requester asked for. So a checkpoint signal is a copy of a request already served,
/// not a new one, when it was sent before the newest cut or while a checkpoint's cut is still
/// ahead; nothing else (no time window) makes two signals one request.
///
/// The newest cut, in CLOCK_MONOTONIC ns (0: none since the start or the restart).
static CUT_NS: AtomicU64 = AtomicU64::new(0);
/// A checkpoint is being taken and its cut is still ahead: a request that arrives now is served
/// by it.
static CUT_AHEAD: AtomicBool = AtomicBool::new(false);

/// A checkpoint begins (its cut is ahead).
pub fn checkpoint_begins() {
    CUT_AHEAD.store(true, Ordering::Release);
}

/// The program's state is being read now (its threads are stopped, at `at_ns`): requests sent
/// before this are served by this checkpoint.
pub fn cut_made(at_ns: u64) {
    CUT_NS.fetch_max(at_ns, Ordering::AcqRel);
    CUT_AHEAD.store(false, Ordering::Release);
}

/// The checkpoint is over (written, or failed before or after its cut).
pub fn checkpoint_done() {
    CUT_AHEAD.store(false, Ordering::Release);
}

/// The checkpoint signal arrived (async-signal-safe). In a namespace of ckpt's, the program is
/// in the outer process's process group and cgroup: a signal sent to both (pkill -f, a Slurm
/// signal to every process of a batch step) reaches it directly and through the outer process,
/// which forwards it as SI_QUEUE with ckpt_ns::FORWARD_MARK, and the time it held the signal
/// before sending it on (`ckpt_ns::held_ms`). The latest the request can have been sent:
/// when it arrived here, or, forwarded, when the outer process read it. Sent before the newest
/// cut, or arriving while a cut is ahead, it is served; else it is a new request (a request
/// that comes after a checkpoint's line was printed always is). A copy that comes after the cut
/// of the checkpoint its twin started (the outer process slow to read it) makes a second
/// checkpoint: one too many, never one lost.
pub fn checkpoint_signal(info: *const libc::siginfo_t) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler; a queued signal's
    // si_value is the union member to read.
    let value = unsafe { info.as_ref().filter(|i| i.si_code == libc::SI_QUEUE).map_or(0, |i| i.si_value().sival_ptr as usize as u64) };
    let held_ms = ckpt_ns::held_ms(value).unwrap_or(0);
    let sent_by = crate::checkpoint::now_ns().saturating_sub(held_ms * 1_000_000);
    let cut = CUT_NS.load(Ordering::Acquire);
    if CUT_AHEAD.load(Ordering::Acquire) || (cut != 0 && sent_by <= cut) {
        return;
    }
    crate::step::note_trigger();
    request(REQ_CHECKPOINT);
}

/// Whether requests wait for the checkpoint thread (REQ_* bits but `except`).
pub fn pending(except: u32) -> bool {
    PENDING.load(Ordering::Acquire) & !except != 0
}

/// Ask the checkpoint thread for something (async-signal-safe).
pub fn request(bits: u32) {
    PENDING.fetch_or(bits, Ordering::AcqRel);
    sys::futex_wake(&PENDING);
    control::wake();
}

pub fn now_ms() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    let _ = sys::syscall!(libc::SYS_clock_gettime, libc::CLOCK_MONOTONIC, &mut ts as *mut libc::timespec);
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// Milliseconds until the next periodic checkpoint (None: no interval).
pub fn next_in_ms() -> Option<u64> {
    let next = NEXT_MS.load(Ordering::Relaxed);
    (next != 0).then(|| next.saturating_sub(now_ms()))
}

/// A child of the process tree: the program's own timer takes the tree's checkpoints.
pub fn no_timer() {
    INTERVAL_MS.store(0, Ordering::Relaxed);
    NEXT_MS.store(0, Ordering::Relaxed);
}

/// This process became the tree's root (the program ended, tree.rs `take_control`): it runs
/// the periodic timer ckpt-run was given.
pub fn take_timer() {
    INTERVAL_MS.store(CONFIGURED_MS.load(Ordering::Relaxed), Ordering::Relaxed);
    arm_timer();
}

pub fn arm_timer() {
    let iv = INTERVAL_MS.load(Ordering::Relaxed);
    NEXT_MS.store(if iv == 0 { 0 } else { now_ms() + iv }, Ordering::Relaxed);
}

/// After a restart: fds and the clock of the old process mean nothing here, and requests that
/// arrived while the image was being taken were for the old process (a stop request kept in
/// the image would stop every restart at once).
pub fn after_restart() {
    control::forget_fds();
    NEXT_MS.store(0, Ordering::Relaxed);
    PENDING.store(if crate::leave::asked_again() { REQ_LEAVE } else { 0 }, Ordering::Release);
    CUT_NS.store(0, Ordering::Release);
    CUT_AHEAD.store(false, Ordering::Release);
}

/// The checkpoint thread's loop: wait for a request or the timer, serve it, forever.
pub fn run() -> ! {
    arm_timer();
    crate::leave::back();
    loop {
        let timeout = match (next_in_ms(), crate::step::poll_limit_ms()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // Once a second at least: whether the program has ended without this thread.
        let timeout = Some(timeout.map_or(GONE_CHECK_MS, |t| t.min(GONE_CHECK_MS)));
        if program_gone() {
            control::shutdown();
            let status = leader_status();
            log!(DEBUG, "every thread of the program has exited: so does the checkpoint thread (wait status {status:#x})");
            if status & 0x7f != 0 {
                die_by(status & 0x7f);
            }
            loop {
                let _ = sys::syscall!(libc::SYS_exit, (status >> 8) & 0xff);
            }
        }
        if PENDING.load(Ordering::Acquire) == 0 && timeout != Some(0) && !control::poll(timeout, &crate::step::poll_fds()) {
            sys::futex_wait(&PENDING, 0, timeout);
        }
        if PENDING.fetch_and(!REQ_LEAVE, Ordering::AcqRel) & REQ_LEAVE != 0 {
            // The other requests stay for the thread that comes back.
            crate::leave::leave_if_asked();
        }
        let bits = PENDING.swap(0, Ordering::AcqRel);
        if bits & REQ_FORWARD != 0 {
            crate::selfsig::forward_queued();
        }
        let due = next_in_ms() == Some(0);
        let member = crate::tree::is_member();
        if crate::step::joining() {
            // Rank 0 of a joined step whose tasks have not linked up yet (step.rs).
            crate::step::serve();
        }
        if crate::step::active() {
            // A checkpoint of the whole step (rank 0 begins it; see step.rs).
            if bits & (REQ_STOP | REQ_CHECKPOINT) != 0 || (due && crate::step::may_time()) {
                crate::step::request(bits & REQ_STOP != 0, false);
            }
            if due {
                arm_timer();
            }
            crate::step::serve();
        } else if bits & (REQ_STOP | REQ_CHECKPOINT) != 0 && crate::step::in_task_tree() {
            log!(DEBUG, "checkpoint request ignored: a checkpoint of the step is its task's program's to take");
        } else if bits & REQ_STOP != 0 && member {
            crate::tree::request(true);
        } else if bits & REQ_STOP != 0 {
            stop_now();
        } else if (bits & REQ_CHECKPOINT != 0 || due) && member {
            crate::tree::request(false);
            arm_timer();
        } else if bits & REQ_CHECKPOINT != 0 || due {
            checkpoint::take();
            arm_timer();
        }
        crate::tree::serve();
        control::serve(); // no-op unless a client is waiting
    }
}

const GONE_CHECK_MS: u64 = 1000;

/// The status the thread-group leader exited with (field 52 of its stat, in waitpid's form):
/// the process's, which the kernel takes from the last thread to exit.
fn leader_status() -> i32 {
    let stat = sys::read_file(&sys::cpath(&[b"/proc/self/task/", &sys::decimal(sys::getpid()), b"/stat"])).unwrap_or_default();
    crate::kstate::stat_number(&stat, 52).unwrap_or(0)
}

/// The program's last thread was killed by `sig` while this thread lived on (a seccomp filter's
/// SECCOMP_RET_KILL_THREAD kills only the thread, where a process of one thread dies of SIGSYS
/// with a core dump): the process dies by it too, by its default action.
fn die_by(sig: i32) -> ! {
    // The kernel's struct sigaction: handler SIG_DFL, no flags, no restorer, empty mask.
    let dfl = [0u64; 4];
    let _ = sys::syscall!(libc::SYS_rt_sigaction, sig, dfl.as_ptr(), 0, 8);
    let bit: u64 = 1 << (sig - 1);
    let _ = sys::syscall!(libc::SYS_rt_sigprocmask, libc::SIG_UNBLOCK, &bit as *const u64, 0, 8);
    let _ = sys::tgkill(sys::getpid(), sys::gettid(), sig);
    loop {
        let _ = sys::syscall!(libc::SYS_exit, 128 + sig);
    }
}

/// Whether every thread of the program has exited (the leader a zombie, no other thread left
/// but this one): a program whose last thread leaves with exit(2) itself (a raw SYS_exit, which
/// glibc does not count) lived on in the checkpoint thread alone, which takes no signal but the
/// triggers: it never ended, and SIGTERM could not end it. This thread then exits the same way,
/// with the leader's status.
fn program_gone() -> bool {
    if crate::threads::leader_surely_alive() || !crate::threads::is_zombie(sys::getpid()) {
        return false;
    }
    let me = sys::gettid();
    let Ok(names) = sys::list_dir(&sys::cpath(&[b"/proc/self/task"])) else { return false };
    names.iter().filter_map(|n| std::str::from_utf8(n).ok()?.parse::<i32>().ok()).all(|t| t == me || crate::threads::is_zombie(t))
}

/// Requeue the Slurm job if asked (after a good image), then exit the whole process:
/// EXIT_STOPPED when the image was written, EXIT_STOP_FAILED when it was not.
pub fn exit_after_checkpoint(ok: bool) -> ! {
    if ok {
        if crate::step::may_requeue() {
            requeue();
        }
        log!(DEBUG, "stopping after the checkpoint (exit status {EXIT_STOPPED})");
    } else {
        log!(ERROR, "stop requested but the checkpoint failed; exiting with status {EXIT_STOP_FAILED}");
    }
    control::shutdown();
    loop {
        let _ = sys::syscall!(libc::SYS_exit_group, if ok { EXIT_STOPPED } else { EXIT_STOP_FAILED });
    }
}

fn stop_now() -> ! {
    let ok = checkpoint::take_and_hold().is_some();
    exit_after_checkpoint(ok)
}

/// Run `scontrol requeue $SLURM_JOB_ID` (fork + execve by raw system calls) and wait for it.
fn requeue() {
    // SAFETY: REQUEUE is set once in the constructor to a leaked Box, or null.
    let Some(rq) = (unsafe { REQUEUE.load(Ordering::Acquire).as_ref() }) else { return };
    let mut argv: Vec<*const libc::c_char> = rq.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    extern "C" {
        static environ: *const *const libc::c_char;
    }
    // SAFETY: reading libc's environ pointer (the program's environment block).
    let envp = unsafe { environ };
    let pid = match sys::syscall!(libc::SYS_clone, libc::SIGCHLD, 0, 0, 0, 0) {
        Ok(0) => {
            // Child: only raw system calls until execve.
            let _ = sys::syscall!(libc::SYS_execve, argv[0], argv.as_ptr(), envp);
            loop {
                let _ = sys::syscall!(libc::SYS_exit_group, 127);
            }
        }
        Ok(pid) => pid,
        Err(e) => {
            log!(ERROR, "cannot run scontrol requeue: {}", checkpoint::strerror(e));
            return;
        }
    };
    let mut status: i32 = 0;
    while let Err(libc::EINTR) = sys::syscall!(libc::SYS_wait4, pid, &mut status as *mut i32, 0, 0) {}
    if status != 0 {
        log!(ERROR, "scontrol requeue {} failed (wait status {status:#x})", rq.argv[2].to_string_lossy());
    } else {
        log!(DEBUG, "job {} requeued", rq.argv[2].to_string_lossy());
    }
}
