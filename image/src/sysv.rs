//! System V IPC objects (format version 13): the shared memory segments, semaphore sets and
//! message queues of the program's own IPC namespace, which a restart makes again with the same
//! ids, keys, modes and contents (ckpt-kinds' sysv module does both halves).

use serde::{Deserialize, Serialize};

/// Every System V IPC object of the namespace when the image was taken.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sysv {
    pub shm: Vec<ShmSegment>,
    pub sem: Vec<SemSet>,
    pub msg: Vec<MsgQueue>,
    /// The namespace's settings (kernel/shmmax, msgmnb, sem, ..., fs/mqueue/*, the next ids):
    /// file under /proc/sys and its text.
    pub settings: Vec<(String, String)>,
}

impl Sysv {
    /// No object (settings aside).
    pub fn is_empty(&self) -> bool {
        self.shm.is_empty() && self.sem.is_empty() && self.msg.is_empty()
    }
}

/// What every object has: its id (which the program holds), key, owner and permission bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpcPerm {
    pub id: i32,
    pub key: i32,
    pub uid: u32,
    pub gid: u32,
    /// The low 9 bits (rwx for owner, group and others).
    pub mode: u32,
}

/// A shared memory segment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShmSegment {
    pub perm: IpcPerm,
    pub size: u64,
    /// Marked for removal (IPC_RMID) while still attached: removed again once attached.
    pub removed: bool,
    /// Its contents, when the process's own attachments do not cover all of it; otherwise
    /// empty, and the regions that map it (`/SYSV...`) hold its pages.
    pub data: Vec<u8>,
}

/// A semaphore set and the value of each semaphore.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SemSet {
    pub perm: IpcPerm,
    pub values: Vec<u16>,
}

/// A message queue, its byte limit and its messages, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsgQueue {
    pub perm: IpcPerm,
    pub qbytes: u64,
    pub messages: Vec<IpcMessage>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpcMessage {
    pub mtype: i64,
    pub data: Vec<u8>,
}
