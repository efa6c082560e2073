//! The runtime's side of a process tree (the coordinator is the namespace's init, ckpt-ns's
//! `coord`): every process of the program's tree runs the runtime and is a member.
//!
//! - Membership: a connection to the coordinator's abstract socket (`join`), made by the
//!   process ckpt-run started, by every child it forks (the fork handler activates the runtime
//!   in the child: its own checkpoint thread), by every program a member execs (the exec hooks
//!   pass the preload on, marked as a tree member) and by every process after a restart. The
//!   coordinator must be pid 1 of our pid namespace and of our uid (SO_PEERCRED), so no other
//!   process can pose as it.
//! - A checkpoint request (signal, timer, ckpt-ctl) of a member goes to the coordinator, which
//!   answers `Solo` (the program alone: it checkpoints itself as ever) or runs the tree's
//!   checkpoint, in which this process takes its part (`part`): stop, wait for every process to
//!   be stopped, capture and snapshot, wait, resume, write `<pid>.ckpt` into the set directory.
//! - A checkpoint with the stop signal (the wall-time pattern): the coordinator says Hold instead
//!   of Resume, so no process of the tree runs program code after the cut; the threads stay
//!   stopped while the image is written, until the tree's result: a committed set ends the
//!   namespace (the requester exits), a failed one releases them and the program goes on.
//! - Without a namespace there is no coordinator: children are not managed (as before).
//!
//! Raw system calls only: the waits happen while the program's threads are stopped.

use crate::checkpoint::{self, Outcome, Part, Phases};
use crate::imgdir::Dir;
use crate::log::{log, DEBUG, ERROR};
use crate::sys::{self, syscall};
use ckpt_ns::treemsg::{socket_name, TreeMsg, LEN};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};

static CONN: AtomicI32 = AtomicI32::new(-1);
/// A stop request of ours is pending: exit once the tree's set is committed (or not).
static STOPPING: AtomicBool = AtomicBool::new(false);
/// The coordinator said Hold: our threads stay stopped after the capture until the tree's result.
static HELD: AtomicBool = AtomicBool::new(false);
/// This process is a member other than the one ckpt-run started (a child, or a program one
/// execs): it has no periodic timer and no control socket of its own.
static CHILD: AtomicBool = AtomicBool::new(false);

pub fn is_member() -> bool {
    CONN.load(Ordering::Acquire) >= 0
}

pub fn is_child() -> bool {
    CHILD.load(Ordering::Relaxed)
}

pub fn set_child() {
    CHILD.store(true, Ordering::Relaxed);
}

/// The connection's fd (-1: none), for the checkpoint thread's poll; left out of images.
pub fn fd() -> i32 {
    CONN.load(Ordering::Acquire)
}

/// After a restart: the connection's fd number was the old process's (it may be one of ours
/// now): forget it without closing.
pub fn forget() {
    CONN.store(-1, Ordering::Release);
    // A stop request the image was taken in answer to was the old process's.
    STOPPING.store(false, Ordering::Release);
    HELD.store(false, Ordering::Release);
}

/// Whether the program's threads stay stopped after this capture (a stop checkpoint of the tree).
pub fn held() -> bool {
    HELD.load(Ordering::Acquire)
}

/// The tree's result came while our threads were held: a committed set keeps them stopped until
/// the namespace ends; a failed one lets them go on.
fn settle_hold(ok: bool) {
    if HELD.load(Ordering::Acquire) && !ok {
        HELD.store(false, Ordering::Release);
        crate::threads::resume_all();
    }
}

/// Connect to the coordinator of our namespace (none without one: nothing happens).
pub fn join() {
    let old = CONN.swap(-1, Ordering::AcqRel);
    if old >= 0 {
        sys::close(old);
    }
    if !crate::ids::in_namespace() {
        return;
    }
    match connect(crate::ids::outer_pid()) {
        Ok(fd) => {
            CONN.store(fd, Ordering::Release);
            log!(DEBUG, "member of the process tree (pid {})", sys::getpid());
        }
        Err(e) => log!(DEBUG, "no coordinator for the process tree: {e}"),
    }
}

fn connect(outer: i32) -> Result<i32, String> {
    let fd = syscall!(libc::SYS_socket, libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0).map_err(checkpoint::strerror)? as i32;
    let fd = sys::own(sys::move_high(fd));
    let name = socket_name(outer);
    // SAFETY: an all-zero sockaddr_un is valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as u16;
    for (d, s) in addr.sun_path.iter_mut().zip(&name) {
        *d = *s as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + name.len();
    let r = syscall!(libc::SYS_connect, fd, &addr as *const libc::sockaddr_un, len).map_err(checkpoint::strerror).and_then(|_| {
        let mut cred = libc::ucred { pid: 0, uid: u32::MAX, gid: 0 };
        let mut clen = std::mem::size_of::<libc::ucred>() as u32;
        syscall!(libc::SYS_getsockopt, fd, libc::SOL_SOCKET, libc::SO_PEERCRED, &mut cred as *mut libc::ucred, &mut clen as *mut u32).map_err(checkpoint::strerror)?;
        // Our namespace's init, of our uid: nothing else may coordinate us.
        if cred.pid != 1 || cred.uid != sys::geteuid() {
            return Err(format!("the socket's owner is pid {} uid {}, not our init", cred.pid, cred.uid));
        }
        Ok(())
    });
    match r {
        Ok(()) => Ok(fd),
        Err(e) => {
            sys::close(fd);
            Err(e)
        }
    }
}

fn send(m: TreeMsg) -> bool {
    let b = m.encode();
    syscall!(libc::SYS_sendto, fd(), b.as_ptr(), LEN, libc::MSG_NOSIGNAL, 0, 0).is_ok()
}

/// One message from the coordinator and the fd it carries (-1: none); None when it is gone
/// (or, with `nonblock`, when nothing is there).
fn recv(nonblock: bool) -> Option<(TreeMsg, i32)> {
    let mut data = [0u8; LEN];
    let mut iov = libc::iovec { iov_base: data.as_mut_ptr() as *mut libc::c_void, iov_len: LEN };
    let mut cbuf = [0u64; 8];
    loop {
        // SAFETY: an all-zero msghdr is valid; its pointers outlive the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = std::mem::size_of_val(&cbuf);
        let flags = libc::MSG_CMSG_CLOEXEC | if nonblock { libc::MSG_DONTWAIT } else { 0 };
        match syscall!(libc::SYS_recvmsg, fd(), &mut msg as *mut libc::msghdr, flags) {
            Err(libc::EINTR) => continue,
            Err(libc::EAGAIN) => return None,
            Err(_) | Ok(0) => {
                lost();
                return None;
            }
            Ok(n) => {
                let mut got = -1;
                // SAFETY: walking the control messages the kernel wrote into cbuf.
                unsafe {
                    let c = libc::CMSG_FIRSTHDR(&msg);
                    if !c.is_null() && (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                        got = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const i32);
                    }
                }
                match TreeMsg::decode(&data[..n as usize]) {
                    Some(m) => return Some((m, got)),
                    None => {
                        if got >= 0 {
                            sys::close(got);
                        }
                        continue;
                    }
                }
            }
        }
    }
}

/// The coordinator is gone (the namespace is ending): no more tree checkpoints.
fn lost() {
    let fd = CONN.swap(-1, Ordering::AcqRel);
    if fd >= 0 {
        sys::close(fd);
    }
}

/// A checkpoint (or, `stop`, a checkpoint and exit) was asked of this member.
pub fn request(stop: bool) {
    if stop {
        STOPPING.store(true, Ordering::Release);
    }
    if !send(TreeMsg::Request { stop }) {
        lost();
        log!(ERROR, "checkpoint failed: the coordinator of the process tree is gone");
        if stop {
            crate::triggers::exit_after_checkpoint(false);
        }
    }
}

/// Serve what the coordinator sent (the checkpoint thread, after its poll woke up). Returns the
/// tree's result when one arrived (Some(true): the set was committed).
pub fn serve() -> Option<bool> {
    let mut result = None;
    while is_member() {
        let Some((m, passed)) = recv(true) else { break };
        match m {
            TreeMsg::Stop { generation, members } if passed >= 0 => {
                let _ = part(generation, members, passed);
            }
            TreeMsg::Solo => result = Some(alone(STOPPING.load(Ordering::Acquire)).is_some()),
            TreeMsg::Result { ok } => {
                settle_hold(ok);
                result = Some(ok);
            }
            _ => {
                if passed >= 0 {
                    sys::close(passed);
                }
            }
        }
    }
    if let Some(ok) = result {
        if STOPPING.load(Ordering::Acquire) {
            crate::triggers::exit_after_checkpoint(ok);
        }
    }
    result
}

/// Ask for a checkpoint of the tree (`stop`: and then exit) and wait for its result (ckpt-ctl's
/// `checkpoint --wait` and `stop`), taking our part meanwhile. None when the coordinator is gone.
pub fn take_and_wait(stop: bool) -> Option<Outcome> {
    request_and_wait(stop, || alone(stop)).map(|mine| mine.unwrap_or(Outcome { raw: 0, stored: 0, paused_ms: 0, hash: 0 }))
}

/// A checkpoint of a Slurm step whose task's program is this process, the root of a tree
/// (step.rs): the tree's checkpoint, whose cut is the task's; our own image's outcome once the
/// set is committed (its hash names the set in the step's manifest). A program alone (`Solo`)
/// takes one image of its own, with the step's hooks as ever.
pub fn take_for_step(stop: bool) -> Option<Outcome> {
    request_and_wait(stop, checkpoint::take).flatten()
}

/// Ask for a checkpoint of the tree and take our part; `solo` when the coordinator says we are
/// alone. Once the set is committed, our part's outcome (None: we were not in its cut); None
/// when it is not, or the coordinator is gone.
fn request_and_wait(stop: bool, solo: impl FnOnce() -> Option<Outcome>) -> Option<Option<Outcome>> {
    if !send(TreeMsg::Request { stop }) {
        lost();
        return None;
    }
    let mut mine = None;
    while is_member() {
        let Some((m, passed)) = recv(false) else { break };
        match m {
            TreeMsg::Stop { generation, members } if passed >= 0 => mine = part(generation, members, passed),
            TreeMsg::Solo => return solo().map(Some),
            TreeMsg::Result { ok } => {
                settle_hold(ok);
                return ok.then_some(mine);
            }
            _ => {}
        }
    }
    None
}

/// A checkpoint of this process alone (no tree, or the coordinator said Solo), after which it exits (`stop`: its threads stay
/// stopped after the cut) or goes on.
pub fn alone(stop: bool) -> Option<Outcome> {
    if stop {
        checkpoint::take_and_hold()
    } else {
        checkpoint::take()
    }
}

/// The coordinator's barriers, as `checkpoint` calls them.
struct Barrier;

/// Wait for one of `want` (Err: the checkpoint was called off, or the coordinator is gone).
fn wait_for(want: fn(&TreeMsg) -> bool) -> Result<TreeMsg, String> {
    loop {
        match recv(false) {
            Some((m, passed)) => {
                if passed >= 0 {
                    sys::close(passed);
                }
                if want(&m) {
                    return Ok(m);
                }
                if m == TreeMsg::Abort {
                    return Err("the checkpoint of the process tree was called off".into());
                }
            }
            None => return Err("the coordinator of the process tree is gone".into()),
        }
    }
}

impl Phases for Barrier {
    fn stopped(&self) -> Result<(), String> {
        send(TreeMsg::Stopped);
        wait_for(|m| *m == TreeMsg::Capture).map(drop)
    }
    fn captured(&self) {
        send(TreeMsg::Captured);
        // Hold: a stop checkpoint; the threads stay stopped (checkpoint.rs asks `held`).
        let hold = wait_for(|m| matches!(m, TreeMsg::Resume | TreeMsg::Hold)) == Ok(TreeMsg::Hold);
        HELD.store(hold, Ordering::Release);
    }
}

/// How many processes of the tree write their images at once (1 outside a tree's checkpoint).
static WRITING: AtomicU32 = AtomicU32::new(1);

/// The image writer threads this process may use: its share of the CPUs while every process of
/// the tree writes at once (a tree of 100 processes started 8 writers each: a load of 140 on 2
/// CPUs), at least 1, at most 8.
pub fn writer_threads() -> usize {
    (crate::memwrite::cpus() / WRITING.load(Ordering::Relaxed).max(1) as usize).clamp(1, 8)
}

/// Our part of the tree's checkpoint `generation`, with `members` processes writing at once: the
/// image goes into the set directory `dir`. Its outcome (None: no image).
fn part(generation: u64, members: u32, dir: i32) -> Option<Outcome> {
    log!(DEBUG, "checkpoint {generation} of the process tree ({members} processes)");
    WRITING.store(members.max(1), Ordering::Relaxed);
    let dir = Dir::adopt(dir, b"(the process tree's set)");
    let name = sys::decimal(sys::getpid());
    let out = checkpoint::take_part(Part { dir, name, phases: &Barrier });
    let done = match out {
        Some(o) => TreeMsg::Done { ok: true, raw: o.raw, stored: o.stored, paused_ns: o.paused_ms * 1_000_000 },
        None => TreeMsg::Done { ok: false, raw: 0, stored: 0, paused_ns: 0 },
    };
    send(done);
    out
}
