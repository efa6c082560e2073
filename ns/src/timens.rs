//! A time namespace for a restarted program, so that CLOCK_MONOTONIC and CLOCK_BOOTTIME go on
//! from the values they had at checkpoint time instead of jumping (forward by the time the
//! program was down, or backwards on a node that booted later), as CRIU does.
//!
//! A time namespace's offsets are fixed before its first process enters: init unshares one for
//! its children, writes the offsets to /proc/self/timens_offsets, and only then creates the
//! restarting process. Offsets are relative to the host's clocks (time namespaces do not nest),
//! so a caller that is itself in a time namespace adds its own offsets.

const NS: i64 = 1_000_000_000;

/// Monotonic and boot-time clocks, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Clocks {
    pub monotonic: i64,
    pub boottime: i64,
}

impl Clocks {
    /// The clocks as this process sees them now.
    pub fn now() -> Clocks {
        let read = |id| {
            let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            // SAFETY: ts is a valid out-parameter.
            unsafe { libc::clock_gettime(id, &mut ts) };
            ts.tv_sec * NS + ts.tv_nsec
        };
        Clocks { monotonic: read(libc::CLOCK_MONOTONIC), boottime: read(libc::CLOCK_BOOTTIME) }
    }
}

/// Offsets for a namespace whose clocks read `target` now, given our clocks `now` and our own
/// namespace's offsets `own`.
pub fn offsets_for(target: Clocks, now: Clocks, own: Clocks) -> Clocks {
    Clocks { monotonic: target.monotonic - (now.monotonic - own.monotonic), boottime: target.boottime - (now.boottime - own.boottime) }
}

/// Parse /proc/PID/timens_offsets ("monotonic SECS NSECS" and "boottime SECS NSECS" lines).
pub fn parse_offsets(text: &str) -> Option<Clocks> {
    let mut c = Clocks::default();
    for line in text.lines() {
        let mut w = line.split_whitespace();
        let (Some(name), Some(s), Some(n)) = (w.next(), w.next(), w.next()) else { continue };
        let v = s.parse::<i64>().ok()? * NS + n.parse::<i64>().ok()?;
        match name {
            "monotonic" | "1" => c.monotonic = v,
            "boottime" | "7" => c.boottime = v,
            _ => {}
        }
    }
    Some(c)
}

/// The text to write to timens_offsets for `off` (nanoseconds split so that 0 <= nsecs < 1e9).
pub fn format_offsets(off: Clocks) -> String {
    let split = |v: i64| (v.div_euclid(NS), v.rem_euclid(NS));
    let (ms, mn) = split(off.monotonic);
    let (bs, bn) = split(off.boottime);
    format!("monotonic {ms} {mn}\nboottime {bs} {bn}\n")
}

/// Give the caller's future children a time namespace whose clocks read `target` now.
pub fn enter_for_children(target: Clocks) -> std::io::Result<()> {
    let own = std::fs::read_to_string("/proc/self/timens_offsets")
        .ok()
        .and_then(|t| parse_offsets(&t))
        .unwrap_or_default();
    let off = offsets_for(target, Clocks::now(), own);
    // SAFETY: unshare only changes which namespaces our children will be created in.
    if unsafe { libc::unshare(libc::CLONE_NEWTIME) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    std::fs::write("/proc/self/timens_offsets", format_offsets(off))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_continue_the_clocks() {
        let target = Clocks { monotonic: 100 * NS, boottime: 200 * NS };
        let now = Clocks { monotonic: 5 * NS, boottime: 7 * NS };
        assert_eq!(offsets_for(target, now, Clocks::default()), Clocks { monotonic: 95 * NS, boottime: 193 * NS });
        // A caller already in a namespace with offsets 10 s: its clocks are the host's + 10 s.
        let own = Clocks { monotonic: 10 * NS, boottime: 10 * NS };
        assert_eq!(offsets_for(target, now, own), Clocks { monotonic: 105 * NS, boottime: 203 * NS });
    }

    #[test]
    fn offsets_text() {
        let c = parse_offsets("monotonic           5         7\nboottime        -1 999999999\n").unwrap();
        assert_eq!(c, Clocks { monotonic: 5 * NS + 7, boottime: -1 });
        assert_eq!(format_offsets(c), "monotonic 5 7\nboottime -1 999999999\n");
        assert_eq!(parse_offsets(&format_offsets(Clocks { monotonic: -3 * NS / 2, boottime: 0 })).unwrap().monotonic, -3 * NS / 2);
    }
}
