//! The outer side of starting a program in its namespaces: block every signal (they are read
//! from a signalfd later, and init must not take any), clone init into a new user, pid and mount
//! namespace, write its id maps from here (we stay in the parent namespaces), let it go on, and
//! wait for its first report: the program started (with a pidfd of it), or setting up failed
//! before the program ran, so the caller can still run it in place.
//!
//! A caller with CAP_SYS_ADMIN (root) needs no user namespace: the pid namespace is then owned
//! by the caller's, where root may choose pids, and the program keeps root's ids and
//! capabilities exactly as without a namespace (in a user namespace of its own they would count
//! only inside it: no ports below 1024, no higher priorities, ...).

use crate::report::{self, Msg};
use crate::{idmap, init, Options, Payload, Unavailable};
use std::io::Error;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A program running in its namespaces; `supervise` stands for it until it ends.
pub struct Namespace {
    pub(crate) init_pid: i32,
    /// The program's pid inside the namespace.
    pub(crate) pid: i32,
    pub(crate) pidfd: OwnedFd,
    pub(crate) sock: OwnedFd,
    pub(crate) opts: Options,
    /// In a user namespace of its own (not for root).
    pub(crate) userns: bool,
    /// The write end of the pipe init reads its start from, kept open while we live when we lead
    /// our session (see `kill_with_us`).
    pub(crate) _lifeline: Option<OwnedFd>,
}

impl Namespace {
    /// The program's pid inside its namespace.
    pub fn program_pid(&self) -> i32 {
        self.pid
    }

    /// Which namespaces, in words.
    pub fn kinds(&self) -> &'static str {
        if self.userns {
            "user, pid, mount and IPC namespace"
        } else {
            "pid, mount and IPC namespace"
        }
    }
}

pub(crate) fn sigmask(how: i32, set: &libc::sigset_t) -> libc::sigset_t {
    // SAFETY: an all-zero sigset is a valid out-parameter; set is valid.
    unsafe {
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigprocmask(how, set, &mut old);
        old
    }
}

pub(crate) fn full_set() -> libc::sigset_t {
    // SAFETY: sigfillset initializes the set.
    unsafe {
        let mut s: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut s);
        s
    }
}

/// The signal mask the process had before `block_signals_early`.
static EARLY: std::sync::OnceLock<libc::sigset_t> = std::sync::OnceLock::new();

/// Block every signal now, first thing in the outer process: a signal sent to it as soon as it
/// exists is then read and forwarded (`supervise`) instead of ending it with its default action
/// before `start`. `start` gives the program the mask we had before, and `unblock_early` gives
/// it back to us when we run the program in place after all.
pub fn block_signals_early() {
    let _ = EARLY.set(sigmask(libc::SIG_BLOCK, &full_set()));
}

/// Our mask as it was before `block_signals_early` (nothing when it was not called).
pub fn unblock_early() {
    if let Some(m) = EARLY.get() {
        sigmask(libc::SIG_SETMASK, m);
    }
}

/// Start `payload` in new namespaces. Must be called while the process has one thread.
pub fn start(payload: &Payload, opts: &Options) -> Result<Namespace, Unavailable> {
    let now = sigmask(libc::SIG_BLOCK, &full_set());
    let mask = EARLY.get().copied().unwrap_or(now);
    let r = start_blocked(payload, opts, mask);
    if r.is_err() {
        sigmask(libc::SIG_SETMASK, &mask);
    }
    r
}

fn fds2(r: i32, v: [RawFd; 2]) -> std::io::Result<(OwnedFd, OwnedFd)> {
    if r != 0 {
        return Err(Error::last_os_error());
    }
    // SAFETY: both fds were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(v[0]), OwnedFd::from_raw_fd(v[1])) })
}

fn start_blocked(payload: &Payload, opts: &Options, mask: libc::sigset_t) -> Result<Namespace, Unavailable> {
    let mut v = [-1; 2];
    // SAFETY: v receives two new fds.
    let (ours, theirs) = fds2(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, v.as_mut_ptr()) }, v).map_err(Unavailable::Other)?;
    // SAFETY: as above.
    let (sync_r, sync_w) = fds2(unsafe { libc::pipe2(v.as_mut_ptr(), libc::O_CLOEXEC) }, v).map_err(Unavailable::Other)?;
    // Init wakes us with SIGCONT when the program continues after a stop (see supervise).
    // SAFETY: pidfd_open of our own pid; the fd (close-on-exec) is owned below.
    let me = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
    // SAFETY: a new fd owned by nobody else.
    let me = (me >= 0).then(|| unsafe { OwnedFd::from_raw_fd(me as RawFd) });
    // Our /proc directory, for the program's runtime, when we lead our session (see
    // `kill_with_us`): from inside the namespace it cannot see us.
    // SAFETY: getsid/getpid have no preconditions.
    let leader = unsafe { libc::getsid(0) == libc::getpid() };
    let outer_proc = leader.then(|| std::fs::File::open(format!("/proc/{}", std::process::id())).ok().map(OwnedFd::from)).flatten();
    let bounding = crate::caps::bounding_set();
    let outer_pid = std::process::id() as i32;
    let userns = !crate::caps::has(crate::caps::CAP_SYS_ADMIN);
    let flags = libc::CLONE_NEWPID | libc::CLONE_NEWNS | libc::CLONE_NEWIPC | libc::SIGCHLD | if userns { libc::CLONE_NEWUSER } else { 0 };
    // SAFETY: a fork-like clone (no new stack) of this single-threaded process; the child only
    // runs init::main, which never returns.
    let pid = unsafe { libc::syscall(libc::SYS_clone, flags, 0, 0, 0, 0) };
    if pid < 0 {
        return Err(Unavailable::Create(Error::last_os_error()));
    }
    if pid == 0 {
        drop(ours);
        drop(sync_w);
        init::main(init::Init { report: theirs, sync: sync_r, outer: me, outer_proc, payload, mask, bounding, userns, tool: opts.tool, tree: opts.tree.clone(), outer_pid, restored: opts.restored.clone(), pairs: opts.pairs.clone() })
    }
    let pid = pid as i32;
    drop(theirs);
    drop(me);
    drop(outer_proc);
    let abandon = |e: Unavailable| {
        // SAFETY: killing and reaping our own child.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        e
    };
    if userns {
        let read = |f: &str| std::fs::read_to_string(format!("/proc/self/{f}")).unwrap_or_default();
        let (u, g) = (read("uid_map"), read("gid_map"));
        let may_set = crate::caps::has(crate::caps::CAP_SETUID) && crate::caps::has(crate::caps::CAP_SETGID);
        // SAFETY: geteuid/getegid have no preconditions.
        let maps = idmap::for_ids(unsafe { libc::geteuid() }, unsafe { libc::getegid() }, may_set.then_some((u.as_str(), g.as_str())));
        idmap::write(pid, &maps).map_err(|e| abandon(Unavailable::IdMap(e)))?;
    }
    // SAFETY: writing one byte from a valid buffer to our pipe.
    if unsafe { libc::write(sync_w.as_raw_fd(), b"g".as_ptr() as *const libc::c_void, 1) } != 1 {
        return Err(abandon(Unavailable::Other(Error::last_os_error())));
    }
    let lifeline = kill_with_us(&sync_r).then_some(sync_w);
    drop(sync_r);
    match report::recv(ours.as_raw_fd(), 0) {
        Ok(Some((Msg::Started { pid: inner }, Some(pidfd)))) => Ok(Namespace { init_pid: pid, pid: inner, pidfd, sock: ours, opts: opts.clone(), userns, _lifeline: lifeline }),
        Ok(Some((Msg::Failed { stage, errno }, _))) => Err(abandon(Unavailable::Setup(stage, Error::from_raw_os_error(errno)))),
        Ok(_) => Err(abandon(Unavailable::Other(Error::other("the namespace's init ended before starting the program")))),
        Err(e) => Err(abandon(Unavailable::Other(e))),
    }
}

/// When we lead our session (a terminal's shell exec'd us, `script`, `ssh -t`, `setsid`,
/// slurmstepd), our death makes the kernel send SIGHUP to the terminal's foreground process group,
/// the program's, before our parent-death signal reaches init: a program that handles SIGHUP
/// (vim removes its swap file) would clean up what its last image still needs, where natively,
/// leading the session itself, a SIGKILL gives it no chance. So init's end of its start pipe
/// (`read_end`, which init keeps open for its life) signals our process group with SIGKILL when
/// its last writer closes: the kernel does that while closing our files, before it hangs up the
/// terminal (measured on 6.18: a session leader's SIGKILL, 2000 of 2000 times the pipe's signal
/// came first). Not when another process holds our end of the pipe at that moment (one that
/// opened /proc/OURPID/fd/N): the last close is then that process's, after the hangup; the
/// program's runtime then holds the hangup from its SIGHUP handler until the namespace's SIGKILL
/// (it reads whether we are exiting through `OUTER_PROC_VAR`; docs/restored.md). The caller
/// keeps the write end open for as long as it lives; init is gone before an ordinary exit of
/// ours, so then nothing is sent. Returns whether it is armed.
fn kill_with_us(read_end: &OwnedFd) -> bool {
    // SAFETY: getsid/getpid/getpgrp have no preconditions; fcntl on our own fd.
    unsafe {
        if libc::getsid(0) != libc::getpid() {
            return false;
        }
        let fd = read_end.as_raw_fd();
        let fl = libc::fcntl(fd, libc::F_GETFL);
        fl >= 0
            // A negative owner is a process group.
            && libc::fcntl(fd, libc::F_SETOWN, -libc::getpgrp()) == 0
            && libc::fcntl(fd, F_SETSIG, libc::SIGKILL) == 0
            && libc::fcntl(fd, libc::F_SETFL, fl | libc::O_ASYNC) == 0
    }
}

/// The variable that names, in the program's environment, the fd on the outer process's /proc
/// directory that init passes it (runtime hupgate.rs).
pub const OUTER_PROC_VAR: &[u8] = b"__CKPT_OUTER_PROC\0";

/// fcntl's F_SETSIG (linux/fcntl.h; not in the libc crate for this target).
const F_SETSIG: libc::c_int = 10;
