//! The file descriptor table (/proc/thread-self/fd and fdinfo): what each fd is, its flags and offset,
//! the locks held through it, and which fds share an open file description (kcmp). What each
//! kind of object holds beyond that is read by its module of ckpt-kinds (deleted files, pipes
//! and FIFOs, locks, /proc paths), ckpt-kinds (sockets, terminals) or `fdobjs` (event fds,
//! epoll, inotify). Files passed with SCM_RIGHTS and still queued in a socket ("in flight") are
//! described the same way, under negative fd numbers, after the program's fds.

use crate::fdobjs;
use crate::sys::{self, syscall};
use ckpt_image::{FdKind, FdState};
use ckpt_kinds::{deleted, locks, mqueue, pipe, procfs};
use ckpt_kinds::sockets::capture::Context;

/// `--checkpoint-open-files` (set once at start, from the launch settings).
static SAVE_OPEN_FILES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// At start: whether the data of named regular files the program holds open is saved too.
pub fn configure(save_open_files: bool) {
    SAVE_OPEN_FILES.store(save_open_files, std::sync::atomic::Ordering::Relaxed);
}

/// Whether the file behind a by-path fd (`fmt`, `fs_type`, opened O_PATH or not) is one whose
/// data `--checkpoint-open-files` saves: a regular file not on /proc or /sys.
fn saved_file(fmt: u32, fs_type: i64, o_path: bool) -> bool {
    const SYSFS_MAGIC: i64 = 0x6265_6572;
    SAVE_OPEN_FILES.load(std::sync::atomic::Ordering::Relaxed) && fmt == libc::S_IFREG && !o_path && fs_type != sys::PROC_SUPER_MAGIC && fs_type != SYSFS_MAGIC
}

/// What one fd is, asked once per checkpoint for the filters of `read_fds` and for its
/// description alike (each asked fstat, fstatfs and a socket's SO_DOMAIN again: a process of a
/// tree holding hundreds of sockets paid each twice in its pause, zdtm session03).
struct Facts {
    st: libc::stat,
    /// Its file system's type (statfs's f_type).
    fs_type: sys::SysResult<i64>,
    /// A socket's SO_DOMAIN (None: not a socket, or not asked).
    domain: Option<i32>,
}

impl Facts {
    /// None: `fd` is not open (any more).
    fn of(fd: i32) -> Option<Facts> {
        let st = sys::fstat(fd).ok()?;
        let domain = if st.st_mode & libc::S_IFMT == libc::S_IFSOCK { ckpt_step::sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN).ok() } else { None };
        Some(Facts { st, fs_type: sys::fs_type(fd), domain })
    }
}

/// The fd table being read.
struct Table {
    out: Vec<FdState>,
    /// (fd, st_dev, st_ino) of every fd described so far (in-flight files: a temporary fd of
    /// ours), to find dups.
    seen: Vec<(i32, u64, u64)>,
    /// The fds of `seen` by (st_dev, st_ino), in the order described: the candidates for a dup
    /// (a scan of `seen` for each fd cost processes × fds² compares in a tree holding hundreds
    /// of sockets: zdtm session03).
    by_file: std::collections::BTreeMap<(u64, u64), Vec<i32>>,
    /// In-flight files not yet described: (their number, a temporary fd of ours).
    inflight: Vec<(i32, i32)>,
    /// Every temporary fd of in-flight files, closed at the end.
    temps: Vec<(i32, i32)>,
    next_inflight: i32,
    pipes: pipe::Seen,
    mqueues: mqueue::Seen,
    sockets: Context,
    pid: i32,
    /// /proc/thread-self/fdinfo, open while the table is read (None: each fd's is opened by
    /// its path).
    fdinfo: Option<sys::ProcDir>,
    /// The program's only process: what is queued in its inotify instances and fanotify groups
    /// is its alone.
    alone: bool,
}

/// The fds of the table, listed once for the whole capture (the tree's TCP connections are
/// drained from it too, `sockets`), in order, with what each is; the runtime's own left out.
pub struct Listing {
    alone: bool,
    fds: Vec<(i32, Facts)>,
}

impl Listing {
    /// The sockets: (fd, inode, SO_DOMAIN), the lowest fd of each.
    pub fn sockets(&self) -> Vec<(i32, u64, Option<i32>)> {
        let mut out: Vec<(i32, u64, Option<i32>)> = Vec::new();
        for (fd, f) in self.fds.iter().filter(|(_, f)| f.st.st_mode & libc::S_IFMT == libc::S_IFSOCK) {
            if !out.iter().any(|o| o.1 == f.st.st_ino) {
                out.push((*fd, f.st.st_ino, f.domain));
            }
        }
        out
    }
}

/// List the fd table, once the program's threads are stopped (what `read_fds` describes).
pub fn list() -> Listing {
    // (Our fds of files only in flight, left by a checkpoint that did not finish.)
    crate::flightdata::close_all();
    crate::mqnotify::before_checkpoint();
    let alone = alone();
    if alone {
        // (Before the table is read: their events may open fds.)
        crate::inotifyq::drain_fanotify_groups();
    }
    let Ok(names) = sys::list_dir(&sys::cpath(&[b"/proc/thread-self/fd"])) else { return Listing { alone, fds: Vec::new() } };
    let mut fds: Vec<i32> = names.iter().filter_map(|n| std::str::from_utf8(n).ok()?.parse::<i32>().ok()).collect();
    fds.sort_unstable();
    // (An fd closed by now, not the program's: its threads are stopped. See `describe`.)
    Listing { alone, fds: fds.into_iter().filter(|&fd| !crate::control::is_runtime_fd(fd)).filter_map(|fd| Some((fd, Facts::of(fd)?))).collect() }
}

pub fn read_fds(listing: Listing) -> Vec<FdState> {
    let alone = listing.alone;
    // What processes of the tree with lower pids hold: they store those queues and bytes.
    let mut lower = crate::treesocks::held_by_lower_pids();
    let mut t = Table {
        out: Vec::new(),
        seen: Vec::new(),
        by_file: std::collections::BTreeMap::new(),
        inflight: Vec::new(),
        temps: Vec::new(),
        next_inflight: -1,
        pipes: pipe::Seen::with_pipes_elsewhere(std::mem::take(&mut lower.pipes)),
        mqueues: mqueue::Seen::default(),
        sockets: Context::with_queues_elsewhere(std::mem::take(&mut lower.sockets)),
        pid: sys::getpid(),
        fdinfo: None,
        alone,
    };
    let facts: Vec<(i32, Facts)> = listing.fds.into_iter().filter(|(fd, f)| !(sys::foreign_own(*fd) || sharers_proc_file(*fd, f) || sharers_diag_socket(*fd, f))).collect();
    // (Those skipped are ours or, in a table shared by clone, another process's: made again after a restart.)
    let facts = if t.alone {
        requeue_waiting(&mut t.sockets, &facts.iter().map(|f| f.0).collect::<Vec<_>>());
        // A waiting connection's client queued again is another socket at the program's fd
        // now (ckpt_kinds' sockets/requeue.rs): what each fd is, asked again.
        facts.into_iter().filter_map(|(fd, _)| Some((fd, Facts::of(fd)?))).collect()
    } else {
        facts
    };
    t.fdinfo = sys::ProcDir::open(&sys::cpath(&[b"/proc/thread-self/fdinfo"])).ok();
    for (fd, facts) in facts {
        if let Some(f) = t.describe(fd, fd, facts) {
            t.out.push(f);
        }
    }
    // Files in flight, which may carry more files in flight.
    while let Some((no, tmp)) = t.inflight.pop() {
        if let Some(f) = Facts::of(tmp).and_then(|facts| t.describe(tmp, no, facts)) {
            t.out.push(f);
        }
    }
    fdobjs::settle_epolls(&mut t.out, &t.seen, &t.temps, t.pid, !alone);
    settle_ttys(&mut t.out);
    let mut socks: Vec<(i32, &mut ckpt_image::Socket)> = t
        .out
        .iter_mut()
        .filter(|f| f.fd >= 0)
        .filter_map(|f| match &mut f.kind {
            FdKind::Socket(s) => Some((f.fd, &mut **s)),
            _ => None,
        })
        .collect();
    ckpt_kinds::sockets::capture::settle_tcp_pairs(&mut socks);
    // Deleted files and memfds only in flight whose data the image stores: read through our
    // fd of each, kept until then.
    let only_flying: Vec<i32> = deleted::data_owners(&t.out, t.pid).into_iter().map(|i| t.out[i].fd).filter(|&n| n < 0).collect();
    // Regular files, deleted files and memfds, event, timer and signal fds in flight in a tree:
    // kept until every process is captured, so that another process holding one only in flight
    // too finds ours with kcmp (flightheld), and named in the entry's own `held_with` (our pid
    // and fd) for the restart to know which one it is.
    let pid = t.pid;
    for &(no, tmp) in &t.temps {
        let entry = t.out.iter_mut().find(|f| f.fd == no && f.dup_of.is_none());
        let compared = entry.filter(|f| !alone && ckpt_image::unshared::named_when_in_flight(f));
        let wanted = only_flying.contains(&no) || compared.is_some();
        if wanted && crate::flightdata::keep(no, tmp) {
            if let Some(f) = compared {
                f.held_with.push((pid, tmp));
            }
        } else {
            sys::close(tmp);
        }
    }
    t.fdinfo = None;
    t.out
}

/// Whether this is the program's only process (outside a tree, or the only one in its
/// namespace besides init, the coordinator, and our background image writer).
fn alone() -> bool {
    if !crate::tree::is_member() {
        return true;
    }
    let me = sys::getpid();
    let Ok(names) = sys::list_dir(&sys::cpath(&[b"/proc"])) else { return false };
    names.iter().filter_map(|n| std::str::from_utf8(n).ok()?.parse::<i32>().ok()).all(|p| p == 1 || p == me || crate::snapshot::is_own_child(p))
}

/// The bytes in the connections not yet accepted of the program's UNIX listeners, read and
/// queued again before any fd is described (ckpt_kinds' sockets/requeue.rs). Only in a program
/// of one process: in a tree another process may hold the same sockets.
fn requeue_waiting(sockets: &mut Context, fds: &[i32]) {
    let mut held = Vec::new();
    let mut epolls = Vec::new();
    for &fd in fds {
        // SAFETY: an all-zero struct stat is a valid out-parameter.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if syscall!(libc::SYS_fstat, fd, &mut st as *mut libc::stat).is_err() {
            continue;
        }
        if st.st_mode & libc::S_IFMT == libc::S_IFSOCK {
            held.push(ckpt_kinds::sockets::requeue::Held { fd, ino: st.st_ino });
        } else if sys::readlink(&sys::cpath(&[b"/proc/thread-self/fd/", &sys::decimal(fd)])).unwrap_or_default() == b"anon_inode:[eventpoll]" {
            epolls.push(sys::read_file(&sys::cpath(&[b"/proc/thread-self/fdinfo/", &sys::decimal(fd)])).unwrap_or_default());
        }
    }
    let epolled = |ino: u64| {
        let key = format!(" ino:{ino:x} ");
        epolls.iter().any(|e| e.windows(key.len()).any(|w| w == key.as_bytes()))
    };
    sockets.requeue_waiting(&held, &|ino| crate::fdhooks::bind_dir(ino), &epolled);
}

impl Table {
    /// Describe the file behind our fd `fd` (`facts`: what it is), recorded as fd number `no`.
    /// (The directory fd we listed with has no facts: closed by then.)
    fn describe(&mut self, fd: i32, no: i32, facts: Facts) -> Option<FdState> {
        let st = facts.st;
        let n = sys::decimal(fd);
        // No link: the fd was closed since it was listed. The program's threads are stopped, so
        // it was not the program's: an fd another process's runtime had open for a moment in a
        // table shared with it (clone with CLONE_FILES), which a restart refused as a file of an
        // unknown kind (process_trees_files, as nobody, once in a full run).
        // A socket's link is `socket:[INODE]` (sockfs names it so): not read through /proc, a
        // walk of procfs per fd (a process of a tree holding hundreds of sockets: zdtm
        // session03). (An O_PATH fd of a socket's name stats as a socket too, not on sockfs.)
        let link = if st.st_mode & libc::S_IFMT == libc::S_IFSOCK && facts.fs_type == Ok(sys::SOCKFS_MAGIC) {
            [b"socket:[".as_slice(), st.st_ino.to_string().as_bytes(), b"]"].concat()
        } else {
            sys::readlink(&sys::cpath(&[b"/proc/thread-self/fd/", &n])).ok()?
        };
        // The fd number was free, or the program's closed one, when the table was listed; now
        // another sharer's runtime holds it for an instant (process_trees_files, as nobody, once
        // in a full run: '/proc/PID/task/TID/maps (fd 7) ... cannot be reopened').
        if sharers_proc_link(&link) {
            return None;
        }
        let link = procfs::own_proc_path(&link, self.pid);
        let fmt = st.st_mode & libc::S_IFMT;
        let link = if fmt == libc::S_IFREG && !link.starts_with(b"/") { procfs::own_ns_path(&link, st.st_ino).unwrap_or(link) } else { link };
        let info = match &self.fdinfo {
            Some(dir) => sys::read_file_at(dir, &sys::cpath(&[&n])),
            None => sys::read_file(&sys::cpath(&[b"/proc/thread-self/fdinfo/", &n])),
        }
        .unwrap_or_default();
        let (pos, flags) = parse_fdinfo(&info);
        // The mark of a runtime's fd open for an instant (read-only and O_APPEND, on /proc or in
        // it: `sys::Transient`, `sys::open_proc`), here another sharer's (zdtm fdt_shared once:
        // 'file /proc (fd 6) ... is not the file the program had open').
        if no >= 0 && sys::transient_mark(i64::from(flags)) && (link == b"/proc" || link.starts_with(b"/proc/")) {
            return None;
        }
        let cloexec = syscall!(libc::SYS_fcntl, fd, libc::F_GETFD).map(|f| f & libc::FD_CLOEXEC as i64 != 0).unwrap_or(false);
        let pid = self.pid;
        let dup_of = self
            .by_file
            .get(&(st.st_dev, st.st_ino))
            .and_then(|fds| fds.iter().copied().find(|&seen| syscall!(libc::SYS_kcmp, pid, pid, sys::KCMP_FILE, seen, fd) == Ok(0)))
            .map(|seen_fd| self.number_of(seen_fd));
        self.seen.push((fd, st.st_dev, st.st_ino));
        self.by_file.entry((st.st_dev, st.st_ino)).or_default().push(fd);
        if no < 0 {
            self.temps.push((no, fd));
        }
        if let Some(of) = dup_of {
            return Some(FdState { fd: no, flags, pos, cloexec, kind: FdKind::Other { link }, dup_of: Some(of), mtime: 0, id: Default::default(), locks: Vec::new(), owner: None, held_with: Vec::new() });
        }
        // A file unlinked under this name but still linked under another one in the same
        // directory (link, then unlink: the name it is known by now) is that file.
        let link = match link.strip_suffix(b" (deleted)") {
            Some(old) if fmt == libc::S_IFREG && st.st_nlink > 0 && old.starts_with(b"/") => other_name(old, &st).unwrap_or(link),
            _ => link,
        };
        let named = link.starts_with(b"/");
        let gone = link.strip_suffix(b" (deleted)").filter(|_| named).map(<[u8]>::to_vec);
        let o_path = flags & libc::O_PATH != 0;
        let is_tty = fmt == libc::S_IFCHR && !o_path && ckpt_kinds::tty::is_tty(fd);
        let by_path = named && gone.is_none() && !is_tty && (o_path || [libc::S_IFREG, libc::S_IFDIR, libc::S_IFCHR, libc::S_IFLNK].contains(&fmt));
        // What the restart checks the file at the path against (the same file, not another one).
        let mut id = ckpt_image::FileId::default();
        let fs_type = if fmt == libc::S_IFREG || by_path { facts.fs_type.unwrap_or(0) } else { 0 };
        let kind = if fmt == libc::S_IFREG && fs_type == mqueue::MQUEUE_MAGIC {
            // A POSIX message queue (mq_open), its messages and the process's registration.
            let alone = self.alone;
            let lower_holder = |st: &libc::stat| !alone && held_by_a_lower_pid(st);
            let cx = mqueue::Context { pid: self.pid, lower_holder: &lower_holder, registered: &crate::mqnotify::registered, in_force: &crate::mqnotify::in_force, register_again: &crate::mqnotify::register_again };
            mqueue::capture(fd, &link, &st, flags, &mut self.mqueues, &cx)
        } else if by_path {
            id = ckpt_image::FileId::new(&st, fs_type);
            if saved_file(fmt, fs_type, o_path) {
                deleted::capture_saved(fd, link, &st)
            } else {
                FdKind::Path { path: link, size: st.st_size as u64, is_dir: fmt == libc::S_IFDIR }
            }
        } else if is_tty {
            FdKind::Tty(Box::new(ckpt_kinds::tty::capture(fd, st.st_rdev, st.st_mode, st.st_uid, st.st_gid, link)))
        } else if fmt == libc::S_IFIFO && named {
            let deleted = gone.is_some();
            self.pipes.fifo(fd, &n, &st, gone.unwrap_or(link), deleted)
        } else if let Some(path) = gone {
            deleted::capture(fd, path, &st).unwrap_or(FdKind::Other { link })
        } else if fmt == libc::S_IFIFO && link.starts_with(b"pipe:") {
            self.pipes.pipe(fd, &n, st.st_ino)
        } else if fmt == libc::S_IFSOCK && self.sockets.described_elsewhere(fd, st.st_ino, facts.domain) {
            // Described once, by the lowest pid of the tree holding it: a tree of hundreds of
            // processes that all inherited hundreds of sockets described each in every process
            // (ten getsockopts and a sock_diag dump each: zdtm session03's 42 s).
            FdKind::TreeSocket { ino: st.st_ino }
        } else if fmt == libc::S_IFSOCK {
            let bind_dir = crate::fdhooks::bind_dir(st.st_ino);
            let mut pending = Vec::new();
            let mut next = self.next_inflight;
            let mut register = |tmp: i32| -> i32 {
                // Keep the file open (the caller closes `tmp`) and number it.
                let kept = sys::move_high(syscall!(libc::SYS_fcntl, tmp, libc::F_DUPFD_CLOEXEC, 0).unwrap_or(-1) as i32);
                let number = next;
                next -= 1;
                pending.push((number, kept));
                number
            };
            let s = self.sockets.socket(fd, st.st_ino, bind_dir, &mut register);
            self.next_inflight = next;
            self.inflight.extend(pending);
            s.map(|s| FdKind::Socket(Box::new(s))).unwrap_or(FdKind::Other { link })
        } else if link.starts_with(b"anon_inode:") {
            fdobjs::anon(fd, &link, &info, no >= 0 && self.alone).unwrap_or(FdKind::Other { link })
        } else {
            FdKind::Other { link }
        };
        // A file in flight that another process of the tree holds as one with it: a file, or an
        // event, timer or signal fd, epoll or inotify instance (the tree makes it once).
        let comparable = fmt == libc::S_IFREG || matches!(kind, FdKind::EventFd { .. } | FdKind::TimerFd { .. } | FdKind::SignalFd { .. } | FdKind::Epoll { .. } | FdKind::Inotify { .. });
        let held_with = if no < 0 && !self.alone && comparable { crate::flightheld::holders(fd, &st) } else { Vec::new() };
        Some(FdState { fd: no, flags, pos, cloexec, kind, dup_of: None, mtime: st.st_mtime, id, locks: locks::capture(fd, &info, flags), owner: ckpt_kinds::fown::capture(fd, self.pid), held_with })
    }

    /// The recorded number of a file we described through our fd `fd`.
    fn number_of(&self, fd: i32) -> i32 {
        self.temps.iter().find(|t| t.1 == fd).map_or(fd, |t| t.0)
    }
}

/// Whether `fd` is a file in a thread's /proc directory of another process that shares this fd
/// table (clone with CLONE_FILES): what that process's runtime reads through /proc/thread-self
/// while it takes its own part in the checkpoint, open for an instant in the one table.
fn sharers_proc_file(fd: i32, facts: &Facts) -> bool {
    // Only a file of /proc can be: asked first with fstatfs, much cheaper than the readlink (a
    // walk of /proc) for a process of a tree that holds hundreds of sockets (zdtm session03).
    if facts.fs_type.is_ok_and(|t| t != sys::PROC_SUPER_MAGIC) {
        return false;
    }
    sys::readlink(&sys::cpath(&[b"/proc/thread-self/fd/", &sys::decimal(fd)])).is_ok_and(|link| sharers_proc_link(&link))
}

/// Whether `link` (an fd's) names a file in a thread's /proc directory of another process that
/// shares this fd table (see `sharers_proc_file`).
fn sharers_proc_link(link: &[u8]) -> bool {
    let Some(rest) = link.strip_prefix(b"/proc/") else { return false };
    let Some(slash) = rest.iter().position(|&b| b == b'/') else { return false };
    let Some(pid) = std::str::from_utf8(&rest[..slash]).ok().and_then(|p| p.parse::<i32>().ok()) else { return false };
    let me = sys::getpid();
    rest[slash..].starts_with(b"/task/") && pid != me && syscall!(libc::SYS_kcmp, me, pid, sys::KCMP_FILES, 0, 0) == Ok(0)
}

/// Whether `fd` is a sock_diag netlink socket that goes away within a moment: what the runtime
/// of another process sharing this fd table (clone with CLONE_FILES) opens for an instant to ask
/// the kernel about its sockets while it takes its own part in the checkpoint. A program's own
/// sock_diag socket stays, and is captured (after that moment, up to 200 ms).
fn sharers_diag_socket(fd: i32, facts: &Facts) -> bool {
    let opt = |name: i32| {
        let (mut v, mut len) = (0i32, 4u32);
        syscall!(libc::SYS_getsockopt, fd, libc::SOL_SOCKET, name, &mut v as *mut i32, &mut len as *mut u32).ok().map(|_| v)
    };
    let st = facts.st;
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK || facts.domain != Some(libc::AF_NETLINK) || opt(libc::SO_PROTOCOL) != Some(libc::NETLINK_SOCK_DIAG) {
        return false;
    }
    let ts = libc::timespec { tv_sec: 0, tv_nsec: 1_000_000 };
    for _ in 0..200 {
        let _ = syscall!(libc::SYS_nanosleep, &ts as *const libc::timespec, 0);
        if sys::fstat(fd).map_or(true, |now| now.st_ino != st.st_ino) {
            return true;
        }
    }
    false
}

/// Whether a process of the tree with a lower pid than ours (every one is stopped) holds the
/// file of `st` at one of its fds.
fn held_by_a_lower_pid(st: &libc::stat) -> bool {
    let me = sys::getpid();
    let Ok(names) = sys::list_dir(&sys::cpath(&[b"/proc"])) else { return false };
    let pids = names.iter().filter_map(|n| std::str::from_utf8(n).ok()?.parse::<i32>().ok()).filter(|&p| p > 1 && p < me);
    pids.into_iter().any(|pid| {
        let dir = [b"/proc/".as_slice(), &sys::decimal(pid), b"/fd/"].concat();
        let fds = sys::list_dir(&sys::cpath(&[&dir[..]])).unwrap_or_default();
        fds.iter().any(|n| {
            // SAFETY: an all-zero struct stat is a valid out-parameter.
            let mut other: libc::stat = unsafe { std::mem::zeroed() };
            let path = sys::cpath(&[&dir[..], &n[..]]);
            syscall!(libc::SYS_newfstatat, libc::AT_FDCWD, path.as_ptr(), &mut other as *mut libc::stat, 0).is_ok() && (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino)
        })
    })
}

/// Another name of the file `st` (unlinked at `old`) in the directory `old` was in.
fn other_name(old: &[u8], st: &libc::stat) -> Option<Vec<u8>> {
    let cut = old.iter().rposition(|&b| b == b'/')?;
    let dir = if cut == 0 { &b"/"[..] } else { &old[..cut] };
    let names = sys::list_dir_inodes(&sys::cpath(&[dir])).ok()?;
    let dfd = sys::open(&sys::cpath(&[dir]), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC, 0).ok()?;
    let found = names.into_iter().filter(|(ino, _)| *ino == st.st_ino).map(|(_, n)| n).find(|n| {
        sys::stat_at(dfd, &sys::cpath(&[n])).is_ok_and(|s| s.st_ino == st.st_ino && s.st_dev == st.st_dev)
    });
    sys::close(dfd);
    found.map(|n| [&old[..cut + 1], &n[..]].concat())
}

/// Terminals, once every fd is known: the program's own pseudo-terminal pairs, the controlling
/// terminal, the bytes not yet read in each own pair.
fn settle_ttys(out: &mut [FdState]) {
    let stat = sys::read_file(&sys::cpath(&[b"/proc/thread-self/stat"])).unwrap_or_default();
    let ctty = ckpt_kinds::tty::ctty_of_stat(&stat);
    let mut ttys: Vec<(i32, &mut ckpt_image::Tty)> = out
        .iter_mut()
        .filter(|f| f.fd >= 0)
        .filter_map(|f| match &mut f.kind {
            FdKind::Tty(t) => Some((f.fd, &mut **t)),
            _ => None,
        })
        .collect();
    if !ttys.is_empty() {
        ckpt_kinds::tty::settle(&mut ttys, ctty, crate::tree::is_member());
    }
}

/// fdinfo: "pos:\t<dec>\nflags:\t<octal>\n..."
pub fn parse_fdinfo(info: &[u8]) -> (i64, i32) {
    let mut pos = 0;
    let mut flags = 0;
    for line in info.split(|&b| b == b'\n') {
        let s = std::str::from_utf8(line).unwrap_or("");
        if let Some(v) = s.strip_prefix("pos:") {
            pos = v.trim().parse().unwrap_or(0);
        } else if let Some(v) = s.strip_prefix("flags:") {
            flags = i32::from_str_radix(v.trim(), 8).unwrap_or(0);
        }
    }
    (pos, flags)
}
