//! Capture and restore of sockets and terminals, both halves side by side (as ckpt-kinds does
//! for files; these modules move there once it lands):
//! - `capture` and `tty::capture` run inside the program (the runtime), on the checkpoint
//!   thread with every other thread stopped: system calls through `sys` only, no stdio,
//!   allocations from the runtime's own allocator.
//! - `restore` and `tty::Terminals` run in ckpt-restart before the address-space switch, with
//!   plain libc; every fd they return is a new fd of ours (close-on-exec) that the restarter
//!   moves to its number.
//!
//! Sockets that talk to each other inside the program (socket pairs, a UNIX or TCP client and
//! the connection its listener accepted, a UDP socket and the sender of a queued datagram) are
//! made again as such; what a socket talks to outside the program is not (see restore.rs).

pub mod capture;
mod diag;
mod opts;
mod queue;
pub mod restore;
mod sys;
pub mod tty;
mod unix;

/// What can go wrong restoring a socket or terminal. Messages are sentences for users.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call failed while doing `what`.
    #[error("{what}: {source}")]
    Os { what: String, source: std::io::Error },
    /// It cannot be restored faithfully here (`--ignore-missing-files` goes on without it).
    #[error("{0}")]
    Refused(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The last OS error, while doing `what`.
    pub fn last(what: impl Into<String>) -> Error {
        Error::Os { what: what.into(), source: std::io::Error::last_os_error() }
    }
}

/// A libc return value: negative means the last OS error, while doing `what`.
pub(crate) fn check(r: libc::c_int, what: impl FnOnce() -> String) -> Result<libc::c_int> {
    if r < 0 {
        return Err(Error::last(what()));
    }
    Ok(r)
}

/// Say what a restore did instead of the obvious, on stderr, when CKPT_LOG is info or debug
/// (ckpt-restart is quiet by default).
pub fn info(msg: &str) {
    if matches!(std::env::var("CKPT_LOG").as_deref(), Ok("info" | "debug")) {
        eprintln!("ckpt-restart: {msg}");
    }
}

/// A warning: something was not restored as it was (always shown).
pub fn warn(msg: &str) {
    eprintln!("ckpt-restart: warning: {msg}");
}

pub(crate) fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub(crate) fn close(fd: libc::c_int) {
    // SAFETY: closing an fd of ours.
    unsafe { libc::close(fd) };
}
