//! Who took an image, of which program, and which files it had open, as far as a restart needs
//! to know to refuse an image or a file that is not what it claims (format version 3): the
//! `Origin` in `Meta::origin` and the `FileId` of each file in `FdState::id`.

use serde::{Deserialize, Serialize};

/// Who took an image and of what program.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// Effective uid of the program at checkpoint time: only that user restarts the image.
    pub uid: u32,
    /// The program `ckpt-run` was asked to run, as it resolved it (absolute; a script, not its
    /// interpreter), and that file's identity when the program started.
    pub program: Vec<u8>,
    pub program_id: FileId,
    /// The kernel's boot id (/proc/sys/kernel/random/boot_id) at checkpoint time: device numbers
    /// are compared only within one boot of one machine.
    pub boot_id: Vec<u8>,
}

/// What identifies a file: inode and file-system type everywhere; the device number only on
/// the same boot of the same machine (NFS and Lustre give each client its own device numbers
/// for one file system, but keep inode numbers); size and modification time as they were.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
    /// statfs f_type (a magic number per kind of file system).
    pub fs_type: i64,
    pub size: u64,
    /// Modification time in nanoseconds since the epoch.
    pub mtime_ns: i64,
}

impl FileId {
    /// From a stat of the file and its file system's type.
    pub fn new(st: &libc::stat, fs_type: i64) -> FileId {
        FileId { dev: st.st_dev, ino: st.st_ino, fs_type, size: st.st_size as u64, mtime_ns: st.st_mtime * 1_000_000_000 + st.st_mtime_nsec }
    }

    /// Whether `now` is the same file (not: unchanged). `same_boot`: the device number counts.
    pub fn same_file(&self, now: &FileId, same_boot: bool) -> bool {
        self.ino == now.ino && self.fs_type == now.fs_type && (!same_boot || self.dev == now.dev)
    }

    /// Whether `now` is the same file, unchanged (same size and modification time too).
    pub fn same_version(&self, now: &FileId, same_boot: bool) -> bool {
        self.same_file(now, same_boot) && self.size == now.size && self.mtime_ns == now.mtime_ns
    }
}

/// This machine's current boot id (empty if unknown).
pub fn boot_id() -> Vec<u8> {
    let mut v = std::fs::read("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    while v.last() == Some(&b'\n') {
        v.pop();
    }
    v
}
