//! The fixed 64-byte header at offset 0: identifies the file and locates the index.

use crate::{checksum, ImageError, Result};

pub const MAGIC: [u8; 8] = *b"CKPTIMG\0";
/// 2: incremental images (a parent in the header, `Region::inherit`, `Meta::chain`).
/// 3: `Meta::origin` (who took the image, of which program) and `FdState::id` (file identity).
/// 4: `Index::left_out` (child processes and outside pipes a restart cannot bring back).
/// 5: deleted files as chunks in the data area, locks, FIFOs, O_PATH, /proc and AIO kinds (ckpt-kinds).
/// 6: `ProcessState::creds` (user and group ids, supplementary groups).
/// 7: region, process and thread attributes (`Region::attrs`, `ProcessState::attrs`,
///    `ThreadState::attrs`: mapping flags and advice, guard pages, prctl settings, scheduling...)
///    and `Deleted::seals`.
/// 8: sockets and terminals as `FdKind::Socket` and `FdKind::Tty` (ckpt-kinds: sockets, tty), files in flight
///    (negative fd numbers), epoll entries' holders, inotify watches' state.
/// 9: `Index::ids` (process ids and namespaces: the outer pid, the checkpoint thread, the clocks).
/// 10: packed frames (`Chunk::frame_skip`, `Chunk::frame_len`: a window's scattered pages in one
///     frame, one chunk per run) and `Meta::increments`.
/// 11: `Index::shared` (shared memory by identity, for the images of a process tree's set).
/// 12: `Socket::job` (connections between the tasks of a Slurm step) and `Index::step`.
/// 13: `Index::sysv` (System V shared memory, semaphores and message queues of the namespace).
/// 14: both of 12 and 13 in one index (`Index::step` before `Index::sysv`): main held 13
///     without `Index::step` for a while, whose images do not decode as this layout.
/// 15: `FdState::owner` (the SIGIO owner and signal of an open file description) and
///     `Socket::peer_cred` (SO_PEERCRED of a socketpair another process made).
/// 16, 17: see docs/format.md. 18: `ThreadAttrs::timens_children` (a time namespace the
///     thread-group leader made for its children, with its offsets).
/// 19: `Pending::data` (the bytes in a UNIX connection not yet accepted).
/// 20: `FdKind::Fanotify`; `FdKind::TreeSocket` (a socket of a tree described once, by its lowest holder); `StepInfo::node_ips` (the addresses of a step task's node at the checkpoint).
/// 21: `FdKind::Mqueue` (POSIX message queues with their messages and notification); `Creds::fs` (the filesystem user and group ids); `FdKind::Inotify::last_wd` (the highest watch descriptor handed out).
/// 22: `FdKind::Pipe::data` of a pipe several processes of a tree hold, stored once (by its lowest holder).
/// 23: `Socket::ring` (a packet socket's RX and TX rings, for its mapping to be made again).
/// 24: `Tty::foreign` (a pseudo-terminal slave of another devpts instance than the program's /dev/pts).
/// 25: the tree manifest's `timens` lines (a process in a time namespace of its own, with its
///     offsets); a set of version 24 images says nothing of its processes' time namespaces.
/// 26: `FdState::held_with` (a file in flight: the fds of other processes of the tree that
///     are one open file description with it); its runtime takes the pidfds of threads of other
///     processes of the tree that the restarter hands over (`RestartInfo::handoffs`).
/// 27: `ThreadAttrs::creds` (each thread's own user and group ids and, when not the
///     process's, supplementary groups: raw setresuid in one thread; zdtm thread_different_uid_gid);
///     `EpollEntry::held_by` (another process's fd of the file of an entry of an epoll instance
///     only in flight), `InotifyWatch::{ino, sdev}` and `Index::watched` (the paths a process of
///     a tree saw inodes being watched through); added before 27 was released, no bump.
pub const VERSION: u32 = 27;
pub const HEADER_LEN: usize = 64;

/// Header fields, little-endian on disk:
/// magic[8] version u32 header_len u32 index_offset u64 index_len u64 index_hash u64
/// data_len u64 parent u64 header_hash u64 (xxh3 of the first 56 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: u32,
    pub index_offset: u64,
    pub index_len: u64,
    pub index_hash: u64,
    /// Bytes of chunk data between the header and the index.
    pub data_len: u64,
    /// An increment: the `index_hash` of the image it builds on (its parent); 0 for a full image.
    pub parent: u64,
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&self.version.to_le_bytes());
        b[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        b[16..24].copy_from_slice(&self.index_offset.to_le_bytes());
        b[24..32].copy_from_slice(&self.index_len.to_le_bytes());
        b[32..40].copy_from_slice(&self.index_hash.to_le_bytes());
        b[40..48].copy_from_slice(&self.data_len.to_le_bytes());
        b[48..56].copy_from_slice(&self.parent.to_le_bytes());
        let h = checksum(&b[0..56]);
        b[56..64].copy_from_slice(&h.to_le_bytes());
        b
    }

    /// Decode and validate a header. `file_len` is the image file's size.
    pub fn decode(b: &[u8], file_len: u64) -> Result<Header> {
        if b.len() < 8 || b[0..8] != MAGIC {
            if b.is_empty() {
                return Err(ImageError::Truncated("the file is empty".into()));
            }
            if b.len() == HEADER_LEN && b.iter().all(|&x| x == 0) {
                // Writers put a zero header first and the real one last.
                return Err(ImageError::Truncated("the image was never completed (its header is still zero)".into()));
            }
            return Err(ImageError::BadMagic);
        }
        if b.len() < HEADER_LEN {
            return Err(ImageError::Truncated(format!("header is {} bytes, expected {HEADER_LEN}", b.len())));
        }
        let u32at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
        let u64at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
        let version = u32at(8);
        if b[56..64].iter().all(|&x| x == 0) && u64at(16) == 0 {
            return Err(ImageError::Truncated("the image was never completed (no index)".into()));
        }
        // The version decides the header's layout, so it is checked before the checksum: a
        // newer image says so even if its header is laid out differently.
        if version != VERSION {
            return Err(ImageError::UnsupportedVersion { found: version, supported: VERSION });
        }
        if checksum(&b[0..56]) != u64at(56) {
            return Err(ImageError::Corrupt("header checksum mismatch".into()));
        }
        if u32at(12) as usize != HEADER_LEN {
            return Err(ImageError::Corrupt("unexpected header length".into()));
        }
        let h = Header {
            version,
            index_offset: u64at(16),
            index_len: u64at(24),
            index_hash: u64at(32),
            data_len: u64at(40),
            parent: u64at(48),
        };
        let end = h.index_offset.checked_add(h.index_len).ok_or_else(|| ImageError::Corrupt("index location overflows".into()))?;
        if end > file_len {
            return Err(ImageError::Truncated(format!("index ends at byte {end} but the file has {file_len} bytes")));
        }
        if h.index_offset < HEADER_LEN as u64 || HEADER_LEN as u64 + h.data_len > h.index_offset {
            return Err(ImageError::Corrupt("index overlaps the header or data".into()));
        }
        Ok(h)
    }
}
