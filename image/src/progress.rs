//! How ckpt says how far a long checkpoint or restart has got, the same way on both sides: the
//! runtime while it writes an image, the restarter while it reads one, and `ckpt-ctl status`.
//! On a terminal the line is redrawn in place (`\r`, then erase to the end of the line) no more
//! than a few times a second, and only once the work has taken more than a second; the line
//! that ends the work is an ordinary log line. Formatting writes into a caller's buffer: the
//! runtime formats while the program's threads may be stopped, without allocating.

use std::fmt;

/// Work shorter than this shows no progress line.
pub const AFTER_NS: u64 = 1_000_000_000;
/// At most one redraw per this long.
pub const EVERY_NS: u64 = 250_000_000;

/// Bytes as a short human figure: 812 B, 3.4 KiB, 310.5 MiB, 1.20 GiB.
pub struct Size(pub u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        if b < 1024 {
            write!(f, "{b} B")
        } else if b < 1 << 20 {
            write!(f, "{:.1} KiB", b as f64 / 1024.0)
        } else if b < 1 << 30 {
            write!(f, "{:.1} MiB", b as f64 / (1u64 << 20) as f64)
        } else {
            write!(f, "{:.2} GiB", b as f64 / (1u64 << 30) as f64)
        }
    }
}

/// "1.20 GiB of 4.00 GiB of memory (30%), 310.5 MiB/s, 4.1 s": `done` of `total` bytes after
/// `elapsed_ns`.
pub struct Done {
    pub done: u64,
    pub total: u64,
    pub elapsed_ns: u64,
}

impl fmt::Display for Done {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = if self.total == 0 { 100 } else { (self.done.min(self.total) as u128 * 100 / self.total as u128) as u64 };
        let secs = self.elapsed_ns as f64 / 1e9;
        let rate = if secs > 0.0 { (self.done as f64 / secs) as u64 } else { 0 };
        write!(f, "{} of {} of memory ({pct}%), {}/s, {secs:.1} s", Size(self.done), Size(self.total), Size(rate))
    }
}

/// Whether the line is due: the work has run for more than a second and the last redraw (at
/// `last_ns`, 0: none yet) is old enough. Times in ns of one monotonic clock.
pub fn due(started_ns: u64, last_ns: u64, now_ns: u64) -> bool {
    now_ns.saturating_sub(started_ns) > AFTER_NS && (last_ns == 0 || now_ns.saturating_sub(last_ns) >= EVERY_NS)
}

/// What goes before a redrawn line, and what erases the rest of the old one after it.
pub const REDRAW: &[u8] = b"\r";
pub const ERASE_REST: &[u8] = b"\x1b[K";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let d = Done { done: 3 << 29, total: 4 << 30, elapsed_ns: 2_000_000_000 };
        assert_eq!(d.to_string(), "1.50 GiB of 4.00 GiB of memory (37%), 768.0 MiB/s, 2.0 s");
        assert_eq!(Size(812).to_string(), "812 B");
        assert!(!due(0, 0, AFTER_NS));
        assert!(due(0, 0, AFTER_NS + 1));
        assert!(!due(0, AFTER_NS, AFTER_NS + 1));
        assert!(due(0, AFTER_NS, AFTER_NS + EVERY_NS));
    }
}
