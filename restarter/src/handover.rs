//! One process at a time while a tree is made, and handing a process up to its parent.
//!
//! A process is made in a session only by a process of that session, so a process whose parent
//! never was in its session (its creator exited: a session leader that double-forked, a helper
//! of a dead leader's session) is made below its parent and handed up to it: the helper that
//! made it exits while the parent is a child subreaper and nothing between them is one. For that
//! to hold, the tree is made one process at a time: each creator waits until what it created has
//! done its own part (`Done`), and meanwhile serves the requests to become (or stop being) a
//! child subreaper addressed to it (`become_subreaper`), made by the one process at work. A
//! tree whose plan hands no process up (no `Step::Deliver`) is made in parallel instead: each
//! creator goes on with its next step as soon as its new process exists, so that the tree's
//! processes stage their images and make their children at the same time (`serial`).

use anyhow::{bail, Result};
use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};
use std::sync::OnceLock;

/// The words every process of the tree shares while it is made (one MAP_SHARED page).
#[repr(C)]
struct Words {
    /// Bumped at every change below; everyone waiting sleeps on it.
    tick: AtomicU32,
    /// The request: its number, the process it is for, on or off.
    req: AtomicU32,
    req_pid: AtomicU32,
    req_on: AtomicU32,
    /// The number of the last request done.
    ack: AtomicU32,
}

static WORDS: OnceLock<&'static Words> = OnceLock::new();
/// Whether the tree is made one process at a time (its plan hands a process up).
static SERIAL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);
/// The word our creator waits on (set in every process made, in the new process).
static MINE: AtomicPtr<AtomicU32> = AtomicPtr::new(std::ptr::null_mut());

fn page() -> Result<*mut libc::c_void> {
    // SAFETY: a fresh anonymous shared page, zeroed, nothing else refers to it.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1, 0) };
    if p == libc::MAP_FAILED {
        bail!("cannot map a page to make the tree: {}", std::io::Error::last_os_error());
    }
    Ok(p)
}

/// Before the first process is made (in the root); `serial`: the plan hands a process up.
pub fn init(serial: bool) -> Result<()> {
    SERIAL.store(serial, Ordering::Release);
    // SAFETY: the page is zeroed (all words 0) and mapped for as long as the tree is made.
    let w: &'static Words = unsafe { &*(page()? as *const Words) };
    WORDS.set(w).map_err(|_| anyhow::anyhow!("internal: the tree was made twice"))
}

fn words() -> &'static Words {
    WORDS.get().expect("handover::init first")
}

fn bump() {
    let w = words();
    w.tick.fetch_add(1, Ordering::AcqRel);
    futex(&w.tick, libc::FUTEX_WAKE, i32::MAX as u32);
}

fn futex(word: &AtomicU32, op: i32, val: u32) {
    let ts = libc::timespec { tv_sec: 1, tv_nsec: 0 };
    // SAFETY: a futex on a word of a shared page (not FUTEX_PRIVATE: several processes).
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), op, val, &ts as *const libc::timespec, 0, 0) };
}

/// Whether a creator waits until what it made has done its part (`Done`) before it goes on.
pub fn serial() -> bool {
    SERIAL.load(Ordering::Acquire)
}

/// The word a process about to be made sets once it has done its part.
pub struct Done(&'static AtomicU32);

impl Done {
    /// Just before making a process.
    pub fn new() -> Result<Done> {
        // SAFETY: as in `init`; unmapped by `wait` (and the new process's `done`).
        Ok(Done(unsafe { &*(page()? as *const AtomicU32) }))
    }

    /// In the new process, right after it is made.
    pub fn adopt(&self) {
        MINE.store(self.0 as *const AtomicU32 as *mut AtomicU32, Ordering::Release);
    }

    /// In the creator: wait until the new process has done its part, serving requests
    /// meanwhile (`failed`: another process gave up).
    pub fn wait(self, failed: &AtomicU32) -> Result<()> {
        let start = std::time::Instant::now();
        while self.0.load(Ordering::Acquire) == 0 {
            let t = words().tick.load(Ordering::Acquire);
            serve();
            if self.0.load(Ordering::Acquire) != 0 {
                break;
            }
            if failed.load(Ordering::Acquire) != 0 {
                bail!("another process of the tree could not be restarted");
            }
            if start.elapsed() > std::time::Duration::from_secs(600) {
                bail!("a process of the tree was not made in 10 minutes");
            }
            futex(&words().tick, libc::FUTEX_WAIT, t);
        }
        unmap(self.0);
        Ok(())
    }
}

fn unmap(w: &AtomicU32) {
    // SAFETY: the page `Done::new` mapped; nothing uses it after this.
    unsafe { libc::munmap(w as *const AtomicU32 as *mut libc::c_void, 4096) };
}

/// This process has done its part of making the tree: its creator goes on.
pub fn done() {
    let p = MINE.swap(std::ptr::null_mut(), Ordering::AcqRel);
    if p.is_null() {
        return;
    }
    // SAFETY: the page our creator mapped before making us, still mapped in us.
    let w = unsafe { &*p };
    w.store(1, Ordering::Release);
    unmap(w);
    bump();
}

/// Make process `pid` (waiting, above us) a child subreaper (`on`) or not any more, and wait
/// until it is.
pub fn become_subreaper(pid: i32, on: bool, failed: &AtomicU32) -> Result<()> {
    let w = words();
    w.req_pid.store(pid as u32, Ordering::Release);
    w.req_on.store(on as u32, Ordering::Release);
    let n = w.req.fetch_add(1, Ordering::AcqRel) + 1;
    bump();
    let start = std::time::Instant::now();
    loop {
        let t = w.tick.load(Ordering::Acquire);
        if w.ack.load(Ordering::Acquire) == n {
            return Ok(());
        }
        if failed.load(Ordering::Acquire) != 0 {
            bail!("another process of the tree could not be restarted");
        }
        if start.elapsed() > std::time::Duration::from_secs(600) {
            bail!("process {pid} of the tree did not take its child back in 10 minutes");
        }
        futex(&w.tick, libc::FUTEX_WAIT, t);
    }
}

/// Do the request addressed to us, if any.
fn serve() {
    let w = words();
    let n = w.req.load(Ordering::Acquire);
    if n == w.ack.load(Ordering::Acquire) {
        return;
    }
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    if w.req_pid.load(Ordering::Acquire) != me as u32 {
        return;
    }
    let on = w.req_on.load(Ordering::Acquire) as libc::c_ulong;
    // SAFETY: changing only our own attribute (the image's is set again later: attrs::apply).
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, on, 0, 0, 0) };
    w.ack.store(n, Ordering::Release);
    bump();
}
