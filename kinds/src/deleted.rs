//! Inodes the program holds open but that have no name any more: files deleted while open,
//! files never linked (O_TMPFILE, tmpfile(), memfd), removed directories, deleted device nodes.
//!
//! Capture: what the inode is (type, mode, size, device), from fstat with the threads stopped.
//! A regular file's data is not read then: the image writer streams its data extents
//! (SEEK_DATA/SEEK_HOLE: holes are not stored) into the data area as checksummed chunks, like
//! memory, whatever the file's size. A snapshot writer reads the file while the program runs on;
//! a `Guard` (inotify IN_MODIFY on each such file, set while the threads are stopped) tells it
//! whether the program wrote one meanwhile, and then the image is written with the threads
//! stopped instead.
//!
//! Restore: one new inode per old one (all fds of one inode come back as one inode, sharing
//! data): a regular file as an unnamed file in the same directory (O_TMPFILE, given its old name
//! and removed again when that name is free, so that /proc/self/fd shows the old path; a memfd of
//! the same name for memfds, or when the directory cannot hold one), sparse, holding the stored data,
//! with the old permission bits, times and (where allowed: as root, or our own) owner, set once
//! every fd is open (so a mode without read permission does not lock us out); a directory made
//! and removed again at once (under its old name when that is free, so /proc/self/fd shows the
//! old path); a symlink (an O_PATH fd on it) made and removed again; a device node made with
//! mknod where allowed, else the device node of /dev with the same type and number. Every program fd is
//! then a new open of that inode through /proc/self/fd with the program's flags, and st_nlink
//! is 0 as it was. A file that was unlinked but still has another name in the same directory is
//! that name (runtime fdtable.rs: an ordinary file reopened by path); with its other name
//! elsewhere (st_nlink > 0 at checkpoint time) it comes back as an unnamed copy, with a warning:
//! that other name cannot be found from the fd without privileges, and is a different file after
//! the restart.

use crate::{info, lossy, memfd, sys, Error, Result};
use ckpt_image::{Deleted, FdKind, Reader, CHUNK_SIZE};
use std::ffi::CString;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;

const PAGE: u64 = 4096;

/// Capture: the deleted inode behind fd `fd` (`path`: its link text without " (deleted)"), or
/// None for kinds handled elsewhere (FIFOs, sockets, terminals: a pty whose node is gone).
pub fn capture(fd: i32, path: Vec<u8>, st: &libc::stat) -> Option<FdKind> {
    let fmt = st.st_mode & libc::S_IFMT;
    if ![libc::S_IFREG, libc::S_IFDIR, libc::S_IFCHR, libc::S_IFBLK, libc::S_IFLNK].contains(&fmt) || path.starts_with(b"/dev/pts/") {
        return None;
    }
    let size = if fmt == libc::S_IFREG { st.st_size as u64 } else { 0 };
    let target = if fmt == libc::S_IFLNK { sys::readlink_fd(fd).ok()? } else { Vec::new() };
    let seals = if memfd::is_memfd(&path) { memfd::seals(fd) } else { 0 };
    Some(FdKind::Deleted(Deleted {
        path,
        dev: st.st_dev,
        ino: st.st_ino,
        mode: st.st_mode,
        rdev: st.st_rdev,
        size,
        chunks: Vec::new(),
        uid: st.st_uid,
        gid: st.st_gid,
        atime: (st.st_atime, st.st_atime_nsec),
        mtime: (st.st_mtime, st.st_mtime_nsec),
        target,
        nlink: st.st_nlink,
        seals,
        saved: false,
    }))
}

/// Capture, with `--checkpoint-open-files`: the named regular file behind fd `fd` (`path`), its
/// data saved as a deleted file's is (`Deleted::saved`).
pub fn capture_saved(fd: i32, path: Vec<u8>, st: &libc::stat) -> FdKind {
    match capture(fd, path.clone(), st) {
        Some(FdKind::Deleted(d)) => FdKind::Deleted(Deleted { saved: true, ..d }),
        _ => FdKind::Path { path, size: st.st_size as u64, is_dir: false },
    }
}

/// Restore, before anything is made: each file saved by `--checkpoint-open-files` whose path
/// holds something now is reopened by path as any file is (`FdKind::Path`, checked the same way);
/// those whose path is free stay `Deleted` and are recreated there (`Recreated::open`).
pub fn resolve_saved(fds: &mut [ckpt_image::FdState]) {
    for f in fds.iter_mut() {
        let FdKind::Deleted(d) = &f.kind else { continue };
        if !d.saved {
            continue;
        }
        // Anything there but "no such file" (a file, another kind, an error) is for the checks
        // of a file by path to judge.
        let at_path = std::path::Path::new(std::ffi::OsStr::from_bytes(&d.path));
        let present = !matches!(std::fs::symlink_metadata(at_path), Err(e) if e.kind() == std::io::ErrorKind::NotFound);
        if present {
            f.kind = FdKind::Path { path: d.path.clone(), size: d.size, is_dir: false };
        }
    }
}

/// The fds whose deleted file's data the image of process `pid` stores: the first fd of each
/// regular-file inode.
pub fn data_owners(fds: &[ckpt_image::FdState], pid: i32) -> Vec<usize> {
    let mut seen: Vec<(u64, u64)> = Vec::new();
    let mut out = Vec::new();
    for (i, f) in fds.iter().enumerate() {
        if let FdKind::Deleted(d) = &f.kind {
            // (A file in flight that a process of the tree of lower pid holds as one with it,
            // as an fd or in flight too: that process stores its data, and the restart makes
            // it once for both: `ckpt_image::unshared::stores_data`.)
            let theirs = !ckpt_image::unshared::stores_data(pid, f);
            if d.is_file() && f.dup_of.is_none() && !theirs && !seen.contains(&(d.dev, d.ino)) {
                seen.push((d.dev, d.ino));
                out.push(i);
            }
        }
    }
    out
}

/// Capture, in the image writer: the page-aligned runs of `[0, size)` of the file open as `fd`
/// (an fd of ours: its offset moves) that hold data. A file system without SEEK_DATA is all data.
pub fn extents(fd: i32, size: u64) -> Vec<(u64, u64)> {
    let end = size.div_ceil(PAGE) * PAGE;
    let mut out: Vec<(u64, u64)> = Vec::new();
    let mut pos = 0u64;
    while pos < size {
        let data = match sys::lseek(fd, pos, libc::SEEK_DATA) {
            Ok(d) => d,
            Err(libc::ENXIO) => break, // only a hole from here on
            Err(_) => {
                out.push((pos / PAGE * PAGE, end));
                break;
            }
        };
        if data >= size {
            break;
        }
        let hole = sys::lseek(fd, data, libc::SEEK_HOLE).unwrap_or(size).min(size);
        let (s, e) = (data / PAGE * PAGE, (hole.div_ceil(PAGE) * PAGE).min(end));
        match out.last_mut() {
            Some(last) if last.1 >= s => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
        pos = hole.max(data + 1);
    }
    out
}

/// Whether the program wrote a deleted file while a snapshot read it: an inotify instance
/// watching each file for IN_MODIFY (write, truncate, fallocate, ...), set up while the threads
/// are stopped and read when the data has been written.
pub struct Guard(i32);

impl Guard {
    /// Watch the files behind the program's fds `fds` (their numbers). None when nothing needs
    /// watching; Err when a watch cannot be set (the caller must not rely on a snapshot).
    pub fn watch(fds: &[i32]) -> std::result::Result<Option<Guard>, i32> {
        if fds.is_empty() {
            return Ok(None);
        }
        let g = Guard(sys::inotify()?);
        for &fd in fds {
            sys::add_watch(g.0, &sys::proc_fd(&fd.to_string().into_bytes()), libc::IN_MODIFY)?;
        }
        Ok(Some(g))
    }

    /// The watch's fd (a snapshot child that reads the files keeps it).
    pub fn fd(&self) -> i32 {
        self.0
    }

    /// Whether any watched file was modified since `watch`.
    pub fn changed(&self) -> bool {
        let mut buf = [0u8; 256];
        matches!(sys::read(self.0, &mut buf), Ok(n) if n > 0)
    }

    pub fn close(self) {
        sys::close(self.0);
    }
}

fn cstr(b: &[u8]) -> Result<CString> {
    CString::new(b.to_vec()).map_err(|_| Error::Refused(format!("path {} contains a NUL byte", lossy(b))))
}

fn close(fd: RawFd) {
    // SAFETY: closing an fd of ours.
    unsafe { libc::close(fd) };
}

/// `path`'s directory and last name.
fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(0) => (b"/", &path[1..]),
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (b".", path),
    }
}

/// The nearest directory at or above `dir` that exists.
fn existing_dir(mut dir: &[u8]) -> Vec<u8> {
    loop {
        let ok = cstr(dir).is_ok_and(|c| {
            // SAFETY: an all-zero stat is a valid out-parameter; c is a valid C string.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: as above.
            unsafe { libc::stat(c.as_ptr(), &mut st) == 0 && st.st_mode & libc::S_IFMT == libc::S_IFDIR }
        });
        if ok || dir == b"/" {
            return dir.to_vec();
        }
        dir = split(dir).0;
    }
}

/// One recreated inode, open as `holder` (an fd of ours) until every program fd of it is open.
struct Inode {
    key: (u64, u64),
    holder: RawFd,
    /// A memfd whose memfd_create fd (the holder) a program fd already uses (see memfd.rs).
    holder_used: bool,
    /// What it was, to give it its owner, mode and times at the end; None: an inode that is
    /// not ours to change (the /dev node standing in for a deleted device node).
    old: Option<Deleted>,
}

/// Restore: the deleted inodes recreated so far.
#[derive(Default)]
pub struct Recreated {
    inodes: Vec<Inode>,
}

/// The program's open flags, for an open of a recreated inode through /proc/self/fd.
pub fn reopen_flags(flags: i32) -> i32 {
    let drop = libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_NOCTTY | libc::O_NOFOLLOW | libc::O_TMPFILE | libc::O_ASYNC;
    flags & !drop | libc::O_CLOEXEC
}

impl Recreated {
    /// A new fd of ours for a program fd on the deleted inode `d`, with the program's `flags`;
    /// the inode is made on its first fd, a regular file filled from `image`.
    pub fn open(&mut self, d: &Deleted, flags: i32, image: &Reader) -> Result<RawFd> {
        if d.is_dir() && crate::procfs::is_proc_pid_dir(&d.path) {
            // A dead process's directory: opened directly while a process of ours lives there.
            let f = reopen_flags(flags) | libc::O_DIRECTORY;
            // SAFETY: open with a valid C string.
            return crate::procfs::with_dead_child(&d.path, |dir| unsafe { libc::open(dir.as_ptr(), f) });
        }
        let i = match self.inodes.iter().position(|n| n.key == (d.dev, d.ino)) {
            Some(i) => i,
            None => {
                let (holder, ours) = make(d, image)?;
                let old = ours.then(|| Deleted { chunks: Vec::new(), ..d.clone() });
                self.inodes.push(Inode { key: (d.dev, d.ino), holder, old, holder_used: false });
                self.inodes.len() - 1
            }
        };
        let mut f = reopen_flags(flags);
        if d.is_dir() {
            f |= libc::O_DIRECTORY;
        }
        let n = &mut self.inodes[i];
        if memfd::is_memfd(&d.path) && n.old.is_some() && !n.holder_used && f & libc::O_ACCMODE == libc::O_RDWR {
            // memfd_create's own fd: read-write without counting as a writer (see memfd.rs).
            n.holder_used = true;
            let fd = sys::fcntl(n.holder, libc::F_DUPFD_CLOEXEC, 0).map_err(|_| Error::last(format!("cannot open the recreated {}", what(d))))? as RawFd;
            let _ = sys::fcntl(fd, libc::F_SETFL, i64::from(f & (libc::O_APPEND | libc::O_NONBLOCK | libc::O_DIRECT | libc::O_NOATIME)));
            return Ok(fd);
        }
        let proc = cstr(format!("/proc/self/fd/{}", self.inodes[i].holder).as_bytes())?;
        // SAFETY: proc is a valid C string.
        let fd = unsafe { libc::open(proc.as_ptr(), f) };
        if fd < 0 {
            return Err(Error::last(format!("cannot open the recreated {}", what(d))));
        }
        Ok(fd)
    }

    /// Every fd is open: give the inodes their owner (where allowed), mode and times, and
    /// close our holders.
    pub fn finish(self) {
        for n in self.inodes {
            if let Some(d) = n.old.as_ref().filter(|d| !d.is_symlink()) {
                set_attributes(n.holder, d);
                if memfd::is_memfd(&d.path) {
                    memfd::seal(n.holder, &d.path, d.seals);
                }
            }
            close(n.holder);
        }
    }
}

/// Owner, mode and times of the recreated inode `fd` (an fd of ours, maybe O_PATH: set through
/// /proc/self/fd). Changing the owner needs privileges unless it is ours: said at info level.
fn set_attributes(fd: RawFd, d: &Deleted) {
    let Ok(p) = cstr(format!("/proc/self/fd/{fd}").as_bytes()) else { return };
    // SAFETY: p is a valid C string; an all-zero stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::stat(p.as_ptr(), &mut st) };
    // SAFETY: as above (each call changes only the recreated inode).
    unsafe {
        if (st.st_uid, st.st_gid) != (d.uid, d.gid) && libc::chown(p.as_ptr(), d.uid, d.gid) < 0 {
            info(&format!("{} keeps owner {}:{} (it was {}:{}): {}", what(d), st.st_uid, st.st_gid, d.uid, d.gid, std::io::Error::last_os_error()));
        }
        libc::chmod(p.as_ptr(), d.mode & 0o7777);
        let ts = [libc::timespec { tv_sec: d.atime.0, tv_nsec: d.atime.1 }, libc::timespec { tv_sec: d.mtime.0, tv_nsec: d.mtime.1 }];
        libc::utimensat(libc::AT_FDCWD, p.as_ptr(), ts.as_ptr(), 0);
    }
}

fn what(d: &Deleted) -> String {
    let kind = if d.is_file() {
        "deleted file"
    } else if d.is_dir() {
        "deleted directory"
    } else if d.is_symlink() {
        "deleted symlink"
    } else {
        "deleted device node"
    };
    format!("{kind} {}", lossy(&d.path))
}

/// Make the new inode for `d`; returns an fd of ours on it, and whether it is a new inode of
/// ours (not one standing in for it).
fn make(d: &Deleted, image: &Reader) -> Result<(RawFd, bool)> {
    if d.is_file() && d.saved {
        return Ok((saved_file(d, image)?, true));
    }
    if d.is_file() {
        if d.nlink > 0 {
            crate::say!(
                "ckpt-restart: warning: {} still had another name at checkpoint time ({} links); it comes back as a copy without a name, so that other name is a different file now",
                what(d),
                d.nlink
            );
        }
        let t = if memfd::is_memfd(&d.path) { memfd::create(&d.path, d.mode, d.seals)? } else { unnamed_file(&d.path)? };
        if let Err(e) = fill(t, d, image) {
            close(t);
            return Err(e);
        }
        Ok((t, true))
    } else if d.is_dir() {
        Ok((removed_dir(&d.path)?, true))
    } else if d.is_symlink() {
        Ok((removed_symlink(d)?, true))
    } else {
        device(d)
    }
}

/// A file saved by `--checkpoint-open-files` whose path was free: made unnamed in its directory,
/// filled, and linked at its path (never over something put there meanwhile), where it stays.
fn saved_file(d: &Deleted, image: &Reader) -> Result<RawFd> {
    let gone = |what: &str| Error::last(format!("cannot recreate file {} from the image ({what})", lossy(&d.path)));
    let t = tmpfile_in(split(&d.path).0)?;
    if t < 0 {
        return Err(gone("its directory cannot hold a new file"));
    }
    if let Err(e) = fill(t, d, image) {
        close(t);
        return Err(e);
    }
    if !link_at(t, &d.path)? {
        let e = gone("cannot link it at its path");
        close(t);
        return Err(e);
    }
    info(&format!("file {} was gone: recreated at its path from the image (--checkpoint-open-files)", lossy(&d.path)));
    Ok(t)
}

/// A symlink to the old target, made next to where it was under a free name, opened O_PATH and
/// removed again.
fn removed_symlink(d: &Deleted) -> Result<RawFd> {
    let target = cstr(&d.target)?;
    let base = existing_dir(split(&d.path).0);
    for n in 0..100 {
        let p = cstr(&[&base[..], format!("/.ckpt-link-{}-{n}", std::process::id()).as_bytes()].concat())?;
        // SAFETY: both are valid C strings.
        if unsafe { libc::symlink(target.as_ptr(), p.as_ptr()) } < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EEXIST) {
                continue;
            }
            break;
        }
        // SAFETY: p is a valid C string.
        let fd = unsafe { libc::open(p.as_ptr(), libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC) };
        let e = Error::last(format!("cannot recreate {}", what(d)));
        // SAFETY: removing the symlink we just made.
        unsafe { libc::unlink(p.as_ptr()) };
        return if fd < 0 { Err(e) } else { Ok(fd) };
    }
    Err(Error::last(format!("cannot recreate {}", what(d))))
}

/// An unnamed regular file next to where `path` was (O_TMPFILE), or a memfd: one of the same
/// name for a memfd (`/memfd:NAME`), else when the directory cannot hold an unnamed file.
fn unnamed_file(path: &[u8]) -> Result<RawFd> {
    let memfd = |name: &[u8]| -> Result<RawFd> {
        let n = cstr(name)?;
        // SAFETY: n is a valid C string.
        let t = unsafe { libc::memfd_create(n.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
        if t < 0 {
            return Err(Error::last(format!("cannot recreate deleted file {}", lossy(path))));
        }
        Ok(t)
    };
    if let Some(name) = path.strip_prefix(b"/memfd:") {
        return memfd(name);
    }
    let t = tmpfile_in(split(path).0)?;
    if t >= 0 {
        return Ok(take_old_name(t, path));
    }
    info(&format!("deleted file {} recreated as a memfd: its directory cannot hold an unnamed file ({})", lossy(path), std::io::Error::last_os_error()));
    memfd(b"ckpt-deleted")
}

/// The unnamed file `t` under the name `path` had, removed again at once, when that name is
/// free: an fd opened through that name (the kernel names an open file by the name it was opened
/// through), so that /proc/self/fd shows `path (deleted)` as before; else `t` itself. Linked
/// through /proc/self/fd (AT_SYMLINK_FOLLOW needs no privilege, unlike AT_EMPTY_PATH); never over
/// an existing name. For a moment the empty file, mode 0600, is at `path`.
fn take_old_name(t: RawFd, path: &[u8]) -> RawFd {
    let Ok(to) = cstr(path) else { return t };
    if !link_at(t, path).unwrap_or(false) {
        return t;
    }
    // SAFETY: to is a valid C string.
    let named = unsafe { libc::open(to.as_ptr(), libc::O_RDWR | libc::O_NOFOLLOW | libc::O_CLOEXEC) };
    // SAFETY: removing the name we just made.
    unsafe { libc::unlink(to.as_ptr()) };
    let same = |a: RawFd, b: RawFd| {
        // SAFETY: all-zero stats are valid out-parameters; both fds are ours.
        let (mut x, mut y): (libc::stat, libc::stat) = unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
        // SAFETY: as above.
        unsafe { libc::fstat(a, &mut x) == 0 && libc::fstat(b, &mut y) == 0 && x.st_ino == y.st_ino && x.st_dev == y.st_dev }
    };
    if named < 0 || !same(named, t) {
        if named >= 0 {
            close(named);
        }
        return t;
    }
    close(t);
    named
}

/// A new unnamed regular file (O_TMPFILE, read-write, mode 0600 for now) in directory `dir`; a
/// negative fd (errno set) when the directory cannot hold one.
fn tmpfile_in(dir: &[u8]) -> Result<RawFd> {
    let dir = cstr(dir)?;
    // SAFETY: dir is a valid C string.
    Ok(unsafe { libc::open(dir.as_ptr(), libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC, 0o600) })
}

/// Give the file open as `t` (an fd of ours) the name `path`, never over an existing name:
/// linked through /proc/self/fd (AT_SYMLINK_FOLLOW needs no privilege, unlike AT_EMPTY_PATH).
/// Whether it was linked (errno set when not).
fn link_at(t: RawFd, path: &[u8]) -> Result<bool> {
    let (from, to) = (cstr(format!("/proc/self/fd/{t}").as_bytes())?, cstr(path)?);
    // SAFETY: both are valid C strings.
    Ok(unsafe { libc::linkat(libc::AT_FDCWD, from.as_ptr(), libc::AT_FDCWD, to.as_ptr(), libc::AT_SYMLINK_FOLLOW) } == 0)
}

/// Size the new file `t` and write the stored data into it (holes stay holes).
fn fill(t: RawFd, d: &Deleted, image: &Reader) -> Result<()> {
    let fail = |what: &str| Error::last(format!("cannot recreate deleted file {} ({what})", lossy(&d.path)));
    // SAFETY: t is ours.
    if unsafe { libc::ftruncate(t, d.size as i64) } < 0 {
        return Err(fail("size"));
    }
    let mut dec = ckpt_image::Decompressor::new().map_err(|e| Error::Refused(e.to_string()))?;
    let (mut buf, mut scratch) = (vec![0u8; CHUNK_SIZE], Vec::new());
    // All-zero chunks stay holes (the file was sized with ftruncate): a file read whole
    // (`memwrite::plan_files`) does not become as large on disk as its apparent size.
    for c in d.chunks.iter().filter(|c| c.codec != ckpt_image::Codec::Zero) {
        let data = &mut buf[..c.raw_len as usize];
        image.read_chunk(c, data, &mut dec, &mut scratch).map_err(|e| Error::Refused(format!("deleted file {}: {e}", lossy(&d.path))))?;
        let n = (d.size.saturating_sub(c.offset)).min(c.raw_len) as usize;
        let mut off = 0;
        while off < n {
            // SAFETY: data[off..n] is a valid buffer.
            let w = unsafe { libc::pwrite(t, data[off..n].as_ptr().cast(), n - off, (c.offset + off as u64) as i64) };
            if w <= 0 {
                return Err(fail("data"));
            }
            off += w as usize;
        }
    }
    Ok(())
}

/// A directory made where `path` was (under its old name when that is free, else a new name in
/// the nearest existing directory) and removed again at once; an fd of ours on it.
fn removed_dir(path: &[u8]) -> Result<RawFd> {
    let (parent, name) = split(path);
    let base = existing_dir(parent);
    let mut candidates = Vec::new();
    if base == parent && !name.is_empty() {
        candidates.push(path.to_vec());
    }
    for n in 0..100 {
        candidates.push([&base[..], if base == b"/" { b"" } else { b"/" }, format!(".ckpt-deleted-{}-{n}", std::process::id()).as_bytes()].concat());
    }
    for p in candidates {
        let c = cstr(&p)?;
        // SAFETY: c is a valid C string.
        if unsafe { libc::mkdir(c.as_ptr(), 0o700) } < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EEXIST) {
                continue;
            }
            return Err(Error::last(format!("cannot recreate deleted directory {}", lossy(path))));
        }
        // SAFETY: c is a valid C string.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC) };
        let e = Error::last(format!("cannot recreate deleted directory {}", lossy(path)));
        // SAFETY: as above; removing the directory we just made.
        unsafe { libc::rmdir(c.as_ptr()) };
        if fd < 0 {
            return Err(e);
        }
        if p != path {
            info(&format!("deleted directory {} recreated (and removed again) as {}", lossy(path), lossy(&p)));
        }
        return Ok(fd);
    }
    Err(Error::Refused(format!("cannot recreate deleted directory {}: no free name in {}", lossy(path), lossy(&base))))
}

/// A working directory that was removed (`path` without " (deleted)"): the directory of a
/// program fd (already in place) on a deleted directory of the same path (`dirs`: path and fd
/// number), else one made and removed again like `removed_dir`. Enters it.
pub fn enter_removed_dir(path: &[u8], dirs: &[(Vec<u8>, RawFd)]) -> Result<()> {
    let fd = match dirs.iter().find(|(p, _)| p == path) {
        Some(&(_, fd)) => fd,
        None => removed_dir(path)?,
    };
    // SAFETY: fd is a directory fd.
    let r = unsafe { libc::fchdir(fd) };
    if r < 0 {
        return Err(Error::last(format!("cannot enter the removed working directory {}", lossy(path))));
    }
    if !dirs.iter().any(|(p, _)| p == path) {
        close(fd);
    }
    Ok(())
}

/// A device node of the same type and number: made next to where `path` was with mknod (which
/// needs privileges) and unlinked again, else the one in /dev (then not ours: false). An O_PATH
/// fd of ours on it.
fn device(d: &Deleted) -> Result<(RawFd, bool)> {
    let (dir, _) = split(&d.path);
    let tmp = [dir, format!("/.ckpt-dev-{}-{}", std::process::id(), d.ino).as_bytes()].concat();
    let c = cstr(&tmp)?;
    // SAFETY: c is a valid C string.
    if unsafe { libc::mknod(c.as_ptr(), d.mode & (libc::S_IFMT | 0o600), d.rdev) } == 0 {
        // SAFETY: c is a valid C string.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC) };
        let e = Error::last(format!("cannot recreate {}", what(d)));
        // SAFETY: removing the node we just made.
        unsafe { libc::unlink(c.as_ptr()) };
        return if fd < 0 { Err(e) } else { Ok((fd, true)) };
    }
    let (fmt, rdev) = (d.mode & libc::S_IFMT, d.rdev);
    let found = find_node(b"/dev", fmt, rdev, 2).ok_or_else(|| {
        Error::Refused(format!("{} (device {}:{}) cannot be recreated: no such device node in /dev", what(d), libc::major(rdev), libc::minor(rdev)))
    })?;
    info(&format!("{} (device {}:{}) reopened through {}", what(d), libc::major(rdev), libc::minor(rdev), lossy(&found)));
    let c = cstr(&found)?;
    // SAFETY: c is a valid C string.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(Error::last(format!("cannot open {}", lossy(&found))));
    }
    Ok((fd, false))
}

/// A device node under `dir` (`depth` levels deep) of type `fmt` and number `rdev`.
fn find_node(dir: &[u8], fmt: u32, rdev: u64, depth: u32) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let rd = std::fs::read_dir(std::ffi::OsStr::from_bytes(dir)).ok()?;
    let mut subdirs = Vec::new();
    for e in rd.flatten() {
        let Ok(m) = std::fs::symlink_metadata(e.path()) else { continue };
        let t = m.file_type();
        let kind = if t.is_char_device() { libc::S_IFCHR } else if t.is_block_device() { libc::S_IFBLK } else { 0 };
        if kind == fmt && m.rdev() == rdev {
            return Some(e.path().as_os_str().as_bytes().to_vec());
        }
        if t.is_dir() {
            subdirs.push(e.path().as_os_str().as_bytes().to_vec());
        }
    }
    if depth > 1 {
        return subdirs.iter().find_map(|s| find_node(s, fmt, rdev, depth - 1));
    }
    None
}
