//! Pending signals with their siginfo: who sent them (si_pid, si_uid), the value of a sigqueue
//! (si_value), the code (SI_QUEUE, SI_USER, CLD_EXITED ...) and a child's status.
//!
//! /proc only gives the numbers of pending signals (SigPnd, ShdPnd), and the unprivileged way
//! to read a queued siginfo is to take the signal: `rt_sigtimedwait` with a zero timeout
//! dequeues one pending signal of a set, blocked or not, with its whole siginfo; the same thread
//! queues it again at once with `rt_tgsigqueueinfo` (its own queue) or `rt_sigqueueinfo` (the
//! process's). The kernel lets a thread queue any siginfo, si_code >= 0 too, only to itself (the
//! thread whose id is the target id), so:
//! - each program thread takes and puts back its own queue in the stop handler: the kernel takes
//!   a thread's own signals before the process's, so it takes a signal while /proc shows it in
//!   the thread's own set;
//! - the process's queue is taken and put back by the thread-group leader (tid == pid), in its
//!   stop handler or, when the leader is the checkpoint thread (a restarted program), in the
//!   capture; after its own queue, so that only the process's signals remain for it to take;
//! - just before the checkpoint reads the pending signals, each parked thread takes and puts
//!   back its own queue again (`recapture_thread`), for signals directed at it that arrived
//!   during the stop, and the checkpoint thread the process's (`capture_late`);
//! - at restart each recreated thread queues its own signals before it is released, and the
//!   leader the process's.
//!
//! Everything is kept in a static of the runtime (part of the memory image) and allocation free:
//! the stop handler may not call malloc. Signals that do not fit, or that no thread could take
//! (a leader that has exited), are still sent again by number (kstate.rs).

use crate::sys::{self, syscall};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

const MAX_QUEUED: usize = 4096;
/// The tid of an entry of the process's queue.
const SHARED: i32 = 0;
/// The tid of an entry replaced by a later capture of its thread's queue (no thread's id).
const REPLACED: i32 = -1;

#[derive(Clone, Copy)]
struct Entry {
    /// The thread whose own queue held it (its tid at checkpoint time), or SHARED.
    tid: i32,
    sig: i32,
    info: [u64; 16],
}

struct Pool(UnsafeCell<[Entry; MAX_QUEUED]>);
// SAFETY: an entry is written only by the thread that claimed its index (fetch_add on USED)
// during a stop, and read by the checkpoint thread after every thread has stopped, or on the
// restart path before any program thread runs.
unsafe impl Sync for Pool {}

static POOL: Pool = Pool(UnsafeCell::new([Entry { tid: 0, sig: 0, info: [0; 16] }; MAX_QUEUED]));
static USED: AtomicUsize = AtomicUsize::new(0);
/// Whether a signal could not be recorded in this checkpoint (the pool was full).
static OVERFLOW: AtomicBool = AtomicBool::new(false);
/// Where the signals taken past the pool wait to be put back, in order (mapped by the first
/// thread that needs it, unmapped at the next checkpoint's start): a checkpoint that cannot
/// record them all is refused, and the program must find its queues as they were.
static SPILL: AtomicPtr<Entry> = AtomicPtr::new(std::ptr::null_mut());
static SPILL_USED: AtomicUsize = AtomicUsize::new(0);
/// More than RLIMIT_SIGPENDING's default here (96364).
const SPILL_CAP: usize = 131_072;

/// Keep a signal taken past the pool until it is put back. False: no room there either.
fn spill(tid: i32, sig: i32, info: [u64; 16]) -> bool {
    let len = SPILL_CAP * std::mem::size_of::<Entry>();
    let mut p = SPILL.load(Ordering::Acquire);
    if p.is_null() {
        let Ok(m) = sys::mmap(0, len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE, -1, 0) else { return false };
        match SPILL.compare_exchange(std::ptr::null_mut(), m as *mut Entry, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => p = m as *mut Entry,
            Err(other) => {
                sys::munmap(m, len);
                p = other;
            }
        }
    }
    let i = SPILL_USED.fetch_add(1, Ordering::AcqRel);
    if i >= SPILL_CAP {
        return false;
    }
    // SAFETY: index i of the spill mapping was claimed by this thread alone.
    unsafe { p.add(i).write(Entry { tid, sig, info }) };
    true
}

/// The spilled entries (see `spill`), or none.
fn spilled() -> &'static mut [Entry] {
    let p = SPILL.load(Ordering::Acquire);
    if p.is_null() {
        return &mut [];
    }
    // SAFETY: the entries below SPILL_USED were written by their threads (each reads or marks
    // only its own, as with the pool).
    unsafe { std::slice::from_raw_parts_mut(p, SPILL_USED.load(Ordering::Acquire).min(SPILL_CAP)) }
}
/// Whether the process's queue was taken in this checkpoint.
static SHARED_TAKEN: AtomicBool = AtomicBool::new(false);
/// Whether the process's queue was put back in this restart (false in every image: reset).
static SHARED_QUEUED: AtomicBool = AtomicBool::new(false);
/// The entries the checkpoint thread took from the process's queue after the leader's stop
/// handler had taken it (`capture_late`), and whether the leader still owes putting them back.
static LATE: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];
static LATE_OWED: AtomicBool = AtomicBool::new(false);

/// A new checkpoint begins (before any thread is stopped).
pub fn reset() {
    USED.store(0, Ordering::Release);
    OVERFLOW.store(false, Ordering::Release);
    let p = SPILL.swap(std::ptr::null_mut(), Ordering::AcqRel);
    if !p.is_null() {
        sys::munmap(p as usize, SPILL_CAP * std::mem::size_of::<Entry>());
    }
    SPILL_USED.store(0, Ordering::Release);
    SHARED_TAKEN.store(false, Ordering::Release);
    SHARED_QUEUED.store(false, Ordering::Release);
    // (Set in an image taken while the leader still owed them: a restart queues them itself.)
    LATE_OWED.store(false, Ordering::Release);
}

/// Why this checkpoint cannot be faithful to the program's pending signals, if so: more were
/// queued than the runtime records (the rest would come back by number, their values lost).
pub fn refusal() -> Option<String> {
    OVERFLOW.load(Ordering::Acquire).then(|| format!("more than {MAX_QUEUED} signals are queued in the program (real-time signals with values): a restart would lose the values of the others"))
}

fn entries() -> &'static [Entry] {
    let n = USED.load(Ordering::Acquire).min(MAX_QUEUED);
    // SAFETY: see Pool; entries below USED are complete once their threads have stopped.
    unsafe { &(&*POOL.0.get())[..n] }
}

/// One field (hex) of /proc/thread-self/status, read into a stack buffer (no allocation).
fn status_mask(key: &[u8]) -> u64 {
    let mut buf = [0u8; 4096];
    let Ok(fd) = sys::open(c"/proc/thread-self/status", libc::O_RDONLY | libc::O_CLOEXEC, 0) else { return 0 };
    let mut len = 0;
    while len < buf.len() {
        match sys::read(fd, &mut buf[len..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => len += n,
        }
    }
    sys::close(fd);
    let text = &buf[..len];
    let Some(at) = text.windows(key.len()).position(|w| w == key) else { return 0 };
    let mut v = 0u64;
    for &b in text[at + key.len()..].iter().skip_while(|b| b.is_ascii_whitespace()) {
        let Some(d) = (b as char).to_digit(16) else { break };
        v = v << 4 | d as u64;
    }
    v
}

fn bit(sig: i32) -> u64 {
    1u64 << (sig - 1)
}

/// Take one pending signal `sig` of the calling thread (its own queue first, then the
/// process's), with its siginfo.
fn take(sig: i32) -> Option<[u64; 16]> {
    let set: u64 = bit(sig);
    let zero = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    let mut info = [0u64; 16];
    match syscall!(libc::SYS_rt_sigtimedwait, &set as *const u64, info.as_mut_ptr(), &zero as *const libc::timespec, 8) {
        Ok(s) if s as i32 == sig => Some(info),
        _ => None,
    }
}

fn claim(tid: i32, sig: i32, info: [u64; 16]) -> bool {
    let i = USED.fetch_add(1, Ordering::AcqRel);
    if i >= MAX_QUEUED {
        USED.store(MAX_QUEUED, Ordering::Release);
        return false;
    }
    // SAFETY: index i was claimed by this thread alone.
    unsafe { (*POOL.0.get())[i] = Entry { tid, sig, info } };
    true
}

fn queue(tid: i32, sig: i32, info: &[u64; 16]) -> bool {
    let pid = sys::getpid();
    let r = if tid == SHARED {
        syscall!(libc::SYS_rt_sigqueueinfo, pid, sig, info.as_ptr())
    } else {
        syscall!(libc::SYS_rt_tgsigqueueinfo, pid, sys::gettid(), sig, info.as_ptr())
    };
    r.is_ok()
}

/// Signals `1..=64` that the runtime may take: not its own, not SIGKILL/SIGSTOP, and not the
/// synchronous ones the kernel forces on a thread (a fault, a trap, syscall user dispatch's
/// SIGSYS, which the runtime's own background snapshots use): queued again they would arrive
/// as if sent, with a siginfo that claims a fault or a dispatched call.
pub(crate) fn takeable() -> u64 {
    let reserved = crate::reserved_signals().iter().filter(|&&s| s > 0).fold(0, |m, &s| m | bit(s));
    let synchronous = [libc::SIGSEGV, libc::SIGBUS, libc::SIGILL, libc::SIGFPE, libc::SIGTRAP, libc::SIGSYS].iter().fold(0, |m, &s| m | bit(s));
    !reserved & !bit(libc::SIGKILL) & !bit(libc::SIGSTOP) & !synchronous
}

/// Whether the calling thread has any signal pending that the runtime may take (its own or the
/// process's: in the stop handler every signal is blocked, so rt_sigpending shows them all).
fn any_pending() -> bool {
    let mut set: u64 = 0;
    syscall!(libc::SYS_rt_sigpending, &mut set as *mut u64, 8).is_err() || set & takeable() != 0
}

/// Take (and record) the signals pending in `key`'s set (the calling thread's own queue, or the
/// process's), filed under `tid`. Returns where its entries begin, for `put_back`.
fn take_all(tid: i32, key: &[u8]) -> usize {
    take_all_reusing(tid, key, false)
}

/// `take_all`; with `reuse`, the entries `tid` recorded before are written again in their order
/// first, those left over marked REPLACED, and new ones claimed only past them (a thread's
/// queue taken twice in one checkpoint does not use the pool twice).
fn take_all_reusing(tid: i32, key: &[u8], reuse: bool) -> usize {
    let mask = status_mask(key) & takeable();
    if reuse {
        // (Its spilled entries too are taken again.)
        for e in spilled().iter_mut().filter(|e| e.tid == tid) {
            e.tid = REPLACED;
        }
    }
    let mut start = USED.load(Ordering::Acquire);
    let end = start.min(MAX_QUEUED);
    let mut cursor = if reuse { 0 } else { end };
    let pool = POOL.0.get();
    let mut reused = |sig: i32, info: [u64; 16]| -> bool {
        while cursor < end {
            let i = cursor;
            cursor += 1;
            // SAFETY: see Pool; an entry of `tid` is written only by this thread, below `end`
            // (claimed before), through the pool's pointer as `claim` writes others.
            unsafe {
                if (*pool)[i].tid == tid {
                    (*pool)[i] = Entry { tid, sig, info };
                    start = start.min(i);
                    return true;
                }
            }
        }
        false
    };
    for sig in 1..=64 {
        if mask & bit(sig) == 0 {
            continue;
        }
        // Standard signals are pending once per queue; real-time ones may be queued many times:
        // for the thread's own queue, take them while /proc still shows it there (the process's
        // may hold more of the same signal); the process's queue is the last to take from.
        loop {
            if tid != SHARED && sig >= 32 && status_mask(key) & bit(sig) == 0 {
                break;
            }
            let Some(info) = take(sig) else { break };
            let kept = reused(sig, info) || claim(tid, sig, info) || {
                OVERFLOW.store(true, Ordering::Release);
                spill(tid, sig, info)
            };
            if !kept {
                // No room: put it back now (the checkpoint is refused).
                queue(tid, sig, &info);
                break;
            }
            if sig < 32 {
                break;
            }
        }
    }
    for i in cursor.min(end)..end {
        // SAFETY: as in `reused`.
        unsafe {
            if (*pool)[i].tid == tid {
                (*pool)[i].tid = REPLACED;
            }
        }
    }
    start
}

/// Queue again, in the order they were taken (per signal, the queue's order), the entries of
/// `tid` from `start` on.
fn put_back(tid: i32, start: usize) {
    let end = USED.load(Ordering::Acquire).min(MAX_QUEUED);
    // SAFETY: see Pool; the entries of `tid` were written by this thread (other threads' claims
    // interleave: filter on tid).
    let pool = unsafe { &*POOL.0.get() };
    for e in pool[start.min(end)..end].iter().filter(|e| e.tid == tid) {
        queue(tid, e.sig, &e.info);
    }
    for e in spilled().iter().filter(|e| e.tid == tid) {
        queue(tid, e.sig, &e.info);
    }
}

/// In the stop handler of a program thread: take and put back its own pending signals, and if
/// it is the thread-group leader, the process's (taken before its own are put back, since the
/// kernel would give those first).
pub fn capture_thread() {
    if !any_pending() {
        return;
    }
    let tid = sys::gettid();
    let own = take_all(tid, b"SigPnd:");
    let shared = take_shared();
    put_back(tid, own);
    if let Some(start) = shared {
        put_back(SHARED, start);
    }
}

/// In the stop handler of a parked program thread, asked by the checkpoint just before it reads
/// the pending signals (threads.rs `late_capture`): signals directed at this thread that
/// arrived since its stop took its queue are taken with their siginfo too. Its whole queue is
/// taken again and put back in order, replacing what the stop recorded (a real-time signal may
/// have late copies behind the recorded ones).
pub fn recapture_thread() {
    let tid = sys::gettid();
    if status_mask(b"SigPnd:") & takeable() == 0 {
        return;
    }
    let own = take_all_reusing(tid, b"SigPnd:", true);
    put_back(tid, own);
}

/// On the checkpoint thread, every program thread stopped: signals that reached the process's
/// queue after its leader's stop handler took it (a POSIX timer firing during the checkpoint),
/// or while no leader could take it, are taken now with their siginfo, so that a restart
/// queues them as they were (a timer's value, not a bare kill by number: the program's handler
/// reads si_value). Only signal numbers of which nothing was recorded (a real-time signal
/// already recorded may have late copies behind the recorded ones: those stay sent by number).
/// They go back at once where the kernel lets this thread queue them (si_code < 0), else by the
/// leader when it is released (`after_release`; `leader_parked`), else by number.
/// Returns the signals it had to leave in the process's queue (also pending in this thread's
/// own, which `take` would give first): every other signal it may take that is pending there
/// after it came after the cut.
pub fn capture_late(leader_parked: bool) -> u64 {
    if sys::gettid() == sys::getpid() {
        return 0; // the leader is this thread: capture_shared took the queue just now
    }
    let own = status_mask(b"SigPnd:") & takeable();
    let mask = status_mask(b"ShdPnd:") & takeable() & !recorded(SHARED) & !own;
    if mask == 0 {
        return own;
    }
    let start = USED.load(Ordering::Acquire);
    for sig in (1..=64).filter(|&s| mask & bit(s) != 0) {
        while let Some(info) = take(sig) {
            if !claim(SHARED, sig, info) {
                OVERFLOW.store(true, Ordering::Release);
                let _ = syscall!(libc::SYS_kill, sys::getpid(), sig);
                break;
            }
            if sig < 32 {
                break;
            }
        }
    }
    SHARED_TAKEN.store(true, Ordering::Release);
    let end = USED.load(Ordering::Acquire).min(MAX_QUEUED);
    LATE[0].store(start, Ordering::Release);
    LATE[1].store(end, Ordering::Release);
    if leader_parked {
        LATE_OWED.store(true, Ordering::Release);
    } else {
        put_back_late(false);
    }
    own
}

/// The late entries back in the process's queue, in order: `as_leader`, any siginfo; otherwise
/// only what another thread may queue (si_code < 0), the rest by number.
fn put_back_late(as_leader: bool) {
    let (start, end) = (LATE[0].load(Ordering::Acquire), LATE[1].load(Ordering::Acquire));
    // SAFETY: see Pool; these entries were complete before the threads were released.
    let pool = unsafe { &*POOL.0.get() };
    for e in &pool[start.min(end)..end] {
        let code = e.info[1] as u32 as i32; // si_signo, si_errno | si_code
        if !((as_leader || code < 0) && queue(SHARED, e.sig, &e.info)) {
            let _ = syscall!(libc::SYS_kill, sys::getpid(), e.sig);
        }
    }
}

/// In the stop handler of the thread-group leader, released: the late signals it owes.
pub fn after_release() {
    if sys::gettid() == sys::getpid() && LATE_OWED.swap(false, Ordering::AcqRel) {
        put_back_late(true);
    }
}

fn take_shared() -> Option<usize> {
    if sys::gettid() != sys::getpid() || SHARED_TAKEN.swap(true, Ordering::AcqRel) {
        return None;
    }
    Some(take_all(SHARED, b"ShdPnd:"))
}

/// The process's queue, if the calling thread (the checkpoint thread) is the thread-group
/// leader and it was not taken yet.
pub fn capture_shared() {
    if let Some(start) = take_shared() {
        put_back(SHARED, start);
    }
}

/// The signals recorded with their siginfo for `tid` (SHARED: the process's), as a mask.
pub fn recorded(tid: i32) -> u64 {
    entries().iter().filter(|e| e.tid == tid).fold(0, |m, e| m | bit(e.sig))
}

pub fn recorded_shared() -> u64 {
    if SHARED_TAKEN.load(Ordering::Acquire) { recorded(SHARED) } else { 0 }
}

/// Restart, on a recreated thread that was `old_tid` (signals blocked, before its release):
/// queue its own signals again, and the process's if it is the thread-group leader.
pub fn restore_thread(old_tid: i32) {
    for e in entries().iter().filter(|e| e.tid == old_tid) {
        queue(old_tid, e.sig, &e.info);
    }
    restore_shared();
}

/// The process's signals, queued again once, by the thread-group leader.
fn restore_shared() {
    if sys::gettid() != sys::getpid() || SHARED_QUEUED.swap(true, Ordering::AcqRel) {
        return;
    }
    for e in entries().iter().filter(|e| e.tid == SHARED) {
        queue(SHARED, e.sig, &e.info);
    }
}

/// On the checkpoint thread, every program thread parked: the process's signals if no leader
/// queued them (it is the checkpoint thread, or the main thread had exited). Another thread may
/// queue only siginfo that does not claim to come from kill() or the kernel (si_code < 0): the
/// others are sent by number.
pub fn restore_remaining() {
    if sys::gettid() == sys::getpid() {
        restore_shared();
        return;
    }
    if SHARED_QUEUED.swap(true, Ordering::AcqRel) {
        return;
    }
    for e in entries().iter().filter(|e| e.tid == SHARED) {
        if !queue(SHARED, e.sig, &e.info) {
            let _ = syscall!(libc::SYS_kill, sys::getpid(), e.sig);
        }
    }
}
