//! A fanotify group in the image: its init flags and marks as the fd's fdinfo lists them, with
//! where the runtime saw each marked object being marked (fdinfo gives an inode, a mount id or a
//! device number only; the restart needs a path to mark it again).

use serde::{Deserialize, Serialize};

/// One mark of a fanotify group (an fdinfo `fanotify ino:`, `mnt_id:` or `sdev:` line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FanotifyMark {
    pub object: MarkObject,
    /// The kernel's dev_t (fdinfo `sdev`) of the marked inode's or filesystem's superblock; 0
    /// for a mount mark.
    pub sdev: u64,
    /// The mark's flags as fdinfo shows them (FAN_MARK_IGNORED_SURV_MODIFY, FAN_MARK_EVICTABLE,
    /// FAN_MARK_IGNORE).
    pub mflags: u32,
    pub mask: u64,
    pub ignored_mask: u64,
    /// Where the object was marked (absolute), `/proc/self/fd/N` for a file removed since that
    /// the program holds at fd N, or empty: the runtime did not see the mark being added.
    pub path: Vec<u8>,
    /// The mark is on a symbolic link itself (FAN_MARK_DONT_FOLLOW).
    pub dont_follow: bool,
    /// The object is no longer at `path` (renamed, removed or unmounted since) and was not
    /// found elsewhere.
    pub gone: bool,
}

/// What a fanotify mark is on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MarkObject {
    /// An inode `ino`, with its file handle (fdinfo `fhandle-type`, `f_handle`; empty when the
    /// filesystem gives none).
    Inode { ino: u64, handle_type: i32, handle: Vec<u8> },
    /// The mount `mnt_id` (as the program's mount namespace numbered it).
    Mount { mnt_id: u64 },
    /// The whole filesystem of `sdev`.
    Filesystem,
    /// An fdinfo line of a kind this build does not know (a mount namespace mark): cannot be
    /// made again.
    Unknown { line: Vec<u8> },
}

impl FanotifyMark {
    /// "inode 0x1234", "mount 27", "filesystem 0xfe00000", for messages.
    pub fn what(&self) -> String {
        match &self.object {
            MarkObject::Inode { ino, .. } => format!("inode mark on inode {ino}"),
            MarkObject::Mount { mnt_id } => format!("mount mark on mount {mnt_id}"),
            MarkObject::Filesystem => format!("filesystem mark on device {:#x}", self.sdev),
            MarkObject::Unknown { line } => format!("mark `{}`", String::from_utf8_lossy(line)),
        }
    }
}
