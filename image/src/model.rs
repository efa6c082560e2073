//! The index: everything in an image besides raw page data, as plain serializable types.

use crate::leftout::LeftOut;
use serde::{Deserialize, Serialize};

/// The whole index of an image.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Index {
    pub meta: Meta,
    pub regions: Vec<Region>,
    /// The program's threads, each stopped inside the runtime's stop handler.
    pub threads: Vec<ThreadState>,
    /// Where the restarter jumps: the runtime's checkpoint thread, restarted fresh.
    pub entry: Entry,
    pub fds: Vec<FdState>,
    pub process: ProcessState,
    /// What a restart cannot bring back (format version 4).
    pub left_out: LeftOut,
    /// Process ids and namespaces (format version 9).
    pub ids: Ids,
    /// Which shared memory regions are which kernel object (format version 8): processes of a
    /// tree that map one object map it again together after a restart.
    pub shared: Vec<SharedMem>,
    /// The task's Slurm step, when the image is part of a checkpoint of the whole step
    /// (version 12; None: a program checkpointed on its own).
    pub step: Option<crate::StepInfo>,
    /// The System V IPC objects of the program's IPC namespace (format version 13; empty for a
    /// program run without ckpt's namespace, whose objects are the host's).
    pub sysv: crate::Sysv,
    /// Of a process of a tree: every inode its runtime saw being watched (inotify_add_watch,
    /// inherited by fork) whose path still names it at the cut (version 27, no bump): another
    /// process's inotify instance in flight with a watch on it that its own runtime did not see
    /// being added gets its path from here.
    pub watched: Vec<WatchedPath>,
}

/// An inode watched through `path` (`Index::watched`): its number and kernel-encoded device as
/// an inotify fdinfo shows them, and whether the watch was on a symbolic link itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchedPath {
    pub ino: u64,
    pub sdev: u64,
    pub path: Vec<u8>,
    pub dont_follow: bool,
}

/// A region of shared anonymous memory (MAP_SHARED|MAP_ANONYMOUS, inherited by fork) and the
/// kernel object behind it: its inode (/proc/PID/maps) and the region's offset in it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedMem {
    pub start: u64,
    pub dev: u64,
    pub ino: u64,
    pub offset: u64,
}

impl Index {
    /// The deleted inodes of the fd table (regular files hold their data's chunks).
    pub fn deleted_files(&self) -> impl Iterator<Item = &Deleted> {
        self.fds.iter().filter_map(|f| match &f.kind {
            FdKind::Deleted(d) => Some(d),
            _ => None,
        })
    }
}

/// How the program's process and thread ids were provided when the image was taken, and what a
/// restart needs to give them back (ckpt-ns, the runtime's ids module).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Ids {
    /// The program ran in a user, pid and mount namespace of ckpt's, where `meta.pid` is its pid
    /// (ckpt-restart recreates the namespace and the ids); false: in the caller's namespaces.
    pub namespace: bool,
    /// The pid that tools outside knew the program by (ckpt-run's or ckpt-restart's process).
    pub outer_pid: i32,
    /// getpid()/gettid() were being translated (virtual ids: the program had been restarted
    /// without exact ids); the recorded tids are the kernel's.
    pub virtual_ids: bool,
    /// The runtime's checkpoint thread.
    pub ckpt_tid: i32,
    /// CLOCK_MONOTONIC and CLOCK_BOOTTIME as the program read them at checkpoint time (ns):
    /// a restart continues them (time namespace).
    pub monotonic_ns: i64,
    pub boottime_ns: i64,
    /// The checkpoint signal and the stop signal (0: none), which ckpt-restart forwards marked.
    pub signal: i32,
    pub stop_signal: i32,
    /// The program's ids were seen from a user namespace that does not map every id (an
    /// ordinary user's: unmapped groups and owners show as the overflow ids).
    pub user_namespace: bool,
    /// The image directory the program wrote this image into (for the record: a restarted
    /// program writes its next images where the restarted image is, which ckpt-restart checks
    /// from outside the namespace, where its owner is seen as it is).
    pub image_dir: Vec<u8>,
}

/// Where and what the image was taken from.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Meta {
    pub arch: String,
    pub kernel: String,
    pub hostname: String,
    /// Seconds since the epoch when the checkpoint was taken.
    pub time: u64,
    pub program: String,
    pub cmdline: Vec<Vec<u8>>,
    pub pid: i32,
    /// Checkpoint number within the run (1 = first).
    pub generation: u64,
    /// Bytes of the `[vvar*]` + `[vdso]` areas and a hash of the vdso's code, to refuse restarts
    /// on a kernel whose vdso differs.
    pub vdso_hash: u64,
    /// glibc version of the program at checkpoint time (gnu_get_libc_version), e.g. "2.36".
    pub glibc: String,
    /// Images a restart from this one reads: 1 for a full image, 1 + the parent's for an increment.
    pub chain: u32,
    /// Who took the image, of which program (version 3; see origin.rs).
    pub origin: crate::Origin,
    /// Whether the program takes incremental images (version 10): a restart then builds the page
    /// hash table (pagetable.rs) for its next checkpoint.
    pub increments: bool,
}

/// How a region's pages are backed at restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Backing {
    /// Private anonymous memory (heap, stacks, anonymous mmap): zero, then chunks.
    Anon,
    /// Shared anonymous memory: like Anon, but mapped MAP_SHARED.
    SharedAnon,
    /// A file mapping: map `path` at `offset`, then overlay the stored chunks (private copies).
    File { path: Vec<u8>, offset: u64, size: u64, mtime: i64, shared: bool },
    /// A kernel special mapping that is moved, not restored (`[vdso]`, `[vvar]`, `[vvar_vclock]`).
    Special,
}

/// One memory region, as /proc/self/maps showed it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Region {
    pub start: u64,
    pub end: u64,
    /// PROT_READ | PROT_WRITE | PROT_EXEC.
    pub prot: u32,
    /// The name column of /proc/self/maps (path, `[heap]`, `[stack]`, ...), for messages;
    /// `SCRATCH_NAME` for the runtime's scratch arena.
    pub name: Vec<u8>,
    pub backing: Backing,
    /// Stored page data, sorted by offset, non-overlapping.
    pub chunks: Vec<Chunk>,
    /// Increments only: pages of the region not covered by `chunks` hold what the parent image
    /// (and, through it, its own parents) has at the same addresses. False: they are empty
    /// (anonymous) or the file's (file mappings), as in a full image.
    pub inherit: bool,
    /// Mapping flags, advice and guard pages.
    pub attrs: crate::RegionAttrs,
}

/// The name of the runtime's scratch arena in an image: the memory a checkpoint works in,
/// stored empty (anonymous, no chunks).
pub const SCRATCH_NAME: &[u8] = b"[ckpt scratch]";

impl Region {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

/// How a chunk's bytes are stored in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Codec {
    Raw,
    Zstd,
    /// All zero bytes; nothing stored.
    Zero,
    /// zstd of the memory byte-shuffled in 8-byte words (see shuffle.rs): for arrays of numbers.
    Shuffle8,
    /// Version 17: zstd of the memory's bytewise differences from the word before, byte-shuffled
    /// in 8-byte words (shuffle.rs): for arrays of numbers that change slowly.
    Shuffle8Delta,
}

impl Codec {
    /// Whether the stored bytes are a zstd frame (possibly padded with a skippable frame).
    pub fn is_zstd(self) -> bool {
        matches!(self, Codec::Zstd | Codec::Shuffle8 | Codec::Shuffle8Delta)
    }

    /// Whether the frame holds 8-byte words byte-shuffled (its length a multiple of 8).
    pub fn is_shuffled(self) -> bool {
        matches!(self, Codec::Shuffle8 | Codec::Shuffle8Delta)
    }
}

/// A run of a region's bytes stored in the data area.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// Offset of the first byte within the region.
    pub offset: u64,
    /// Bytes of memory the chunk restores.
    pub raw_len: u64,
    /// Position of the stored bytes in the image file.
    pub file_offset: u64,
    pub stored_len: u64,
    pub codec: Codec,
    /// xxh3 of the stored bytes.
    pub hash: u64,
    /// Version 7: the stored bytes are one *frame* that decodes to `frame_len` bytes, of which
    /// this chunk is the `raw_len` bytes from `frame_skip`. A plain chunk is its whole frame
    /// (`frame_skip` 0, `frame_len` == `raw_len`); the chunks of a *packed* frame (the scattered
    /// pages of an increment, one frame per window of memory) share its stored bytes
    /// (`file_offset`, `stored_len`, `codec`, `hash`, `frame_len`), each with its own part.
    pub frame_skip: u64,
    pub frame_len: u64,
}

impl Chunk {
    /// A chunk that is its whole frame.
    pub fn plain(offset: u64, raw_len: u64, file_offset: u64, stored_len: u64, codec: Codec, hash: u64) -> Chunk {
        Chunk { offset, raw_len, file_offset, stored_len, codec, hash, frame_skip: 0, frame_len: raw_len }
    }

    /// Whether the chunk is part of a larger frame (reading it decodes the whole frame).
    pub fn is_packed(&self) -> bool {
        self.frame_skip != 0 || self.frame_len != self.raw_len
    }
}

/// A thread stopped in the runtime's stop handler. Its registers and signal mask are in the
/// signal frame at `ucontext` (inside its stack, which is part of the memory image); at restart
/// a new thread is cloned with the same TLS and does rt_sigreturn on that frame.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ThreadState {
    pub tid: i32,
    pub ucontext: u64,
    pub fs_base: u64,
    /// glibc's `struct pthread` tid field (PR_GET_TID_ADDRESS).
    pub tid_address: u64,
    pub robust_head: u64,
    pub robust_len: u64,
    pub altstack_sp: u64,
    pub altstack_size: u64,
    pub altstack_flags: i32,
    /// Whether rseq was registered for the thread (area = fs_base + rseq_offset).
    pub rseq: bool,
    /// Scheduling, timer slack, parent-death signal, the thread's own rseq area.
    pub attrs: crate::ThreadAttrs,
}

/// The checkpoint thread, which the restarter's own thread becomes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Entry {
    /// Address of the runtime's restart entry point, `extern "C" fn(arg: u64) -> !`.
    pub pc: u64,
    /// Stack pointer to start it with (16-byte aligned, top of the checkpoint thread's stack).
    pub sp: u64,
    pub arg: u64,
    pub fs_base: u64,
    pub tid_address: u64,
    pub robust_head: u64,
    pub robust_len: u64,
}

/// What kind of object an fd refers to, as far as restoring it is concerned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FdKind {
    /// A regular file, directory or device reopened by path.
    Path { path: Vec<u8>, size: u64, is_dir: bool },
    /// Something we cannot restore yet (pipe, socket, anon inode): described by its link text.
    Other { link: Vec<u8> },
    /// A file, directory or device node deleted while open, or never linked (O_TMPFILE,
    /// tmpfile(), memfd): recreated unnamed at restart (see `Deleted`).
    Deleted(Deleted),
    /// One end of a pipe (pipe inode `ino`, capacity `size`). `data` holds the bytes that were
    /// unread at checkpoint time (on one entry per pipe; empty on the others).
    Pipe { ino: u64, size: u32, data: Vec<u8> },
    /// A socket of any family (see `Socket`).
    Socket(Box<crate::Socket>),
    /// A terminal (see `Tty`).
    Tty(Box<crate::Tty>),
    EventFd { count: u64, semaphore: bool },
    /// Remaining time and interval in nanoseconds; `ticks` expirations not yet read.
    TimerFd { clockid: i32, value_ns: u64, interval_ns: u64, ticks: u64 },
    SignalFd { mask: u64 },
    Epoll { entries: Vec<EpollEntry> },
    /// `queued`: bytes of events left unread in the kernel's queue (0 when the runtime saved
    /// them in its own memory, which the image holds). `last_wd`: the highest watch descriptor
    /// the instance handed out as far as the runtime saw (version 21; 0: none seen), so that the
    /// next watch gets the number after it.
    Inotify { watches: Vec<InotifyWatch>, queued: u32, last_wd: i32 },
    /// A FIFO opened by path (`deleted`: its name was removed since), inode `ino`, capacity
    /// `size`. `data` holds the bytes that were unread at checkpoint time (on one entry per FIFO;
    /// empty on the others).
    Fifo { path: Vec<u8>, ino: u64, mode: u32, deleted: bool, size: u32, data: Vec<u8> },
    /// A pidfd (pidfd_open, CLONE_PIDFD) of the live process (or, O_EXCL in the fd's flags:
    /// PIDFD_THREAD, the thread) `pid`, as the program's pid namespace numbers it; `own`: the
    /// program's own process (a pidfd of the whole process, not of a thread). Older images held
    /// pidfds as `Other`.
    PidFd { pid: i32, own: bool },
    /// A pidfd of a process that had exited and been reaped (fdinfo `Pid: -1`): `ino` is its
    /// pidfs inode, which every pidfd of that process shares and no other process's does. Made
    /// again as a pidfd of an exited process, one per inode. Older images held these as
    /// `PidFd { pid: -1 }` (restored as /dev/null).
    ExitedPidFd { ino: u64 },
    /// A fanotify group: `flags` and `event_flags` as given to fanotify_init (fdinfo), its
    /// marks, and `queued`: bytes of events left unread in the kernel's queue (FIONREAD), which
    /// a restart cannot queue again. Older images held fanotify groups as `Other`.
    Fanotify { flags: u32, event_flags: u32, marks: Vec<crate::FanotifyMark>, queued: u32 },
    /// A UNIX socket without a path name (a socketpair's end, an unnamed or abstract one) that
    /// a process of the tree with a lower pid also held at the cut: described in full (with its
    /// unread messages) once, in the image of the lowest pid holding it, and named here by its
    /// inode (version 20: a tree whose hundreds of processes all hold the same hundreds of
    /// sockets described each in every image, zdtm session03). A restart of the set takes the
    /// description from there (`treesockets`).
    TreeSocket { ino: u64 },
    /// A POSIX message queue (mq_open; version 21: older images held them as `Other`, which a
    /// restart refuses).
    Mqueue(Box<crate::Mqueue>),
}

/// An inode the program holds open but that has no name any more. All fds of one inode (`dev`,
/// `ino`) come back as one inode; `mode` (type and permission bits) says what it is and how it
/// comes back: a regular file holding its data (`chunks`, stored in the data area like memory,
/// holes not stored, on the inode's first fd only; the others have none), an empty directory
/// (removed again at once), a device node of `rdev`, or a symlink to `target` (an O_PATH fd).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    /// The name it had (without " (deleted)"), for messages and to recreate it next to it.
    pub path: Vec<u8>,
    pub dev: u64,
    pub ino: u64,
    pub mode: u32,
    pub rdev: u64,
    /// Bytes (st_size) of a regular file.
    pub size: u64,
    /// A regular file's data: chunks whose `offset` is the offset in the file, sorted, each
    /// a whole number of pages (the tail of the last one past `size` is zero and not written).
    pub chunks: Vec<Chunk>,
    pub uid: u32,
    pub gid: u32,
    /// Access and modification times: seconds and nanoseconds since the epoch.
    pub atime: (i64, i64),
    pub mtime: (i64, i64),
    /// A symlink's target.
    pub target: Vec<u8>,
    /// st_nlink at checkpoint time: above 0, the file still had another name somewhere.
    pub nlink: u64,
    /// A memfd's seals (F_GET_SEALS; format version 7); 0 for other files.
    pub seals: u32,
    /// Not deleted: a named regular file whose data `--checkpoint-open-files` saved (version 17).
    /// At restart it is reopened by its path as `FdKind::Path` is (with the same checks) while
    /// something is at that path; when nothing is, it is recreated there from this data, and
    /// keeps that name.
    pub saved: bool,
}

impl Deleted {
    pub fn is_file(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFREG
    }
    pub fn is_dir(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFDIR
    }
    pub fn is_symlink(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFLNK
    }
}

/// A file lock or lease held through an fd (fdinfo `lock:` lines), taken again at restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileLock {
    pub kind: LockKind,
    /// A write (exclusive) lock or lease; else a read (shared) one.
    pub write: bool,
    /// Byte range of POSIX and OFD locks, `end` inclusive (u64::MAX: to the end of the file).
    pub start: u64,
    pub end: u64,
    /// A lease being broken: what it is being broken to (a write lease to a read lease: true;
    /// to none: false). None: not being broken.
    pub breaking_to_read: Option<bool>,
    /// A lease: the signal its breaks are announced with (F_GETSIG; 0: SIGIO).
    pub signal: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockKind {
    /// flock(2): owned by the open file description.
    Flock,
    /// fcntl F_SETLK: owned by the process, released when it closes any fd of the file.
    Posix,
    /// fcntl F_OFD_SETLK: owned by the open file description.
    Ofd,
    /// fcntl F_SETLEASE.
    Lease,
}

/// One entry of an epoll interest list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpollEntry {
    /// The fd number the entry was added with (part of the entry's identity).
    pub fd: i32,
    pub events: u32,
    pub data: u64,
    /// An fd of the program holding the file the entry watches: `fd` itself, or another fd if
    /// `fd` was closed or now holds another file, or an in-flight file (None: not open any more,
    /// the entry cannot be restored).
    pub holder: Option<i32>,
    /// Of an epoll instance only in flight in a tree whose entry's file its process holds
    /// nowhere (`holder` None): the fd (pid, fd) of another process of the tree that is that
    /// file (kcmp(KCMP_EPOLL_TFD) at the cut), whose restorer adds the entry (version 27).
    pub held_by: Option<(i32, i32)>,
}

/// One inotify watch; `path` is empty when the runtime did not see it being added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InotifyWatch {
    pub wd: i32,
    pub mask: u32,
    pub path: Vec<u8>,
    /// The watch is on a symbolic link itself (added with IN_DONT_FOLLOW).
    pub dont_follow: bool,
    /// The watched file is no longer at `path` (renamed or removed since) and was not found
    /// elsewhere: the watch cannot be added again.
    pub gone: bool,
    /// The watched inode and its kernel-encoded device (fdinfo; version 27, no bump): a watch
    /// whose path this process's runtime did not see finds it in another process's
    /// `Index::watched`.
    pub ino: u64,
    pub sdev: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FdState {
    /// The fd number. Negative: a file in flight (passed with SCM_RIGHTS and not yet received,
    /// see `Message::fds`), which the program holds through no fd; it is made again and sent.
    pub fd: i32,
    /// Open flags (O_ACCMODE, O_APPEND, O_NONBLOCK, ...) from fdinfo.
    pub flags: i32,
    pub pos: i64,
    pub cloexec: bool,
    pub kind: FdKind,
    /// Another (lower) fd sharing the same open file description (dup, dup2, fork): restored
    /// as a dup of it, so offsets and flags stay shared.
    pub dup_of: Option<i32>,
    /// Modification time (seconds) of a file reopened by path, to notice a changed file.
    pub mtime: i64,
    /// Identity of a file reopened by path (version 3): a different file at the path is refused.
    pub id: crate::FileId,
    /// Locks and leases held through this fd's open file description (POSIX locks: those set
    /// through it), taken again once every fd is in place.
    pub locks: Vec<FileLock>,
    /// Who gets the open file description's SIGIO (F_SETOWN, F_SETOWN_EX) and with which
    /// signal (F_SETSIG); None: no owner and SIGIO (version 15).
    pub owner: Option<FileOwner>,
    /// A file in flight: the fds of other processes of the tree that are one open file
    /// description with it (kcmp at the cut), as (pid, fd), each process's lowest (version 26).
    /// The restart makes it once with them (`unshared::join_in_flight`).
    /// Fd 0, 1 or 2 of a program alone (no tree): `[OWN_STDIO]` when it was the program's own,
    /// not the stdio ckpt-run (or ckpt-restart) gave it (`own_stdio`).
    pub held_with: Vec<(i32, i32)>,
}

impl FdState {
    /// The mark in `held_with` of a lone program's own fd 0, 1 or 2 (version 26, no bump: an
    /// fd of the program has no other holders to name): a restart gives it back as the image
    /// describes it instead of leaving ckpt-restart's stdio there. A process of a tree is told
    /// by its set's manifest (`ownstdio` lines) instead.
    pub const OWN_STDIO: (i32, i32) = (0, -1);

    /// Whether this is fd 0, 1 or 2 of a program alone marked as its own (`OWN_STDIO`).
    pub fn own_stdio(&self) -> bool {
        (0..3).contains(&self.fd) && self.held_with == [Self::OWN_STDIO]
    }

    /// Mark fd 0, 1 or 2 as the program's own (`OWN_STDIO`); other fds are left as they are.
    pub fn mark_own_stdio(&mut self) {
        if (0..3).contains(&self.fd) {
            self.held_with = vec![Self::OWN_STDIO];
        }
    }
}

/// The owner of an open file description's I/O signals and that signal (fcntl F_GETOWN_EX,
/// F_GETSIG), set again at restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileOwner {
    /// F_OWNER_TID (0), F_OWNER_PID (1) or F_OWNER_PGRP (2).
    pub kind: i32,
    /// The thread, process or process group, numbered as the program saw it (0: none).
    pub pid: i32,
    /// The owner was the process itself (its pid, its main thread's tid, its process group):
    /// the restarted process's own ids are given, whatever they are now.
    pub own: bool,
    /// The signal sent (0: SIGIO, without siginfo details).
    pub signal: i32,
}

/// A signal disposition in the kernel's `struct sigaction` layout.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct SigAction {
    pub signo: i32,
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

/// Memory-map fields for prctl(PR_SET_MM_MAP), from /proc/self/stat.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct MmFields {
    pub start_code: u64,
    pub end_code: u64,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub brk: u64,
    pub start_stack: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Rlimit {
    pub resource: u32,
    pub cur: u64,
    pub max: u64,
}

/// Process-wide kernel state besides memory and fds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProcessState {
    pub mm: MmFields,
    pub auxv: Vec<u64>,
    pub cwd: Vec<u8>,
    pub umask: u32,
    pub rlimits: Vec<Rlimit>,
    pub sigactions: Vec<SigAction>,
    /// glibc's rseq area offset from the thread pointer and its registered size (0 = none).
    pub rseq_offset: i64,
    pub rseq_size: u32,
    pub creds: Creds,
    /// prctl settings, oom_score_adj, loginuid, membarrier registrations, executable (version 7).
    pub attrs: crate::ProcAttrs,
    /// The root directory (chroot), as the real root sees it; empty or "/": not changed
    /// (version 16).
    pub root: Vec<u8>,
}

/// User and group ids (real, effective, saved) and supplementary groups of the process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Creds {
    pub uids: [u32; 3],
    pub gids: [u32; 3],
    pub groups: Vec<u32>,
    /// The filesystem user and group ids (setfsuid, setfsgid; version 21): the effective ones
    /// unless the program set them apart.
    pub fs: [u32; 2],
}

/// What the restarter hands to the runtime's restart entry (by address, in its switch area).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct RestartInfo {
    pub magic: u64,
    /// The restarter's switch area, which the runtime unmaps once it runs.
    pub switch_base: u64,
    pub switch_len: u64,
    /// `nthreads` RestartThread records at address `threads` (inside the switch area).
    pub threads: u64,
    pub nthreads: u64,
    /// Header index_hash of the image restarted from (0: unknown) and its chain length: the
    /// program's next checkpoint may be an increment over it.
    pub image_hash: u64,
    pub chain: u64,
    /// The page hash table of the restored memory (pagetable.rs), mapped by the restarter for
    /// the runtime to take over (0: none).
    pub page_table: u64,
    pub page_table_len: u64,
    /// For the line the runtime prints once the program runs again: when ckpt-restart started
    /// (ns, CLOCK_MONOTONIC), the bytes of memory it restored, the checkpoint's number, the
    /// image's path (`path_len` bytes at `path`, in the switch area), and the log level
    /// ckpt-restart was given (CKPT_LOG: 0 quiet, 1 info, 2 debug), which the program keeps.
    pub started_ns: u64,
    pub memory: u64,
    pub generation: u64,
    pub path: u64,
    pub path_len: u64,
    pub log_level: u64,
    /// The pid tools outside the program's namespace know it by (the outer ckpt-restart; 0: none).
    pub outer_pid: u64,
    /// Device and inode of the image directory as the outer ckpt-restart checked it (0: not
    /// checked): see `Launch::dir_dev`.
    pub dir_dev: u64,
    pub dir_ino: u64,
    /// A task of a step: the epoch of the restarted step (the runtime's coordinator publishes
    /// its address under it); 0 otherwise.
    pub step_epoch: u64,
    /// The program's root directory when it had called chroot() (`root_len` bytes at `root`,
    /// in the switch area; 0: none): the runtime enters it before the threads come back.
    pub root: u64,
    pub root_len: u64,
    /// `npidfds` RestartPidFd records at address `pidfds` (in the switch area): pidfds of the
    /// program's own threads, which the runtime opens once it has made the threads again.
    pub pidfds: u64,
    pub npidfds: u64,
    /// A task of a step: where the step's listeners are now (`addr_map_len` bytes at
    /// `addr_map`, in the switch area: ckpt_step::addrmap::Map::encode; 0: none), for the
    /// runtime's connect hook.
    pub addr_map: u64,
    pub addr_map_len: u64,
    /// The outer process's /proc/PID directory, when it leads its session (-1: none): the
    /// runtime holds a kernel hangup from the program's SIGHUP handler while the outer process
    /// is exiting (runtime hupgate.rs). Last, so that a runtime of an older image, which reads
    /// the fields before it, is not misled.
    pub outer_proc_fd: i64,
    /// `nhandoffs` RestartHandoff records at address `handoffs` (in the switch area): pidfds of
    /// threads that one process of a tree holds of another's, handed over once the threads
    /// exist. After `outer_proc_fd`: a runtime of an older image does not read them.
    pub handoffs: u64,
    pub nhandoffs: u64,
}

impl RestartInfo {
    pub const MAGIC: u64 = 0x434b_5054_5253_5431; // "CKPTRST1"
}

/// A pidfd of one of the program's own threads (pidfd_open of its tid, PIDFD_THREAD), which the
/// restarter cannot open (the thread does not exist yet) and holds /dev/null for at `fd`: the
/// runtime opens it once the threads are back and puts it there (`dup_of` >= 0: a dup of that
/// fd's, made after it).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct RestartPidFd {
    pub fd: i32,
    pub tid: i32,
    /// Status flags (O_NONBLOCK, O_EXCL for PIDFD_THREAD).
    pub flags: i32,
    pub cloexec: i32,
    pub dup_of: i32,
}

/// A pidfd of a thread of another process of the tree, handed over after a restart (the
/// restarter's handpidfds.rs): `Send`: the process of thread `tid` opens a pidfd of it with
/// `flags` once its threads are back and sends it over `sock` (a SOCK_SEQPACKET end); `Receive`:
/// the holder, which has /dev/null at `fd` meanwhile, takes it from `sock` and puts it at `fd`
/// (unless process `owner` ends first); `Dup`: then `fd` becomes a dup of `dup_of` again.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct RestartHandoff {
    pub kind: i32,
    pub fd: i32,
    pub tid: i32,
    pub owner: i32,
    /// Status flags (O_NONBLOCK, O_EXCL for PIDFD_THREAD).
    pub flags: i32,
    pub cloexec: i32,
    pub sock: i32,
    pub dup_of: i32,
}

impl RestartHandoff {
    pub const SEND: i32 = 1;
    pub const RECEIVE: i32 = 2;
    pub const DUP: i32 = 3;
}

/// One thread to recreate, in a fixed layout (the runtime reads it before unmapping the area).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct RestartThread {
    pub tid: i32,
    pub altstack_flags: i32,
    pub ucontext: u64,
    pub fs_base: u64,
    pub tid_address: u64,
    pub robust_head: u64,
    pub robust_len: u64,
    pub altstack_sp: u64,
    pub altstack_size: u64,
    pub rseq: u64,
    pub attrs: crate::ThreadAttrs,
}
