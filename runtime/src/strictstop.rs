//! Stopping a thread that runs in seccomp strict mode, where the kernel ends a thread at its
//! first system call other than read, write, _exit and rt_sigreturn (so the normal stop path of
//! threads.rs, with its futex, gettid, prctl and /proc reads, would end it).
//!
//! The checkpoint thread sees strict mode in the thread's /proc status before it signals it
//! (or the thread marked itself when it asked libc for strict mode: seccomp.rs, `entering`) and
//! sends the stop signal with a siginfo of its own (`send`): the thread's id in si_value, so
//! that the handler needs no system call to know it is such a thread nor who it is. The handler
//! (threads.rs, `stop_strict`) fills its slot from memory only (TLS base from the thread control
//! block, registers and sigaltstack from its signal frame), publishes it, and waits for the
//! release with a blocking read() on an eventfd of the runtime's (`wait`) instead of a futex;
//! `release` writes it. The checkpoint thread reads the rest from outside once the thread is
//! parked (`complete`: robust list, attributes, pending signals) and notes strict mode in its
//! TLS, which a restart reads to enter strict mode again as the thread's last call.
//!
//! The eventfd (semaphore mode: each read takes one) is made at the first checkpoint that finds
//! such a thread, once every other thread is stopped (its number is taken for an instant before
//! it moves high), kept out of images like the runtime's other fds, forgotten after a restart
//! (not in the image) and in a forked child.

use crate::log::{log, DEBUG};
use crate::sys::{self, syscall};
use crate::threads::Slot;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

/// si_value of a stop signal sent to a thread in strict mode: MARK | tid.
const MARK: u64 = 0x636b_7073 << 32;
const SI_QUEUE: i32 = -1;

/// The pid the marked signals are sent from (the handler compares without a system call).
static FROM: AtomicI32 = AtomicI32::new(0);
/// The eventfd stopped threads in strict mode wait on; -1: not made yet.
static FD: AtomicI32 = AtomicI32::new(-1);
/// Threads inside `wait` (from before their last look at the release generation until they
/// leave): `release` gives each a count, so that none can miss its wake-up.
static INSIDE: AtomicU32 = AtomicU32::new(0);

/// Whether `fd` is the eventfd (see control::is_runtime_fd).
pub fn is_own_fd(fd: i32) -> bool {
    fd >= 0 && FD.load(Ordering::Relaxed) == fd
}

/// On the checkpoint thread, every other thread stopped: make the eventfd if there is none.
pub fn ensure_fd() -> Result<(), String> {
    if FD.load(Ordering::Acquire) >= 0 {
        return Ok(());
    }
    let fd = syscall!(libc::SYS_eventfd2, 0, libc::EFD_CLOEXEC | libc::EFD_SEMAPHORE)
        .map_err(|e| format!("cannot make an eventfd to stop a thread in seccomp strict mode: {}", crate::checkpoint::strerror(e)))?;
    FD.store(sys::own(sys::move_high(fd as i32)), Ordering::Release);
    Ok(())
}

/// Whether the stop signal can be sent to a thread in strict mode now (`ensure_fd` was done).
pub fn ready() -> bool {
    FD.load(Ordering::Acquire) >= 0
}

/// Send the stop signal to thread `tid` of process `pid`, marked for strict mode.
pub fn send(pid: i32, tid: i32, sig: i32) -> sys::SysResult<i64> {
    FROM.store(pid, Ordering::Release);
    let mut info = [0u64; 16];
    info[0] = sig as u32 as u64;
    info[1] = SI_QUEUE as u32 as u64;
    info[2] = pid as u32 as u64 | (sys::geteuid() as u64) << 32;
    info[3] = MARK | tid as u32 as u64;
    syscall!(libc::SYS_rt_tgsigqueueinfo, pid, tid, sig, info.as_ptr())
}

/// In the stop handler (no system call): the thread's id if `info` is a marked stop signal.
pub fn marked(info: *const libc::siginfo_t) -> Option<i32> {
    // SAFETY: the kernel's siginfo for this handler.
    let w = unsafe { std::ptr::read_unaligned(info as *const [u64; 4]) };
    let ok = w[1] as u32 as i32 == SI_QUEUE && w[2] as u32 as i32 == FROM.load(Ordering::Acquire) && w[3] & !0xffff_ffff == MARK;
    (ok && w[3] as u32 as i32 > 0).then_some(w[3] as u32 as i32)
}

/// In the stop handler of a thread in strict mode, published: wait (read() on the eventfd)
/// until the release generation is no longer `gen`. Without the eventfd (a thread that marked
/// itself `entering` while the checkpoint thread did not see it in strict mode yet), spin.
pub fn wait(release: &AtomicU32, gen: u32) {
    INSIDE.fetch_add(1, Ordering::SeqCst);
    let fd = FD.load(Ordering::Acquire);
    while release.load(Ordering::SeqCst) == gen {
        if fd < 0 {
            std::hint::spin_loop();
            continue;
        }
        let mut v: u64 = 0;
        // A count of a release before this one (its thread left without it) only makes the
        // loop look again.
        let _ = syscall!(libc::SYS_read, fd, &mut v as *mut u64, 8);
    }
    INSIDE.fetch_sub(1, Ordering::SeqCst);
}

/// How many threads in strict mode are parked in `wait` now.
pub fn parked() -> u32 {
    INSIDE.load(Ordering::SeqCst)
}

/// After the release generation was bumped: a count for every thread inside `wait` (those that
/// look again after the bump leave without it: SeqCst on both sides).
pub fn release() {
    let n = INSIDE.load(Ordering::SeqCst);
    let fd = FD.load(Ordering::Acquire);
    if n > 0 && fd >= 0 {
        let v = n as u64;
        let _ = syscall!(libc::SYS_write, fd, &v as *const u64, 8);
    }
}

/// On the checkpoint thread, once thread `s` (stopped through `stop_strict`) is parked: what it
/// could not read itself. Its robust list (get_robust_list of another thread of the process),
/// its attributes (seccomp.rs noted them if it entered strict mode through libc; its
/// scheduling and I/O priority, which other threads may change, as they are now), whether it
/// really is in strict mode (one that marked itself may not have got there), which its TLS then
/// says for a restart. Err: signals are pending for it alone, which only it could take with
/// their siginfo.
pub fn complete(s: &mut Slot) -> Result<(), String> {
    let status = sys::read_file(&sys::cpath(&[b"/proc/self/task/", &sys::decimal(s.tid), b"/status"])).unwrap_or_default();
    let (mut head, mut len) = (0u64, 0u64);
    let _ = syscall!(libc::SYS_get_robust_list, s.tid, &mut head as *mut u64, &mut len as *mut u64);
    s.robust_head = head;
    s.robust_len = len;
    s.attrs = crate::threadattrs::capture_of(s.tid, s.fs_base, &status, crate::seccomp::noted_attrs(s.fs_base));
    let strict = crate::seccomp::strict_in(&status);
    crate::seccomp::set_strict(s.fs_base, strict);
    let pending = crate::kstate::value(&status, "\nSigPnd:", 16).unwrap_or(0);
    if strict && pending != 0 {
        return Err(format!(
            "thread {} runs in seccomp strict mode with signals pending for it alone (mask {pending:#x}): only it could take them with what they carry; no checkpoint is taken",
            s.tid
        ));
    }
    log!(DEBUG, "thread {} stopped in seccomp strict mode: {strict}", s.tid);
    Ok(())
}

/// After a restart: the eventfd was not in the image (its number may be the program's now).
pub fn after_restart() {
    FD.store(-1, Ordering::Release);
    INSIDE.store(0, Ordering::Release);
}

/// In a forked child: its copy of the eventfd is closed (or, sharing its parent's fd table,
/// left to the parent); the child makes its own if it needs one.
pub fn after_fork() {
    let fd = FD.swap(-1, Ordering::AcqRel);
    if fd >= 0 {
        sys::close_inherited(fd);
    }
    INSIDE.store(0, Ordering::Release);
}
