//! Creating the kernel objects behind the program's fds again: eventfd, timerfd, signalfd,
//! pidfds of the program itself, inotify and epoll. The kinds moved to the ckpt-kinds crate (capture and restore side by
//! side) are restored there; sockets and terminals by ckpt-kinds.
//! Each function returns a new fd of ours (close-on-exec); fds.rs puts it at its number.

use anyhow::{bail, Context, Result};
use ckpt_image::{EpollEntry, InotifyWatch};
use std::ffi::CString;
use std::os::fd::RawFd;

pub fn check(r: libc::c_int, what: impl FnOnce() -> String) -> Result<libc::c_int> {
    if r < 0 {
        return Err(std::io::Error::last_os_error()).with_context(what);
    }
    Ok(r)
}

pub fn cstr(b: &[u8]) -> Result<CString> {
    CString::new(b.to_vec()).context("path contains a NUL byte")
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Set the file status flags the program had (O_NONBLOCK, O_APPEND, O_ASYNC...).
pub fn set_status_flags(fd: RawFd, flags: i32) {
    let keep = libc::O_APPEND | libc::O_NONBLOCK | libc::O_ASYNC | libc::O_DIRECT | libc::O_NOATIME;
    // SAFETY: fd is ours.
    unsafe { libc::fcntl(fd, libc::F_SETFL, flags & keep) };
}

pub fn eventfd(count: u64, semaphore: bool) -> Result<RawFd> {
    let flags = libc::EFD_CLOEXEC | if semaphore { libc::EFD_SEMAPHORE } else { 0 };
    // SAFETY: plain eventfd creation.
    let fd = check(unsafe { libc::eventfd(0, flags) }, || "eventfd".into())?;
    if count > 0 {
        // SAFETY: writing 8 bytes from a u64.
        unsafe { libc::write(fd, (&count as *const u64).cast(), 8) };
    }
    Ok(fd)
}

/// A pidfd of process (or, O_EXCL in `flags`, thread) `pid` again: only where pids are the
/// image's (else the number may name another process, which a signal would hit).
pub fn pidfd(pid: i32, flags: i32, exact_ids: bool) -> Result<RawFd> {
    if !exact_ids {
        bail!("a pidfd of process {pid}, whose pid is not kept here");
    }
    let keep = flags & (libc::O_NONBLOCK | libc::O_EXCL);
    // SAFETY: plain pidfd creation.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, keep) } as RawFd;
    if fd < 0 {
        bail!("a pidfd of process {pid}, which is not there: {}", std::io::Error::last_os_error());
    }
    // SAFETY: fd is ours.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    Ok(fd)
}

/// Pidfds of processes that had exited and been reaped (`FdKind::ExitedPidFd`), made again as
/// pidfds of an exited process: for each process of the image (its pidfs inode) a helper child
/// that exits at once (no exit signal: the program's SIGCHLD handler sees nothing) and stays a
/// zombie until every fd of it is open (each its own open file, as pidfd_open made them), then
/// is reaped. Its fds then say what the old ones said: no pid (fdinfo `Pid: -1`), readable for
/// poll, ESRCH for a signal; fds of one process share an inode, fds of two do not.
#[derive(Default)]
pub struct Exited {
    /// pidfs inode in the image -> the helper's pid.
    helpers: std::collections::HashMap<u64, i32>,
}

impl Exited {
    pub fn open(&mut self, ino: u64, flags: i32) -> Result<RawFd> {
        let pid = match self.helpers.get(&ino) {
            Some(&pid) => pid,
            None => {
                let pid = exited_helper()?;
                self.helpers.insert(ino, pid);
                pid
            }
        };
        pidfd(pid, flags, true)
    }

    /// Every fd is open: reap the helpers.
    pub fn reap(self) {
        for pid in self.helpers.into_values() {
            // SAFETY: an all-zero siginfo_t is a valid out-parameter.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: waiting for our own helper child.
            unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::__WALL) };
        }
    }
}

/// The pidfds of exited processes that several processes of a tree hold (one pidfs inode in
/// two images or more), made once for the tree before its processes are: by holder (pid, fd),
/// our fd. Holders that are one open file (`same`) get one open; the others each their own, of
/// the same exited process, so that their inodes are one again (zdtm pidfd_diffdead).
pub fn tree_exited(indexes: &[(i32, ckpt_image::Index)], same: Option<&[Vec<(i32, i32)>]>) -> Result<Vec<((i32, i32), RawFd)>> {
    // pidfs inode -> its holders (pid, fd) with their flags.
    type Holders = Vec<((i32, i32), i32)>;
    let mut held: std::collections::BTreeMap<u64, Holders> = Default::default();
    for (pid, ix) in indexes {
        for f in ix.fds.iter().filter(|f| f.fd >= 0 && f.dup_of.is_none()) {
            if let ckpt_image::FdKind::ExitedPidFd { ino } = f.kind {
                held.entry(ino).or_default().push(((*pid, f.fd), f.flags));
            }
        }
    }
    let mut exited = Exited::default();
    let mut out: Vec<((i32, i32), RawFd)> = Vec::new();
    let r = held.iter().filter(|(_, h)| h.iter().any(|(at, _)| at.0 != h[0].0 .0)).try_for_each(|(&ino, holders)| -> Result<()> {
        for &(at, flags) in holders {
            let one_file = same.into_iter().flatten().find(|g| g.contains(&at));
            let opened = one_file.and_then(|g| out.iter().find(|(o, _)| g.contains(o)).map(|o| o.1));
            let fd = match opened {
                Some(fd) => fd,
                None => {
                    let fd = exited.open(ino, flags)?;
                    set_status_flags(fd, flags);
                    fd
                }
            };
            out.push((at, fd));
        }
        Ok(())
    });
    exited.reap();
    r.map(|_| out)
}

/// A child that exits at once and is left a zombie; its pid.
fn exited_helper() -> Result<i32> {
    // SAFETY: a raw clone without CLONE_VM (the child has its own copy of our memory) and no
    // exit signal; the child makes only the exit system call.
    let pid = unsafe { libc::syscall(libc::SYS_clone, 0, 0, 0, 0, 0) };
    if pid == 0 {
        loop {
            // SAFETY: the helper ends here.
            unsafe { libc::syscall(libc::SYS_exit, 0) };
        }
    }
    if pid < 0 {
        bail!("cannot make a process to hold a pidfd of an exited process: {}", std::io::Error::last_os_error());
    }
    Ok(pid as i32)
}

/// A timerfd armed with the remaining time (relative, counted from now) and the interval.
/// Expirations not yet read come back as one immediate expiration.
pub fn timerfd(clockid: i32, value_ns: u64, interval_ns: u64, ticks: u64) -> Result<RawFd> {
    // SAFETY: plain timerfd creation.
    let fd = check(unsafe { libc::timerfd_create(clockid, libc::TFD_CLOEXEC) }, || format!("timerfd on clock {clockid}"))?;
    let ts = |ns: u64| libc::timespec { tv_sec: (ns / 1_000_000_000) as i64, tv_nsec: (ns % 1_000_000_000) as i64 };
    let value = if ticks > 0 { 1 } else { value_ns };
    let its = libc::itimerspec { it_interval: ts(interval_ns), it_value: ts(value) };
    if value != 0 {
        // SAFETY: its is a valid itimerspec.
        check(unsafe { libc::timerfd_settime(fd, 0, &its, std::ptr::null_mut()) }, || "timerfd_settime".into())?;
    }
    Ok(fd)
}

pub fn signalfd(mask: u64) -> Result<RawFd> {
    // SAFETY: an empty sigset_t, then filled from the mask.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    for sig in 1..=64 {
        if mask & (1u64 << (sig - 1)) != 0 {
            // SAFETY: set is valid.
            unsafe { libc::sigaddset(&mut set, sig) };
        }
    }
    // SAFETY: set is valid.
    check(unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC) }, || "signalfd".into())
}

/// An inotify instance with the watches added again in wd order, with the same watch
/// descriptors: the kernel numbers watches 1, 2, 3... (cyclically), so a gap left by a removed
/// watch is reproduced by adding and removing a throw-away watch on some other inode; the
/// IN_IGNORED events that removal queues are read off before the program gets the fd. So are
/// the numbers after the last watch up to `last_wd`, the highest the instance handed out (its
/// highest watches removed since): the program's next watch gets the number after it.
/// A watch on a file the program holds open (path `/proc/self/fd/N`: a file removed since the
/// watch was added, still open at fd N) is added through our fd of it (`held`: our fd of the
/// program's fd N), so it watches the file as restored at N.
/// A watch whose file is no longer where it was added (renamed or removed since, and not found
/// elsewhere) and events the runtime left queued in the kernel (it saves and serves those of a
/// one-process program itself: runtime/src/inotifyq.rs) cannot be restored: refused, or with
/// `ignore` a warning (a program waiting for them would wait forever).
pub fn inotify(watches: &[InotifyWatch], queued: u32, last_wd: i32, fd_no: i32, ignore: bool, held: &dyn Fn(i32) -> Option<RawFd>) -> Result<RawFd> {
    let lost = |what: String| lost(fd_no, ignore, what);
    if queued > 0 {
        lost(format!("{queued} bytes of inotify events were queued unread and left in the kernel (an instance another process of the tree may hold, or one a thread was stopped reading); they cannot be queued again"))?;
    }
    for x in watches.iter().filter(|w| w.gone) {
        lost(format!("the file of inotify watch {} ({}) was renamed or removed since the watch was added; the watch cannot be restored", x.wd, lossy(&x.path)))?;
    }
    // Where each watch is added again: its path, or our fd of the file the program holds.
    let mut at: Vec<(&InotifyWatch, Vec<u8>, bool)> = Vec::new();
    for x in watches.iter().filter(|w| w.wd > 0 && !w.gone) {
        match held_fd(&x.path) {
            None => at.push((x, x.path.clone(), x.dont_follow)),
            Some(n) => match held(n) {
                Some(ours) => at.push((x, format!("/proc/self/fd/{ours}").into_bytes(), false)),
                None => lost(format!("inotify watch {} is on the file the program holds at fd {n}, which is not restored with it; the watch cannot be restored", x.wd))?,
            },
        }
    }
    // SAFETY: plain inotify creation.
    let fd = check(unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) }, || "inotify_init1".into())?;
    at.sort_by_key(|w| w.0.wd);
    let mut spare = spare_paths(at.last().map_or(0, |l| l.0.wd).max(last_wd) as usize, watches);
    let mut next = 1;
    let mut dummies = Vec::new();
    // Throw-away watches until the next number is `upto`.
    let mut skip_to = |upto: i32, next: &mut i32, dummies: &mut Vec<i32>| {
        while *next < upto {
            let Some(p) = spare.pop() else { break };
            // SAFETY: p is a valid C string.
            let d = unsafe { libc::inotify_add_watch(fd, p.as_ptr(), libc::IN_DELETE_SELF | libc::IN_DONT_FOLLOW | libc::IN_MASK_CREATE) };
            if d < 0 {
                continue; // IN_MASK_CREATE: never touch a watch that exists
            }
            dummies.push(d);
            *next = d + 1;
        }
    };
    for (x, path, dont_follow) in at {
        if path.is_empty() {
            ckpt_kinds::say!("ckpt-restart: warning: fd {fd_no}: inotify watch {} was not seen being added; it is lost", x.wd);
            continue;
        }
        skip_to(x.wd, &mut next, &mut dummies);
        let p = cstr(&path)?;
        let follow = if dont_follow { libc::IN_DONT_FOLLOW } else { 0 };
        // SAFETY: p is a valid C string.
        let wd = unsafe { libc::inotify_add_watch(fd, p.as_ptr(), (x.mask & !(libc::IN_MASK_ADD | libc::IN_MASK_CREATE)) | follow) };
        if wd != x.wd {
            ckpt_kinds::say!("ckpt-restart: warning: fd {fd_no}: inotify watch on {} is now {} (was {})", lossy(&path), wd, x.wd);
        }
        next = wd.max(next - 1) + 1;
    }
    skip_to(last_wd + 1, &mut next, &mut dummies);
    for d in dummies {
        // SAFETY: removing our throw-away watch.
        unsafe { libc::inotify_rm_watch(fd, d) };
    }
    let mut buf = [0u8; 4096];
    // SAFETY: reading the IN_IGNORED events of the throw-away watches (non-blocking).
    while unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
    // SAFETY: fd is ours; the program's flags are set by the caller.
    unsafe { libc::fcntl(fd, libc::F_SETFL, 0) };
    Ok(fd)
}

/// Part of fd `fd_no` that cannot be restored (`what`): refused, or with `ignore`
/// (--ignore-missing-files) a warning.
pub fn lost(fd_no: i32, ignore: bool, what: String) -> Result<()> {
    if ignore {
        ckpt_kinds::say!("ckpt-restart: warning: fd {fd_no}: {what}");
        return Ok(());
    }
    bail!("fd {fd_no}: {what} (--ignore-missing-files goes on without it)");
}

/// N of a watch path `/proc/self/fd/N`: the file the program holds at fd N.
pub fn held_fd(path: &[u8]) -> Option<i32> {
    let n = path.strip_prefix(b"/proc/self/fd/")?;
    if n.is_empty() || n.len() > 9 || !n.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(n).ok()?.parse().ok()
}

/// Up to `n` paths of distinct files that none of `watches` watches, for throw-away watches.
fn spare_paths(n: usize, watches: &[InotifyWatch]) -> Vec<CString> {
    let mut out = Vec::new();
    for dir in ["/usr/lib", "/usr/bin", "/etc", "/"] {
        let Ok(rd) = std::fs::read_dir(dir) else { continue };
        for e in rd.flatten() {
            if out.len() >= n {
                return out;
            }
            let p = e.path();
            let b = std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()).to_vec();
            if watches.iter().any(|w| w.path == b) {
                continue;
            }
            if let Ok(c) = CString::new(b) {
                out.push(c);
            }
        }
    }
    out
}

/// An epoll instance with its interest list; the fds it refers to must already be in place.
/// An entry is known by its file and the fd number it was added with: when that number no
/// longer holds the file (closed since, the file still open through another fd `holder`), the
/// holder is put at that number for the moment to add the entry. `file` gives our fd for a
/// holder number (in-flight files have negative numbers).
pub fn epoll(entries: &[EpollEntry], fd_no: i32, top: RawFd, file: &dyn Fn(i32) -> Option<RawFd>) -> Result<RawFd> {
    let ep = new_epoll()?;
    fill_epoll(ep, entries, fd_no, top, file);
    Ok(ep)
}

/// A new, empty epoll instance of ours (close-on-exec).
pub fn new_epoll() -> Result<RawFd> {
    // SAFETY: plain epoll creation.
    check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) }, || "epoll_create1".into())
}

/// Add `entries` to epoll instance `ep` (see `epoll`).
pub fn fill_epoll(ep: RawFd, entries: &[EpollEntry], fd_no: i32, top: RawFd, file: &dyn Fn(i32) -> Option<RawFd>) {
    for e in entries {
        let holder = e.holder.and_then(|h| if h < 0 { file(h) } else { Some(h) });
        let Some(holder) = holder else {
            ckpt_kinds::say!("ckpt-restart: warning: fd {fd_no}: epoll entry for fd {} is lost: its file is not open any more", e.fd);
            continue;
        };
        add_entry(ep, e, holder, fd_no, top);
    }
}

/// Add entry `e` to epoll instance `ep` (the program's fd `fd_no`, for the warning) with our fd
/// `holder` of its file: at the entry's fd number for the moment when it is not that number.
pub fn add_entry(ep: RawFd, e: &EpollEntry, holder: RawFd, fd_no: i32, top: RawFd) {
    // EPOLLERR/EPOLLHUP are always reported; the kernel shows them in fdinfo.
    let internal = (libc::EPOLLERR | libc::EPOLLHUP) as u32;
    let mut ev = libc::epoll_event { events: e.events & !internal, u64: e.data };
    let r = if holder == e.fd {
        // SAFETY: ev is valid; e.fd is one of the program's fds, already restored.
        unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, e.fd, &mut ev) }
    } else {
        with_fd_at(e.fd, holder, top, || {
            // SAFETY: as above; e.fd holds the entry's file for the moment.
            unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, e.fd, &mut ev) }
        })
    };
    if r < 0 {
        ckpt_kinds::say!("ckpt-restart: warning: fd {fd_no}: epoll entry for fd {} cannot be restored: {}", e.fd, std::io::Error::last_os_error());
    }
}

/// Run `f` with fd number `at` holding the file of fd `holder`; then `at` holds what it held
/// before (with its close-on-exec flag), or nothing.
fn with_fd_at(at: RawFd, holder: RawFd, top: RawFd, f: impl FnOnce() -> libc::c_int) -> libc::c_int {
    // SAFETY: fcntl and dup3 on fd numbers; the saved copy is above every program fd.
    unsafe {
        let fdflags = libc::fcntl(at, libc::F_GETFD);
        let saved = if fdflags >= 0 { libc::fcntl(at, libc::F_DUPFD_CLOEXEC, top) } else { -1 };
        if libc::dup2(holder, at) < 0 {
            if saved >= 0 {
                libc::close(saved);
            }
            return -1;
        }
        let r = f();
        let e = std::io::Error::last_os_error();
        if saved >= 0 {
            libc::dup3(saved, at, if fdflags & libc::FD_CLOEXEC != 0 { libc::O_CLOEXEC } else { 0 });
            libc::close(saved);
        } else {
            libc::close(at);
        }
        *libc::__errno_location() = e.raw_os_error().unwrap_or(0);
        r
    }
}
