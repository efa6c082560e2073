//! Pidfds of the program's own threads (pidfd_open of a thread's tid, PIDFD_THREAD). Those
//! threads do not exist while the restarter places the fds (the runtime makes them after the
//! switch), so the fd gets /dev/null for the time being and the runtime opens the pidfd there
//! once the threads are back (`RestartPidFd` records in the switch area). Only with exact ids:
//! otherwise a tid names another thread after the restart, and such a pidfd stays lost (fds.rs
//! warns).

use ckpt_image::{FdKind, Index, RestartPidFd};
use std::sync::OnceLock;

/// The tids of the image's threads that the runtime makes again (every thread but the main
/// one, whose tid the restarting process already has), when ids are exact.
static LATER: OnceLock<Vec<i32>> = OnceLock::new();

/// Note the image's threads before its fds are restored (`exact`: ids are the image's).
pub fn expect(index: &Index, exact: bool) {
    let tids = if exact { index.threads.iter().map(|t| t.tid).filter(|&t| t != index.meta.pid).collect() } else { Vec::new() };
    let _ = LATER.set(tids);
}

/// Whether a pidfd of `pid` names a thread of ours that the runtime makes later.
pub fn made_later(pid: i32) -> bool {
    LATER.get().is_some_and(|t| t.contains(&pid))
}

/// What the runtime opens once the threads exist: the pidfds of later threads, then their dups.
pub fn records(index: &Index) -> Vec<RestartPidFd> {
    let record = |f: &ckpt_image::FdState, tid: i32, dup_of: i32| RestartPidFd { fd: f.fd, tid, flags: f.flags, cloexec: i32::from(f.cloexec), dup_of };
    let firsts: Vec<RestartPidFd> = index
        .fds
        .iter()
        .filter(|f| f.dup_of.is_none())
        .filter_map(|f| match f.kind {
            FdKind::PidFd { pid, own: false } if made_later(pid) => Some(record(f, pid, -1)),
            _ => None,
        })
        .collect();
    let dups = index.fds.iter().filter_map(|f| {
        let first = firsts.iter().find(|r| Some(r.fd) == f.dup_of)?;
        Some(record(f, first.tid, first.fd))
    });
    let dups: Vec<RestartPidFd> = dups.collect();
    firsts.into_iter().chain(dups).collect()
}
