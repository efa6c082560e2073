//! Restoring the program's file descriptors at their old numbers: files reopened by path with
//! their flags and offsets (output files cut back to their size at checkpoint time), and the
//! other kernel objects created again by `fdobjs`. stdin/stdout/stderr stay ours.
//!
//! Order: check every file first, then create every other object at a parked number (sockets
//! and terminals all at once by ckpt-kinds; a socket that cannot be bound again fails here),
//! with the files in flight in sockets (negative fd numbers, kept by us), and only then cut
//! output files back (nothing is changed when a check fails); close the rest of ours, move
//! them into place, then epoll instances (their interest lists name other fds), then dups;
//! then the socket queues are refilled (with the files in flight) and our fds closed; then
//! locks and leases; then the owners of I/O signals (F_SETOWN, F_SETSIG: ckpt_kinds::fown).

use crate::fdobjs::{self, check, cstr};
use anyhow::{bail, Result};
use ckpt_image::{FdKind, FdState, Reader};
use ckpt_kinds::{deleted, locks, pipe};
use ckpt_kinds::sockets::restore::Sockets;
use ckpt_kinds::tty::Terminals;
use std::collections::HashMap;
use std::os::fd::RawFd;

/// What to do about files that are not as they were.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Leave files the program writes at their current size (files shared with other writers).
    pub no_truncate: bool,
    /// Go on without files that are gone (replaced by /dev/null) or changed, with a warning.
    pub ignore_missing: bool,
    /// The image was taken on this boot of this machine: device numbers are comparable.
    pub same_boot: bool,
    /// Every process has its pid of the image (its own namespace): a pid means the same process.
    pub exact_ids: bool,
    /// A task of a step: a listener whose port is taken gets another (kinds' `moveport`), and
    /// its UDP sockets' connects and queued datagrams wait for the step's map (kinds'
    /// `stepudp`).
    pub other_port: bool,
    /// A step task's old node's addresses that its node lacks now, each with the address now
    /// that stands for it: where its UDP sockets bound there are bound.
    pub rebind: Vec<(Vec<u8>, Vec<u8>)>,
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn dev_null() -> Result<RawFd> {
    // SAFETY: a constant path.
    check(unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) }, || "cannot open /dev/null".into())
}

/// A file reopened by path, checked against what the image recorded; `truncate_to` is set for
/// files the program had open for writing.
struct Reopened {
    fd: RawFd,
    truncate_to: Option<u64>,
}

fn writable(flags: i32) -> bool {
    flags & libc::O_ACCMODE != libc::O_RDONLY
}

fn reopen(f: &FdState, path: &[u8], size: u64, is_dir: bool, written: &[&[u8]], opts: &Options) -> Result<Option<Reopened>> {
    let p = cstr(path)?;
    // (Not O_ASYNC: see ckpt_kinds::fown::arm.)
    let mut flags = f.flags & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_NOCTTY | libc::O_ASYNC) | libc::O_CLOEXEC;
    let o_path = f.flags & libc::O_PATH != 0;
    if o_path {
        // Only names a file (a symlink itself with O_NOFOLLOW): reopened the same way.
        flags = libc::O_PATH | f.flags & (libc::O_NOFOLLOW | libc::O_DIRECTORY) | libc::O_CLOEXEC;
    } else if is_dir {
        flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC;
    }
    // Never through a symbolic link: the path the image recorded was the file itself, so a
    // link there now was put in its place (and could point anywhere the user can write).
    // (/proc and /sys are the kernel's: nobody plants a link there, and /proc/self is one.)
    let kernel_fs = [&b"/proc/"[..], b"/sys/"].iter().any(|p| path.starts_with(p)) || path == b"/proc/self";
    let nofollow = if kernel_fs { 0 } else { libc::O_NOFOLLOW };
    // SAFETY: p is a valid C string.
    let mut fd = unsafe { libc::open(p.as_ptr(), flags | nofollow) };
    if fd < 0 && kernel_fs {
        // A file of a process that had died (and been reaped) at checkpoint time.
        if let Some(r) = ckpt_kinds::procfs::open_in_dead_process(path, flags) {
            fd = r.map_err(|e| anyhow::anyhow!("{e}"))?;
        }
    }
    let gone = |why: String| -> Result<Option<Reopened>> {
        if opts.ignore_missing {
            ckpt_kinds::say!("ckpt-restart: warning: file {} (fd {}) {why}; the program gets /dev/null", lossy(path), f.fd);
            return Ok(None);
        }
        bail!("file {} (fd {}) needed by the image {why} (--ignore-missing-files goes on without it)", lossy(path), f.fd);
    };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ELOOP) {
            return gone("is now a symbolic link, not the file the program had open".into());
        }
        return gone(format!("cannot be reopened: {e}"));
    }
    // SAFETY: an all-zero stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fd was just opened.
    unsafe { libc::fstat(fd, &mut st) };
    let mut truncate_to = None;
    // Files of /proc and /sys change by themselves: they are reopened, never checked or cut.
    let fmt = st.st_mode & libc::S_IFMT;
    if (fmt == libc::S_IFREG || fmt == libc::S_IFDIR) && !kernel_fs {
        // SAFETY: an all-zero statfs is a valid out-parameter; fd is ours.
        let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        unsafe { libc::fstatfs(fd, &mut fs) };
        let now = ckpt_image::FileId::new(&st, fs.f_type);
        if !f.id.same_file(&now, opts.same_boot) {
            // SAFETY: fd is ours.
            unsafe { libc::close(fd) };
            let was = if opts.same_boot { format!("device {:#x} inode {}", f.id.dev, f.id.ino) } else { format!("inode {}", f.id.ino) };
            return gone(format!("is not the file the program had open (another file was put at the path: inode {}, was {was})", now.ino));
        }
    }
    if fmt == libc::S_IFREG && !kernel_fs && !o_path {
        let now = st.st_size as u64;
        let problem = if writable(f.flags) && !opts.no_truncate {
            truncate_to = (now > size).then_some(size);
            (now < size).then(|| format!("is shorter than at checkpoint time ({now} < {size} bytes)"))
        } else if !written.contains(&path) && !writable(f.flags) && (now != size || st.st_mtime != f.mtime) {
            Some("has changed since the checkpoint (size or modification time differs)".to_string())
        } else {
            None
        };
        if let Some(problem) = problem {
            if !opts.ignore_missing {
                // SAFETY: fd is ours.
                unsafe { libc::close(fd) };
                bail!("file {} (fd {}) {problem} (--ignore-missing-files goes on anyway)", lossy(path), f.fd);
            }
            ckpt_kinds::say!("ckpt-restart: warning: file {} (fd {}) {problem}; going on", lossy(path), f.fd);
            truncate_to = None;
        }
    }
    if (f.pos > 0 || is_dir) && !o_path {
        // SAFETY: fd was just opened.
        unsafe { libc::lseek(fd, f.pos, libc::SEEK_SET) };
    }
    Ok(Some(Reopened { fd, truncate_to }))
}

/// Open file `f` once for the processes of a tree that share it (`tree`), checked as any file;
/// the size to cut it back to once every object exists, if any; None: it is gone
/// (--ignore-missing-files: each process gets /dev/null).
pub fn open_shared(f: &FdState, opts: &Options) -> Result<Option<(RawFd, Option<u64>)>> {
    let FdKind::Path { path, size, is_dir } = &f.kind else { bail!("internal: fd {} is not a file", f.fd) };
    let written: Vec<&[u8]> = if writable(f.flags) { vec![&path[..]] } else { Vec::new() };
    Ok(reopen(f, path, *size, *is_dir, &written, opts)?.map(|r| (r.fd, r.truncate_to)))
}

/// Objects shared by several fds (pipes and FIFOs, deleted inodes), created once and held by
/// fds of ours until every program fd of them is open.
#[derive(Default)]
struct Shared {
    pipes: pipe::Pipes,
    deleted: deleted::Recreated,
    exited: fdobjs::Exited,
    mqueues: ckpt_kinds::mqueue::Queues,
}

impl Shared {
    /// Every program fd is open: let go of ours (recreated inodes get their modes now).
    fn close_all(self) -> Result<()> {
        self.pipes.close_all();
        self.deleted.finish();
        self.exited.reap();
        Ok(self.mqueues.finish()?)
    }
}

/// What fds are made from besides files: shared objects, the program's sockets and terminals.
struct Makers<'a> {
    sh: Shared,
    socks: Sockets<'a>,
    ttys: Terminals,
    ignore: bool,
    exact_ids: bool,
}

/// A new fd of ours for one object of the image (not epoll, not a dup); `image` holds the data
/// of deleted files.
fn create(f: &FdState, all: &[FdState], mk: &mut Makers, image: &Reader) -> Result<RawFd> {
    // One object that other processes of the tree hold too (also a file in flight that is one
    // with their fds): the tree's, made once.
    if let Some((fd, _)) = crate::tree::shared_file(f.fd) {
        return check(dup_ours(fd), || format!("cannot take the tree's shared object at fd {}", f.fd));
    }
    let fd = match &f.kind {
        FdKind::Path { .. } => unreachable!("files are reopened first"),
        FdKind::Deleted(d) => {
            let fd = mk.sh.deleted.open(d, f.flags, image)?;
            return Ok(if f.flags & libc::O_PATH == 0 { seek(fd, f.pos) } else { fd });
        }
        FdKind::Pipe { .. } | FdKind::Fifo { .. } => mk.sh.pipes.open(f, all)?,
        FdKind::Socket(s) => mk.socks.open(s.ino)?,
        // (Replaced by its description before the fds are restored: `tree::resolve_sockets`.)
        FdKind::TreeSocket { ino } => bail!("fd {}: socket:[{ino}] is described in another process's image, which this restart did not read", f.fd),
        FdKind::Tty(t) => return Ok(mk.ttys.open(f, t)?),
        FdKind::EventFd { .. } | FdKind::TimerFd { .. } | FdKind::SignalFd { .. } => return object(f, mk.ignore, &|_| None),
        FdKind::Inotify { .. } | FdKind::Fanotify { .. } => unreachable!("inotify instances and fanotify groups are made after the files they may watch"),
        // SAFETY: getpid has no preconditions. (Its own pid is the restarted process's, exact or not.)
        FdKind::PidFd { own: true, .. } => fdobjs::pidfd(unsafe { libc::getpid() }, f.flags, true)?,
        // (One of our threads: the runtime opens it once it has made the thread.)
        FdKind::PidFd { pid, own: false } if crate::threadpidfds::made_later(*pid) => return dev_null(),
        // (A thread of another process of the tree: that process's runtime hands it over.)
        FdKind::PidFd { own: false, .. } if crate::handpidfds::holds(f.fd) => return dev_null(),
        FdKind::PidFd { pid, own: false } => match fdobjs::pidfd(*pid, f.flags, mk.exact_ids) {
            Ok(fd) => fd,
            // A pidfd of a process that is not there again: never silently another file.
            Err(e) if !mk.ignore => bail!("fd {}: {e:#} (--ignore-missing-files gives the program /dev/null instead)", f.fd),
            Err(e) => {
                ckpt_kinds::say!("ckpt-restart: warning: fd {}: {e:#}; it is replaced by /dev/null (--ignore-missing-files)", f.fd);
                return dev_null();
            }
        },
        FdKind::ExitedPidFd { ino } => mk.sh.exited.open(*ino, f.flags)?,
        FdKind::Mqueue(q) => return Ok(mk.sh.mqueues.open(q, f.flags)?),
        FdKind::Epoll { .. } => unreachable!("epoll instances are created last"),
        // The slave of a pseudo-terminal whose master was closed: hung up, as it was.
        FdKind::Other { link } if ckpt_kinds::tty::is_hung_up_slave(link) => ckpt_kinds::tty::hung_up_slave(f.flags)?,
        // An fd on a time namespace that the tree's restart made again (`treetime`).
        FdKind::Other { link } if crate::treetime::ns_path(link).is_some() => crate::treetime::open_ns(&crate::treetime::ns_path(link).unwrap_or_default())?,
        // Any other file ckpt cannot make again (an io_uring instance...): never silently
        // something else.
        FdKind::Other { link } if !mk.ignore => {
            bail!("fd {} ({}) is of a kind ckpt cannot restore (--ignore-missing-files gives the program /dev/null instead)", f.fd, lossy(link))
        }
        FdKind::Other { link } => {
            ckpt_kinds::say!("ckpt-restart: warning: fd {} ({}) cannot be restored; it is replaced by /dev/null (--ignore-missing-files)", f.fd, lossy(link));
            return dev_null();
        }
    };
    fdobjs::set_status_flags(fd, f.flags);
    Ok(fd)
}

/// A new event fd, timer fd, signal fd, inotify instance or fanotify group of ours as `f` was
/// (also made once for the processes of a tree that share it, `tree`; an epoll instance there
/// is made empty and filled by one of them, see `restore_all`); `ignore`:
/// --ignore-missing-files; `held`: our fd of the program's fd N, for an inotify watch or
/// fanotify mark on the file the program holds at N (None: not known here).
pub fn object(f: &FdState, ignore: bool, held: &dyn Fn(i32) -> Option<RawFd>) -> Result<RawFd> {
    let fd = match &f.kind {
        FdKind::EventFd { count, semaphore } => fdobjs::eventfd(*count, *semaphore)?,
        FdKind::TimerFd { clockid, value_ns, interval_ns, ticks } => fdobjs::timerfd(*clockid, *value_ns, *interval_ns, *ticks)?,
        FdKind::SignalFd { mask } => fdobjs::signalfd(*mask)?,
        FdKind::Inotify { watches, queued, last_wd } => fdobjs::inotify(watches, *queued, *last_wd, f.fd, ignore, held)?,
        FdKind::Fanotify { flags, event_flags, marks, queued } => crate::fanotify::group(*flags, *event_flags, marks, *queued, f.fd, ignore, held)?,
        FdKind::Epoll { .. } => fdobjs::new_epoll()?,
        _ => bail!("internal: fd {} is not an event, timer or signal fd, epoll or inotify instance or fanotify group", f.fd),
    };
    fdobjs::set_status_flags(fd, f.flags);
    Ok(fd)
}

/// A new fd of ours (close-on-exec) for `fd`.
fn dup_ours(fd: RawFd) -> RawFd {
    // SAFETY: fd is ours (inherited from the tree's root).
    unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) }
}

fn seek(fd: RawFd, pos: i64) -> RawFd {
    // SAFETY: fd is ours.
    unsafe { libc::lseek(fd, pos, libc::SEEK_SET) };
    fd
}

/// Move `fd` to `target` (replacing whatever is there) with the program's close-on-exec flag.
fn place(fd: RawFd, f: &FdState) -> Result<()> {
    if fd == f.fd {
        // SAFETY: fd is ours.
        unsafe { libc::fcntl(fd, libc::F_SETFD, if f.cloexec { libc::FD_CLOEXEC } else { 0 }) };
        return Ok(());
    }
    let flags = if f.cloexec { libc::O_CLOEXEC } else { 0 };
    // SAFETY: both are fd numbers; dup3 replaces whatever is at target.
    check(unsafe { libc::dup3(fd, f.fd, flags) }, || format!("cannot place fd {}", f.fd))?;
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    Ok(())
}

/// What the restart of the fds leaves to do once the program runs.
#[derive(Debug, Default)]
pub struct Restored {
    /// The program had a terminal, which is now another one: tell it (SIGWINCH).
    pub winch: bool,
    /// What is left once the step's map exists (a task of a step: kinds' `stepudp`).
    pub later: ckpt_kinds::sockets::stepudp::Later,
}

/// Close stdin, stdout and stderr where the program had closed them (a daemon closes all three;
/// the next file it opens takes fd 0): they are ckpt-restart's otherwise. The last thing before
/// the switch, since an fd opened after it could take the number and our messages with it.
pub fn close_stdio_the_program_closed(fds: &[FdState]) {
    for n in 0..3 {
        if !fds.iter().any(|f| f.fd == n) {
            // SAFETY: closing our own stdio fd, which nothing of ours uses from here on.
            unsafe { libc::close(n) };
        }
    }
}

/// Open every fd of the image at its number; close every other fd of ours above 2.
/// `job`: connections to other tasks of a step, made again already (our fds, by inode);
/// `keep`: other fds of ours to leave open (the step's links).
pub fn restore(fds: &[FdState], opts: &Options, image: &Reader, job: HashMap<u64, RawFd>, keep: &[RawFd]) -> Result<Restored> {
    // The program's RLIMIT_NOFILE is already in force and may be below its own fd numbers
    // (lowering it closes nothing): lift the soft limit while fds are placed.
    let mut lim = libc::rlimit64 { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: lim is a valid out-parameter.
    unsafe { libc::getrlimit64(libc::RLIMIT_NOFILE, &mut lim) };
    let lifted = libc::rlimit64 { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
    // SAFETY: raising our soft limit up to the hard one.
    unsafe { libc::setrlimit64(libc::RLIMIT_NOFILE, &lifted) };
    let r = restore_all(fds, opts, image, job, keep);
    // SAFETY: putting the program's limit back.
    unsafe { libc::setrlimit64(libc::RLIMIT_NOFILE, &lim) };
    r
}

fn restore_all(fds: &[FdState], opts: &Options, image: &Reader, job: HashMap<u64, RawFd>, keep_too: &[RawFd]) -> Result<Restored> {
    let top = fds.iter().map(|f| f.fd).max().unwrap_or(0).max(2) + 1;
    // Our messages keep going to ckpt-restart's stderr once fd 2 is the program's (its own
    // /dev/null, a pipe of the tree): a dup above every fd number placed below.
    let our_stderr = ckpt_kinds::say::keep_above(top);
    // stdin/stdout/stderr stay ours, except a pipe, a pseudo-terminal or a socket between
    // processes of a tree (a pipeline; mpirun and its ranks' output; MPICH's hydra_pmi_proxy,
    // whose stdin is its connection to mpiexec), or a dup of one, and one that was not the
    // stdio the tree (or the program alone) was given (a shell's background job's /dev/null, a
    // file the program put at fd 1 itself: `tree::own_stdio`).
    let tree_object = |f: &FdState| {
        let of = f.dup_of.and_then(|n| fds.iter().find(|g| g.fd == n)).unwrap_or(f);
        crate::tree::shared_pipe(of) || crate::tree::shared_pty(of) || crate::tree::shared_socket(of) || crate::tree::own_stdio(f)
    };
    // (Not the files in flight, a tree's shared pipe among them.)
    let prog: Vec<&FdState> = fds.iter().filter(|f| f.fd > 2 || f.fd >= 0 && tree_object(f)).collect();
    let in_flight: Vec<&FdState> = fds.iter().filter(|f| f.fd < 0).collect();
    let park = |fd: RawFd| -> Result<RawFd> {
        // Above every target number, so that the dup3s below cannot clobber it.
        // SAFETY: fd is ours.
        let parked = check(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, top) }, || "fcntl".into())?;
        // SAFETY: fd is ours.
        unsafe { libc::close(fd) };
        Ok(parked)
    };

    // 1. Files by path: open and check all of them before changing anything.
    let written: Vec<&[u8]> = prog
        .iter()
        .filter_map(|f| match &f.kind {
            FdKind::Path { path, .. } if writable(f.flags) => Some(&path[..]),
            _ => None,
        })
        .collect();
    let mut opened: Vec<(RawFd, &FdState)> = Vec::new();
    let mut truncations = Vec::new();
    for f in prog.iter().filter(|f| f.dup_of.is_none()) {
        if let FdKind::Path { path, size, is_dir } = &f.kind {
            // One open file that other processes of the tree hold too: the tree's (one offset).
            let shared = crate::tree::shared_file(f.fd);
            let reopened = match shared {
                Some((fd, cut)) => Some(Reopened { fd: check(dup_ours(fd), || format!("cannot take the shared file {} (fd {})", lossy(path), f.fd))?, truncate_to: cut }),
                None => reopen(f, path, *size, *is_dir, &written, opts)?,
            };
            let (fd, cut) = match reopened {
                Some(r) => (r.fd, r.truncate_to),
                None => (dev_null()?, None),
            };
            let fd = park(fd)?;
            if let Some(n) = cut {
                truncations.push((fd, n, path));
            }
            opened.push((fd, f));
        }
    }
    // 2. Every other object, except epoll instances and dups; the files in flight too.
    // (A tree's shared sockets come with their options set: `treeshare`.)
    let mut socks = Sockets::make_given(fds, top, ckpt_kinds::sockets::restore::Options { ignore: opts.ignore_missing, other_port: opts.other_port, step: opts.other_port, rebind: opts.rebind.clone() }, job, crate::tree::settled_sockets())?;
    // The tree's socketpair ends whose queues carry files in flight this process makes: it
    // refills them, with those files, from their other ends.
    socks.feed_from(crate::tree::socket_feeders(fds)?)?;
    let ttys = Terminals::make(fds, top, opts.ignore_missing, &crate::tree::ptys())?;
    let mut mk = Makers { sh: Shared { pipes: crate::tree::pipes(), ..Shared::default() }, socks, ttys, ignore: opts.ignore_missing, exact_ids: opts.exact_ids };
    let objects = |f: &&&FdState| f.dup_of.is_none() && !matches!(f.kind, FdKind::Path { .. } | FdKind::Epoll { .. } | FdKind::Inotify { .. } | FdKind::Fanotify { .. });
    for f in prog.iter().filter(objects) {
        let fd = create(f, fds, &mut mk, image)?;
        opened.push((park(fd)?, f));
    }
    let mut flying: HashMap<i32, RawFd> = HashMap::new();
    // A file in flight that is one open file with fds of other processes of the tree: the
    // tree's (`ckpt_image::unshared::join_in_flight`).
    for f in in_flight.iter().filter(|f| f.dup_of.is_none() && matches!(f.kind, FdKind::Path { .. })) {
        if let Some((fd, _)) = crate::tree::shared_file(f.fd) {
            let fd = check(dup_ours(fd), || format!("cannot take the tree's shared file in flight {}", f.fd))?;
            flying.insert(f.fd, park(fd)?);
        }
    }
    for f in in_flight.iter().filter(objects) {
        let fd = create(f, fds, &mut mk, image)?;
        flying.insert(f.fd, park(fd)?);
    }
    std::mem::take(&mut mk.sh).close_all()?;
    // Inotify instances and fanotify groups last, once every file is open and finished (its
    // owner, mode and times given, our holders of removed files closed: events the watches must
    // not see). A watch or mark may be on a file the program holds (a removed one, recreated
    // above, unnamed): it is added through our fd of it.
    let inotify = |f: &&&FdState| f.dup_of.is_none() && matches!(f.kind, FdKind::Inotify { .. } | FdKind::Fanotify { .. });
    let mut made = Vec::new();
    for f in prog.iter().chain(in_flight.iter()).filter(inotify) {
        let fd = match crate::tree::shared_file(f.fd) {
            Some((fd, _)) => check(dup_ours(fd), || format!("cannot take the tree's shared object at fd {}", f.fd))?,
            None => {
                let held = |n: i32| {
                    let n = fds.iter().find(|g| g.fd == n).map(|g| g.dup_of.unwrap_or(n))?;
                    opened.iter().find(|(_, g)| g.fd == n).map(|(p, _)| *p)
                };
                // (One in flight with watches another process added: their paths, which
                // that process's runtime saw.)
                object(crate::tree::inotify_with_paths(f.fd).unwrap_or(f), mk.ignore, &held)?
            }
        };
        made.push((park(fd)?, *f));
    }
    for (fd, f) in made {
        if f.fd < 0 {
            flying.insert(f.fd, fd);
        } else {
            opened.push((fd, f));
        }
    }
    // The tree's shared epoll instances, taken now (the tree's fds are closed below).
    let mut tree_epolls: HashMap<i32, RawFd> = HashMap::new();
    for f in prog.iter().chain(in_flight.iter()).filter(|f| f.dup_of.is_none() && matches!(f.kind, FdKind::Epoll { .. })) {
        if let Some((fd, _)) = crate::tree::shared_file(f.fd) {
            let ep = check(dup_ours(fd), || format!("cannot take the tree's shared epoll instance at fd {}", f.fd))?;
            tree_epolls.insert(f.fd, park(ep)?);
        }
    }

    // The epoll instances only in flight in other processes that this one adds entries to.
    let mut foreign_epolls = Vec::new();
    for (fd, add) in crate::tree::epoll_adds() {
        let ep = check(dup_ours(fd), || format!("cannot take the tree's epoll instance in flight in pid {}", add.epoll.0))?;
        foreign_epolls.push((park(ep)?, add));
    }

    // Every object exists: only now change files (cut output back to its checkpoint size).
    for (fd, n, path) in truncations {
        // SAFETY: fd is ours.
        check(unsafe { libc::ftruncate(fd, n as i64) }, || format!("cannot cut {} back to {n} bytes", lossy(path)))?;
    }

    // 3. Close everything else of ours (above stderr), then move the parked fds into place.
    let mut keep: Vec<i32> = opened.iter().map(|p| p.0).collect();
    keep.extend(flying.values());
    keep.extend(tree_epolls.values());
    keep.extend(foreign_epolls.iter().map(|e| e.0));
    keep.extend(mk.socks.held());
    keep.extend(mk.ttys.held());
    keep.extend(keep_too);
    keep.extend(our_stderr);
    close_all_but(keep);
    for (tmp, f) in opened {
        place(tmp, f)?;
    }

    // 4. dups of everything but epoll instances, then epoll instances (the fds they watch are
    // all in place now, watched epoll instances before their watchers), then dups of epoll
    // instances.
    let is_epoll = |fd: i32| fds.iter().any(|f| f.fd == fd && matches!(f.kind, FdKind::Epoll { .. }));
    let dup = |f: &FdState, of: i32| -> Result<()> {
        let flags = if f.cloexec { libc::O_CLOEXEC } else { 0 };
        // SAFETY: of is in place (a lower fd of the program, or one of our stdio fds).
        check(unsafe { libc::dup3(of, f.fd, flags) }, || format!("cannot place fd {} (a dup of fd {of})", f.fd))?;
        Ok(())
    };
    for f in prog.iter() {
        if let Some(of) = f.dup_of.filter(|&of| !is_epoll(of)) {
            dup(f, of)?;
        }
    }
    // Our fd of a file by its number: the program's (in place now) or one in flight.
    let file = |flying: &HashMap<i32, RawFd>, n: i32| -> Option<RawFd> {
        let mut n = n;
        for _ in 0..fds.len() {
            if n >= 0 {
                return Some(n);
            }
            if let Some(&fd) = flying.get(&n) {
                return Some(fd);
            }
            n = fds.iter().find(|f| f.fd == n)?.dup_of?;
        }
        None
    };
    // An epoll instance may watch another (UCX does): that one is placed first (the kernel
    // allows no cycle).
    let mut epolls: Vec<&FdState> = prog.iter().copied().filter(|f| f.dup_of.is_none() && matches!(f.kind, FdKind::Epoll { .. })).collect();
    while !epolls.is_empty() {
        let waits_for = |f: &FdState| {
            let FdKind::Epoll { entries } = &f.kind else { return false };
            entries.iter().any(|e| epolls.iter().any(|o| o.fd != f.fd && Some(o.fd) == e.holder))
        };
        let i = epolls.iter().position(|f| !waits_for(f)).unwrap_or(0);
        let f = epolls.remove(i);
        if let FdKind::Epoll { entries } = &f.kind {
            // One the tree shares: made once (empty); its interest list is added by one holder.
            let ep = match tree_epolls.get(&f.fd) {
                Some(&ep) => {
                    if crate::tree::fills_epoll(f.fd) {
                        fdobjs::fill_epoll(ep, entries, f.fd, top, &|n| file(&flying, n));
                    }
                    ep
                }
                None => fdobjs::epoll(entries, f.fd, top, &|n| file(&flying, n))?,
            };
            place(ep, f)?;
        }
    }
    for f in in_flight.iter().filter(|f| f.dup_of.is_none()) {
        if let FdKind::Epoll { entries } = &f.kind {
            // (One in flight that is one with another process's fd, or whose entries' files
            // other processes hold: the tree's, as above; those entries are theirs to add.)
            let ep = match tree_epolls.get(&f.fd) {
                Some(&ep) => {
                    if crate::tree::fills_epoll(f.fd) {
                        let ours: Vec<ckpt_image::EpollEntry> = entries.iter().filter(|e| !crate::tree::epoll_added_elsewhere(f.fd, e)).cloned().collect();
                        fdobjs::fill_epoll(ep, &ours, f.fd, top, &|n| file(&flying, n));
                    }
                    ep
                }
                None => park(fdobjs::epoll(entries, f.fd, top, &|n| file(&flying, n))?)?,
            };
            flying.insert(f.fd, ep);
        }
    }
    for f in prog.iter() {
        if let Some(of) = f.dup_of.filter(|&of| is_epoll(of)) {
            dup(f, of)?;
        }
    }
    // Entries of other processes' epoll instances in flight whose files this process holds:
    // added with our fd of each (in place now).
    for (ep, add) in foreign_epolls {
        fdobjs::add_entry(ep, &add.entry, add.by.1, add.epoll.1, top);
        // SAFETY: ep is our copy of the tree's instance.
        unsafe { libc::close(ep) };
    }
    // 5. Terminals on stdin/stdout/stderr; socket queues with the files in flight.
    mk.ttys.stdio(fds);
    let winch = mk.ttys.winch;
    mk.ttys.close_all();
    let r = mk.socks.finish(&|n| file(&flying, n));
    for fd in flying.values() {
        // SAFETY: our fds of files in flight (sent again, or lost).
        unsafe { libc::close(*fd) };
    }
    let later = r?;
    // 6. Locks and leases, last: closing any fd of a file drops the POSIX locks on it.
    for f in prog.iter().filter(|f| !f.locks.is_empty()) {
        let what = match &f.kind {
            FdKind::Path { path, .. } => format!("{} (fd {})", lossy(path), f.fd),
            _ => format!("fd {}", f.fd),
        };
        locks::restore(f.fd, &f.locks, &what)?;
    }
    // The process's mq_notify registrations, also after every close of an fd of their queues.
    ckpt_kinds::mqueue::register_again(fds)?;
    // 7. Owners of I/O signals, after the leases (taking a lease makes this process the owner).
    for f in prog.iter() {
        if f.dup_of.is_none() && f.flags & libc::O_ASYNC != 0 {
            ckpt_kinds::fown::arm(f.fd);
        }
        if let Some(w) = f.owner.as_ref().and_then(|o| ckpt_kinds::fown::restore(f.fd, o, &format!("fd {}", f.fd))) {
            ckpt_kinds::say!("ckpt-restart: warning: {w}");
        }
    }
    Ok(Restored { winch, later })
}

/// Close every fd of ours above stderr but those of `keep`: close_range over the gaps between
/// them. (A listing of /proc/self/fd and a close per fd cost a tree's process, which inherited
/// every socket the tree shares, as much as the rest of its fds' restore: zdtm session03's 682
/// fds, parked and inherited, are some 2000.)
fn close_all_but(mut keep: Vec<i32>) {
    keep.retain(|&n| n > 2);
    keep.sort_unstable();
    keep.dedup();
    let mut from: u32 = 3;
    for n in keep.into_iter().map(|n| n as u32).chain([u32::MAX]) {
        if n > from {
            let last = if n == u32::MAX { u32::MAX } else { n - 1 };
            // SAFETY: closing our own fds in [from, last], none of which anything refers to.
            if unsafe { libc::syscall(libc::SYS_close_range, from, last, 0) } != 0 {
                // A kernel without close_range (before 5.9): each fd of ours in the gap.
                for fd in std::fs::read_dir("/proc/self/fd").into_iter().flatten().flatten().filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok()) {
                    if (from..=last).contains(&fd) {
                        // SAFETY: as above (the listing's own fd is already closed: EBADF).
                        unsafe { libc::close(fd as i32) };
                    }
                }
            }
        }
        from = n.saturating_add(1);
    }
}
