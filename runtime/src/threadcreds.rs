//! Each thread's own user and group ids. glibc's setuid family changes them in every thread
//! (SIGSETXID), but the raw system calls (setresuid, setresgid, setfsuid, setgroups) change
//! only the calling thread's: threads of one process may run as different users (zdtm
//! thread_different_uid_gid), and the runtime's checkpoint thread keeps the ids it started
//! with. The process's ids are the thread-group leader's (what /proc/PID/status shows, and
//! what a tree's coordinator reads); each thread's are recorded at the checkpoint from its
//! /proc status (`ThreadAttrs::creds`) and, after a restart, each recreated thread takes its
//! own back (`restore`) from the process's, which ckpt-restart took on before the switch.
//! The checkpoint thread's own are recorded here (`note_own`: static, part of the memory image)
//! and taken back first thing in a restart (`restore_own`): as the process's, it could not
//! bind its control socket or write the next image in root's image directory.

use crate::log::{log, DEBUG, ERROR};
use crate::sys::{self, syscall};
use ckpt_image::{Creds, ThreadCreds, THREAD_GROUPS_MAX, THREAD_GROUPS_NONE};
use std::cell::UnsafeCell;

/// The checkpoint thread's ids at the last checkpoint.
struct Own(UnsafeCell<ThreadCreds>);
// SAFETY: written by the checkpoint thread with every program thread stopped (`note_own`), read
// on the restart path by the one thread there is then (`restore_own`).
unsafe impl Sync for Own {}

static OWN: Own = Own(UnsafeCell::new(ThreadCreds::ZERO));

/// The four numbers of a status line such as `Uid:` (real, effective, saved, filesystem).
fn four(status: &[u8], key: &str) -> Option<[u32; 4]> {
    let line = status.split(|&b| b == b'\n').find_map(|l| l.strip_prefix(key.as_bytes()))?;
    let v: Vec<u32> = std::str::from_utf8(line).ok()?.split_whitespace().filter_map(|n| n.parse().ok()).collect();
    v.try_into().ok()
}

/// The ids and supplementary groups in a task's /proc status (None: not there).
pub fn from_status(status: &[u8]) -> Option<Creds> {
    let (u, g) = (four(status, "Uid:")?, four(status, "Gid:")?);
    let groups = status.split(|&b| b == b'\n').find_map(|l| l.strip_prefix(b"Groups:"))?;
    let groups = std::str::from_utf8(groups).ok()?.split_whitespace().filter_map(|n| n.parse().ok()).collect();
    Some(Creds { uids: [u[0], u[1], u[2]], gids: [g[0], g[1], g[2]], groups, fs: [u[3], g[3]] })
}

fn same_set(a: &[u32], b: &[u32]) -> bool {
    let sorted = |v: &[u32]| {
        let mut v = v.to_vec();
        v.sort_unstable();
        v.dedup();
        v
    };
    sorted(a) == sorted(b)
}

/// Thread `tid`'s ids (checkpoint, threads stopped), given the process's; Err: one line, when
/// they cannot be recorded (no checkpoint is taken: never a restart with wrong ids).
pub fn capture(tid: i32, process: &Creds) -> Result<ThreadCreds, String> {
    let status = sys::read_file(&sys::cpath(&[b"/proc/self/task/", &sys::decimal(tid), b"/status"])).unwrap_or_default();
    let Some(c) = from_status(&status) else {
        return Err(format!("the user and group ids of thread {tid} cannot be read from its /proc status: no checkpoint is taken (it might run as another user than the process)"));
    };
    let mut t = ThreadCreds { known: 1, uids: [c.uids[0], c.uids[1], c.uids[2], c.fs[0]], gids: [c.gids[0], c.gids[1], c.gids[2], c.fs[1]], ngroups: THREAD_GROUPS_NONE, ..ThreadCreds::ZERO };
    if !same_set(&c.groups, &process.groups) {
        if c.groups.len() > THREAD_GROUPS_MAX {
            return Err(format!(
                "thread {tid} has supplementary groups of its own ({} of them, not the process's {}: a raw setgroups in that thread); an image holds at most {THREAD_GROUPS_MAX} per thread: no checkpoint is taken",
                c.groups.len(),
                process.groups.len()
            ));
        }
        t.ngroups = c.groups.len() as u32;
        t.groups[..c.groups.len()].copy_from_slice(&c.groups);
    }
    Ok(t)
}

/// Checkpoint (on the checkpoint thread, threads stopped): record its own ids. Not readable, or
/// more supplementary groups of its own than a record holds: none recorded (after a restart it
/// keeps the process's), not a refusal: it is the runtime's thread, not the program's.
pub fn note_own(process: &Creds) {
    let own = capture(sys::gettid(), process).unwrap_or_else(|e| {
        log!(DEBUG, "the checkpoint thread's ids are not recorded: {e}");
        ThreadCreds::ZERO
    });
    // SAFETY: see Own.
    unsafe { *OWN.0.get() = own };
}

/// Restart, on the one thread there is (the checkpoint thread's, tid `old_tid` at the
/// checkpoint), before it opens or binds anything: take back the ids it had (ckpt-restart gave
/// it the process's). The threads it makes start with them and take their own (`restore`).
/// Failing, it keeps the process's, with a warning: the program's threads are not concerned.
pub fn restore_own(old_tid: i32) {
    // SAFETY: see Own.
    let own = unsafe { *OWN.0.get() };
    if let Err(e) = restore(&own, old_tid) {
        log!(ERROR, "warning: the runtime's thread cannot take back the ids it had at the checkpoint ({e}); it goes on with the program's (ckpt-ctl and later checkpoints may be refused)");
    }
}

/// The calling thread's ids now (raw system calls).
fn own() -> ([u32; 4], [u32; 4]) {
    let (mut u, mut g) = ([0u32; 4], [0u32; 4]);
    let _ = syscall!(libc::SYS_getresuid, &mut u[0] as *mut u32, &mut u[1] as *mut u32, &mut u[2] as *mut u32);
    let _ = syscall!(libc::SYS_getresgid, &mut g[0] as *mut u32, &mut g[1] as *mut u32, &mut g[2] as *mut u32);
    // (With an invalid id they change nothing and return the current one.)
    u[3] = syscall!(libc::SYS_setfsuid, u32::MAX).unwrap_or(0) as u32;
    g[3] = syscall!(libc::SYS_setfsgid, u32::MAX).unwrap_or(0) as u32;
    (u, g)
}

/// Whether the calling thread's supplementary groups are the set `want` (at most
/// THREAD_GROUPS_MAX). Without allocating (it was a 64 Ki-group buffer and sorted copies): it
/// runs on the restart path outside the scratch arena (`restore_own`, recreated threads),
/// where an allocation in a size class the program had no slab of leaves it a new mapping
/// (restore_memory_maps).
fn has_groups(want: &[u32]) -> bool {
    let sorted = |v: &mut [u32]| -> usize {
        v.sort_unstable();
        let mut n = 0;
        for i in 0..v.len() {
            if n == 0 || v[i] != v[n - 1] {
                v[n] = v[i];
                n += 1;
            }
        }
        n
    };
    let mut have = [0u32; THREAD_GROUPS_MAX];
    // (More than that: EINVAL, and a list that long is not `want`.)
    let Ok(n) = syscall!(libc::SYS_getgroups, have.len(), have.as_mut_ptr()) else { return false };
    let mut w = [0u32; THREAD_GROUPS_MAX];
    let wn = want.len().min(THREAD_GROUPS_MAX);
    w[..wn].copy_from_slice(&want[..wn]);
    let (hn, wn) = (sorted(&mut have[..n as usize]), sorted(&mut w[..wn]));
    have[..hn] == w[..wn]
}

/// After a restart, on recreated thread `old_tid` (before its capabilities are given back:
/// `ids::restore_caps` then leaves it exactly those it had): take on its own ids, from the
/// process's, which every thread starts with. Root that took on other ids kept its permitted
/// capabilities through the switch (ckpt-restart's creds.rs): CAP_SETUID and CAP_SETGID are
/// made effective for this; an ordinary user's threads only choose among the ids the process
/// has, which needs none. Err: one line (the thread cannot run as itself).
pub fn restore(c: &ThreadCreds, old_tid: i32) -> Result<(), String> {
    if c.known != 1 {
        return Ok(());
    }
    let want_groups = c.own_groups();
    let (u, g) = own();
    let groups_differ = want_groups.is_some_and(|w| !has_groups(w));
    if u == c.uids && g == c.gids && !groups_differ {
        return Ok(());
    }
    crate::ids::raise_setid();
    let fail = |what: &str, e: i32| Err(format!("thread {old_tid} cannot take its own {what} back (errno {e}): the restarted program must not run with other ids; it ends here"));
    if let Some(w) = want_groups.filter(|_| groups_differ) {
        if let Err(e) = syscall!(libc::SYS_setgroups, w.len(), w.as_ptr()) {
            return fail("supplementary groups", e);
        }
    }
    if let Err(e) = syscall!(libc::SYS_setresgid, c.gids[0], c.gids[1], c.gids[2]) {
        return fail("group ids", e);
    }
    let _ = syscall!(libc::SYS_setfsgid, c.gids[3]);
    // Root's ids dropped here keep the permitted capabilities for `restore_caps` (securebits
    // are per thread; it sets the thread's own afterwards).
    let keep = u[..3].contains(&0) && !c.uids[..3].contains(&0);
    if keep {
        let _ = syscall!(libc::SYS_prctl, libc::PR_SET_KEEPCAPS, 1, 0, 0, 0);
    }
    let r = syscall!(libc::SYS_setresuid, c.uids[0], c.uids[1], c.uids[2]);
    if keep {
        let _ = syscall!(libc::SYS_prctl, libc::PR_SET_KEEPCAPS, 0, 0, 0, 0);
    }
    if let Err(e) = r {
        return fail("user ids", e);
    }
    let _ = syscall!(libc::SYS_setfsuid, c.uids[3]);
    let (u, g) = own();
    if u != c.uids || g != c.gids {
        return Err(format!("thread {old_tid} ran as uids {:?} gids {:?} (real, effective, saved, filesystem) and cannot take them back (it has {u:?} {g:?}): the restarted program must not run with other ids; it ends here", c.uids, c.gids));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::from_status;

    #[test]
    fn ids_from_a_status() {
        let s = b"Name:\tx\nUid:\t12\t12\t12\t13\nGid:\t8\t8\t9\t8\nFDSize:\t64\nGroups:\t4 27 \nNSpid:\t1\n";
        let c = from_status(s).unwrap();
        assert_eq!((c.uids, c.gids, c.fs, c.groups), ([12, 12, 12], [8, 8, 9], [13, 8], vec![4, 27]));
        assert_eq!(from_status(b"Groups:\t\nUid:\t1\t1\t1\t1\nGid:\t2\t2\t2\t2\n").unwrap().groups, Vec::<u32>::new());
        assert!(from_status(b"Uid:\t1\t1\n").is_none());
    }
}
