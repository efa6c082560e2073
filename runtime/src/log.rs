//! Logging to stderr with raw writes (no stdio, no locks). Quiet by default; CKPT_LOG=debug or
//! CKPT_LOG=info shows more. Errors and the one line per checkpoint are always shown.

use std::sync::atomic::{AtomicU8, Ordering};

pub const ERROR: u8 = 0;
/// Shown whatever CKPT_LOG says (the one line per checkpoint).
pub const ALWAYS: u8 = 0;
pub const INFO: u8 = 1;
pub const DEBUG: u8 = 2;

static LEVEL: AtomicU8 = AtomicU8::new(ERROR);

pub fn set_level_from_env(v: Option<&[u8]>) {
    let lvl = match v {
        Some(b"debug") | Some(b"trace") => DEBUG,
        Some(b"info") => INFO,
        _ => ERROR,
    };
    LEVEL.store(lvl, Ordering::Relaxed);
}

/// The level ckpt-restart was given (its CKPT_LOG), after a restart.
pub fn set_level(lvl: u8) {
    LEVEL.store(lvl.min(DEBUG), Ordering::Relaxed);
}

pub fn enabled(lvl: u8) -> bool {
    lvl <= LEVEL.load(Ordering::Relaxed)
}

/// A fixed buffer that formats without allocating.
pub struct Line {
    buf: [u8; 512],
    len: usize,
}

impl Line {
    pub fn new() -> Self {
        let mut l = Line { buf: [0; 512], len: 0 };
        l.push(b"ckpt: ");
        l
    }
    pub fn push(&mut self, s: &[u8]) {
        let n = s.len().min(self.buf.len() - 1 - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s[..n]);
        self.len += n;
    }
    pub fn emit(mut self) {
        self.push(b"\n");
        crate::progress::erase();
        let _ = crate::sys::write_all(2, &self.buf[..self.len]);
    }
    /// Draw the line over the one on the terminal (a progress line: see progress.rs).
    pub fn redraw(mut self) {
        self.push(ckpt_image::progress::ERASE_REST);
        let _ = crate::sys::write_all(2, ckpt_image::progress::REDRAW);
        let _ = crate::sys::write_all(2, &self.buf[..self.len]);
    }
}

impl std::fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}

macro_rules! log {
    ($lvl:expr, $($arg:tt)*) => {
        if $crate::log::enabled($lvl) {
            let mut l = $crate::log::Line::new();
            let _ = std::fmt::Write::write_fmt(&mut l, format_args!($($arg)*));
            l.emit();
        }
    };
}
pub(crate) use log;
