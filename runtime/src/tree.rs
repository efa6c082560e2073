//! The runtime's side of a process tree (the coordinator is the namespace's init, ckpt-ns's
//! `coord`): every process of the program's tree runs the runtime and is a member.
//!
//! - Membership: a connection to the coordinator's abstract socket (`join`), made by the
//!   process ckpt-run started, by every child it forks (the fork handler activates the runtime
//!   in the child: its own checkpoint thread), by every program a member execs (the exec hooks
//!   pass the preload on, marked as a tree member) and by every process after a restart. The
//!   coordinator must be pid 1 of our pid namespace and of our uid or root (SO_PEERCRED), so no
//!   other process can pose as it.
//! - A checkpoint request (signal, timer, ckpt-ctl) of a member goes to the coordinator, which
//!   answers `Solo` (the program alone: it checkpoints itself as ever) or runs the tree's
//!   checkpoint, in which this process takes its part (`part`): stop, wait for every process to
//!   be stopped, capture and snapshot, wait, resume, write `<pid>.ckpt` into the set directory.
//! - A checkpoint with the stop signal (the wall-time pattern): the coordinator says Hold instead
//!   of Resume, so no process of the tree runs program code after the cut; the threads stay
//!   stopped while the image is written, until the tree's result: a committed set ends the
//!   namespace (the requester exits), a failed one releases them and the program goes on.
//! - A process stopped by job control is woken by the coordinator for its part (`treemsg`): its
//!   Stop names the signal that had stopped it. Its checkpoint thread lets that signal in, its
//!   program threads stay held after the capture, and the coordinator sends the signal again:
//!   the checkpoint thread takes it and the whole process is stopped again before any program
//!   thread runs; once continued (by the program), the threads go on, and no Done is sent.
//! - When the program ends and other processes of the tree live on, the coordinator tells the
//!   tree's new root to take over the control socket and the periodic timer (`take_control`).
//! - Without a namespace there is no coordinator: children are not managed (as before).
//!
//! Raw system calls only: the waits happen while the program's threads are stopped.

use crate::checkpoint::{self, Outcome, Part, Phases};
use crate::imgdir::Dir;
use crate::log::{log, DEBUG, ERROR};
use crate::sys::{self, syscall};
use ckpt_ns::treemsg::{socket_name, Failure, TreeMsg, Why, LEN};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};

static CONN: AtomicI32 = AtomicI32::new(-1);
/// A stop request of ours is pending: exit once the tree's set is committed (or not).
static STOPPING: AtomicBool = AtomicBool::new(false);
/// The coordinator said Hold: our threads stay stopped after the capture until the tree's result.
static HELD: AtomicBool = AtomicBool::new(false);
/// The signal that had stopped this process when the coordinator woke it for the checkpoint
/// being taken (0: it was running).
static RESTOP: AtomicU32 = AtomicU32::new(0);
/// The coordinator said Hold (RESTOP alone holds the threads too).
static COORD_HOLD: AtomicBool = AtomicBool::new(false);
/// We said Stopped in the checkpoint being taken.
static SAID_STOPPED: AtomicBool = AtomicBool::new(false);
/// This process is a member other than the one ckpt-run started (a child, or a program one
/// execs): it has no periodic timer and no control socket of its own, until the coordinator
/// hands it them (`take_control`: the program ended, this one is the tree's root).
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

/// The coordinator said TakeControl while the checkpoint thread waited for something else: it
/// takes over in `serve`.
static TAKE_CONTROL: AtomicBool = AtomicBool::new(false);

/// The program ended while this process and others live on, and this one is the tree's root
/// now (the coordinator's TakeControl): it serves the control socket ckpt-ctl talks to and runs
/// the periodic timer in the program's stead, as the program's own process would.
fn take_control() {
    CHILD.store(false, Ordering::Relaxed);
    crate::control::take_over();
    crate::triggers::take_timer();
    log!(DEBUG, "the program ended: this process ({}) is the process tree's root now and serves ckpt-ctl", sys::getpid());
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
    COORD_HOLD.store(false, Ordering::Release);
    SEEN.len.store(0, Ordering::Release);
    // The image was taken during our part: the restarted process is in none.
    IN_PART.store(false, Ordering::Release);
    WOKEN_EARLY.store(false, Ordering::Release);
    // (RESTOP: `stop_again`.)
}

/// After a restart, before the program's threads run: a process that was stopped by job control
/// at the cut (its image was taken with RESTOP set) stops again with the same signal, and goes
/// on when the program continues it. The other processes of the tree wait until it is stopped
/// (the restarter) before they run.
///
/// Continued by the coordinator for a checkpoint (its Stop is waiting) rather than by the
/// program: each program thread (`tids`) gets the stop signal marked as the coordinator's first,
/// so that it parks in the runtime before its first instruction and takes part as a stopped
/// process's threads do.
pub fn stop_again(tids: &[i32]) {
    let sig = RESTOP.swap(0, Ordering::AcqRel) as i32;
    if sig <= 0 {
        return;
    }
    stop_self(sig);
    if stop_waiting() {
        for &tid in tids {
            queue_woken(tid);
        }
    }
}

/// Our part of a tree's checkpoint is being taken (`part`).
static IN_PART: AtomicBool = AtomicBool::new(false);

/// Whether a checkpoint of the tree is about to stop this process's threads: the coordinator's
/// Stop waits on our connection, or our part is being taken (for threads woken from a stop:
/// threads.rs `wait_woken`).
pub fn checkpoint_coming() -> bool {
    IN_PART.load(Ordering::Acquire) || (is_member() && stop_waiting())
}

/// Whether this process's part of a checkpoint is being taken or the coordinator's Stop (any)
/// is waiting on our connection: a thread its tracer sent into the stop handler (ptraced.rs)
/// waits for it.
pub fn stop_coming() -> bool {
    IN_PART.load(Ordering::Acquire) || (is_member() && matches!(peek(), Some(TreeMsg::Stop { .. })))
}

fn peek() -> Option<TreeMsg> {
    let mut b = [0u8; LEN];
    let n = syscall!(libc::SYS_recvfrom, fd(), b.as_mut_ptr(), LEN, libc::MSG_PEEK | libc::MSG_DONTWAIT, 0, 0).unwrap_or(0) as usize;
    TreeMsg::decode(&b[..n.min(LEN)])
}

/// Whether the coordinator's Stop for a stopped process is waiting on our connection.
fn stop_waiting() -> bool {
    matches!(peek(), Some(TreeMsg::Stop { stopped, .. }) if stopped != 0)
}

/// Queue our thread `tid` the stop signal marked as the coordinator's (`woken`).
fn queue_woken(tid: i32) {
    // SAFETY: an all-zero siginfo is valid; the _rt member (si_pid, si_uid, si_value at offset
    // 16) is filled as sigqueue does.
    let mut i: libc::siginfo_t = unsafe { std::mem::zeroed() };
    i.si_signo = crate::threads::STOP_SIGNAL;
    i.si_code = libc::SI_QUEUE;
    // SAFETY: writing the _rt member's fields inside the siginfo.
    unsafe {
        let p = (&mut i as *mut libc::siginfo_t as *mut u8).add(16) as *mut i32;
        *p = sys::getpid();
        *p.add(1) = sys::geteuid() as i32;
        *(p.add(2) as *mut u64) = ckpt_ns::jobstop::WAKE_MARK;
    }
    let _ = syscall!(libc::SYS_rt_tgsigqueueinfo, sys::getpid(), tid, crate::threads::STOP_SIGNAL, &i as *const libc::siginfo_t);
}

/// Stop this process with `sig` taken on this thread, or with SIGSTOP where `sig` does not stop
/// it (SIGTSTP, SIGTTIN and SIGTTOU are discarded in an orphaned process group); returns once it
/// is continued.
fn stop_self(sig: i32) {
    set_mask(libc::SIG_UNBLOCK, sig);
    let before = voluntary_switches();
    let _ = sys::tgkill(sys::getpid(), sys::gettid(), sig);
    // Stopped: this thread slept (a voluntary switch) until it was continued.
    if sig != libc::SIGSTOP && voluntary_switches() == before {
        let _ = sys::tgkill(sys::getpid(), sys::gettid(), libc::SIGSTOP);
    }
    set_mask(libc::SIG_BLOCK, sig);
}

/// This thread's voluntary context switches (/proc/thread-self/status).
fn voluntary_switches() -> u64 {
    let status = sys::read_file(&sys::cpath(&[b"/proc/thread-self/status"])).unwrap_or_default();
    let key = b"voluntary_ctxt_switches:";
    let Some(i) = status.windows(key.len()).position(|w| w == key) else { return 0 };
    let digits: Vec<u8> = status[i + key.len()..].iter().copied().skip_while(|b| b.is_ascii_whitespace()).take_while(u8::is_ascii_digit).collect();
    std::str::from_utf8(&digits).ok().and_then(|d| d.parse().ok()).unwrap_or(0)
}

/// Whether the program's threads stay stopped after this capture (a stop checkpoint of the tree).
pub fn held() -> bool {
    HELD.load(Ordering::Acquire)
}

/// The tree's result came while our threads were held: a committed set keeps them stopped until
/// the namespace ends; a failed one lets them go on.
fn settle_hold(ok: bool) {
    if COORD_HOLD.load(Ordering::Acquire) && HELD.load(Ordering::Acquire) && !ok {
        COORD_HOLD.store(false, Ordering::Release);
        HELD.store(false, Ordering::Release);
        crate::threads::resume_all();
    }
}

/// Connect to the coordinator of our namespace (none without one: nothing happens).
pub fn join() {
    let old = CONN.swap(-1, Ordering::AcqRel);
    if old >= 0 {
        sys::close_inherited(old);
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
        // Our namespace's init, of our uid or root (a process of root's tree that dropped to
        // other ids: ns's `userdirs`): nothing else may coordinate us.
        if cred.pid != 1 || (cred.uid != sys::geteuid() && cred.uid != 0) {
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

/// After a restart, once this process's state is back and before its program's threads run:
/// the coordinator lets the outer process forward the signals it held during the restart once
/// every process of the tree has said so.
pub fn say_running() {
    if is_member() {
        send(TreeMsg::Running);
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
                let got = ckpt_ns::attached_fd(&msg).unwrap_or(-1);
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
    if !send(TreeMsg::Request { stop, step: false }) {
        lost();
        log!(ERROR, "checkpoint failed: the coordinator of the process tree is gone");
        if stop {
            crate::triggers::exit_after_checkpoint(false);
        }
    }
}

/// A checkpoint of this process alone, its threads stopped: which of its fds 0 to 2 are its own,
/// one open file with none of init's (bit N: fd N), as the coordinator finds with kcmp
/// (`TreeMsg::AskStdio`); None when we are not a member, it cannot tell, or it does not answer
/// within 10 s (an older coordinator).
pub fn ask_own_stdio() -> Option<u32> {
    if !is_member() || !send(TreeMsg::AskStdio) {
        return None;
    }
    let deadline = crate::checkpoint::now_ns() + 10_000_000_000;
    loop {
        let left = deadline.saturating_sub(crate::checkpoint::now_ns());
        if left == 0 {
            return None;
        }
        let mut pfd = libc::pollfd { fd: fd(), events: libc::POLLIN, revents: 0 };
        match syscall!(libc::SYS_poll, &mut pfd as *mut libc::pollfd, 1, (left / 1_000_000).max(1)) {
            Ok(0) | Err(libc::EINTR) => continue,
            Err(_) => return None,
            Ok(_) => {}
        }
        // (Nothing else is sent to a process alone during its own checkpoint.)
        match recv(true) {
            Some((TreeMsg::OwnStdio { own, known }, passed)) => {
                if passed >= 0 {
                    sys::close(passed);
                }
                return known.then_some(own & 0b111);
            }
            Some((_, passed)) if passed >= 0 => sys::close(passed),
            Some(_) => {}
            None if is_member() => {}
            None => return None,
        }
    }
}

/// Serve what the coordinator sent (the checkpoint thread, after its poll woke up). Returns the
/// tree's result when one arrived (Some(true): the set was committed).
pub fn serve() -> Option<bool> {
    let mut result = None;
    if TAKE_CONTROL.swap(false, Ordering::AcqRel) {
        take_control();
    }
    while is_member() {
        let Some((m, passed)) = recv(true) else { break };
        match m {
            TreeMsg::TakeControl => take_control(),
            TreeMsg::Stop { generation, members, stopped } if passed >= 0 => {
                let _ = part(generation, members, stopped, passed);
            }
            TreeMsg::Solo => result = Some(alone(STOPPING.load(Ordering::Acquire)).is_some()),
            TreeMsg::Result { ok, .. } => {
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
    request_and_wait(stop, false, || alone(stop)).map(|mine| mine.unwrap_or(Outcome { raw: 0, stored: 0, paused_ms: 0, hash: 0 }))
}

/// A checkpoint of a Slurm step whose task's program is this process, the root of a tree
/// (step.rs): the tree's checkpoint, whose cut is the task's; our own image's outcome once the
/// set is committed (its hash names the set in the step's manifest). A program alone (`Solo`)
/// takes one image of its own, with the step's hooks as ever.
pub fn take_for_step(stop: bool) -> Option<Outcome> {
    request_and_wait(stop, true, checkpoint::take).flatten()
}

/// Ask for a checkpoint of the tree and take our part; `solo` when the coordinator says we are
/// alone. Once the set is committed, our part's outcome (None: we were not in its cut); None
/// when it is not, or the coordinator is gone.
fn request_and_wait(stop: bool, step: bool, solo: impl FnOnce() -> Option<Outcome>) -> Option<Option<Outcome>> {
    forget_failure();
    if !send(TreeMsg::Request { stop, step }) {
        lost();
        return None;
    }
    let mut mine = None;
    while is_member() {
        let Some((m, passed)) = recv(false) else { break };
        match m {
            TreeMsg::Stop { generation, members, stopped } if passed >= 0 => mine = part(generation, members, stopped, passed),
            TreeMsg::Solo => return solo().map(Some),
            TreeMsg::Result { ok, failure } => {
                settle_hold(ok);
                if !ok {
                    remember_failure(&failure);
                }
                return ok.then_some(mine);
            }
            TreeMsg::TakeControl => TAKE_CONTROL.store(true, Ordering::Release),
            _ => {}
        }
    }
    None
}

/// The process and reason the last failed checkpoint of the tree this process asked for named
/// (`Failure::encode`; all zero: none).
static FAILURE: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];

fn remember_failure(f: &Failure) {
    let (a, b, c) = f.encode();
    for (slot, v) in FAILURE.iter().zip([a, b, c]) {
        slot.store(v, Ordering::Release);
    }
}

pub fn forget_failure() {
    remember_failure(&Failure::default());
}

/// The line of the last checkpoint of the tree this process asked for, when it failed for a
/// reason the coordinator named ("process 1234 (cc1) exited during the checkpoint; the
/// previous image set is kept"), for the answer to ckpt-ctl.
pub fn failure_line() -> Option<String> {
    let w: Vec<u64> = FAILURE.iter().map(|s| s.load(Ordering::Acquire)).collect();
    Failure::decode(w[0], w[1], w[2]).line()
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
                if let TreeMsg::AskStop { pid } = m {
                    send(TreeMsg::StopSig { pid, sig: child_stop_signal(pid) });
                    continue;
                }
                if m == TreeMsg::TakeControl {
                    TAKE_CONTROL.store(true, Ordering::Release);
                    continue;
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
        SAID_STOPPED.store(true, Ordering::Release);
        if let Some(dir) = part_dir() {
            crate::treefds::leave(dir);
        }
        send(TreeMsg::Stopped);
        wait_for(|m| *m == TreeMsg::Capture).map(drop)
    }
    fn captured(&self) {
        send(TreeMsg::Captured);
        // Hold: a stop checkpoint; the threads stay stopped (checkpoint.rs asks `held`).
        let hold = wait_for(|m| matches!(m, TreeMsg::Resume | TreeMsg::Hold)) == Ok(TreeMsg::Hold);
        COORD_HOLD.store(hold, Ordering::Release);
        HELD.store(hold || RESTOP.load(Ordering::Acquire) != 0, Ordering::Release);
    }
}

/// The set directory of our part being taken (-1: none), for the step's connections
/// (`part_dir`).
static PART_DIR: AtomicI32 = AtomicI32::new(-1);

/// The set's temporary directory while our part of the tree's checkpoint is taken: a step
/// task's program names there the connections to other tasks each process drains (step.rs).
pub fn part_dir() -> Option<i32> {
    Some(PART_DIR.load(Ordering::Acquire)).filter(|&d| d >= 0)
}

/// The step task's program has named each process's connections to other tasks
/// (`treemsg::STEP_PAIRS`): the coordinator lets the others capture.
pub fn paired() -> bool {
    send(TreeMsg::Paired)
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
/// image goes into the set directory `dir`. `stopped`: the signal that had stopped this process
/// before the coordinator woke it for this checkpoint. Its outcome (None: no image).
fn part(generation: u64, members: u32, stopped: u32, dir: i32) -> Option<Outcome> {
    log!(DEBUG, "checkpoint {generation} of the process tree ({members} processes)");
    IN_PART.store(true, Ordering::Release);
    let out = part_taken(members, stopped, dir);
    IN_PART.store(false, Ordering::Release);
    out
}

fn part_taken(members: u32, stopped: u32, dir: i32) -> Option<Outcome> {
    WRITING.store(members.max(1), Ordering::Relaxed);
    let dir = Dir::adopt(dir, b"(the process tree's set)");
    PART_DIR.store(dir.fd(), Ordering::Release);
    let name = sys::decimal(sys::getpid());
    let restop = stopped as i32;
    SAID_STOPPED.store(false, Ordering::Release);
    if restop != 0 {
        // Our program threads stay held after the capture, and this thread takes the stop
        // signal the coordinator sends again (all the others block every signal meanwhile).
        RESTOP.store(stopped, Ordering::Release);
        HELD.store(true, Ordering::Release);
        set_mask(libc::SIG_UNBLOCK, restop);
        read_seen(dir.fd());
    }
    let out = checkpoint::take_part(Part { dir, name, phases: &Barrier });
    PART_DIR.store(-1, Ordering::Release);
    crate::step::part_done();
    if restop != 0 {
        // Stopped again and continued by now, or the checkpoint failed before the capture
        // (the coordinator stopped us again then too): the program goes on, as it was asked.
        set_mask(libc::SIG_BLOCK, restop);
        RESTOP.store(0, Ordering::Release);
        SEEN.len.store(0, Ordering::Release);
        if !COORD_HOLD.load(Ordering::Acquire) && HELD.swap(false, Ordering::AcqRel) {
            crate::threads::resume_all();
        }
        // The coordinator waits for our image, not for a Done, once we said Stopped (one sent
        // after we were continued could reach it in a later checkpoint); before, it waits for
        // our answer.
        if SAID_STOPPED.load(Ordering::Acquire) {
            return out;
        }
    }
    let done = match out {
        Some(o) => TreeMsg::Done { raw: o.raw, stored: o.stored, paused_ns: o.paused_ms * 1_000_000 },
        // Exiting: said only at CKPT_LOG=info here, so the coordinator's line says it.
        None => TreeMsg::Failed { why: if checkpoint::exiting() { Why::Exiting } else { Why::Unsaid }, comm: own_comm() },
    };
    send(done);
    out
}

/// Our command name (/proc/self/comm), for the coordinator's line about us.
fn own_comm() -> [u8; 16] {
    ckpt_ns::treemsg::comm_bytes(&sys::read_file(&sys::cpath(&[b"/proc/self/comm"])).unwrap_or_default())
}

/// What the coordinator saw of our threads while this process was stopped (`<pid>.seen` in the
/// set's directory: "tid syscall-line" per thread), for the stop of the checkpoint being taken.
struct Seen {
    len: AtomicU32,
    buf: std::cell::UnsafeCell<[u8; SEEN_MAX]>,
}
// SAFETY: buf is written by the checkpoint thread in `part` before the stop, and read by it in
// `adopt_seen` (from stop_all) afterwards; len says how much of it is valid.
unsafe impl Sync for Seen {}
const SEEN_MAX: usize = 64 * 1024;
static SEEN: Seen = Seen { len: AtomicU32::new(0), buf: std::cell::UnsafeCell::new([0; SEEN_MAX]) };

/// Read `<pid>.seen` from the set directory `dir` (nothing if absent).
fn read_seen(dir: i32) {
    SEEN.len.store(0, Ordering::Release);
    let name = sys::cpath(&[&sys::decimal(sys::getpid()), b".seen"]);
    let Ok(fd) = syscall!(libc::SYS_openat, dir, name.as_ptr(), libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC) else { return };
    let fd = fd as i32;
    // SAFETY: only this thread touches the buffer now (see Seen).
    let buf = unsafe { &mut *SEEN.buf.get() };
    let mut n = 0;
    while n < SEEN_MAX {
        match sys::read(fd, &mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    sys::close(fd);
    SEEN.len.store(n as u32, Ordering::Release);
}

/// Hand what the coordinator saw of our threads to `blocked` (called by stop_all after its reset).
pub fn adopt_seen() {
    let n = SEEN.len.swap(0, Ordering::AcqRel) as usize;
    // SAFETY: see Seen.
    let buf = unsafe { &*SEEN.buf.get() };
    for line in buf[..n.min(SEEN_MAX)].split(|&b| b == b'\n') {
        let Some(sp) = line.iter().position(|&b| b == b' ') else { continue };
        let Some(tid) = std::str::from_utf8(&line[..sp]).ok().and_then(|t| t.parse::<i32>().ok()) else { continue };
        crate::blocked::adopt(tid, &line[sp + 1..]);
    }
}

/// A thread of ours got the coordinator's marked stop signal before this process (a child a
/// member forked) joined the tree: it parks at the end of the fork handler (`park_if_woken`).
static WOKEN_EARLY: AtomicBool = AtomicBool::new(false);

/// Whether this process's checkpoint thread exists (a fresh fork child has the parent's record).
pub fn own_checkpoint_thread() -> bool {
    let tid = crate::CKPT_THREAD.tid.load(Ordering::Acquire);
    tid > 0 && sys::tgkill(sys::getpid(), tid, 0).is_ok()
}

pub fn woken_before_joining() {
    WOKEN_EARLY.store(true, Ordering::Release);
}

/// At the end of a member child's fork handler (its checkpoint thread runs, it has joined): if
/// the coordinator woke it from a stop before, this thread waits here (runtime code, not the
/// program's) until the checkpoint it was woken for has stopped it and let it go.
pub fn park_if_woken() {
    if WOKEN_EARLY.swap(false, Ordering::AcqRel) && crate::threads::wait_woken() {
        crate::threads::wait_released();
    }
}

/// Whether a stop signal's siginfo is the coordinator's, queued before it woke this process
/// from a stop (ckpt_ns::jobstop::WAKE_MARK, sent by init: pid 1, or by ourselves after a
/// restart: `stop_again`).
pub fn woken(info: *const libc::siginfo_t) -> bool {
    // SAFETY: the kernel's siginfo for this handler.
    let words = unsafe { std::ptr::read_unaligned(info as *const [u64; 4]) };
    let from = words[2] as u32 as i32;
    words[1] as u32 as i32 == libc::SI_QUEUE && (from == 1 || from == sys::getpid()) && words[3] == ckpt_ns::jobstop::WAKE_MARK
}

/// The signal that stopped our child `pid`, from its wait report if the program has not taken
/// it (WNOWAIT: it stays for the program); 0 when there is none.
fn child_stop_signal(pid: i32) -> i32 {
    // SAFETY: an all-zero siginfo is valid; waitid fills it.
    let mut si: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WSTOPPED | libc::WNOHANG | libc::WNOWAIT;
    if syscall!(libc::SYS_waitid, libc::P_PID, pid, &mut si as *mut libc::siginfo_t, flags, 0).is_err() {
        return 0;
    }
    // SAFETY: the fields waitid set (si_pid 0: no report).
    let (from, status) = unsafe { (si.si_pid(), si.si_status()) };
    if from == pid && si.si_code == libc::CLD_STOPPED {
        status
    } else {
        0
    }
}

/// Block or unblock signal `sig` in the calling thread.
fn set_mask(how: i32, sig: i32) {
    let bit: u64 = 1 << (sig - 1);
    let _ = syscall!(libc::SYS_rt_sigprocmask, how, &bit as *const u64, 0, 8);
}
