//! Progress of the checkpoint being written: bytes of memory written of the total, which the
//! writer threads count and which `ckpt-ctl status` and the terminal line show (the format is
//! ckpt_image::progress).
//!
//! The counter lives where both the writer and the checkpoint thread see it: in the snapshot's
//! shared report page when a snapshot writes the image (a process of its own), in `LOCAL` when
//! the image is written with the threads stopped. `CURRENT` points at the one in use, in each
//! process, while a checkpoint is being taken (null otherwise).
//!
//! On a terminal (stderr a tty), a writer thread redraws one line in place once the checkpoint
//! has taken more than a second, a few times a second; the next log line (the checkpoint's own,
//! or an error) first erases it. Not on a terminal, nothing but that last line is written.
//! Everything here is raw system calls and fixed buffers: it runs while threads are stopped.

use crate::log::Line;
use crate::sys;
use ckpt_image::progress::{self as fmt_progress, Done};
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};

#[repr(C)]
pub struct Progress {
    /// Bytes of memory the image will hold, and how many are written.
    total: AtomicU64,
    done: AtomicU64,
    /// When the checkpoint was asked for (ns, CLOCK_MONOTONIC), and its number.
    started_ns: AtomicU64,
    generation: AtomicU64,
    /// When the terminal line was last drawn (0: never), and whether it is on the screen.
    drawn_ns: AtomicU64,
    on_screen: AtomicU32,
    /// stderr is a terminal.
    tty: AtomicU32,
}

impl Progress {
    pub const fn new() -> Progress {
        Progress {
            total: AtomicU64::new(0),
            done: AtomicU64::new(0),
            started_ns: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            drawn_ns: AtomicU64::new(0),
            on_screen: AtomicU32::new(0),
            tty: AtomicU32::new(0),
        }
    }

    /// Start counting checkpoint `generation`, asked for at `started_ns`.
    fn reset(&self, generation: u64, started_ns: u64) {
        self.total.store(0, Ordering::Relaxed);
        self.done.store(0, Ordering::Relaxed);
        self.started_ns.store(started_ns, Ordering::Relaxed);
        self.generation.store(generation, Ordering::Relaxed);
        self.drawn_ns.store(0, Ordering::Relaxed);
        self.on_screen.store(0, Ordering::Relaxed);
        self.tty.store(u32::from(is_tty(2)), Ordering::Release);
    }

    /// The same checkpoint, counted in `self` from now on (a snapshot's report page).
    pub fn take_over(&self, from: &Progress) {
        self.reset(from.generation.load(Ordering::Relaxed), from.started_ns.load(Ordering::Relaxed));
    }

    /// The image will hold `bytes` of memory.
    pub fn set_total(&self, bytes: u64) {
        self.total.store(bytes, Ordering::Release);
    }

    /// The image will hold `bytes` more than said (a background snapshot's window, whose pages
    /// are found when it is stored).
    pub fn add_total(&self, bytes: u64) {
        self.total.fetch_add(bytes, Ordering::AcqRel);
    }

    /// `bytes` more are written (by any writer thread); redraw the terminal line if it is due.
    pub fn add(&self, bytes: u64) {
        self.done.fetch_add(bytes, Ordering::AcqRel);
        if self.tty.load(Ordering::Acquire) == 0 {
            return;
        }
        let now = crate::checkpoint::now_ns();
        let last = self.drawn_ns.load(Ordering::Acquire);
        // One thread draws: the one that moves `drawn_ns` on.
        if fmt_progress::due(self.started_ns.load(Ordering::Relaxed), last, now) && self.drawn_ns.compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            let mut l = Line::new();
            let _ = std::fmt::Write::write_fmt(&mut l, format_args!("checkpoint {}: {}", self.generation.load(Ordering::Relaxed), self.done_so_far(now)));
            l.redraw();
            self.on_screen.store(1, Ordering::Release);
        }
    }

    fn done_so_far(&self, now: u64) -> Done {
        Done { done: self.done.load(Ordering::Acquire), total: self.total.load(Ordering::Acquire), elapsed_ns: now.saturating_sub(self.started_ns.load(Ordering::Relaxed)) }
    }
}

/// The counter of the checkpoint being written with the threads stopped.
static LOCAL: Progress = Progress::new();
/// The counter in use in this process (null: no checkpoint).
static CURRENT: AtomicPtr<Progress> = AtomicPtr::new(std::ptr::null_mut());

/// A checkpoint starts: count it in `LOCAL` until a snapshot takes over.
pub fn begin(generation: u64, started_ns: u64) -> &'static Progress {
    LOCAL.reset(generation, started_ns);
    watch(&LOCAL);
    &LOCAL
}

/// The counter of a checkpoint written with the threads stopped.
pub fn local() -> &'static Progress {
    &LOCAL
}

/// Count in `p` (a snapshot's report page, mapped until the checkpoint ends) from now on.
pub fn watch(p: &Progress) {
    CURRENT.store(p as *const Progress as *mut Progress, Ordering::Release);
}

/// After a restart: the image was taken while a checkpoint was counted, maybe in a snapshot's
/// report page, which is in no image.
pub fn after_restart() {
    CURRENT.store(std::ptr::null_mut(), Ordering::Release);
}

/// The checkpoint has ended (its counter may go away).
pub fn end() {
    erase();
    CURRENT.store(std::ptr::null_mut(), Ordering::Release);
}

/// `p` is going away (a snapshot's report page): back to `LOCAL` if it was in use.
pub fn forget(p: &Progress) {
    let _ = CURRENT.compare_exchange(p as *const Progress as *mut Progress, &LOCAL as *const Progress as *mut Progress, Ordering::AcqRel, Ordering::Acquire);
}

fn current() -> Option<&'static Progress> {
    // SAFETY: CURRENT is null or points at LOCAL or at a report page that stays mapped until
    // `end` clears it (the checkpoint thread's own, or this snapshot child's until it exits).
    unsafe { CURRENT.load(Ordering::Acquire).as_ref() }
}

/// Before a log line: erase the progress line if one is on the screen.
pub fn erase() {
    if let Some(p) = current() {
        if p.on_screen.swap(0, Ordering::AcqRel) != 0 {
            let _ = sys::write_all(2, fmt_progress::REDRAW);
            let _ = sys::write_all(2, fmt_progress::ERASE_REST);
        }
    }
}

/// For `ckpt-ctl status`: the checkpoint being taken and how far it has got, or None.
pub fn status() -> Option<String> {
    let p = current()?;
    let now = crate::checkpoint::now_ns();
    let gen = p.generation.load(Ordering::Relaxed);
    if p.total.load(Ordering::Acquire) == 0 {
        let secs = now.saturating_sub(p.started_ns.load(Ordering::Relaxed)) as f64 / 1e9;
        return Some(format!("checkpoint {gen} in progress: preparing, {secs:.1} s"));
    }
    Some(format!("checkpoint {gen} in progress, written: {}", p.done_so_far(now)))
}

/// Whether `fd` is a terminal (TCGETS succeeds).
fn is_tty(fd: i32) -> bool {
    // SAFETY: an all-zero termios is a valid out-parameter.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    sys::syscall!(libc::SYS_ioctl, fd, libc::TCGETS, &mut t as *mut libc::termios).is_ok()
}
