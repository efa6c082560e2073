//! The image directory as a checkpoint uses it: opened once per checkpoint and checked to be the
//! user's (owner, mode: `ckpt_image::trust::dir_problem`), and every file operation done relative
//! to that fd (*at calls, never following a symbolic link) on files we own only. The temporary
//! image gets an unpredictable name and is created O_EXCL|O_NOFOLLOW, mode 0600, so nothing
//! another user planted in a shared (sticky) directory is ever opened, followed or overwritten.
//!
//! The fd is moved out of the program's way (to the end of the fd table, sys::high_fd) and left out of images (`is_own_fd`).
//! Raw system calls only: this runs while the program's threads are stopped, and in the
//! snapshot child.

use crate::checkpoint::strerror;
use crate::sys::{self, syscall};
use ckpt_image::trust::{dir_problem, DirProblem};
use std::sync::atomic::{AtomicI32, Ordering};

/// The fd of the directory open for the checkpoint in progress (-1: none).
static FD: AtomicI32 = AtomicI32::new(-1);

pub fn is_own_fd(fd: i32) -> bool {
    fd >= 0 && FD.load(Ordering::Relaxed) == fd
}

/// Why the image directory `path` (fstat `st`) may not hold `euid`'s images, as one line; None
/// when it may: the user's or root's, or one the outer ckpt-run or ckpt-restart checked (whose
/// owner the program's user namespace may not show), or any with `allow_shared`.
pub fn problem(path: &[u8], st: &libc::stat, euid: u32, allow_shared: bool) -> Option<String> {
    if allow_shared || crate::ids::trusted_dir(st.st_uid, st.st_dev, st.st_ino) {
        return None;
    }
    dir_problem(st.st_uid, st.st_mode, euid).map(|p| refusal(path, p))
}

/// `DirProblem` as one line for the log, with the way out.
pub fn refusal(dir: &[u8], p: DirProblem) -> String {
    let owner = match p {
        DirProblem::Owner(uid) => format!("belongs to {}, not to you", sys::describe_user(uid)),
        DirProblem::Writable(_) => p.to_string(),
    };
    format!("image directory {} {owner}: another user could replace or read the images (CKPT_ALLOW_SHARED_DIR=1, or ckpt-run --allow-shared-dir, uses it anyway)", String::from_utf8_lossy(dir))
}

/// The image directory, open for one checkpoint.
pub struct Dir {
    fd: i32,
    path: Vec<u8>,
    euid: u32,
    /// The filesystem user and group the image is created as, when not the checkpoint thread's
    /// (see `adopt`).
    writer: Option<(u32, u32)>,
    /// The effective user the image is for (`taker`).
    taker: u32,
}

/// The thread-group leader's effective user and filesystem user and group (the process's, as
/// /proc/PID/status shows them to a tree's coordinator).
fn leader_ids() -> Option<(u32, u32, u32)> {
    let status = sys::read_file(&sys::cpath(&[b"/proc/self/task/", &sys::decimal(sys::getpid()), b"/status"])).ok()?;
    let c = crate::threadcreds::from_status(&status)?;
    Some((c.uids[1], c.fs[0], c.fs[1]))
}

/// The calling thread's filesystem user id.
fn own_fsuid() -> u32 {
    // (With an invalid id it changes nothing and returns the current one.)
    syscall!(libc::SYS_setfsuid, u32::MAX).unwrap_or(0) as u32
}

impl Dir {
    /// Open `path` and check that it is the user's (unless `allow_shared`).
    pub fn open(path: &[u8], allow_shared: bool) -> Result<Dir, String> {
        let fd = sys::open(&sys::cpath(&[path]), libc::O_RDONLY | libc::O_DIRECTORY, 0)
            .map_err(|e| format!("cannot open the image directory {}: {}", String::from_utf8_lossy(path), strerror(e)))?;
        let fd = sys::own(sys::move_high(fd));
        let dir = Dir { fd, path: path.to_vec(), euid: sys::geteuid(), writer: None, taker: sys::geteuid() };
        FD.store(fd, Ordering::Release);
        let st = sys::fstat(fd).map_err(strerror)?;
        match problem(path, &st, dir.euid, allow_shared) {
            Some(p) => Err(p),
            None => Ok(dir),
        }
    }

    /// A directory fd handed to us, already checked (a tree's set directory, which the
    /// coordinator made); `path` names it in messages. One the coordinator made for a process
    /// running as another user (ckpt-ns's userdirs.rs: owned by the leader's filesystem user)
    /// takes the image only as that user's: when the checkpoint thread is not that user (the
    /// program changed its ids with raw system calls, which leave this thread's as they were),
    /// the image is created as the leader's filesystem user and group.
    pub fn adopt(fd: i32, path: &[u8]) -> Dir {
        let fd = sys::own(sys::move_high(fd));
        FD.store(fd, Ordering::Release);
        let owner = sys::fstat(fd).map(|st| st.st_uid).ok();
        let leader = leader_ids().filter(|&(_, u, _)| Some(u) == owner && u != own_fsuid());
        let writer = leader.map(|(_, u, g)| (u, g));
        // (Its files are then that user's: `own_file`.)
        Dir { fd, path: path.to_vec(), euid: writer.map_or_else(sys::geteuid, |w| w.0), writer, taker: leader.map_or_else(sys::geteuid, |l| l.0) }
    }

    /// Who takes the image (`Origin::uid`, whom a restart checks): the effective user it is
    /// written for (the leader's, in a directory made for its user: `adopt`).
    pub fn taker(&self) -> u32 {
        self.taker
    }

    /// The directory's fd (the snapshot child keeps it when it closes the program's fds).
    pub fn fd(&self) -> i32 {
        self.fd
    }

    /// DIR/NAME, for messages.
    pub fn show(&self, name: &[u8]) -> String {
        format!("{}/{}", String::from_utf8_lossy(&self.path), String::from_utf8_lossy(name))
    }

    /// Create a new temporary image `<base>.tmp.<random>` (O_EXCL|O_NOFOLLOW, mode 0600, with
    /// `extra` flags such as O_DIRECT); returns the fd.
    pub fn create(&self, name: &[u8], extra: i32) -> Result<i32, i32> {
        let c = sys::cpath(&[name]);
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC | extra;
        let open = || syscall!(libc::SYS_openat, self.fd, c.as_ptr(), flags, 0o600);
        let fd = match self.writer {
            None => open(),
            Some((u, g)) => {
                // This thread's filesystem ids only, and back (it keeps its own otherwise).
                let old_g = syscall!(libc::SYS_setfsgid, g).unwrap_or(0);
                let old_u = syscall!(libc::SYS_setfsuid, u).unwrap_or(0);
                let r = open();
                let _ = syscall!(libc::SYS_setfsuid, old_u);
                let _ = syscall!(libc::SYS_setfsgid, old_g);
                r
            }
        }? as i32;
        // 0600 whatever the umask (a new file of ours: nothing else has it open).
        let _ = syscall!(libc::SYS_fchmod, fd, 0o600);
        Ok(fd)
    }

    /// The lstat of NAME if it exists: Ok(None) when it does not, Err with a message when it is
    /// not a regular file of ours.
    pub fn own_file(&self, name: &[u8]) -> Result<Option<libc::stat>, String> {
        match sys::stat_at(self.fd, &sys::cpath(&[name])) {
            Err(libc::ENOENT) => Ok(None),
            Err(e) => Err(format!("{}: {}", self.show(name), strerror(e))),
            Ok(st) if st.st_uid != self.euid => Err(format!("{} belongs to {}, not to you: remove it (an image of yours is never replaced by, or moved onto, another user's file)", self.show(name), sys::describe_user(st.st_uid))),
            Ok(st) if st.st_mode & libc::S_IFMT != libc::S_IFREG => Err(format!("{} is not a regular file: remove it", self.show(name))),
            Ok(st) => Ok(Some(st)),
        }
    }

    /// Open NAME for reading if it is a regular file of ours (not following a symbolic link).
    pub fn open_own(&self, name: &[u8]) -> Option<i32> {
        let c = sys::cpath(&[name]);
        let fd = syscall!(libc::SYS_openat, self.fd, c.as_ptr(), libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC).ok()? as i32;
        match sys::fstat(fd) {
            Ok(st) if st.st_uid == self.euid && st.st_mode & libc::S_IFMT == libc::S_IFREG => Some(fd),
            _ => {
                sys::close(fd);
                None
            }
        }
    }

    pub fn rename(&self, from: &[u8], to: &[u8]) -> Result<(), i32> {
        let (f, t) = (sys::cpath(&[from]), sys::cpath(&[to]));
        syscall!(libc::SYS_renameat, self.fd, f.as_ptr(), self.fd, t.as_ptr()).map(|_| ())
    }

    pub fn link(&self, from: &[u8], to: &[u8]) -> Result<(), i32> {
        let (f, t) = (sys::cpath(&[from]), sys::cpath(&[to]));
        syscall!(libc::SYS_linkat, self.fd, f.as_ptr(), self.fd, t.as_ptr(), 0).map(|_| ())
    }

    pub fn unlink(&self, name: &[u8]) -> Result<(), i32> {
        let c = sys::cpath(&[name]);
        syscall!(libc::SYS_unlinkat, self.fd, c.as_ptr(), 0).map(|_| ())
    }

    /// Remove NAME only if it is a regular file of ours (the temporary image of a failed
    /// checkpoint: in a shared directory someone may have put another file in its place).
    pub fn unlink_own(&self, name: &[u8]) {
        if matches!(self.own_file(name), Ok(Some(_))) {
            let _ = self.unlink(name);
        }
    }

    pub fn fsync(&self) -> Result<(), i32> {
        syscall!(libc::SYS_fsync, self.fd).map(|_| ())
    }

    /// Names in the directory.
    pub fn names(&self) -> Vec<Vec<u8>> {
        sys::list_dir(&sys::cpath(&[b"/proc/thread-self/fd/", &sys::decimal(self.fd)])).unwrap_or_default()
    }

    /// Remove temporary images of `base` (`<base>.tmp`, `<base>.tmp.*`) that a checkpoint of
    /// ours left behind when it was killed: regular files of ours last written before `before`
    /// (seconds since the epoch: when this process started; a file written since may belong to
    /// a checkpoint still in progress). Another user's files are never touched.
    pub fn clean_leftovers(&self, base: &[u8], before: i64) {
        let tmp = [base, b".tmp"].concat();
        for n in self.names() {
            let legacy = n == tmp;
            let ours = n.starts_with(&tmp) && n.get(tmp.len()) == Some(&b'.');
            if !(legacy || ours) {
                continue;
            }
            if let Ok(Some(st)) = self.own_file(&n) {
                // `<base>.tmp` is no longer written by anyone: stale whenever it is there.
                if legacy || st.st_mtime < before {
                    let _ = self.unlink(&n);
                }
            }
        }
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = FD.compare_exchange(self.fd, -1, Ordering::AcqRel, Ordering::Relaxed);
        sys::close(self.fd);
    }
}

/// A fresh temporary image name for `base` (NAME.ckpt): `NAME.ckpt.tmp.<16 random hex digits>`.
pub fn tmp_name(base: &[u8]) -> Vec<u8> {
    [base, b".tmp.", &sys::random_hex()].concat()
}
