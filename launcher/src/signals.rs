//! Signal names and numbers as users write them: every name the kernel has (USR2, SIGUSR2, usr2,
//! VTALRM, WINCH, SYS, STKFLT, PWR, IO or POLL, CLD, IOT...), RTMIN, RTMIN+n, RTMAX, RTMAX-n (the
//! real-time signals as glibc numbers them: RTMIN is 34) and numbers. Signals that cannot be
//! the checkpoint signal are refused with the reason.

use anyhow::{bail, Result};

const NAMES: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("IOT", libc::SIGIOT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("POLL", libc::SIGPOLL),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

/// glibc's first and last real-time signals (32 and 33 are its own).
const RTMIN: i32 = 34;
const RTMAX: i32 = 64;
/// The runtime stops threads with this signal during a checkpoint (runtime/src/threads.rs).
const STOP_SIGNAL: i32 = 63;

/// A signal number or name as written (None: not a signal at all).
fn number(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return Some(n);
    }
    let up = s.to_ascii_uppercase();
    let bare = up.strip_prefix("SIG").unwrap_or(&up);
    if let Some((_, n)) = NAMES.iter().find(|(n, _)| *n == bare) {
        return Some(*n);
    }
    let offset = |rest: &str, sign: char| -> Option<i32> {
        if rest.is_empty() {
            return Some(0);
        }
        let n: i32 = rest.strip_prefix(sign)?.parse().ok()?;
        (n >= 0).then_some(n)
    };
    if let Some(rest) = bare.strip_prefix("RTMIN") {
        return Some(RTMIN + offset(rest, '+')?);
    }
    if let Some(rest) = bare.strip_prefix("RTMAX") {
        return Some(RTMAX - offset(rest, '-')?);
    }
    None
}

/// What `sig` is, for messages: "SIGUSR2 (12)", "SIGRTMIN+3 (37)".
pub fn describe(sig: i32) -> String {
    let name = match NAMES.iter().find(|(_, n)| *n == sig) {
        Some((n, _)) => format!("SIG{n}"),
        None if (RTMIN..=RTMAX).contains(&sig) && sig - RTMIN <= RTMAX - sig => format!("SIGRTMIN+{}", sig - RTMIN),
        None if (RTMIN..=RTMAX).contains(&sig) => format!("SIGRTMAX-{}", RTMAX - sig),
        None => format!("signal {sig}"),
    };
    format!("{name} ({sig})")
}

/// Parse "USR2", "SIGUSR2", "usr2", "RTMIN+3" or "12" into a signal number that can be a
/// checkpoint signal; a warning to print when it works only in part.
pub fn parse(s: &str) -> Result<(i32, Option<String>)> {
    let Some(n) = number(s.trim()) else {
        bail!("unknown signal {s:?} (a name such as USR2, TERM, VTALRM, RTMIN+3, RTMAX-2, or a number)");
    };
    if !(1..=64).contains(&n) {
        bail!("signal {s:?}: there is no signal {n} (signals are 1 to 64)");
    }
    match n {
        libc::SIGKILL | libc::SIGSTOP => bail!("{} cannot be caught, so it cannot take checkpoints", describe(n)),
        32 | 33 => bail!("signal {n} is glibc's own (thread cancellation, set*id calls): it cannot take checkpoints"),
        STOP_SIGNAL => bail!("{} is the signal ckpt stops threads with during a checkpoint: choose another", describe(n)),
        _ => {}
    }
    let warning = matches!(n, libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE | libc::SIGTRAP | libc::SIGSYS).then(|| {
        format!("{} is also raised by faults in the program, which then go to no handler of its own", describe(n))
    });
    Ok((n, warning))
}

#[cfg(test)]
mod tests {
    use super::parse;

    fn num(s: &str) -> i32 {
        parse(s).unwrap_or_else(|e| panic!("{s}: {e}")).0
    }

    fn refusal(s: &str) -> String {
        parse(s).expect_err(s).to_string()
    }

    #[test]
    fn every_kernel_name() {
        for (s, n) in [
            ("USR2", 12),
            ("SIGUSR2", 12),
            ("usr2", 12),
            ("sigusr1", 10),
            ("VTALRM", 26),
            ("WINCH", 28),
            ("SYS", 31),
            ("STKFLT", 16),
            ("PWR", 30),
            ("IO", 29),
            ("POLL", 29),
            ("CLD", 17),
            ("IOT", 6),
            ("XFSZ", 25),
            ("PROF", 27),
            ("URG", 23),
            ("TTOU", 22),
            ("HUP", 1),
        ] {
            assert_eq!(num(s), n, "{s}");
        }
    }

    #[test]
    fn realtime_signals_and_numbers() {
        assert_eq!(num("RTMIN"), 34);
        assert_eq!(num("SIGRTMIN+3"), 37);
        assert_eq!(num("rtmin+0"), 34);
        assert_eq!(num("RTMAX"), 64);
        assert_eq!(num("RTMAX-2"), 62);
        assert_eq!(num("12"), 12);
        assert_eq!(num(" 40 "), 40);
        assert_eq!(num("64"), 64);
    }

    #[test]
    fn refusals_say_why() {
        assert!(refusal("KILL").contains("cannot be caught"), "{}", refusal("KILL"));
        assert!(refusal("SIGSTOP").contains("cannot be caught"));
        assert!(refusal("9").contains("SIGKILL (9)"));
        assert!(refusal("32").contains("glibc's own"));
        assert!(refusal("33").contains("glibc's own"));
        assert!(refusal("RTMAX-1").contains("stops threads"));
        assert!(refusal("63").contains("SIGRTMAX-1 (63)"));
        assert!(refusal("0").contains("no signal 0"));
        assert!(refusal("65").contains("no signal 65"));
        assert!(refusal("RTMIN+40").contains("no signal 74"));
        assert!(refusal("FOO").contains("unknown signal"));
        assert!(refusal("RTMIN3").contains("unknown signal"));
        assert!(refusal("RTMAX+1").contains("unknown signal"));
    }

    #[test]
    fn fault_signals_work_with_a_warning() {
        let (n, w) = parse("SEGV").unwrap();
        assert_eq!(n, 11);
        assert!(w.unwrap().contains("faults"));
        assert!(parse("USR1").unwrap().1.is_none());
    }
}
