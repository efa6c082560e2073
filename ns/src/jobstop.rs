//! Processes stopped by job control (SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU), as /proc shows them:
//! whether a process is stopped and whether every thread of it is (the stop signal is not in
//! /proc: the coordinator asks the process's parent, see `coord`). Used by the
//! coordinator (`coord`), which wakes such a process for a checkpoint and stops it again, and by
//! the restarter, which waits until a restarted one is stopped again before the others run.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

/// si_value of the runtime's stop signal that the coordinator queues to each program thread of
/// a stopped process before it wakes it ("ckpw" in ASCII): its handler parks the thread until
/// the checkpoint thread stops it for the checkpoint.
pub const WAKE_MARK: u64 = 0x636b_7077;

/// The runtime's stop signal (runtime/src/threads.rs).
const STOP_SIGNAL: i32 = 63;

/// The file, in the set's temporary directory, where the coordinator writes what each program
/// thread of stopped process `pid` was blocked in: one line per thread, its tid and its
/// /proc/PID/task/TID/syscall line.
pub fn seen_name(pid: i32) -> String {
    format!("{pid}.seen")
}

/// Wake stopped process `pid` for its part in a checkpoint (see `coord`): if its runtime
/// handles the stop signal (a member, or a child a member forked that had not joined yet),
/// note in `<pid>.seen` under `tmp` where each program thread was stopped and queue it the
/// runtime's stop signal marked `WAKE_MARK`; then SIGCONT.
pub(crate) fn wake(pid: i32, tmp: &std::path::Path) {
    if catches_stop_signal(pid) {
        mark(pid, tmp);
    }
    // SAFETY: a signal to a process of our namespace.
    unsafe { libc::kill(pid, libc::SIGCONT) };
}

fn mark(pid: i32, tmp: &std::path::Path) {
    let mut seen = String::new();
    let mut threads = Vec::new();
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in rd.flatten() {
            let Some(tid) = t.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
            let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            let blocked = status.lines().find_map(|l| l.strip_prefix("SigBlk:")).and_then(|v| u64::from_str_radix(v.trim(), 16).ok()).unwrap_or(0);
            // The checkpoint thread and the helpers that block every signal: not the program's
            // code, or never stopped by the runtime. But a program thread blocks every signal
            // too for a moment where glibc's pthread_create does (around its clone) and where
            // the runtime does (its checkpoint thread made in a forked child), and SIGSTOP
            // stops it there all the same: the leader (the program's main thread: in a tree the
            // ids are exact) is always the program's. Its mark waits until its mask opens.
            if blocked & (1 << (STOP_SIGNAL - 1)) != 0 && tid != pid {
                continue;
            }
            if let Ok(line) = std::fs::read_to_string(t.path().join("syscall")) {
                seen.push_str(&format!("{tid} {}\n", line.trim_end()));
            }
            threads.push(tid);
        }
    }
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(tmp.join(seen_name(pid)))
        .and_then(|mut f| f.write_all(seen.as_bytes()));
    if written.is_ok() {
        for tid in threads {
            queue_marked(pid, tid);
        }
    }
}

/// Whether process `pid` has a handler for the runtime's stop signal (SigCgt): an exec'd
/// program before its runtime starts, or one without it, would die of it.
fn catches_stop_signal(pid: i32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let caught = status.lines().find_map(|l| l.strip_prefix("SigCgt:")).and_then(|v| u64::from_str_radix(v.trim(), 16).ok()).unwrap_or(0);
    caught & (1 << (STOP_SIGNAL - 1)) != 0
}

/// Queue the runtime's stop signal to thread `tid` of `pid`, as SI_QUEUE from us with WAKE_MARK.
fn queue_marked(pid: i32, tid: i32) {
    // SAFETY: an all-zero siginfo is valid; the _rt member (si_pid, si_uid, si_value at offset
    // 16) is filled as sigqueue does.
    let mut i: libc::siginfo_t = unsafe { std::mem::zeroed() };
    i.si_signo = STOP_SIGNAL;
    i.si_code = libc::SI_QUEUE;
    // SAFETY: writing the _rt member's fields inside the siginfo, then a queued signal to a
    // thread of our namespace.
    unsafe {
        let p = (&mut i as *mut libc::siginfo_t as *mut u8).add(16) as *mut i32;
        *p = libc::getpid();
        *p.add(1) = libc::getuid() as i32;
        *(p.add(2) as *mut u64) = WAKE_MARK;
        libc::syscall(libc::SYS_rt_tgsigqueueinfo, pid, tid, STOP_SIGNAL, &i as *const libc::siginfo_t);
    }
}

/// The states of process `pid`'s threads (`R`, `S`, `T`, ...).
pub(crate) fn thread_states(pid: i32) -> Vec<(char, String)> {
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    rd.flatten()
        .filter_map(|t| {
            let stat = std::fs::read_to_string(t.path().join("stat")).ok()?;
            let (_, rest) = stat.rsplit_once(") ")?;
            Some((rest.chars().next()?, rest.to_string()))
        })
        .collect()
}

/// Whether every live thread of process `pid` is stopped by job control.
pub fn all_stopped(pid: i32) -> bool {
    thread_states(pid).iter().all(|(s, _)| matches!(s, 'T' | 'Z' | 'X'))
}

/// Whether one of process `pid`'s threads is stopped by job control.
pub fn is_stopped(pid: i32) -> bool {
    thread_states(pid).iter().any(|(s, _)| *s == 'T')
}

/// The stop signals of init's children as init took their wait reports (init's reaping takes
/// them all; the coordinator, in the same process, asks): (pid, signal).
static REAPED: std::sync::Mutex<Vec<(i32, i32)>> = std::sync::Mutex::new(Vec::new());

/// Init took a wait report of its child `pid`: stopped by `sig` (Some), or continued or ended.
pub(crate) fn note_reaped(pid: i32, sig: Option<i32>) {
    let mut r = REAPED.lock().unwrap_or_else(|e| e.into_inner());
    r.retain(|(p, _)| *p != pid);
    if let Some(sig) = sig {
        r.push((pid, sig));
    }
}

/// The signal that stopped init's child `pid`, from the last wait report init took.
pub(crate) fn reaped_stop(pid: i32) -> Option<i32> {
    REAPED.lock().unwrap_or_else(|e| e.into_inner()).iter().find(|(p, _)| *p == pid).map(|(_, s)| *s)
}
