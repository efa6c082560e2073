//! Capture and restore of the kernel resources behind a program's file descriptors, one module
//! per kind, with both halves side by side (as CRIU keeps files-reg.c, pipes.c, ...): what the
//! runtime reads at checkpoint time and what ckpt-restart does with it are read together.
//!
//! Two sides use this crate, under different rules:
//! - `capture` functions run inside the program (the runtime), on the checkpoint thread with
//!   every other thread stopped: system calls through `sys` only (never libc functions that may
//!   take a lock a stopped thread holds), no stdio; allocations go to the runtime's own
//!   allocator (the global allocator of the runtime library), never libc's malloc.
//! - `restore` functions run in ckpt-restart before the address-space switch, with plain libc;
//!   they return new fds of ours (close-on-exec), which the restarter moves to their numbers.
//!
//! The runtime and the restarter keep the fd table itself (listing, dups, placing fds); the
//! kinds that are not moved here yet (event fds, epoll, inotify) still live in their `fdobjs`
//! modules.
//!
//! Modules: `deleted` (inodes without a name: deleted files of any size, tmpfiles, removed
//! directories and symlinks, deleted device nodes), `memfd` (what a memfd has besides: seals,
//! exec permission, its own open mode), `pipe` (pipes and FIFOs), `locks` (file
//! locks and leases), `fown` (the owner and signal of a file's SIGIO), `procfs` (the program's own /proc paths, the working directory), `aio`
//! (AIO contexts, restored by the runtime after the switch), `sockets` (every family: the
//! program's own connections made again together), `tty` (terminals: the program's own
//! pseudo-terminals made again, outside ones become ckpt-restart's), `sysv` (System V shared
//! memory, semaphores and message queues of the program's IPC namespace, made again with their
//! ids), `mqueue` (POSIX message queues with their messages and notification), `say` (where
//! ckpt-restart's own messages go: its stderr, also once fd 2 is the program's again).

pub mod aio;
pub mod deleted;
pub mod fown;
pub mod locks;
pub mod memfd;
pub mod mqueue;
pub mod pipe;
pub mod procfs;
pub mod say;
pub mod sockets;
pub mod sysv;
mod sys;
pub mod tty;

/// What can go wrong restoring a resource. Messages are sentences for users.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call failed while doing `what`. (`err` is in the message, so it is not also
    /// this error's source: a chain printed whole would say it twice.)
    #[error("{what}: {err}")]
    Os { what: String, err: std::io::Error },
    /// The resource cannot be restored faithfully here.
    #[error("{0}")]
    Refused(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The last OS error, while doing `what`.
    pub fn last(what: impl Into<String>) -> Error {
        Error::Os { what: what.into(), err: std::io::Error::last_os_error() }
    }
}

/// Say what a restore did instead of the obvious, on stderr, when CKPT_LOG is info or debug
/// (ckpt-restart is quiet by default).
pub fn info(msg: &str) {
    if matches!(std::env::var("CKPT_LOG").as_deref(), Ok("info" | "debug")) {
        crate::say!("ckpt-restart: {msg}");
    }
}

/// A warning: something was not restored as it was (always shown).
pub fn warn(msg: &str) {
    crate::say!("ckpt-restart: warning: {msg}");
}

/// Bytes for messages.
pub(crate) fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A libc return value: negative means the last OS error, while doing `what`.
pub(crate) fn check(r: libc::c_int, what: impl FnOnce() -> String) -> Result<libc::c_int> {
    if r < 0 {
        return Err(Error::last(what()));
    }
    Ok(r)
}

/// Close an fd of ours (restore side).
pub(crate) fn close(fd: libc::c_int) {
    // SAFETY: closing an fd of ours.
    unsafe { libc::close(fd) };
}
