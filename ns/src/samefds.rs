//! Which fds of different processes of the tree are one open file description (a file, an event
//! fd, an epoll instance, ... inherited by fork: one offset, one counter), found exactly with
//! kcmp(2) KCMP_FILE by init while every process of the cut is stopped. Unprivileged: kcmp
//! needs only what reading the processes' /proc does (same user, same user namespace).
//!
//! Each process lists its own fds (fd, mode, device, inode) while it is stopped, before it says
//! so (the runtime's `treefds`, `treemsg::fds_name`): its fstat of its own fds costs a fraction
//! of a lookup of each through /proc/PID/fd, and the processes do it in parallel; a process that
//! did not (a runtime restored from an older image) is read through /proc.
//!
//! Candidates are the fds whose targets stat the same (device, inode; every anonymous inode
//! object shares one), compared pairwise only within their bucket. A socket needs no
//! comparison: the kernel gives a socket one open file description only (its inode's), which
//! fork, dup and SCM_RIGHTS pass on, and no open of /proc/PID/fd/N makes another; a tree of 250
//! processes that all hold 682 sockets (zdtm session03) made 170,000 kcmp calls.
//!
//! The same look tells, for each socket and pipe several processes hold, the lowest pid holding
//! it (`Lowest`): the one process that describes it in the set (the others name it), which each
//! process used to find by reading the fds of the processes with lower pids itself
//! (treemsg::LOWEST_HOLDERS).

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// kcmp's type for two fds (linux/kcmp.h).
const KCMP_FILE: libc::c_int = 0;

/// What the processes of the cut share, found while they are stopped.
pub struct Shared {
    /// The fds held by two processes or more as one open file description, each as its
    /// holders (pid, fd).
    pub groups: Vec<Vec<(i32, i32)>>,
    /// The sockets and anonymous pipes two processes or more hold, each with the lowest pid
    /// holding it.
    pub lowest: Vec<Lowest>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lowest {
    pub pipe: bool,
    pub ino: u64,
    pub pid: i32,
}

/// What one fd of a process is: its holder (pid, fd), the (device, inode) it stats as, and
/// whether it is a socket or an anonymous pipe.
struct Held {
    at: (i32, i32),
    id: (u64, u64),
    socket: bool,
    pipe: bool,
}

/// The device of the file system of our new fds `fds` (a socket's: sockfs; a pipe's: pipefs;
/// one each in the kernel, where every socket's or anonymous pipe's inode is; an O_PATH fd of a
/// socket's name stats as a socket too, on the file system of the name: opened twice, two open
/// file descriptions; a named FIFO is on its own file system), which it closes.
fn dev_of(fds: &[i32]) -> Option<u64> {
    // SAFETY: an all-zero stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat of our fd into st.
    let ok = fds[0] >= 0 && unsafe { libc::fstat(fds[0], &mut st) } == 0;
    for &fd in fds.iter().filter(|&&fd| fd >= 0) {
        // SAFETY: closing our own fd.
        unsafe { libc::close(fd) };
    }
    ok.then_some(st.st_dev)
}

/// The devices of sockfs and pipefs (`dev_of`).
#[derive(Clone, Copy)]
struct Devs {
    sockfs: Option<u64>,
    pipefs: Option<u64>,
}

impl Devs {
    fn held(&self, at: (i32, i32), mode: u32, dev: u64, ino: u64) -> Held {
        let fmt = mode & libc::S_IFMT;
        Held { at, id: (dev, ino), socket: fmt == libc::S_IFSOCK && self.sockfs == Some(dev), pipe: fmt == libc::S_IFIFO && self.pipefs == Some(dev) }
    }
}

/// The fds process `pid` listed itself while stopped, in its directory `dir`
/// (`treemsg::fds_name`), removed once read; None: it did not (`fds_of` asks /proc then).
fn told_by(pid: i32, dir: &Path, devs: Devs) -> Option<Vec<Held>> {
    let path = dir.join(crate::treemsg::fds_name(pid));
    let bytes = std::fs::read(&path).ok();
    let _ = std::fs::remove_file(&path);
    let fds = crate::treemsg::decode_fds(&bytes?)?;
    Some(fds.into_iter().map(|(fd, mode, dev, ino)| devs.held((pid, fd), mode, dev, ino)).collect())
}

/// The fds of process `pid`, read through /proc; None when they cannot be read.
fn fds_of(pid: i32, devs: Devs) -> Option<Vec<Held>> {
    let dir = std::fs::File::open(format!("/proc/{pid}/fd")).ok()?;
    let mut out = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten() {
        let Some(fd) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let name = std::ffi::CString::new(fd.to_string()).ok()?;
        // SAFETY: an all-zero stat is a valid out-parameter.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstatat through our open fd directory into st. (A fd closed meanwhile: a
        // runtime's own; the images do not hold it.)
        if unsafe { libc::fstatat(dir.as_raw_fd(), name.as_ptr(), &mut st, 0) } != 0 {
            continue;
        }
        out.push(devs.held((pid, fd), st.st_mode, st.st_dev, st.st_ino));
    }
    Some(out)
}

/// The fds of `pids` (`dir_of`: the directory each writes its image to), each as the process
/// listed them (`told_by`) or else read by two threads through /proc (a tree of hundreds of
/// processes holding hundreds of fds each: every fd is a lookup there); None when one cannot be
/// read.
fn fds_of_all(pids: &[i32], dir_of: &dyn Fn(i32) -> PathBuf) -> Option<Vec<Held>> {
    // SAFETY: a new socket of ours (closed by dev_of).
    let socket = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    let mut pipe = [-1; 2];
    // SAFETY: a new pipe of ours into `pipe` (closed by dev_of).
    unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) };
    let devs = Devs { sockfs: dev_of(&[socket]), pipefs: dev_of(&pipe) };
    let mut all = Vec::new();
    let mut untold = Vec::new();
    for &pid in pids {
        match told_by(pid, &dir_of(pid), devs) {
            Some(h) => all.extend(h),
            None => untold.push(pid),
        }
    }
    let half = untold.len().div_ceil(2).max(1);
    let parts: Vec<Option<Vec<Held>>> = std::thread::scope(|s| {
        let work: Vec<_> = untold.chunks(half).map(|c| s.spawn(move || c.iter().map(|&p| fds_of(p, devs)).collect::<Option<Vec<Vec<Held>>>>())).collect();
        work.into_iter().map(|w| w.join().ok().flatten().map(|v| v.into_iter().flatten().collect())).collect()
    });
    parts.into_iter().try_fold(all, |mut all, p| {
        all.extend(p?);
        Some(all)
    })
}

/// What the processes `pids` share (`Shared`; `dir_of`: the directory each writes its image to,
/// where it listed its fds); None when a process's fds cannot be read (the set says nothing of
/// sharing then) or kcmp is not there (a kernel without it) or refuses.
pub fn shared(pids: &[i32], dir_of: &dyn Fn(i32) -> PathBuf) -> Option<Shared> {
    let mut buckets: HashMap<(u64, u64), Vec<Held>> = HashMap::new();
    for h in fds_of_all(pids, dir_of)? {
        buckets.entry(h.id).or_default().push(h);
    }
    let mut out = Shared { groups: Vec::new(), lowest: Vec::new() };
    for held in buckets.into_values() {
        let first = held[0].at.0;
        if !held.iter().any(|h| h.at.0 != first) {
            continue;
        }
        if held[0].socket || held[0].pipe {
            let pid = held.iter().map(|h| h.at.0).min().unwrap_or(first);
            out.lowest.push(Lowest { pipe: held[0].pipe, ino: held[0].id.1, pid });
        }
        if held[0].socket {
            out.groups.push(held.iter().map(|h| h.at).collect());
            continue;
        }
        let mut same: Vec<Vec<(i32, i32)>> = Vec::new();
        for h in held {
            let mut found = false;
            for g in &mut same {
                if kcmp_file(g[0], h.at)? {
                    g.push(h.at);
                    found = true;
                    break;
                }
            }
            if !found {
                same.push(vec![h.at]);
            }
        }
        out.groups.extend(same.into_iter().filter(|g| g.iter().any(|h| h.0 != g[0].0)));
    }
    out.groups.sort();
    out.lowest.sort_unstable_by_key(|l| (l.pipe, l.ino));
    Some(out)
}

/// The fds of `pids` held by two processes or more as one open file description (`Shared`).
#[cfg(test)]
pub fn groups(pids: &[i32]) -> Option<Vec<Vec<(i32, i32)>>> {
    shared(pids, &|_| PathBuf::from("/nonexistent")).map(|s| s.groups)
}

/// kcmp's type for two fd tables.
const KCMP_FILES: libc::c_int = 2;

/// The processes of `procs` (pid, parent) that share their parent's fd table (made by clone
/// with CLONE_FILES): (pid, parent), by pid. An fd table shared
/// otherwise (with a process that is not the parent: the parent that made both exited) is
/// refused in one line: the restart makes a shared table by clone from the parent.
/// Where kcmp cannot tell (a kernel without it), no table is taken as shared.
pub fn tables(procs: &[(i32, i32)]) -> Result<Vec<(i32, i32)>, String> {
    let cmp = |a: i32, b: i32| -> Option<std::cmp::Ordering> {
        // SAFETY: kcmp only compares the two processes' fd tables.
        match unsafe { libc::syscall(libc::SYS_kcmp, a, b, KCMP_FILES, 0, 0) } {
            0 => Some(std::cmp::Ordering::Equal),
            1 => Some(std::cmp::Ordering::Less),
            2 => Some(std::cmp::Ordering::Greater),
            _ => None,
        }
    };
    let mut order: Vec<i32> = procs.iter().map(|p| p.0).collect();
    let mut failed = false;
    order.sort_by(|&a, &b| {
        cmp(a, b).unwrap_or_else(|| {
            failed = true;
            a.cmp(&b)
        })
    });
    if failed {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for group in order.chunk_by(|&a, &b| cmp(a, b) == Some(std::cmp::Ordering::Equal)).filter(|g| g.len() > 1) {
        let mut followers: Vec<(i32, i32)> = procs.iter().copied().filter(|(pid, ppid)| group.contains(pid) && group.contains(ppid)).collect();
        if followers.len() != group.len() - 1 {
            let mut pids = group.to_vec();
            pids.sort_unstable();
            return Err(format!(
                "processes {pids:?} share one fd table (clone with CLONE_FILES), but not each with its parent (the parent that made them ended): ckpt can make a shared fd table again only from a parent, so the tree cannot be checkpointed"
            ));
        }
        followers.sort_unstable();
        out.extend(followers);
    }
    out.sort_unstable();
    Ok(out)
}

/// The fds 0 to 2 of `pids` that are not one open file with any of ours, the stdio whoever ran the
/// tree (ckpt-run, ckpt-restart) gave init and the tree: the tree's own (a shell's background
/// job's /dev/null, a file a process put there itself), as (pid, fd), which a restart gives back
/// as their images say instead of ckpt-restart's stdio. Empty when kcmp fails (every fd 0 to 2
/// is then taken for the outside's, as before there was this look). Left out: a regular file
/// that is one open file with a fd of another process (`same`: a shell's `exec >log` inherited
/// by its children), which a restart would open once per process (each its own offset: their
/// writes over each other's), so it is taken for the outside's stdio as before (a shared
/// /dev/null, pipe or terminal has no offset to lose).
pub fn own_stdio(pids: &[i32], same: Option<&[Vec<(i32, i32)>]>) -> Vec<(i32, i32)> {
    let shared = |at: (i32, i32)| same.is_some_and(|g| g.iter().any(|g| g.contains(&at) && g.iter().any(|o| o.0 != at.0)));
    let mut out = Vec::new();
    for &pid in pids {
        let Some(own) = own_stdio_of(pid) else { return Vec::new() };
        let task = live_task(pid);
        for fd in (0..3).filter(|fd| own & 1 << fd != 0) {
            let file = || std::fs::metadata(format!("/proc/{pid}/task/{task}/fd/{fd}")).is_ok_and(|m| m.is_file());
            if !(shared((pid, fd)) && file()) {
                out.push((pid, fd));
            }
        }
    }
    out
}

/// The fds 0 to 2 of process `pid` that are open and one open file with none of ours (bit N:
/// fd N); None when kcmp fails. A program alone asks (`TreeMsg::AskStdio`): its image marks
/// them.
pub fn own_stdio_of(pid: i32) -> Option<u32> {
    // A thread-group leader that exited has no fd table of its own any more (its /proc fd
    // directory is empty, kcmp of it says EBADF): its live threads hold the process's.
    let task = live_task(pid);
    if let Some(given) = GIVEN.get() {
        return Some(own_by_identity(pid, task, given));
    }
    // SAFETY: getpid has no preconditions; F_GETFD only reads our fd's flags.
    let me = unsafe { libc::getpid() };
    // SAFETY: as above.
    let ours: Vec<i32> = (0..3).filter(|&n| unsafe { libc::fcntl(n, libc::F_GETFD) } >= 0).collect();
    let mut own = 0;
    for fd in 0..3 {
        if std::fs::symlink_metadata(format!("/proc/{pid}/task/{task}/fd/{fd}")).is_err() {
            continue;
        }
        let mut outside = false;
        for &n in &ours {
            outside |= kcmp_file((task, fd), (me, n))?;
        }
        if !outside {
            own |= 1 << fd;
        }
    }
    Some(own)
}

/// The stdio the tree was given, as (device, inode) of the files init held at fds 0 to 2, once
/// init let go of them (ns `leftover`: the program ended and left processes that live on).
static GIVEN: std::sync::OnceLock<Vec<(u64, u64)>> = std::sync::OnceLock::new();

/// Before init lets go of its fds 0 to 2: note what they are, so that a process's fd that is
/// one of them still counts as the stdio the tree was given (by identity: kcmp needs them open).
/// /dev/null is left out (a process that put it there itself keeps it).
pub(crate) fn note_given_stdio() {
    let null = std::fs::metadata("/dev/null").ok().map(|m| (m.dev(), m.ino()));
    let given = (0..3).filter_map(|fd| std::fs::metadata(format!("/proc/self/fd/{fd}")).ok()).map(|m| (m.dev(), m.ino())).filter(|id| Some(*id) != null).collect();
    let _ = GIVEN.set(given);
}

/// `own_stdio_of` once init let go of its stdio: fds 0 to 2 of `pid` that are not the files the
/// tree was given (`GIVEN`).
fn own_by_identity(pid: i32, task: i32, given: &[(u64, u64)]) -> u32 {
    (0..3).filter(|fd| std::fs::metadata(format!("/proc/{pid}/task/{task}/fd/{fd}")).is_ok_and(|m| !given.contains(&(m.dev(), m.ino())))).fold(0, |own, fd| own | 1 << fd)
}

/// A thread of process `pid` that still has the fd table: the leader, unless it exited (a
/// zombie leader whose other threads run: zdtm pthread02), then the first live one.
fn live_task(pid: i32) -> i32 {
    let zombie = |tid: &str| std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).map_or(true, |s| s.rsplit_once(") ").is_none_or(|(_, r)| r.starts_with('Z') || r.starts_with('X')));
    if !zombie(&pid.to_string()) {
        return pid;
    }
    let tids = std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten();
    tids.filter_map(|e| e.file_name().into_string().ok()).find(|t| !zombie(t)).and_then(|t| t.parse().ok()).unwrap_or(pid)
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

    /// In a process of its own (other tests of this binary open and close fds meanwhile):
    /// whether an event fd inherited by fork is found in both processes, and one made by either
    /// alone is not.
    fn check() -> bool {
        // SAFETY: new fds of this process.
        let (inherited, before) = unsafe { (libc::eventfd(0, 0), libc::eventfd(0, 0)) };
        let mut ready = [0; 2];
        // SAFETY: a new pipe into `ready`.
        unsafe { libc::pipe(ready.as_mut_ptr()) };
        // SAFETY: the child closes, says so, sleeps and exits.
        let child = unsafe { libc::fork() };
        if child == 0 {
            // SAFETY: as above.
            unsafe {
                libc::close(before);
                libc::close(ready[0]);
                libc::close(ready[1]);
                libc::sleep(30);
                libc::_exit(0)
            }
        }
        // SAFETY: our end; read returns 0 once the child closed its copy of the write end.
        unsafe {
            libc::close(ready[1]);
            let mut b = 0u8;
            libc::read(ready[0], &mut b as *mut u8 as *mut libc::c_void, 1);
        }
        // SAFETY: one made after the fork, this process's alone.
        let after = unsafe { libc::eventfd(0, 0) };
        // SAFETY: getpid has no preconditions.
        let me = unsafe { libc::getpid() };
        let found = groups(&[me, child]);
        // SAFETY: ending and reaping our child.
        unsafe {
            libc::kill(child, libc::SIGKILL);
            libc::waitpid(child, std::ptr::null_mut(), 0);
        }
        let Some(found) = found else { return false };
        let of = |at: (i32, i32)| found.iter().find(|g| g.contains(&at));
        of((me, inherited)).is_some_and(|g| g.contains(&(child, inherited))) && of((me, after)).is_none() && of((me, before)).is_none()
    }

    #[test]
    fn an_event_fd_inherited_by_fork_is_one_and_one_made_after_is_not() {
        // SAFETY: the child runs `check` and exits with its answer.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: leaving the child.
            unsafe { libc::_exit(if check() { 0 } else { 1 }) }
        }
        let mut st = 0;
        // SAFETY: reaping our child.
        unsafe { libc::waitpid(pid, &mut st, 0) };
        assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0, "wait status {st:#x}");
    }
}
