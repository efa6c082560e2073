//! Process-wide state besides memory and fds: mm fields, auxv, cwd, umask, rlimits, signal
//! dispositions, credentials; and the dumpable flag a checkpoint needs.

use crate::sys::{self, syscall};
use ckpt_image::{Creds, MmFields, ProcessState, Rlimit, SigAction};
use std::sync::atomic::{AtomicI32, Ordering};

/// The process-wide state, read on the checkpoint thread while the program's threads are
/// stopped; `program_tid`: one of them, whose root, working directory and umask are the
/// program's (the checkpoint thread has its own: `crate::detach_fs`).
pub fn read_process(program_tid: i32) -> ProcessState {
    let mut p = ProcessState { mm: read_mm(), ..Default::default() };
    if let Ok(a) = sys::read_file(&sys::cpath(&[b"/proc/thread-self/auxv"])) {
        p.auxv = a.chunks_exact(8).map(|c| u64::from_ne_bytes(c.try_into().unwrap())).collect();
    }
    let task = [&b"/proc/self/task/"[..], &sys::decimal(program_tid), b"/"].concat();
    p.cwd = ckpt_kinds::procfs::own_proc_path(&sys::readlink(&sys::cpath(&[&task, b"cwd"])).unwrap_or_default(), sys::getpid());
    p.root = sys::readlink(&sys::cpath(&[&task, b"root"])).unwrap_or_default();
    let status = sys::read_file(&sys::cpath(&[&task, b"status"])).unwrap_or_default();
    p.umask = status_field(&status, b"Umask:").and_then(|v| u32::from_str_radix(&v, 8).ok()).unwrap_or_else(|| {
        let old = syscall!(libc::SYS_umask, 0o022).unwrap_or(0o022);
        let _ = syscall!(libc::SYS_umask, old);
        old as u32
    });
    for r in 0..16u32 {
        let mut lim = libc::rlimit64 { rlim_cur: 0, rlim_max: 0 };
        if syscall!(libc::SYS_prlimit64, 0, r, 0, &mut lim as *mut libc::rlimit64).is_ok() {
            p.rlimits.push(Rlimit { resource: r, cur: lim.rlim_cur, max: lim.rlim_max });
        }
    }
    // A SIGHUP handler installed by a raw system call goes behind the hangup gate first.
    crate::hupgate::at_checkpoint();
    p.sigactions = read_sigactions();
    p.rseq_offset = crate::threads::RSEQ_OFFSET.load(std::sync::atomic::Ordering::Relaxed);
    p.rseq_size = crate::threads::RSEQ_SIZE.load(std::sync::atomic::Ordering::Relaxed);
    p.creds = read_creds(&status);
    p.attrs = crate::procattrs::capture();
    p
}

/// The value of `key` (e.g. `Umask:`) in a /proc status file, trimmed.
fn status_field(status: &[u8], key: &[u8]) -> Option<String> {
    let line = status.split(|&b| b == b'\n').find_map(|l| l.strip_prefix(key))?;
    Some(String::from_utf8_lossy(line).trim().to_string())
}

/// The process's user and group ids, supplementary groups and filesystem ids: the
/// thread-group leader's (what /proc/PID/status shows; threads may have ids of their own:
/// threadcreds.rs), else those of the program thread whose `status` this is (a leader whose
/// status cannot be read), else the checkpoint thread's.
fn read_creds(status: &[u8]) -> Creds {
    let leader = sys::read_file(&sys::cpath(&[b"/proc/self/task/", &sys::decimal(sys::getpid()), b"/status"])).unwrap_or_default();
    if let Some(c) = crate::threadcreds::from_status(&leader).or_else(|| crate::threadcreds::from_status(status)) {
        return c;
    }
    let mut c = Creds::default();
    let [r, e, s] = &mut c.uids;
    let _ = syscall!(libc::SYS_getresuid, r as *mut u32, e as *mut u32, s as *mut u32);
    let [r, e, s] = &mut c.gids;
    let _ = syscall!(libc::SYS_getresgid, r as *mut u32, e as *mut u32, s as *mut u32);
    c.fs = [c.uids[1], c.gids[1]];
    let mut groups = vec![0u32; 65536];
    if let Ok(n) = syscall!(libc::SYS_getgroups, groups.len(), groups.as_mut_ptr()) {
        groups.truncate(n as usize);
        c.groups = groups;
    }
    c
}

/// The program's dumpable flag, kept across restarts (it is part of the memory image).
static DUMPABLE: AtomicI32 = AtomicI32::new(1);

/// Make the process dumpable for a checkpoint; returns the program's own setting.
pub fn make_dumpable() -> i32 {
    let d = syscall!(libc::SYS_prctl, libc::PR_GET_DUMPABLE).unwrap_or(1) as i32;
    DUMPABLE.store(d, Ordering::Relaxed);
    if d != 1 {
        let _ = syscall!(libc::SYS_prctl, libc::PR_SET_DUMPABLE, 1);
    }
    d
}

/// Give the program its own dumpable setting back (after a checkpoint; at restart, where the
/// restarter's setting is not the program's).
pub fn restore_dumpable(d: i32) {
    let _ = syscall!(libc::SYS_prctl, libc::PR_SET_DUMPABLE, d);
}

/// At restart: the setting the program had when the image was taken.
pub fn restore_saved_dumpable() {
    restore_dumpable(DUMPABLE.load(Ordering::Relaxed));
}

/// The kernel's `struct sigaction` for x86-64.
#[repr(C)]
#[derive(Default)]
struct KSigaction {
    handler: u64,
    flags: u64,
    restorer: u64,
    mask: u64,
}

fn read_sigactions() -> Vec<SigAction> {
    let mut v = Vec::new();
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        let mut k = KSigaction::default();
        if syscall!(libc::SYS_rt_sigaction, sig, 0, &mut k as *mut KSigaction, 8).is_ok() {
            v.push(SigAction { signo: sig, handler: k.handler, flags: k.flags, restorer: k.restorer, mask: k.mask });
        }
    }
    v
}

fn read_mm() -> MmFields {
    let stat = sys::read_file(&sys::cpath(&[b"/proc/thread-self/stat"])).unwrap_or_default();
    let after = match stat.iter().rposition(|&b| b == b')') {
        Some(i) => &stat[i + 2..],
        None => &stat[..],
    };
    let fields: Vec<u64> = after
        .split(|&b| b == b' ' || b == b'\n')
        .map(|f| std::str::from_utf8(f).ok().and_then(|s| s.parse::<i64>().ok()).unwrap_or(0) as u64)
        .collect();
    // Field k of /proc/pid/stat (1-based) is fields[k - 3].
    let f = |k: usize| fields.get(k - 3).copied().unwrap_or(0);
    let brk = syscall!(libc::SYS_brk, 0).unwrap_or(0) as u64;
    MmFields {
        start_code: f(26),
        end_code: f(27),
        start_stack: f(28),
        start_data: f(45),
        end_data: f(46),
        start_brk: f(47),
        brk,
        arg_start: f(48),
        arg_end: f(49),
        env_start: f(50),
        env_end: f(51),
    }
}

/// Whether some of the process's memory is locked (mlock, MAP_LOCKED: VmLck in
/// /proc/self/status).
pub fn locks_memory() -> bool {
    let status = sys::read_file(&sys::cpath(&[b"/proc/thread-self/status"])).unwrap_or_default();
    status
        .split(|&b| b == b'\n')
        .find_map(|l| l.strip_prefix(b"VmLck:"))
        .and_then(|v| std::str::from_utf8(v).ok()?.split_whitespace().next()?.parse::<u64>().ok())
        .is_some_and(|kb| kb > 0)
}
