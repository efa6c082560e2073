//! POSIX message queues (mq_open; format version 21): what a restart needs to make a queue
//! again (ckpt-kinds' mqueue module does both halves).

use serde::{Deserialize, Serialize};

/// A POSIX message queue behind an fd. Every fd of one queue (several mq_opens, or a queue
/// opened again by name) holds it; the first fd of the queue in the table carries its messages
/// and its notification, the others none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mqueue {
    /// Its name in the IPC namespace's queue file system, with the leading '/'.
    pub name: Vec<u8>,
    /// Removed (mq_unlink) while still open: made again under another name and removed at once.
    pub unlinked: bool,
    /// Its inode: the fds that name one inode come back as one queue.
    pub ino: u64,
    /// mq_getattr's mq_maxmsg and mq_msgsize.
    pub maxmsg: i64,
    pub msgsize: i64,
    /// Permission bits, owner and group.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// The messages queued at checkpoint time, in the order a receiver gets them (highest
    /// priority first, oldest first within a priority).
    pub messages: Vec<MqMessage>,
    /// The process's mq_notify registration on the queue, if it had one.
    pub notify: Option<MqNotify>,
}

/// A message and its priority.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MqMessage {
    pub priority: u32,
    pub data: Vec<u8>,
}

/// An mq_notify registration: `notify` is SIGEV_SIGNAL or SIGEV_NONE, with the signal and the
/// sigev_value the program gave.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MqNotify {
    pub notify: i32,
    pub signo: i32,
    pub value: u64,
}
