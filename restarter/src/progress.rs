//! What ckpt-restart says while it works: how far it has read the image into memory (a line
//! redrawn in place on a terminal, once reading takes more than a second; nothing in a batch
//! log), and more when CKPT_LOG=info or debug (which the restarted program then keeps). The
//! line that ends a restart is the runtime's, once the program runs again (RestartInfo).

use ckpt_image::progress::{self as fmt_progress, Done};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// When ckpt-restart started (ns, CLOCK_MONOTONIC), set first thing in main.
static STARTED_NS: AtomicU64 = AtomicU64::new(0);

pub fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid out-parameter.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

pub fn mark_start() {
    STARTED_NS.store(now_ns(), Ordering::Relaxed);
}

pub fn started_ns() -> u64 {
    STARTED_NS.load(Ordering::Relaxed)
}

/// CKPT_LOG as a level: 0 quiet (the default), 1 info, 2 debug.
pub fn log_level() -> u8 {
    match std::env::var("CKPT_LOG").as_deref() {
        Ok("debug") | Ok("trace") => 2,
        Ok("info") => 1,
        _ => 0,
    }
}

/// With CKPT_LOG=info or debug: one line on stderr.
pub fn info(msg: impl std::fmt::Display) {
    if log_level() >= 1 {
        ckpt_kinds::say!("ckpt-restart: {msg}");
    }
}

/// Bytes of memory read into the staging area so far, of `total`.
pub struct Progress {
    what: String,
    total: u64,
    done: AtomicU64,
    drawn_ns: AtomicU64,
    on_screen: AtomicBool,
    tty: bool,
}

impl Progress {
    /// Reading `total` bytes of memory from the image `what`.
    pub fn new(what: String, total: u64) -> Progress {
        Progress { what, total, done: AtomicU64::new(0), drawn_ns: AtomicU64::new(0), on_screen: AtomicBool::new(false), tty: std::io::stderr().is_terminal() }
    }

    /// `bytes` more are in memory (any staging thread); redraw the line if it is due.
    pub fn add(&self, bytes: u64) {
        self.done.fetch_add(bytes, Ordering::AcqRel);
        if !self.tty {
            return;
        }
        let now = now_ns();
        let last = self.drawn_ns.load(Ordering::Acquire);
        if fmt_progress::due(started_ns(), last, now) && self.drawn_ns.compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            let done = Done { done: self.done.load(Ordering::Acquire), total: self.total, elapsed_ns: now.saturating_sub(started_ns()) };
            let line = format!("ckpt-restart: reading {}: {done}", self.what);
            ckpt_kinds::say::raw(&[fmt_progress::REDRAW, line.as_bytes(), fmt_progress::ERASE_REST].concat());
            self.on_screen.store(true, Ordering::Release);
        }
    }

    /// Erase the line (before anything else is written, and before the program runs).
    pub fn erase(&self) {
        if self.on_screen.swap(false, Ordering::AcqRel) {
            ckpt_kinds::say::raw(&[fmt_progress::REDRAW, fmt_progress::ERASE_REST].concat());
        }
    }

    pub fn total(&self) -> u64 {
        self.total
    }
}
