//! Which fds of different processes of the tree are one open file description (a file, an event
//! fd, an epoll instance, ... inherited by fork: one offset, one counter), found exactly with
//! kcmp(2) KCMP_FILE by init while every process of the cut is stopped. Unprivileged: kcmp
//! needs only what reading the processes' /proc does (same user, same user namespace).
//!
//! Candidates are the fds whose targets stat the same (device, inode; every anonymous inode
//! object shares one), compared pairwise only within their bucket.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;

/// kcmp's type for two fds (linux/kcmp.h).
const KCMP_FILE: libc::c_int = 0;

/// The fds of `pids` held by two processes or more as one open file description, each as its
/// holders (pid, fd); None when kcmp is not there (a kernel without it) or refuses.
pub fn groups(pids: &[i32]) -> Option<Vec<Vec<(i32, i32)>>> {
    let mut buckets: HashMap<(u64, u64), Vec<(i32, i32)>> = HashMap::new();
    for &pid in pids {
        // A process whose fds cannot be read is not compared: the set says nothing of sharing.
        let rd = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
        for e in rd.flatten() {
            let Some(fd) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
            // (A fd closed meanwhile: a runtime's own; the images do not hold it.)
            let Ok(st) = std::fs::metadata(e.path()) else { continue };
            buckets.entry((st.dev(), st.ino())).or_default().push((pid, fd));
        }
    }
    let mut out = Vec::new();
    for held in buckets.into_values() {
        if !held.iter().any(|h| h.0 != held[0].0) {
            continue;
        }
        let mut same: Vec<Vec<(i32, i32)>> = Vec::new();
        for h in held {
            let mut found = false;
            for g in &mut same {
                if kcmp_file(g[0], h)? {
                    g.push(h);
                    found = true;
                    break;
                }
            }
            if !found {
                same.push(vec![h]);
            }
        }
        out.extend(same.into_iter().filter(|g| g.iter().any(|h| h.0 != g[0].0)));
    }
    out.sort();
    Some(out)
}

/// Whether fd `a.1` of process `a.0` and fd `b.1` of `b.0` are one open file description (None:
/// kcmp failed other than for a fd closed meanwhile).
fn kcmp_file(a: (i32, i32), b: (i32, i32)) -> Option<bool> {
    // SAFETY: kcmp only reads the two processes' fd tables.
    let r = unsafe { libc::syscall(libc::SYS_kcmp, a.0, b.0, KCMP_FILE, a.1 as libc::c_ulong, b.1 as libc::c_ulong) };
    match r {
        0 => Some(true),
        r if r > 0 => Some(false),
        _ if std::io::Error::last_os_error().raw_os_error() == Some(libc::EBADF) => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_fd_inherited_by_fork_is_one_and_one_made_after_is_not() {
        // SAFETY: new fds of this test, closed below.
        let (inherited, before) = unsafe { (libc::eventfd(0, libc::EFD_CLOEXEC), libc::eventfd(0, libc::EFD_CLOEXEC)) };
        // SAFETY: the child only sleeps and exits (async-signal-safe calls).
        let child = unsafe { libc::fork() };
        if child == 0 {
            // SAFETY: as above.
            unsafe {
                libc::close(before);
                libc::sleep(30);
                libc::_exit(0)
            }
        }
        // SAFETY: one made after the fork, this process's alone.
        let after = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        let me = std::process::id() as i32;
        let found = groups(&[me, child]);
        // SAFETY: ending and reaping our child; closing our fds.
        unsafe {
            libc::kill(child, libc::SIGKILL);
            libc::waitpid(child, std::ptr::null_mut(), 0);
            libc::close(inherited);
            libc::close(before);
            libc::close(after);
        }
        let found = found.expect("kcmp works between a process and its child");
        let of = |at: (i32, i32)| found.iter().find(|g| g.contains(&at));
        assert!(of((me, inherited)).is_some_and(|g| g.contains(&(child, inherited))), "{found:?}");
        assert!(of((me, after)).is_none() && of((me, before)).is_none(), "{found:?}");
    }
}
