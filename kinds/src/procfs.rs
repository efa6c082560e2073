//! Paths into the program's own /proc directory, and the working directory.
//!
//! Capture: an fd or a working directory under /proc/<own pid> is recorded as /proc/self/...:
//! the restarted process has another pid, and /proc/self is its own directory (the pid a
//! program opened by number is not kept: it is the process itself). Paths of other processes,
//! and of the program's threads (/proc/<pid>/task/<tid>: the tids change), stay as they are.
//! An fd on one of the program's own namespaces (its link says `net:[4026531833]`) is recorded
//! as `/proc/self/ns/net`: the restarted process's namespace of that type.
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

/// Capture: the `/proc/self/ns/<type>` path of a namespace fd whose link is `<type>:[<ino>]`
/// when it is the program's own namespace of that type (the inode is the namespace's id).
pub fn own_ns_path(link: &[u8], ino: u64) -> Option<Vec<u8>> {
    let s = std::str::from_utf8(link).ok()?;
    let (kind, rest) = s.split_once(":[")?;
    let id: u64 = rest.strip_suffix(']')?.parse().ok()?;
    if id != ino || kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        return None;
    }
    let path = format!("/proc/self/ns/{kind}");
    use std::os::unix::fs::MetadataExt;
    (std::fs::metadata(&path).ok()?.ino() == ino).then(|| path.into_bytes())
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

/// Restore: a file under the /proc directory of a process that has died since (`/proc/<pid>/
/// mountinfo` of a child the program has reaped), opened with `flags` under the /proc directory
/// of a child of ours that then dies (see `with_dead_child`). None: `path` is not such a file,
/// or that process lives.
pub fn open_in_dead_process(path: &[u8], flags: libc::c_int) -> Option<Result<RawFd>> {
    let rest = path.strip_prefix(b"/proc/")?;
    let cut = rest.iter().position(|&b| b == b'/')?;
    let dir = &path[..6 + cut];
    if !is_proc_pid_dir(dir) || std::path::Path::new(&<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(dir)).exists() {
        return None;
    }
    let tail = rest[cut..].to_vec();
    Some(with_dead_child(dir, |d| {
        let Ok(p) = std::ffi::CString::new([d.to_bytes(), &tail[..]].concat()) else { return -1 };
        // SAFETY: p is a valid C string.
        unsafe { libc::open(p.as_ptr(), flags) }
    }))
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

    #[test]
    fn own_namespaces_become_self() {
        use std::os::unix::fs::MetadataExt;
        let net = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
        assert_eq!(own_ns_path(format!("net:[{net}]").as_bytes(), net).as_deref(), Some(&b"/proc/self/ns/net"[..]));
        assert_eq!(own_ns_path(format!("net:[{}]", net + 1).as_bytes(), net + 1), None);
        assert_eq!(own_ns_path(b"pipe:[12]", 12), None);
        assert_eq!(own_ns_path(b"socket:[12]", 12), None);
    }
}
