//! The part of a tree's checkpoint that a process running as another user writes (a program
//! started by root whose process dropped to other ids: setuid, setresuid, setfsuid; zdtm pid00,
//! seccomp_filter, mlock_setuid).
//!
//! Such a process can no longer create files in the set directory (the tree's user's, 0700).
//! When the coordinator runs as root it makes that process a directory of its own inside the
//! set directory, owned by the process's filesystem user and group, mode 0700 (reachable only
//! through the set directory, which no one else may enter), and hands it that one instead. Once
//! the image is written there, the coordinator takes it only as a regular file of that user with
//! one link (opened without following a symbolic link), makes it its own and moves it next to the
//! others: the set is then read as any other. The manifest records the ids each such process had
//! at the cut (`ids` lines, read from /proc here, not from its image, which the process wrote):
//! ckpt-restart (root) takes its image only if it says the same, and restores that process as
//! those ids from the start. Anyone else's tree keeps the refusal (`coord::other_user`): an ordinary
//! user's processes cannot take another user's ids.

use ckpt_image::tree::ProcIds;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Whether the coordinator may take parts of processes running as other users (it is root).
pub(crate) fn allowed() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The filesystem user and group of process `pid` when its user ids are not all ours (the
/// effective and filesystem ones, which decide what it may create), else None.
pub(crate) fn other_fs_ids(pid: i32) -> Option<(u32, u32)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let ids = |key: &str| -> Vec<u32> { status.lines().find_map(|l| l.strip_prefix(key)).map(|v| v.split_whitespace().filter_map(|u| u.parse().ok()).collect()).unwrap_or_default() };
    let (uids, gids) = (ids("Uid:"), ids("Gid:"));
    // SAFETY: geteuid has no preconditions.
    let ours = unsafe { libc::geteuid() };
    if uids.len() != 4 || gids.len() != 4 || (uids[1] == ours && uids[3] == ours) {
        return None;
    }
    Some((uids[3], gids[3]))
}

/// The directories made for the checkpoint being taken: (pid, directory), and the ids of their
/// processes at the cut.
#[derive(Default)]
pub(crate) struct UserDirs {
    dirs: Vec<(i32, PathBuf)>,
    ids: Vec<(i32, ProcIds)>,
}

impl UserDirs {
    /// A new checkpoint: none made yet.
    pub(crate) fn clear(&mut self) {
        self.dirs.clear();
        self.ids.clear();
    }

    /// At the cut (every process stopped): read the ids of the processes that have a directory of
    /// their own from /proc, for the manifest (a restart trusts these, not what their images say).
    pub(crate) fn note_ids(&mut self) -> Result<(), String> {
        self.ids.clear();
        for (pid, _) in &self.dirs {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| format!("process {pid}: {e}"))?;
            self.ids.push((*pid, ProcIds::from_status(&status).ok_or_else(|| format!("process {pid}: no ids in its status"))?));
        }
        Ok(())
    }

    /// The ids noted at the cut, for the manifest's `ids` lines.
    pub(crate) fn ids(&self) -> Vec<(i32, ProcIds)> {
        self.ids.clone()
    }

    /// Where process `pid` writes its part: its own directory if it has one, else `tmp`.
    pub(crate) fn dir_of(&self, tmp: &Path, pid: i32) -> PathBuf {
        self.dirs.iter().find(|(p, _)| *p == pid).map_or_else(|| tmp.to_path_buf(), |(_, d)| d.clone())
    }

    /// The directory fd to hand process `pid`: a new one of its own when it runs as another user
    /// (and we may), else None (the set directory).
    pub(crate) fn for_member(&mut self, tmp: &Path, pid: i32) -> Result<Option<OwnedFd>, String> {
        if !allowed() {
            return Ok(None);
        }
        let Some((uid, gid)) = other_fs_ids(pid) else { return Ok(None) };
        let dir = tmp.join(format!("{pid}.user"));
        if !self.dirs.iter().any(|(p, _)| *p == pid) {
            std::fs::DirBuilder::new().mode(0o700).create(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            self.dirs.push((pid, dir.clone()));
        }
        let f = std::fs::File::open(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        // SAFETY: fchown of our own new directory's fd.
        if unsafe { libc::fchown(f.as_raw_fd(), uid, gid) } != 0 {
            return Err(format!("cannot give {} to uid {uid}: {}", dir.display(), std::io::Error::last_os_error()));
        }
        Ok(Some(f.into()))
    }

    /// Move each image written in a directory of its own (`name(pid)`) into `tmp`, as ours, and
    /// remove those directories. Err: an image there is not a regular file of its process's user.
    pub(crate) fn gather(&mut self, tmp: &Path, name: impl Fn(i32) -> String) -> Result<(), String> {
        for (pid, dir) in std::mem::take(&mut self.dirs) {
            let r = take_image(&dir, &tmp.join(name(pid)), &name(pid));
            let _ = std::fs::remove_dir_all(&dir);
            r?;
        }
        Ok(())
    }
}

/// Make `dir/name` ours and move it to `to`, if it is there (a process that wrote nothing is
/// found out by the caller, as for any process).
fn take_image(dir: &Path, to: &Path, name: &str) -> Result<(), String> {
    let from = dir.join(name);
    let f = match std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(&from) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("the image {}: {e}", from.display())),
    };
    let md = f.metadata().map_err(|e| format!("{}: {e}", from.display()))?;
    let owner = std::fs::metadata(dir).map(|d| d.uid()).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !md.file_type().is_file() || md.nlink() != 1 || md.uid() != owner {
        let kind = if md.file_type().is_file() { "a regular file" } else { "not a regular file" };
        return Err(format!("{} is not an image its process wrote (a regular file of uid {owner} with one link; it is {kind} of uid {} with {} links)", from.display(), md.uid(), md.nlink()));
    }
    // SAFETY: fchown and fchmod of the file we hold open.
    let ok = unsafe { libc::fchown(f.as_raw_fd(), libc::geteuid(), libc::getegid()) == 0 && libc::fchmod(f.as_raw_fd(), 0o600) == 0 };
    if !ok {
        return Err(format!("cannot take {}: {}", from.display(), std::io::Error::last_os_error()));
    }
    std::fs::rename(&from, to).map_err(|e| format!("cannot move {} into the set: {e}", from.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_of_our_user_writes_into_the_set_directory() {
        let tmp = std::env::temp_dir().join(format!("ckpt-userdirs-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        let mut u = UserDirs::default();
        // Ourselves: never another user.
        assert_eq!(other_fs_ids(std::process::id() as i32), None);
        assert!(u.for_member(&tmp, std::process::id() as i32).unwrap().is_none());
        assert_eq!(u.dir_of(&tmp, 1), tmp);
        assert!(u.gather(&tmp, |p| format!("{p}.ckpt")).is_ok());
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
