//! Paths into the program's own /proc directory, and the working directory.
//!
//! Capture: an fd or a working directory under /proc/<own pid> is recorded as /proc/self/...:
//! the restarted process has another pid, and /proc/self is its own directory (the pid a
//! program opened by number is not kept: it is the process itself). Paths of other processes,
//! and of the program's threads (/proc/<pid>/task/<tid>: the tids change), stay as they are.
//!
//! Restore of the working directory: entered by path; a removed working directory is made
//! again and removed (`deleted::enter_removed_dir`: the same directory as a program fd on it);
//! the /proc directory of a process that has died since (a working directory or a directory fd
//! such as `/proc/1234 (deleted)`) is made again from a short-lived child of ours, opened, and
//! left to die, so the program sees the same kind of dead directory (getcwd fails with ENOENT).

use crate::{deleted, lossy, Error, Result};
use std::os::fd::RawFd;

const DELETED: &[u8] = b" (deleted)";

/// Capture: `path` with a leading `/proc/<pid>` (the program's own pid) as `/proc/self`.
pub fn own_proc_path(path: &[u8], pid: i32) -> Vec<u8> {
    let own = format!("/proc/{pid}");
    match path.strip_prefix(own.as_bytes()) {
        Some(rest) if rest.is_empty() || rest.starts_with(b"/") => [&b"/proc/self"[..], rest].concat(),
        _ => path.to_vec(),
    }
}

/// Restore: enter the program's working directory `cwd` (as /proc/self/cwd showed it); `dirs`
/// are the program fds (in place) on deleted directories, with their paths.
pub fn enter_cwd(cwd: &[u8], dirs: &[(Vec<u8>, RawFd)]) -> Result<()> {
    if let Some(path) = cwd.strip_suffix(DELETED) {
        if is_proc_pid_dir(path) {
            // SAFETY: chdir with a valid C string.
            return with_dead_child(path, |dir| unsafe { libc::chdir(dir.as_ptr()) }).map(|_| ());
        }
        return deleted::enter_removed_dir(path, dirs);
    }
    let p = std::ffi::CString::new(cwd.to_vec()).map_err(|_| Error::Refused("the working directory contains a NUL byte".into()))?;
    // SAFETY: p is a valid C string.
    if unsafe { libc::chdir(p.as_ptr()) } < 0 {
        return Err(Error::last(format!("cannot enter the program's working directory {}", lossy(cwd))));
    }
    Ok(())
}

/// `/proc/<number>`.
pub fn is_proc_pid_dir(path: &[u8]) -> bool {
    path.strip_prefix(b"/proc/").is_some_and(|n| !n.is_empty() && n.iter().all(u8::is_ascii_digit))
}

/// `use_dir` (chdir, open: a /proc directory can be used only while its process lives) on the
/// /proc directory of a child of ours that then dies: what a removed `path` (`/proc/<pid>` of a
/// process dead at checkpoint time) was. Returns what `use_dir` returned.
pub fn with_dead_child(path: &[u8], use_dir: impl FnOnce(&std::ffi::CStr) -> libc::c_int) -> Result<libc::c_int> {
    // SAFETY: the child only pauses until it is killed (async-signal-safe calls only).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Error::last(format!("cannot make a dead process directory like {}", lossy(path))));
    }
    if pid == 0 {
        loop {
            // SAFETY: waiting for SIGKILL.
            unsafe { libc::pause() };
        }
    }
    let dir = std::ffi::CString::new(format!("/proc/{pid}")).unwrap_or_default();
    let r = use_dir(&dir);
    let e = Error::last(format!("cannot use /proc/{pid} for {} (deleted)", lossy(path)));
    // SAFETY: killing and reaping our own child.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
    if r < 0 {
        return Err(e);
    }
    crate::info(&format!("{} (deleted), a dead process's directory: now /proc/{pid} of a child that died", lossy(path)));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_proc_paths_become_self() {
        assert_eq!(own_proc_path(b"/proc/42/fdinfo/3", 42), b"/proc/self/fdinfo/3");
        assert_eq!(own_proc_path(b"/proc/42", 42), b"/proc/self");
        assert_eq!(own_proc_path(b"/proc/421/status", 42), b"/proc/421/status");
        assert_eq!(own_proc_path(b"/proc/43/status", 42), b"/proc/43/status");
        assert_eq!(own_proc_path(b"/tmp/proc/42", 42), b"/tmp/proc/42");
    }
}
