//! Signal names and numbers as users write them (USR2, SIGUSR2, 12).

use anyhow::{bail, Result};

const NAMES: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("USR1", libc::SIGUSR1),
    ("USR2", libc::SIGUSR2),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("CONT", libc::SIGCONT),
    ("XCPU", libc::SIGXCPU),
    ("PWR", libc::SIGPWR),
];

/// Parse "USR2", "SIGUSR2" or "12" into a signal number that a program can catch.
pub fn parse(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        // 32 and 33 are glibc's own, 63 stops threads during a checkpoint.
        if n > 0 && n < 64 && ![libc::SIGKILL, libc::SIGSTOP, 32, 33, 63].contains(&n) {
            return Ok(n);
        }
        bail!("signal {n} cannot be used for checkpoints");
    }
    let up = s.to_ascii_uppercase();
    let bare = up.strip_prefix("SIG").unwrap_or(&up);
    match NAMES.iter().find(|(n, _)| *n == bare) {
        Some((_, num)) => Ok(*num),
        None => bail!("unknown signal name {s:?} (use e.g. USR2, USR1, TERM or a number)"),
    }
}
