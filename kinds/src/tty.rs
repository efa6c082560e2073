//! Terminals. A program's terminals are of two sorts:
//! - its own pseudo-terminals (it opened /dev/ptmx and holds the master): made again as a new
//!   pair at the same index if it is free (so a name the program kept from ptsname still
//!   works), with the termios, window size, packet mode and lock state they had, and the bytes
//!   neither side had read yet (captured by reading them and writing them back at once, with
//!   echo and output processing off, since a terminal cannot be peeked; only when the program
//!   holds both ends). If it was the program's controlling terminal it becomes ckpt-restart's
//!   (which must then lead a session without one: as from a batch system or `setsid`).
//! - in a process tree, pairs whose master one process holds and whose slave another (mpirun's
//!   pseudo-terminals for its ranks' output): made once by the tree's restart before it forks
//!   the processes, which inherit them (`tree_pairs`); at checkpoint time the master's holder
//!   drains and refills their unread bytes through the slave opened by its name, since every
//!   process of the tree is stopped then.
//! - terminals from outside (the one it was started from; /dev/tty): after a restart they are
//!   the terminal ckpt-restart runs in (its controlling terminal), with the termios the program
//!   had set (raw mode, no echo: what full-screen programs set) and its own window size; the
//!   program then gets SIGWINCH so that it redraws. The same for stdin, stdout and stderr when
//!   they were a terminal and ckpt-restart's are one.
//! - a terminal device the program opened by a name that is not a pseudo-terminal (a console, a
//!   virtual terminal, a serial line): opened again at that name when the same device is still
//!   there, with the termios it had. If it was the controlling terminal (a session leader's open
//!   makes it so) it becomes ckpt-restart's again, unless ckpt-restart has a terminal of its own:
//!   then, as for any controlling terminal from outside, the program gets that one.

use crate::{check, close, info, lossy, sys, warn, Error, Result};
use ckpt_image::{FdKind, FdState, Tty, TtyKind};
use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::RawFd;

const TERMIOS_LEN: usize = 36; // the kernel's struct termios
const ICANON: u32 = 0o2;
const ISIG: u32 = 0o1;
const ECHO: u32 = 0o10;
const ECHONL: u32 = 0o100;
const IEXTEN: u32 = 0o100000;
const OPOST: u32 = 0o1;
const VTIME: usize = 5;
const VMIN: usize = 6;

fn major(dev: u64) -> u64 {
    ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff)
}

fn minor(dev: u64) -> u64 {
    ((dev >> 12) & 0xffff_ff00) | (dev & 0xff)
}

/// The index of a pseudo-terminal slave device (None: not a /dev/pts device).
pub fn pts_index(rdev: u64) -> Option<u32> {
    let m = major(rdev);
    (136..144).contains(&m).then(|| ((m - 136) * 256 + minor(rdev)) as u32)
}

/// The termios of `fd` (None: not a terminal).
fn termios(fd: i32) -> Option<Vec<u8>> {
    let mut t = [0u8; 64];
    sys::ioctl_ptr(fd, libc::TCGETS, t.as_mut_ptr()).ok()?;
    Some(t[..TERMIOS_LEN].to_vec())
}

fn set_termios(fd: i32, t: &[u8]) -> bool {
    let mut b = [0u8; 64];
    b[..t.len().min(64)].copy_from_slice(&t[..t.len().min(64)]);
    sys::ioctl_ptr(fd, libc::TCSETS, b.as_mut_ptr()).is_ok()
}

fn flag(t: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes([t[off], t[off + 1], t[off + 2], t[off + 3]])
}

fn with_flags(t: &[u8], oflag_clear: u32, lflag_clear: u32) -> Vec<u8> {
    let mut n = t.to_vec();
    let o = flag(t, 4) & !oflag_clear;
    let l = flag(t, 12) & !lflag_clear;
    n[4..8].copy_from_slice(&o.to_ne_bytes());
    n[12..16].copy_from_slice(&l.to_ne_bytes());
    n
}

/// Whether `fd` is a terminal.
pub fn is_tty(fd: i32) -> bool {
    termios(fd).is_some()
}

/// Capture one terminal fd (`rdev` its device, `link` its /proc/self/fd link). Whether a
/// /dev/pts slave belongs to one of the program's own pairs, whether it is the controlling
/// terminal and the unread bytes are settled by `settle` once every fd is known.
pub fn capture(fd: i32, rdev: u64, mode: u32, uid: u32, gid: u32, link: Vec<u8>) -> Tty {
    let mut ws = [0u16; 4];
    let _ = sys::ioctl_ptr(fd, libc::TIOCGWINSZ, ws.as_mut_ptr());
    let mut t = Tty { path: link, rdev, termios: termios(fd).unwrap_or_default(), winsize: ws, mode: mode & 0o7777, uid, gid, ..Default::default() };
    if major(rdev) == 5 && minor(rdev) == 0 {
        t.kind = TtyKind::Ctty;
    } else if major(rdev) == 5 && minor(rdev) == 2 {
        t.kind = TtyKind::PtyMaster;
        t.index = sys::ioctl_int(fd, libc::TIOCGPTN).unwrap_or(0) as u32;
        t.packet = sys::ioctl_int(fd, 0x8004_5438 /* TIOCGPKT */).unwrap_or(0) != 0;
        t.locked = sys::ioctl_int(fd, 0x8004_5439 /* TIOCGPTLCK */).unwrap_or(0) != 0;
    } else {
        t.kind = TtyKind::Outside;
        t.index = pts_index(rdev).unwrap_or(0);
        t.foreign = pts_index(rdev).is_some() && !in_own_devpts(fd);
    }
    t
}

/// Whether the pseudo-terminal slave `fd` is of the devpts instance on /dev/pts (the
/// namespace's own, or the host's without a namespace).
fn in_own_devpts(fd: i32) -> bool {
    // SAFETY: all-zero stats are valid out-parameters; fstat and stat on our fd and a C string.
    unsafe {
        let (mut a, mut b): (libc::stat, libc::stat) = (std::mem::zeroed(), std::mem::zeroed());
        libc::fstat(fd, &mut a) != 0 || libc::stat(c"/dev/pts".as_ptr(), &mut b) != 0 || a.st_dev == b.st_dev
    }
}

/// Whether terminal fd `fd` (`t`) is the calling process's controlling terminal (`ctty_dev`:
/// its device from /proc/self/stat). A pseudo-terminal is asked (TIOCGSID: on a slave it
/// answers only to the session it is the controlling terminal of, on a master it names the
/// slave's session), since the same device number may be a pair of the program's own devpts
/// instance and a terminal of the host's.
fn is_ctty(fd: i32, t: &Tty, ctty_dev: u64) -> bool {
    if ctty_dev == 0 {
        return false;
    }
    let pts = t.kind == TtyKind::PtyMaster || pts_index(t.rdev).is_some();
    if !pts {
        return major(t.rdev) == major(ctty_dev) && minor(t.rdev) == minor(ctty_dev);
    }
    let mut sid: i32 = 0;
    if sys::ioctl_ptr(fd, libc::TIOCGSID, &mut sid).is_err() {
        return false;
    }
    // SAFETY: getsid of ourselves.
    t.kind != TtyKind::PtyMaster || sid == unsafe { libc::getsid(0) }
}

/// Once every fd is captured (`ttys`: (fd, entry)): slaves of the program's own masters are
/// `PtySlave`; the controlling terminal (`ctty_dev`, from /proc/self/stat) is marked; the
/// unread bytes of each own pair are read and written back (see the module comment). In a
/// process tree's checkpoint (`tree`: every process of it is stopped) also those of a pair
/// whose slave another process holds, through the slave opened by its name for the moment.
pub fn settle(ttys: &mut [(i32, &mut Tty)], ctty_dev: u64, tree: bool) {
    let masters: Vec<(u32, i32)> = ttys.iter().filter(|t| t.1.kind == TtyKind::PtyMaster).map(|t| (t.1.index, t.0)).collect();
    for (fd, t) in ttys.iter_mut() {
        t.ctty = is_ctty(*fd, t, ctty_dev);
        if t.kind == TtyKind::Outside && !t.foreign && pts_index(t.rdev).is_some_and(|i| masters.iter().any(|m| m.0 == i)) {
            t.kind = TtyKind::PtySlave;
        }
    }
    // In a tree's checkpoint every process that holds an end of a pair settles it at once
    // (DMTCP's pty2: a parent holds the master, its child the master and the slave): one at a
    // time drains it, and each records the termios while no other has them changed for its
    // drain (a child recorded the parent's raw mode, or restored it as its own after the
    // parent's drain, and the program found its terminal's settings changed).
    let mut indices: Vec<u32> = ttys.iter().filter_map(|t| pair_index(t.1)).collect();
    indices.sort_unstable();
    indices.dedup();
    for index in indices {
        let lock = tree.then(|| PairLock::take(index)).flatten();
        for (fd, t) in ttys.iter_mut().filter(|t| pair_index(t.1) == Some(index)) {
            if let (Some(_), Some(now)) = (&lock, termios(*fd)) {
                t.termios = now;
            }
        }
        let Some(&(_, mfd)) = masters.iter().find(|m| m.0 == index) else { continue };
        let held = ttys.iter().find(|t| t.1.kind == TtyKind::PtySlave && t.1.index == index).map(|t| t.0);
        let Some(sfd) = held.or(lock.as_ref().map(|l| l.0)) else { continue };
        let (input, output) = drain(mfd, sfd);
        refill(mfd, sfd, &input, &output);
        if let Some(m) = ttys.iter_mut().find(|t| t.0 == mfd) {
            m.1.input = input;
            m.1.output = output;
        }
    }
}

/// The index of the program's own pseudo-terminal pair `t` is an end of (None: not a
/// pseudo-terminal, or a terminal from outside).
pub fn pair_index(t: &Tty) -> Option<u32> {
    match t.kind {
        TtyKind::PtyMaster | TtyKind::PtySlave => Some(t.index),
        TtyKind::Outside if !t.foreign => pts_index(t.rdev),
        _ => None,
    }
}

/// A pair's slave opened by its name for the moment (an open file of our own: flock excludes
/// the other processes' opens), locked; closing it unlocks.
struct PairLock(i32);

impl PairLock {
    fn take(index: u32) -> Option<PairLock> {
        let fd = sys::open(&slave_path(index), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC, 0).ok()?;
        // (A lock the program holds on its terminal: go on without ours after 2 s.)
        for _ in 0..2000 {
            if sys::flock(fd, libc::LOCK_EX | libc::LOCK_NB).is_ok() {
                break;
            }
            sys::sleep_ms(1);
        }
        Some(PairLock(fd))
    }
}

impl Drop for PairLock {
    fn drop(&mut self) {
        sys::close(self.0);
    }
}

/// Read what the slave has not read (in non-canonical mode, which makes a partial line
/// readable too) and what the master has not read (packet mode off).
fn drain(mfd: i32, sfd: i32) -> (Vec<u8>, Vec<u8>) {
    let Some(t) = termios(sfd) else { return (Vec::new(), Vec::new()) };
    let mut raw = with_flags(&t, 0, ICANON);
    raw[17 + VMIN] = 0;
    raw[17 + VTIME] = 0;
    let mut input = Vec::new();
    if set_termios(sfd, &raw) {
        read_avail(sfd, &mut input, usize::MAX);
    }
    let packet = sys::ioctl_int(mfd, 0x8004_5438).unwrap_or(0);
    if packet != 0 {
        let mut zero: i32 = 0;
        let _ = sys::ioctl_ptr(mfd, libc::TIOCPKT, &mut zero);
    }
    // Until the read finds nothing, not FIONREAD's count: bytes the slave wrote may still wait
    // in the master's flip buffer (flushed by a worker, not counted), and a read that finds
    // nothing flushes it first.
    let mut output = Vec::new();
    read_avail(mfd, &mut output, usize::MAX);
    if packet != 0 {
        let mut one: i32 = 1;
        let _ = sys::ioctl_ptr(mfd, libc::TIOCPKT, &mut one);
    }
    set_termios(sfd, &t);
    (input, output)
}

/// Read up to `limit` bytes that are there, without waiting.
fn read_avail(fd: i32, out: &mut Vec<u8>, limit: usize) {
    let fl = sys::fcntl(fd, libc::F_GETFL, 0).unwrap_or(0);
    let _ = sys::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK as i64);
    let mut buf = [0u8; 4096];
    while out.len() < limit {
        let want = (limit - out.len()).min(buf.len());
        match sys::read(fd, &mut buf[..want]) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    let _ = sys::fcntl(fd, libc::F_SETFL, fl);
}

/// Put bytes back in a pair: `output` written to the slave with output processing off (it
/// was processed already), `input` written to the master with echo, signals and line editing
/// extensions off (echoed and acted on already); then the slave's termios as it was.
fn refill(mfd: i32, sfd: i32, input: &[u8], output: &[u8]) {
    let Some(t) = termios(sfd) else { return };
    if !output.is_empty() && set_termios(sfd, &with_flags(&t, OPOST, 0)) {
        write_all(sfd, output);
    }
    if !input.is_empty() && set_termios(sfd, &with_flags(&t, 0, ECHO | ECHONL | ISIG | IEXTEN)) {
        write_all(mfd, input);
    }
    set_termios(sfd, &t);
}

fn write_all(fd: i32, mut b: &[u8]) {
    while !b.is_empty() {
        match sys::write(fd, b) {
            Ok(0) | Err(_) => return,
            Ok(n) => b = &b[n..],
        }
    }
}

// ---- restore ----

/// The terminals of a restart: the program's own pseudo-terminal pairs (made once) and the
/// terminal ckpt-restart runs in.
pub struct Terminals {
    /// Old index -> (our master fd, the new index).
    pairs: HashMap<u32, (RawFd, u32)>,
    /// Pairs of a process tree whose slave this process holds (old index -> new index): its
    /// master is another process's (see `tree_pairs`).
    linked: HashMap<u32, u32>,
    /// The terminal outside terminals become: ckpt-restart's controlling terminal.
    session: Option<CString>,
    /// Our dup of that terminal when `session` reopens it through /proc/self/fd.
    session_fd: Option<RawFd>,
    ignore: bool,
    top: RawFd,
    /// Whether the program should get SIGWINCH once it runs.
    pub winch: bool,
}

/// The controlling terminal's device (st_rdev layout; 0: none) from /proc/self/stat's text.
pub fn ctty_of_stat(stat: &[u8]) -> u64 {
    // Fields after the command name (which may hold spaces): state ppid pgrp session tty_nr.
    let rest = stat.iter().rposition(|&b| b == b')').map_or(&[][..], |i| &stat[i + 1..]);
    let dev = rest
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
        .nth(4)
        .and_then(|v| std::str::from_utf8(v).ok()?.parse::<i64>().ok())
        .unwrap_or(0) as u64;
    // The kernel's new_encode_dev -> the layout of st_rdev.
    let (ma, mi) = ((dev >> 8) & 0xfff, (dev & 0xff) | ((dev >> 12) & 0xfff00));
    (ma << 8) | (mi & 0xff) | ((mi & !0xff) << 12)
}

fn ctty_dev() -> u64 {
    ctty_of_stat(&std::fs::read("/proc/self/stat").unwrap_or_default())
}

/// The path of ckpt-restart's controlling terminal (one of our stdio fds names it, else
/// /dev/tty), if it has one. Its /dev/pts name in the namespace may be another terminal (the
/// namespace's devpts instance covers the host's): then it is reopened through a dup of ours
/// parked at `top` or above (`/proc/self/fd/N`: the same terminal), returned to be closed with
/// the pairs.
fn session_terminal(top: RawFd) -> (Option<CString>, Option<RawFd>) {
    let dev = ctty_dev();
    if dev == 0 {
        return (None, None);
    }
    for fd in 0..3 {
        // SAFETY: an all-zero stat is a valid out-parameter.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat on our own fd.
        if unsafe { libc::fstat(fd, &mut st) } != 0 || st.st_mode & libc::S_IFMT != libc::S_IFCHR || st.st_rdev != dev {
            continue;
        }
        let Ok(p) = std::fs::read_link(format!("/proc/self/fd/{fd}")) else { continue };
        let Ok(c) = CString::new(std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()).to_vec()) else { continue };
        // SAFETY: an all-zero stat is a valid out-parameter; c is a valid C string.
        let mut named: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::stat(c.as_ptr(), &mut named) } == 0 && named.st_dev == st.st_dev && named.st_ino == st.st_ino {
            return (Some(c), None);
        }
        // SAFETY: fd is ours.
        let parked = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, top) };
        if parked >= 0 {
            return (Some(CString::new(format!("/proc/self/fd/{parked}")).expect("no NUL")), Some(parked));
        }
    }
    (Some(c"/dev/tty".to_owned()), None)
}

/// The path of a terminal device from outside that is no pseudo-terminal (a console, a virtual
/// terminal, a serial line, reached through a device node the program opened by name) when the
/// same device is still at that path: it is opened there again rather than replaced by
/// ckpt-restart's terminal (for the controlling terminal: when ckpt-restart has none). None for
/// /dev/pts devices.
fn same_device(t: &Tty) -> Option<CString> {
    if pts_index(t.rdev).is_some() || t.path.first() != Some(&b'/') || t.path.ends_with(b" (deleted)") {
        return None;
    }
    let p = CString::new(t.path.clone()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: p is a valid C string and st has room for a struct stat.
    let st = unsafe { (libc::stat(p.as_ptr(), st.as_mut_ptr()) == 0).then(|| st.assume_init())? };
    (st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == t.rdev).then_some(p)
}

fn open_path(p: &CString, flags: i32) -> Result<RawFd> {
    let f = flags & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_ASYNC) | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: p is a valid C string.
    check(unsafe { libc::open(p.as_ptr(), f) }, || format!("cannot open {}", p.to_string_lossy()))
}

/// Pseudo-terminal pairs of a process tree whose master one process holds and whose slave
/// another (mpirun's pseudo-terminals for its ranks' output, a terminal emulator and its shell):
/// old index -> (master fd, new index). Made by the tree's restart before it creates the
/// processes, which inherit them (`Terminals::make` takes each one's part).
pub type TreePairs = HashMap<u32, (RawFd, u32)>;

/// Whether `x` is the slave of pair `index`: the program's own, or a /dev/pts device it
/// holds without the master (the master is another process's).
fn is_slave_of(x: &Tty, index: u32) -> bool {
    match x.kind {
        TtyKind::PtySlave => x.index == index,
        TtyKind::Outside => !x.foreign && pts_index(x.rdev) == Some(index),
        _ => false,
    }
}

/// Make the pairs of a process tree (`procs`: each process's fds) whose master is held by one
/// process and whose slave by another, with their settings and unread bytes (kept on the
/// master's entry), each master parked at `top` or above; also a pair whose slave no process
/// holds when it is the controlling terminal of a session of the tree (`cttys`: their old
/// indices), which the session's leader takes again. Not anyone's controlling terminal here.
pub fn tree_pairs(procs: &[&[FdState]], top: RawFd, cttys: &[u32]) -> Result<TreePairs> {
    let ttys = |k: usize| procs[k].iter().filter(|f| f.dup_of.is_none()).filter_map(|f| if let FdKind::Tty(t) = &f.kind { Some(t) } else { None });
    let mut made = Terminals { pairs: HashMap::new(), linked: HashMap::new(), session: None, session_fd: None, ignore: false, top, winch: false };
    for k in 0..procs.len() {
        for t in ttys(k).filter(|t| t.kind == TtyKind::PtyMaster) {
            let elsewhere = (0..procs.len()).filter(|&j| j != k).find(|&j| ttys(j).any(|x| x.kind == TtyKind::Outside && is_slave_of(x, t.index)));
            let Some(j) = elsewhere.or(cttys.contains(&t.index).then_some(k)) else { continue };
            if made.pairs.contains_key(&t.index) {
                continue;
            }
            let master = Tty { ctty: false, ..(**t).clone() };
            if let Err(e) = made.pair(&master, procs[j]) {
                made.close_all();
                return Err(e);
            }
        }
    }
    Ok(std::mem::take(&mut made.pairs))
}

/// Whether an fd's link (`/dev/pts/N (deleted)`) is the slave of a pseudo-terminal whose master
/// was closed: hung up (reads give end of file, writes EIO), its devpts node gone.
pub fn is_hung_up_slave(link: &[u8]) -> bool {
    link.strip_prefix(b"/dev/pts/").and_then(|r| r.strip_suffix(b" (deleted)")).is_some_and(|n| !n.is_empty() && n.iter().all(u8::is_ascii_digit))
}

/// A hung-up pseudo-terminal slave as `is_hung_up_slave` names one, opened with `flags`: the
/// slave of a new pair whose master is closed at once (what the program held; its old index is
/// not kept, and nothing can be read or written through it any more).
pub fn hung_up_slave(flags: i32) -> Result<RawFd> {
    let m = open_path(&c"/dev/ptmx".to_owned(), libc::O_RDWR)?;
    let mut zero: i32 = 0;
    let _ = sys::ioctl_ptr(m, libc::TIOCSPTLCK, &mut zero);
    let idx = sys::ioctl_int(m, libc::TIOCGPTN).unwrap_or(-1);
    let s = if idx >= 0 { open_path(&slave_path(idx as u32), flags) } else { Err(Error::Refused("cannot make a pseudo-terminal".into())) };
    close(m);
    s
}

fn slave_path(index: u32) -> CString {
    CString::new(format!("/dev/pts/{index}")).expect("no NUL")
}

impl Terminals {
    /// Make the program's own pseudo-terminal pairs of `fds` (those of `tree`, a process tree's
    /// pairs made already, are taken from it); find ckpt-restart's terminal.
    pub fn make(fds: &[FdState], top: RawFd, ignore: bool, tree: &TreePairs) -> Result<Terminals> {
        let (session, session_fd) = session_terminal(top);
        let mut me = Terminals { pairs: HashMap::new(), linked: HashMap::new(), session, session_fd, ignore, top, winch: false };
        me.link(fds, tree)?;
        for f in fds.iter().filter(|f| f.dup_of.is_none()) {
            if let FdKind::Tty(t) = &f.kind {
                if t.kind == TtyKind::PtyMaster && !me.pairs.contains_key(&t.index) {
                    let made = me.pair(t, fds);
                    if let Err(e) = made {
                        me.close_all();
                        return Err(e);
                    }
                }
            }
        }
        Ok(me)
    }

    fn park(&self, fd: RawFd) -> Result<RawFd> {
        // SAFETY: fd is ours.
        let p = check(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, self.top) }, || "fcntl".into());
        close(fd);
        p
    }

    /// One pair: at the old index if it is free (lower free indices are taken for the moment).
    fn pair(&mut self, t: &Tty, fds: &[FdState]) -> Result<()> {
        let mut extra = Vec::new();
        let mut got = None;
        for _ in 0..=t.index.min(512) {
            let m = open_path(&c"/dev/ptmx".to_owned(), libc::O_RDWR)?;
            let idx = sys::ioctl_int(m, libc::TIOCGPTN).unwrap_or(u32::MAX as i32) as u32;
            if idx < t.index {
                extra.push(m);
                continue;
            }
            got = Some((m, idx));
            break;
        }
        for m in extra {
            close(m);
        }
        let (m, idx) = got.ok_or_else(|| Error::Refused(format!("cannot make the pseudo-terminal {} again", lossy(&t.path))))?;
        let m = self.park(m)?;
        if idx != t.index {
            info(&format!("pseudo-terminal /dev/pts/{} is /dev/pts/{idx} now (the old index is taken)", t.index));
        }
        let mut zero: i32 = 0;
        let _ = sys::ioctl_ptr(m, libc::TIOCSPTLCK, &mut zero);
        let s = open_path(&slave_path(idx), libc::O_RDWR)?;
        let slave = fds.iter().find_map(|f| match &f.kind {
            FdKind::Tty(x) if is_slave_of(x, t.index) => Some(x.clone()),
            _ => None,
        });
        // A pair has one termios (the master's ioctls act on the slave's). The master's entry
        // holds it as it was before `settle` drained the pair; in a tree the slave's holder may
        // have captured its fd while the master's holder drained (non-canonical, VMIN 0), so the
        // slave's entry is only the fallback.
        let termios = Some(&t.termios).filter(|x| !x.is_empty()).or(slave.as_ref().map(|x| &x.termios)).filter(|x| !x.is_empty());
        let termios = termios.cloned().unwrap_or_default();
        if !termios.is_empty() {
            set_termios(s, &termios);
        }
        let mut ws = t.winsize;
        let _ = sys::ioctl_ptr(m, libc::TIOCSWINSZ, ws.as_mut_ptr());
        refill(m, s, &t.input, &t.output);
        if let Some(x) = &slave {
            // SAFETY: plain calls on our fd; best effort (only root can give it away).
            unsafe {
                libc::fchmod(s, x.mode);
                libc::fchown(s, x.uid, x.gid);
            }
        }
        if t.ctty {
            self.make_ctty(s, slave_path(idx));
        }
        close(s);
        if t.packet {
            let mut one: i32 = 1;
            let _ = sys::ioctl_ptr(m, libc::TIOCPKT, &mut one);
        }
        if t.locked {
            let mut one: i32 = 1;
            let _ = sys::ioctl_ptr(m, libc::TIOCSPTLCK, &mut one);
        }
        self.pairs.insert(t.index, (m, idx));
        Ok(())
    }

    /// Make the terminal `s` (at `path`: a slave of the program's own pair, or a device node it
    /// opened by name) our controlling terminal (we must lead a session without one).
    fn make_ctty(&mut self, s: RawFd, path: CString) {
        // SAFETY: plain process and ioctl calls.
        unsafe {
            if libc::getsid(0) != libc::getpid() {
                libc::setsid();
            }
            if libc::ioctl(s, libc::TIOCSCTTY, 0) == 0 {
                self.session = Some(path);
                return;
            }
        }
        warn(&format!(
            "the program's controlling terminal was {}; it cannot be ckpt-restart's ({}): /dev/tty is not that terminal after the restart",
            path.to_string_lossy(),
            std::io::Error::last_os_error()
        ));
    }

    /// A new fd of ours for the terminal entry `f`.
    pub fn open(&mut self, f: &FdState, t: &Tty) -> Result<RawFd> {
        match t.kind {
            TtyKind::PtyMaster => {
                let (m, _) = self.pairs[&t.index];
                // SAFETY: m is ours.
                check(unsafe { libc::fcntl(m, libc::F_DUPFD_CLOEXEC, 0) }, || "fcntl".into())
            }
            TtyKind::PtySlave => {
                let idx = self.pairs.get(&t.index).map(|p| p.1).or_else(|| self.linked.get(&t.index).copied()).unwrap_or(t.index);
                open_path(&slave_path(idx), f.flags)
            }
            TtyKind::Outside if self.linked_index(t).is_some() => open_path(&slave_path(self.linked_index(t).unwrap_or(t.index)), f.flags),
            TtyKind::Ctty => match open_path(&c"/dev/tty".to_owned(), f.flags) {
                Ok(fd) => {
                    self.adopt(fd, t);
                    Ok(fd)
                }
                Err(e) => self.missing(f, t, &format!("ckpt-restart has no controlling terminal ({e})")),
            },
            // A controlling terminal from outside becomes ckpt-restart's when it has one; else
            // a device node still there is that terminal again, and the controlling one again.
            TtyKind::Outside => match (!t.ctty || self.session.is_none()).then(|| same_device(t)).flatten() {
                Some(p) => {
                    let fd = open_path(&p, f.flags)?;
                    if !t.termios.is_empty() && termios(fd).as_deref() != Some(&t.termios[..]) {
                        set_termios(fd, &t.termios);
                    }
                    if t.ctty {
                        self.make_ctty(fd, p);
                    }
                    Ok(fd)
                }
                None => match self.session.clone() {
                    Some(p) => {
                        let fd = open_path(&p, f.flags)?;
                        self.adopt(fd, t);
                        Ok(fd)
                    }
                    None => self.missing(f, t, "ckpt-restart has no terminal to give the program instead (run it from a terminal)"),
                },
            },
        }
    }

    fn missing(&self, f: &FdState, t: &Tty, why: &str) -> Result<RawFd> {
        let what = format!("fd {} was the terminal {} and {why}", f.fd, lossy(&t.path));
        if !self.ignore {
            return Err(Error::Refused(format!("{what} (--ignore-missing-files gives the program /dev/null instead)")));
        }
        warn(&format!("{what}; the program gets /dev/null"));
        open_path(&c"/dev/null".to_owned(), libc::O_RDWR)
    }

    /// The terminal `fd` (ours now) stands for the program's terminal `t`: its termios as the
    /// program set it (raw mode...), its own window size; the program is told (SIGWINCH).
    fn adopt(&mut self, fd: RawFd, t: &Tty) {
        self.winch = true;
        if t.termios.is_empty() || termios(fd).as_deref() == Some(&t.termios[..]) {
            return;
        }
        // Only in the foreground: a background process changing a terminal would be stopped.
        // SAFETY: plain calls on our fd.
        let fg = unsafe { libc::tcgetpgrp(fd) == libc::getpgrp() };
        if !fg {
            info("the terminal's settings are not restored: ckpt-restart is not in its foreground");
            return;
        }
        set_termios(fd, &t.termios);
    }

    /// stdin, stdout and stderr stay ckpt-restart's; where the program's were a terminal and
    /// ours is one too, it gets the program's termios.
    pub fn stdio(&mut self, fds: &[FdState]) {
        for f in fds.iter().filter(|f| (0..3).contains(&f.fd)) {
            let FdKind::Tty(t) = &f.kind else { continue };
            if self.linked_index(t).is_some() {
                // The tree's own pair (made again with its settings), not a terminal from outside.
                continue;
            }
            if is_tty(f.fd) {
                self.adopt(f.fd, t);
                return;
            }
        }
    }

    /// Take this process's part of the tree's pairs: a dup of the master where it holds it, the
    /// new index where it holds the slave.
    fn link(&mut self, fds: &[FdState], tree: &TreePairs) -> Result<()> {
        for f in fds.iter().filter(|f| f.dup_of.is_none()) {
            let FdKind::Tty(t) = &f.kind else { continue };
            if t.kind == TtyKind::PtyMaster {
                if let Some(&(m, idx)) = tree.get(&t.index) {
                    if !self.pairs.contains_key(&t.index) {
                        // SAFETY: m is the tree's master, inherited by this process.
                        let mine = check(unsafe { libc::fcntl(m, libc::F_DUPFD_CLOEXEC, self.top) }, || "fcntl".into())?;
                        self.pairs.insert(t.index, (mine, idx));
                    }
                }
            } else if let Some(&(_, idx)) = tree.get(&t.index).filter(|_| is_slave_of(t, t.index)) {
                self.linked.insert(t.index, idx);
            }
        }
        Ok(())
    }

    /// The new index of `t` when it is the slave of a tree's pair whose master another process holds.
    fn linked_index(&self, t: &Tty) -> Option<u32> {
        match t.kind {
            TtyKind::Outside if !t.foreign => self.linked.get(&pts_index(t.rdev)?).copied(),
            _ => None,
        }
    }

    /// Let go of our fds of the pairs (the program's own fds keep them).
    pub fn close_all(&mut self) {
        for (m, _) in self.pairs.values() {
            close(*m);
        }
        self.pairs.clear();
        if let Some(fd) = self.session_fd.take() {
            close(fd);
        }
    }

    /// Every fd we hold (not to be closed before `close_all`).
    pub fn held(&self) -> Vec<RawFd> {
        self.pairs.values().map(|p| p.0).chain(self.session_fd).collect()
    }
}
