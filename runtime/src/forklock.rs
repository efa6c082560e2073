//! The runtime's locks across a fork: none is copied held.
//!
//! A child made by fork has only the forking thread. A lock another thread held at that instant
//! (the checkpoint thread reading the runtime's tables, an aio worker, a program thread inside a
//! hook) stays held in the child forever: the child's first hook or checkpoint that takes it
//! hangs. So the fork handlers do what glibc does for its own locks: the forking thread takes
//! every lock of `all` just before the fork (`prepare`) and releases them in the parent and in
//! the child after it (`parent`, `child`). The child then sees every table whole, as the last
//! holder left it.
//!
//! From `prepare` to `parent` the forking thread is inside the gate, as a hook is (gate.rs): no
//! checkpoint stops it while it holds the locks (the checkpoint thread reads the tables they
//! guard while the threads are stopped), and none stops another thread meanwhile, so glibc's
//! fork never waits for a lock of its own (malloc's) that a stopped thread holds. All signals
//! are blocked in that window too (a handler of the program that ran there and called a hook
//! that takes one of the locks would wait for itself), but the runtime's stop signal.
//!
//! The stop signal stays open because a stopped process's threads are told from the runtime's
//! own by it: the coordinator of a tree, waking a process stopped by job control for a
//! checkpoint, queues its marked stop signal only to the threads that do not block it (the
//! checkpoint thread and the helpers block every signal), so that each parks in the runtime
//! before it runs program code (jobstop.rs in ckpt-ns). SIGSTOP cannot be blocked: a child the
//! parent stops right after the fork (CRIU's zdtm `stopped`) is stopped at its first
//! instruction, still inside this window, with the mask it inherited from it. With every signal
//! blocked there, it was taken for a runtime thread: woken without the mark, it ran the
//! program, was not stopped again as a stopped process is, and came back running after the
//! restart (its parent's waitid found it had exited instead). In the window the stop signal's
//! handler does nothing but keep its siginfo (`keep_for_later`); once the window is closed (in
//! the parent, and in the child, whose first moments these are) the thread queues each to itself
//! again and takes it as anywhere else: a child woken there parks at the end of its fork handler.
//! No checkpoint sends it there (the forking thread is inside the gate): only the coordinator's
//! wake, a late signal of a checkpoint that has ended, or one the runtime queues to itself.
//! The window is the holder's of every lock (one thread at a time): it opens once they are all
//! taken (while they are tried every signal is blocked, as they are again while the window
//! closes, before they are released).
//!
//! No deadlock: `prepare` never waits while it holds the gate or a lock. It tries them all in
//! turn; when one is taken it lets go of the others, of the gate and of the signal block,
//! waits for that one to be free (stoppable there, as anywhere outside a hook) and tries again.
//! A holder never waits for the forking thread while it holds one (each is held for a bounded
//! stretch of its own work; the checkpoint thread that holds one takes the gate only after).
//! Limit: a fork from a signal handler that interrupted a hook of the same thread while a
//! checkpoint wants the gate waits for that checkpoint, which waits for the hook (as any hook
//! called from such a handler does).
//!
//! Not here, and why:
//! - the allocator's spin locks (alloc.rs): reset in the child instead (its lists are whole at
//!   every instant), and a fork handler of the program that allocates through a hook must not
//!   find them held; reset too in the checkpoint's snapshot writer (snapshot.rs), a raw clone
//!   made while the checkpoint holds the gate, without these handlers;
//! - the gate (gate.rs): entered, as said; reset in the child;
//! - the background snapshot's locks (bgarm.rs, bgsnap.rs): the child drops the engine they
//!   belong to (`bgsnap::after_fork`) and never takes them;
//! - the checkpoint thread's stop and release words (threads.rs): a forked member starts its
//!   own (`checkpoint::after_restart`).

use crate::gate;
use crate::sys::{self, syscall};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};

/// A futex lock: 0 free, 1 held, 2 held with a waiter.
pub struct RawLock(AtomicU32);

impl RawLock {
    pub const fn new() -> RawLock {
        RawLock(AtomicU32::new(0))
    }

    pub fn try_lock(&self) -> bool {
        self.0.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed).is_ok()
    }

    pub fn lock(&self) {
        if self.try_lock() {
            return;
        }
        while self.0.swap(2, Ordering::Acquire) != 0 {
            sys::futex_wait(&self.0, 2, None);
        }
    }

    pub fn unlock(&self) {
        if self.0.swap(0, Ordering::Release) == 2 {
            sys::futex_wake(&self.0);
        }
    }
}

/// std's Mutex interface (`lock` returns a LockResult, never poisoned), on a RawLock that the
/// fork handlers can take and release.
pub struct Mutex<T> {
    raw: RawLock,
    data: UnsafeCell<T>,
}

// SAFETY: the data is only reached through a guard, which holds the lock.
unsafe impl<T: Send> Sync for Mutex<T> {}
// SAFETY: as for std's Mutex.
unsafe impl<T: Send> Send for Mutex<T> {}

impl<T> Mutex<T> {
    pub const fn new(v: T) -> Mutex<T> {
        Mutex { raw: RawLock::new(), data: UnsafeCell::new(v) }
    }

    pub fn lock(&self) -> std::sync::LockResult<MutexGuard<'_, T>> {
        self.raw.lock();
        Ok(MutexGuard { m: self })
    }

    pub const fn raw(&self) -> &RawLock {
        &self.raw
    }
}

pub struct MutexGuard<'a, T> {
    m: &'a Mutex<T>,
}

impl<T> std::ops::Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock.
        unsafe { &*self.m.data.get() }
    }
}

impl<T> std::ops::DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock.
        unsafe { &mut *self.m.data.get() }
    }
}

impl<T> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        self.m.raw.unlock();
    }
}

/// Every lock of the runtime a fork takes, in the order it takes them.
fn all() -> [&'static RawLock; 15] {
    [
        crate::fdhooks::WATCHED.raw(),
        crate::fdhooks::BOUND_IN.raw(),
        crate::fdhooks::MARKED.raw(),
        crate::inotifywd::LAST.raw(),
        crate::inotifyq::TABLE.raw(),
        crate::shellcmd::STREAMS.raw(),
        crate::shellcmd::SAVED.raw(),
        crate::generations::LAST.raw(),
        crate::step::KEY.raw(),
        crate::step::CURRENT.raw(),
        crate::step::FAILED.raw(),
        crate::stepaddrs::MAP.raw(),
        &crate::mqnotify::LOCK,
        &crate::seccomp::LOCK,
        &crate::posixaio::LOCK,
    ]
}

/// The forking thread's signal mask before `prepare` blocked them (written with every lock
/// held: one forking thread at a time).
static MASK: AtomicU64 = AtomicU64::new(0);

fn set_mask(new: u64) -> u64 {
    let mut old = 0u64;
    let _ = syscall!(libc::SYS_rt_sigprocmask, libc::SIG_SETMASK, &new as *const u64, &mut old as *mut u64, 8);
    old
}

/// The thread in the window (0: none) and the pid of its process then: a forked child's only
/// thread is in it too until `child` closes it (its pid is another). Set and cleared only by the
/// thread that holds every lock of `all`: one at a time.
static WINDOW_TID: AtomicI32 = AtomicI32::new(0);
static WINDOW_PID: AtomicI32 = AtomicI32::new(0);

/// Stop signals taken in the window, for after it: the receiving thread's tid and the siginfo.
/// Written only by the thread in the window, in the stop handler (which blocks every signal).
struct Kept {
    n: AtomicU32,
    slots: UnsafeCell<[(i32, [u64; 16]); KEPT]>,
}
// SAFETY: see Kept: one writer (the thread in the window, never nested), which reads them back
// while it still holds every lock, with the stop signal blocked again.
unsafe impl Sync for Kept {}
const KEPT: usize = 16;
static KEPT_SIGNALS: Kept = Kept { n: AtomicU32::new(0), slots: UnsafeCell::new([(0, [0; 16]); KEPT]) };

/// Open the window (every lock held, every signal blocked): the stop signal comes in again.
fn open_window() {
    WINDOW_PID.store(sys::getpid(), Ordering::Relaxed);
    WINDOW_TID.store(sys::gettid(), Ordering::Release);
    set_mask(!crate::sighooks::stop_bit());
}

/// Close the window, every lock still held: every signal blocked again (one that comes now waits
/// for the program's mask), and the stop signals this thread took in it handed back. Those
/// another thread took (in a child: the parent's forking thread, before the fork) are not ours.
fn close_window() -> ([(i32, [u64; 16]); KEPT], usize) {
    set_mask(!0);
    WINDOW_TID.store(0, Ordering::Release);
    let n = (KEPT_SIGNALS.n.swap(0, Ordering::AcqRel) as usize).min(KEPT);
    // SAFETY: no handler of ours writes them now (the window is closed); see Kept.
    (unsafe { *KEPT_SIGNALS.slots.get() }, n)
}

/// After the window, with the program's mask back: each stop signal this thread took in it is
/// queued to it again, and taken at once (the program never blocks the stop signal).
fn take_kept((kept, n): ([(i32, [u64; 16]); KEPT], usize)) {
    if n == 0 {
        return;
    }
    let (pid, tid) = (sys::getpid(), sys::gettid());
    for (from, info) in &kept[..n] {
        if *from == tid {
            let _ = syscall!(libc::SYS_rt_tgsigqueueinfo, pid, tid, crate::threads::STOP_SIGNAL, info.as_ptr());
        }
    }
}

/// The stop signal's handler, first thing: in the window, keep the signal (`info`) for after it
/// and return (true); else false.
pub fn keep_for_later(info: *const libc::siginfo_t) -> bool {
    let w = WINDOW_TID.load(Ordering::Acquire);
    if w == 0 {
        return false;
    }
    let tid = sys::gettid();
    if tid != w && sys::getpid() == WINDOW_PID.load(Ordering::Relaxed) {
        return false; // another thread of the forking process
    }
    let i = KEPT_SIGNALS.n.load(Ordering::Acquire) as usize;
    if i < KEPT {
        // SAFETY: the kernel's siginfo for this handler (128 bytes); slot i is this thread's
        // (see Kept).
        unsafe { (*KEPT_SIGNALS.slots.get())[i] = (tid, std::ptr::read_unaligned(info as *const [u64; 16])) };
        KEPT_SIGNALS.n.store(i as u32 + 1, Ordering::Release);
    }
    true
}

/// Before a fork (glibc's prepare handler, and the runtime's own clone of a child process):
/// returns inside the gate, with every lock of `all` held and every signal but the stop signal
/// blocked in the calling thread.
pub fn prepare() {
    let all = all();
    loop {
        let g = gate::enter();
        let old = set_mask(!0);
        let taken = all.iter().take_while(|l| l.try_lock()).count();
        if taken == all.len() {
            MASK.store(old, Ordering::Relaxed);
            open_window();
            g.keep();
            return;
        }
        for l in all[..taken].iter().rev() {
            l.unlock();
        }
        set_mask(old);
        drop(g);
        // Wait for the one that was held, holding nothing.
        all[taken].lock();
        all[taken].unlock();
    }
}

fn release() {
    for l in all().iter().rev() {
        l.unlock();
    }
}

/// After the fork, in the parent (also when the fork failed).
pub fn parent() {
    let kept = close_window();
    release();
    gate::leave();
    set_mask(MASK.load(Ordering::Relaxed));
    take_kept(kept);
}

/// After the fork, in the child, before anything else: the locks are the forking thread's; the
/// gate is reset (the other threads inside it in the parent do not exist here).
pub fn child() {
    let kept = close_window();
    release();
    gate::reset_in_child();
    set_mask(MASK.load(Ordering::Relaxed));
    take_kept(kept);
}

pub extern "C" fn prepare_hook() {
    prepare();
}

pub extern "C" fn parent_hook() {
    parent();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutex_excludes_and_try_lock_sees_it() {
        static M: Mutex<u32> = Mutex::new(0);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    for _ in 0..10_000 {
                        *M.lock().unwrap() += 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*M.lock().unwrap(), 40_000);
        let g = M.lock().unwrap();
        assert!(!M.raw().try_lock(), "held by the guard");
        drop(g);
        assert!(M.raw().try_lock());
        M.raw().unlock();
    }
}
