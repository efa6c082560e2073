//! Pipes and FIFOs: the same kernel object, reached through pipe(2) or through a name.
//!
//! Capture: the unread bytes, copied without consuming them: tee(2) from a second read end of
//! the same pipe (opened through /proc/self/fd, non-blocking) into a pipe of ours. The program's
//! pipe is not touched, so a writer or reader outside the process cannot see anything change.
//! The bytes are stored once per pipe, on its first fd; the capacity (F_GETPIPE_SZ) with each.
//! In a process tree, a pipe that a process with a lower pid also holds is left to it (the
//! lowest pid holding it stores its bytes; a restart of the set gives them to every holder:
//! ckpt_image::treesockets), so that a pipe P processes hold is read and stored once, not P times.
//!
//! Restore: one pipe per old pipe, refilled with the unread bytes and held by fds of ours; each
//! program fd is then a new open of it through /proc/self/fd with its own access mode and
//! status flags, so that two opens of one pipe with different flags (O_NONBLOCK on one, a
//! /proc/self/fd/N reopened O_RDWR) stay two open file descriptions; except the read end and
//! write end pipe(2) gave (no O_LARGEFILE, which every open sets and nothing clears), which
//! are pipe2's own, shared by every fd and process that holds them, as fork shares them. (fds that shared one
//! description, dups, are dups again: the fd table does that.) A FIFO is opened by its name
//! again (O_RDWR, which never blocks); made again with mkfifo if the name is gone (said at
//! CKPT_LOG=info); a FIFO whose name was removed at checkpoint time is made under a free name
//! in its directory and removed again. A name that is now something else than a FIFO stops
//! the restart. A FIFO that another process kept open across the restart still has its buffer:
//! the unread bytes are put back only into an empty one (said at CKPT_LOG=info).

use crate::{info, lossy, sys, Error, Result};
use ckpt_image::{FdKind, FdState};
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::RawFd;

/// Capture: the pipes and FIFOs seen so far in this checkpoint (their unread bytes are stored
/// once, on the first fd), and the pipes another process of the tree stores (sorted).
#[derive(Default)]
pub struct Seen(Vec<u64>, Vec<u64>);

impl Seen {
    /// A capture in which the unread bytes of the pipes (not FIFOs) `elsewhere` are stored by
    /// another process of the tree (a lower pid that holds them too).
    pub fn with_pipes_elsewhere(mut elsewhere: Vec<u64>) -> Seen {
        elsewhere.sort_unstable();
        Seen(Vec::new(), elsewhere)
    }

    /// A pipe end (`fd`, its number in decimal `name`, pipe inode `ino`).
    pub fn pipe(&mut self, fd: i32, name: &[u8], ino: u64) -> FdKind {
        if self.1.binary_search(&ino).is_ok() {
            let size = sys::fcntl(fd, libc::F_GETPIPE_SZ, 0).unwrap_or(65536) as u32;
            return FdKind::Pipe { ino, size, data: Vec::new() };
        }
        let (size, data) = self.contents(fd, name, ino);
        FdKind::Pipe { ino, size, data }
    }

    /// A FIFO opened by name (`path`, without " (deleted)").
    pub fn fifo(&mut self, fd: i32, name: &[u8], st: &libc::stat, path: Vec<u8>, deleted: bool) -> FdKind {
        let (size, data) = self.contents(fd, name, st.st_ino);
        FdKind::Fifo { path, ino: st.st_ino, mode: st.st_mode, deleted, size, data }
    }

    fn contents(&mut self, fd: i32, name: &[u8], ino: u64) -> (u32, Vec<u8>) {
        let size = sys::fcntl(fd, libc::F_GETPIPE_SZ, 0).unwrap_or(65536) as u32;
        if self.0.contains(&ino) {
            return (size, Vec::new());
        }
        self.0.push(ino);
        (size, unread(name, size as usize))
    }
}

/// The unread bytes of the pipe behind fd `name` (see the module comment).
fn unread(name: &[u8], cap: usize) -> Vec<u8> {
    let Ok(rd) = sys::open(&sys::proc_fd(name), libc::O_RDONLY | libc::O_NONBLOCK, 0) else {
        return Vec::new();
    };
    let Ok(tmp) = sys::pipe2(libc::O_CLOEXEC | libc::O_NONBLOCK) else {
        sys::close(rd);
        return Vec::new();
    };
    let _ = sys::fcntl(tmp[1], libc::F_SETPIPE_SZ, cap as i64);
    let n = sys::tee(rd, tmp[1], cap).unwrap_or(0);
    let mut data = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match sys::read(tmp[0], &mut data[got..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => got += k,
        }
    }
    data.truncate(got);
    sys::close(tmp[0]);
    sys::close(tmp[1]);
    sys::close(rd);
    data
}

fn cstr(b: &[u8]) -> Result<CString> {
    CString::new(b.to_vec()).map_err(|_| Error::Refused(format!("path {} contains a NUL byte", lossy(b))))
}

/// Restore: the pipes and FIFOs made so far, each held open by an fd of ours (O_RDWR for a
/// FIFO, both ends for a pipe) until every program fd of it is open.
#[derive(Default, Clone)]
pub struct Pipes {
    held: HashMap<u64, Vec<RawFd>>,
}

/// O_LARGEFILE as fdinfo shows it on x86-64 (the libc crate's is 0 there): every open(2) sets
/// it, pipe(2) does not.
const O_LARGEFILE: i32 = 0o100000;

impl Pipes {
    /// A new fd of ours for program fd `f` on pipe or FIFO `ino`; `all` is the whole fd table
    /// (the unread bytes are on the first entry of each pipe).
    pub fn open(&mut self, f: &FdState, all: &[FdState]) -> Result<RawFd> {
        let (ino, size) = match &f.kind {
            FdKind::Pipe { ino, size, .. } => (*ino, *size),
            FdKind::Fifo { ino, size, .. } => (*ino, *size),
            _ => return Err(Error::Refused(format!("fd {} is not a pipe", f.fd))),
        };
        let held = match self.held.entry(ino) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(make(f, ino, size, all)?),
        };
        // An end the program got from pipe(2) (no O_LARGEFILE; every other open of a pipe sets
        // it) is pipe2's end, in every process that holds it (they share that description).
        let end = match f.flags & libc::O_ACCMODE {
            libc::O_RDONLY => Some(0),
            libc::O_WRONLY => Some(1),
            _ => None,
        };
        if let (Some(e), 0, FdKind::Pipe { .. }) = (end, f.flags & O_LARGEFILE, &f.kind) {
            // SAFETY: held[e] is ours; the new fd shares its open file description.
            let fd = unsafe { libc::fcntl(held[e], libc::F_DUPFD_CLOEXEC, 0) };
            if fd < 0 {
                return Err(Error::last(format!("cannot take an end of the recreated pipe of fd {}", f.fd)));
            }
            return Ok(fd);
        }
        // (Not O_ASYNC: see ckpt_kinds::fown::arm.)
        let keep = libc::O_ACCMODE | libc::O_NONBLOCK | libc::O_APPEND | libc::O_DIRECT | libc::O_NOATIME;
        let proc = cstr(format!("/proc/self/fd/{}", held[0]).as_bytes())?;
        // SAFETY: proc is a valid C string. Never blocks: our fds are a reader and a writer.
        let fd = unsafe { libc::open(proc.as_ptr(), f.flags & keep | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(Error::last(format!("cannot open the recreated pipe of fd {}", f.fd)));
        }
        Ok(fd)
    }

    /// Make the pipe of program fd `f` now, if it is not made yet (a process tree's restart
    /// makes the pipes its processes share before it forks them: each inherits them).
    pub fn prepare(&mut self, f: &FdState, all: &[FdState]) -> Result<()> {
        if let FdKind::Pipe { ino, size, .. } = &f.kind {
            if !self.held.contains_key(ino) {
                let held = make(f, *ino, *size, all)?;
                self.held.insert(*ino, held);
            }
        }
        Ok(())
    }

    /// Whether the pipe `ino` is made already.
    pub fn has(&self, ino: u64) -> bool {
        self.held.contains_key(&ino)
    }

    /// Every fd is open: close ours.
    pub fn close_all(self) {
        for fd in self.held.into_values().flatten() {
            // SAFETY: these fds are ours.
            unsafe { libc::close(fd) };
        }
    }
}

/// A new pipe or FIFO for program fd `f` (pipe or FIFO `ino`, capacity `size`), holding the
/// unread bytes stored on the entries of `all` for it: fds of ours on it, the writable one last.
fn make(f: &FdState, ino: u64, size: u32, all: &[FdState]) -> Result<Vec<RawFd>> {
    let data: Vec<u8> = all
        .iter()
        .filter_map(|g| match &g.kind {
            FdKind::Pipe { ino: i, data, .. } | FdKind::Fifo { ino: i, data, .. } if *i == ino => Some(&data[..]),
            _ => None,
        })
        .collect::<Vec<_>>()
        .concat();
    let held = match &f.kind {
        FdKind::Fifo { path, mode, deleted, .. } => vec![fifo(path, *mode, *deleted, f.fd)?],
        _ => pipe()?.to_vec(),
    };
    let w = held[held.len() - 1];
    // SAFETY: w is ours. A failure leaves the default size, which is only smaller.
    unsafe { libc::fcntl(w, libc::F_SETPIPE_SZ, size.max(data.len() as u32) as libc::c_int) };
    let mut queued: libc::c_int = 0;
    // SAFETY: FIONREAD into an int.
    unsafe { libc::ioctl(w, libc::FIONREAD, &mut queued) };
    if queued > 0 {
        // A FIFO another process kept open across the restart: its buffer is still there, with
        // the bytes the image holds unless that process read them.
        info(&format!("FIFO of fd {} still holds {queued} bytes: the {} bytes of the image are not put back", f.fd, data.len()));
    } else if let Err(e) = refill(w, &data) {
        for fd in held {
            // SAFETY: closing fds of ours.
            unsafe { libc::close(fd) };
        }
        return Err(e);
    }
    Ok(held)
}

fn pipe() -> Result<[RawFd; 2]> {
    let mut p = [0; 2];
    // SAFETY: p has room for two fds.
    if unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(Error::last("pipe2"));
    }
    Ok(p)
}

/// Put `data` into a new pipe (it has room: its size was set to hold it).
fn refill(fd: RawFd, data: &[u8]) -> Result<()> {
    let mut rest = data;
    while !rest.is_empty() {
        // SAFETY: rest is a valid buffer.
        let n = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
        if n <= 0 {
            return Err(Error::last("cannot refill a pipe"));
        }
        rest = &rest[n as usize..];
    }
    Ok(())
}

/// An O_RDWR fd of ours on the FIFO `path` of program fd `fd_no` (see the module comment).
fn fifo(path: &[u8], mode: u32, deleted: bool, fd_no: i32) -> Result<RawFd> {
    let open = |p: &CString| {
        // SAFETY: p is a valid C string.
        unsafe { libc::open(p.as_ptr(), libc::O_RDWR | libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC) }
    };
    let mkfifo = |p: &CString| {
        // SAFETY: p is a valid C string.
        unsafe { libc::mkfifo(p.as_ptr(), mode & 0o777) == 0 }
    };
    if deleted {
        let dir = match path.iter().rposition(|&b| b == b'/') {
            Some(i) => &path[..i.max(1)],
            None => b".",
        };
        for n in 0..100 {
            let p = cstr(&[dir, format!("/.ckpt-fifo-{}-{n}", std::process::id()).as_bytes()].concat())?;
            if !mkfifo(&p) {
                if std::io::Error::last_os_error().raw_os_error() == Some(libc::EEXIST) {
                    continue;
                }
                break;
            }
            let fd = open(&p);
            let e = Error::last(format!("cannot recreate the deleted FIFO {} (fd {fd_no})", lossy(path)));
            // SAFETY: removing the FIFO we just made.
            unsafe { libc::unlink(p.as_ptr()) };
            return if fd < 0 { Err(e) } else { Ok(fd) };
        }
        return Err(Error::last(format!("cannot recreate the deleted FIFO {} (fd {fd_no})", lossy(path))));
    }
    let p = cstr(path)?;
    let mut fd = open(&p);
    if fd < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOENT) && mkfifo(&p) {
        info(&format!("FIFO {} (fd {fd_no}) was gone: made again", lossy(path)));
        fd = open(&p);
    }
    if fd < 0 {
        return Err(Error::last(format!("FIFO {} (fd {fd_no}) needed by the image cannot be reopened", lossy(path))));
    }
    // SAFETY: an all-zero stat is a valid out-parameter; fd is ours.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstat(fd, &mut st) } < 0 || st.st_mode & libc::S_IFMT != libc::S_IFIFO {
        // SAFETY: fd is ours.
        unsafe { libc::close(fd) };
        return Err(Error::Refused(format!("{} (fd {fd_no}) is no longer a FIFO", lossy(path))));
    }
    Ok(fd)
}
