//! Exact process and thread ids for checkpointed programs.
//!
//! glibc's error-checking, recursive, robust and PI mutexes (its dlopen lock among them) store
//! the owner's kernel thread id; a restarted program must get its old ids back, not just see them
//! through hooks. Ids can be chosen (clone3 with set_tid) only by a process holding
//! CAP_CHECKPOINT_RESTORE over the pid namespace, which an ordinary user has in a user namespace
//! of its own. So `ckpt-run` and `ckpt-restart` run the program in a user, pid and mount
//! namespace:
//!
//! ```text
//! ckpt-run / ckpt-restart (outer, the pid the shell, mpirun or slurmstepd knows)
//!   └─ init (pid 1 inside: reaps orphans, reports the program's stops and exit)
//!        └─ the program (inside, ckpt-run's pid; after ckpt-restart the pid it had)
//! ```
//!
//! The program's pid inside is ckpt-run's own (chosen with clone3 set_tid): the pid it would
//! have had without a namespace, the one the user sees, and unique on the host while ckpt-run
//! lives, so that names programs derive from their pid (/tmp/x.$$, /dev/shm/x-PID) do not
//! collide between programs running side by side (each would be pid 2 otherwise).
//!
//! Modules, one job each:
//! - `spawn`: the outer side: create the namespaces (no user namespace for root), map ids,
//!   start init, learn the program's pid;
//! - `init`: pid 1: a fresh /proc, the program with its pid (ckpt-run's, or at restart the
//!   restarter with the program's old pid in a time namespace), reaping, reports, and witness of
//!   the signals sent to the whole process group;
//! - `supervise`: the outer process afterwards: forward signals (held while a restarted tree is
//!   being restored), mirror stops, exit as the program;
//! - `forward`: which signals are forwarded, and how;
//! - `report`: messages from init to the outer process;
//! - `coord`: init as the coordinator of the program's process tree: the two-phase checkpoint
//!   of every process; `treemsg`: its messages; `sets`: committing an image set; `setchain`:
//!   the older images a set's increments build on, linked from the previous set; `launchers`:
//!   processes whose work runs outside the tree (srun), which refuse its checkpoint;
//! - `jobstop`: processes stopped by job control, as /proc shows them;
//! - `leftover`: processes that outlive the program (init stays with them, the outer process
//!   exits as the program did);
//! - `idmap`: the uid and gid maps; `timens`: clock offsets; `caps`: the capability the restarter
//!   keeps across its execve.
//!
//! Where user namespaces cannot be created, `start` says why and the caller runs the program in
//! place with virtual ids (the runtime's hooks), as before.

pub mod caps;
mod coord;
mod devpts;
mod forward;
mod launchers;
mod leftover;
mod idmap;
mod init;
mod joins;
pub mod jobstop;
mod report;
pub use report::{attach_fd, attached_fd};
mod samefds;
mod nscheck;
mod phasetimes;
mod sets;
mod setchain;
mod spawn;
mod supervise;
pub mod timens;
pub mod treemsg;
mod userdirs;

pub use coord::Target as TreeTarget;
pub use forward::{held_ms, FORWARD_MARK};
pub use idmap::{for_ids, IdMaps};
pub use spawn::{block_signals_early, start, unblock_early, Namespace, OUTER_PROC_VAR};
pub use timens::Clocks;

use std::ffi::CString;

/// The name (comm) of the runtime's snapshot writer, which init waits for when the program ends.
pub const WRITER_NAME: &std::ffi::CStr = c"ckpt-writer";

/// The name (comm) the outer process takes just before it exits because the program ended while
/// other processes of its namespace live on (`Msg::Outlived`): the namespace is not being
/// killed, so the runtime's hangup gate (runtime hupgate.rs) holds no SIGHUP for it.
pub const ENDED_NAME: &std::ffi::CStr = c"ckpt-ended";

/// What runs as the program inside the namespace.
#[derive(Debug, Clone)]
pub enum Payload {
    /// ckpt-run: exec `argv` (looked up in PATH) as a process with pid `pid` (ckpt-run's;
    /// without it, starting fails and the caller runs the program in place).
    Exec { argv: Vec<CString>, pid: i32 },
    /// ckpt-restart: exec `exe` with `argv` (the restarter, which becomes the program) as a
    /// process with pid `pid`, in a time namespace whose clocks read `clocks` (when given).
    Restore { exe: CString, argv: Vec<CString>, pid: i32, clocks: Option<Clocks> },
}

/// How the namespace is set up and supervised.
#[derive(Debug, Clone)]
pub struct Options {
    /// Our name in messages ("ckpt-run").
    pub tool: &'static str,
    /// Signals forwarded with FORWARD_MARK: the program's checkpoint and stop signals.
    pub marked: Vec<i32>,
    /// Where init, as the coordinator of the program's process tree, commits image sets
    /// (None: the processes the program starts are not checkpointed).
    pub tree: Option<TreeTarget>,
    /// A restart: the processes whose runtimes say `Running` once they run again (the root
    /// alone for one image). The signals the outer process forwards wait until each has: until
    /// then they would reach a process still being restored (empty: nothing waits).
    pub restored: Vec<i32>,
    /// A restart: the indices of the program's own pseudo-terminal pairs, made at their old
    /// index in the namespace's devpts instance. The restart's terminal gets its name there
    /// (`devpts::name_host_terminals`) unless its index is one of them.
    pub pairs: Vec<u32>,
}

/// The kernel's struct clone_args (clone3), also used by the runtime to recreate threads.
#[repr(C)]
#[derive(Debug, Default)]
pub struct CloneArgs {
    pub flags: u64,
    pub pidfd: u64,
    pub child_tid: u64,
    pub parent_tid: u64,
    pub exit_signal: u64,
    pub stack: u64,
    pub stack_size: u64,
    pub tls: u64,
    pub set_tid: u64,
    pub set_tid_size: u64,
    pub cgroup: u64,
}

/// Why the program cannot have exact ids here (the caller falls back to virtual ids).
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    #[error("turned off by {0}")]
    Disabled(&'static str),
    #[error("cannot create a user namespace: {}{}", .0, hint(.0))]
    Create(std::io::Error),
    #[error("cannot map ids into the user namespace: {0}")]
    IdMap(std::io::Error),
    #[error("{}: {}", .0.what(), .1)]
    Setup(report::Stage, std::io::Error),
    #[error("{0}")]
    Other(std::io::Error),
}

fn hint(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::ENOSPC) => " (user.max_user_namespaces is exhausted or 0)",
        Some(libc::EPERM) | Some(libc::EACCES) => " (unprivileged user namespaces are turned off here: a sysctl, AppArmor or a seccomp policy)",
        _ => "",
    }
}

/// Whether the user turned namespaces off: `--no-namespace` (`flag`) or CKPT_NAMESPACE=0.
pub fn disabled(flag: bool) -> Option<&'static str> {
    if flag {
        return Some("--no-namespace");
    }
    match std::env::var("CKPT_NAMESPACE").ok()?.to_ascii_lowercase().as_str() {
        "0" | "no" | "false" | "off" => Some("CKPT_NAMESPACE=0"),
        _ => None,
    }
}

/// Stand for the program in its namespace until it ends (never returns), or say why it has
/// none and return, so that the caller runs it in place: always when namespaces are unavailable,
/// under CKPT_LOG=info when the user turned them off. `instead` says what happens then.
pub fn supervise_or_explain(started: Result<Namespace, Unavailable>, tool: &str, instead: &str) {
    match started {
        Ok(ns) => {
            if verbose() {
                eprintln!("{tool}: exact process ids: the program is pid {} in its own {}", ns.program_pid(), ns.kinds());
            }
            ns.supervise()
        }
        Err(e @ Unavailable::Disabled(_)) if !verbose() => drop(e),
        Err(e) => {
            eprintln!("{tool}: exact process ids are not available ({e}); {instead}");
            if verbose() {
                eprintln!("{tool}: the program's pseudo-terminals are numbered among the host's (no devpts instance of its own): after a restart a pair whose index another terminal took meanwhile is made at another index");
            }
        }
    }
}

/// Whether CKPT_LOG asks for informational lines.
pub fn verbose() -> bool {
    matches!(std::env::var("CKPT_LOG").as_deref(), Ok("info" | "debug" | "trace"))
}
