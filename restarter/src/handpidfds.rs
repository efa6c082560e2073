//! Pidfds that one process of a restarted tree holds of a thread of another (pidfd_open of the
//! thread's tid, PIDFD_THREAD or not). That thread does not exist while the holder's fds are
//! placed: its process's runtime makes it after the switch. So the tree's build pairs each such
//! pidfd with a SOCK_SEQPACKET socketpair (`plan`); the thread's process keeps one end, the holder
//! the other (`take`, out of the program's fd numbers), and the holder has /dev/null at the fd
//! meanwhile (`holds`). Once the thread's process has made its threads, and before they run, its
//! runtime opens the pidfd of the thread (its flags kept) and sends it; the holder's runtime
//! takes it before its own threads run and puts it at the fd, then its dups (`RestartHandoff`
//! records in the switch area). A pidfd opened while the thread exists refers to it even if it
//! ends before the holder takes it: the thread's exit is seen as it would have been.
//!
//! Only where ids are exact (a tree's restart), and not for processes that share an fd table
//! (clone with CLONE_FILES: their table is restored by another) or are run again: those keep
//! the path of other pidfds (fds.rs: a refusal, or /dev/null with a warning).

use anyhow::{bail, Result};
use ckpt_image::tree::Manifest;
use ckpt_image::{FdKind, Index, RestartHandoff};
use std::os::fd::RawFd;
use std::sync::OnceLock;

/// One pidfd to hand over: `holder` holds it at `fd` with `flags`; thread `tid` is process
/// `owner`'s. `ends`: the socketpair (the owner's end, the holder's end), in every process of
/// the tree until each keeps its own.
#[derive(Debug, Clone)]
pub struct Handoff {
    holder: i32,
    fd: i32,
    flags: i32,
    cloexec: bool,
    owner: i32,
    tid: i32,
    ends: (RawFd, RawFd),
}

/// The tree's handoffs (from the images of every process), with a socketpair each. Made by the
/// tree's root before it makes any process: all inherit them.
pub fn plan(indexes: &[(i32, Index)], m: &Manifest) -> Result<Vec<Handoff>> {
    let takes_part = |pid: i32| m.table_parent(pid).is_none() && !m.reexec.contains(&pid);
    // Thread id -> its process, for threads the runtime makes (not the main one).
    let owner_of = |tid: i32| indexes.iter().find(|(pid, ix)| *pid != tid && ix.threads.iter().any(|t| t.tid == tid)).map(|(pid, _)| *pid);
    let mut out = Vec::new();
    for (holder, ix) in indexes.iter().filter(|(pid, _)| takes_part(*pid)) {
        for f in ix.fds.iter().filter(|f| f.fd >= 0 && f.dup_of.is_none()) {
            let FdKind::PidFd { pid: tid, own: false } = f.kind else { continue };
            let Some(owner) = owner_of(tid).filter(|o| o != holder && takes_part(*o)) else { continue };
            let mut sv = [-1; 2];
            // SAFETY: sv is a valid out-parameter for two fds.
            if unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, sv.as_mut_ptr()) } != 0 {
                bail!("cannot make a socket pair to hand over the pidfd of thread {tid} (process {holder}'s fd {}): {}", f.fd, std::io::Error::last_os_error());
            }
            out.push(Handoff { holder: *holder, fd: f.fd, flags: f.flags & (libc::O_NONBLOCK | libc::O_EXCL), cloexec: f.cloexec, owner, tid, ends: (sv[0], sv[1]) });
        }
    }
    Ok(out)
}

/// This process's records for its runtime (set by `take`).
static MINE: OnceLock<Vec<RestartHandoff>> = OnceLock::new();

/// Keep this process's ends of the tree's handoffs (`handoffs`), moved to `top` or above, out of
/// the program's fd numbers (the others are closed with every fd the program does not hold);
/// `fds`: this process's fds in its image (for the dups of a received pidfd). The ends kept.
pub fn take(handoffs: &[Handoff], fds: &[ckpt_image::FdState], top: RawFd) -> Result<Vec<RawFd>> {
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    let high = |fd: RawFd| -> Result<RawFd> {
        // SAFETY: fcntl on an end this process inherited.
        let n = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, top.max(3)) };
        if n < 0 {
            bail!("cannot keep the socket that hands over a pidfd of a thread: {}", std::io::Error::last_os_error());
        }
        Ok(n)
    };
    let mut recs = Vec::new();
    for h in handoffs {
        let rec = RestartHandoff { fd: h.fd, tid: h.tid, owner: h.owner, flags: h.flags, cloexec: i32::from(h.cloexec), dup_of: -1, ..Default::default() };
        if h.owner == me {
            recs.push(RestartHandoff { kind: RestartHandoff::SEND, fd: -1, sock: high(h.ends.0)?, ..rec });
        }
        if h.holder == me {
            recs.push(RestartHandoff { kind: RestartHandoff::RECEIVE, sock: high(h.ends.1)?, ..rec });
        }
    }
    // The dups of a received pidfd, made after it.
    let received: Vec<i32> = recs.iter().filter(|r| r.kind == RestartHandoff::RECEIVE).map(|r| r.fd).collect();
    for f in fds {
        if let Some(first) = f.dup_of.filter(|d| received.contains(d)) {
            recs.push(RestartHandoff { kind: RestartHandoff::DUP, fd: f.fd, cloexec: i32::from(f.cloexec), dup_of: first, sock: -1, ..Default::default() });
        }
    }
    let kept = recs.iter().map(|r| r.sock).filter(|&s| s >= 0).collect();
    let _ = MINE.set(recs);
    Ok(kept)
}

/// Whether this process's fd `fd` is a pidfd its runtime receives (/dev/null until then).
pub fn holds(fd: i32) -> bool {
    MINE.get().is_some_and(|r| r.iter().any(|r| r.kind == RestartHandoff::RECEIVE && r.fd == fd))
}

/// The records for the switch area.
pub fn records() -> Vec<RestartHandoff> {
    MINE.get().cloned().unwrap_or_default()
}
