//! The coordinator of a process tree's checkpoint, run by the namespace's init: every process of
//! the job is its descendant (orphans are reparented to it), so it sees them all in its /proc.
//!
//! Each process's runtime connects to init's abstract socket (`treemsg::socket_name`) when it
//! starts, after a fork and after a restart; the connection is its membership (SO_PEERCRED gives
//! its pid; a connection from outside the namespace shows pid 0 and is refused). A checkpoint
//! request from any member runs the two phases of `treemsg`: every process stops its threads
//! first, and only when all are stopped does each capture (one consistent cut: no byte in flight
//! between two processes lost or duplicated) and fork its snapshot; then all resume together
//! and write in parallel into the set's temporary directory `NAME.ckpt.tmp.<random>/`. The
//! images are increments over those of the previous set where it has them (`setchain`). The
//! manifest (`ckpt_image::tree`) is written last and the set renamed into place as `NAME.ckpt`
//! (older ones move to `NAME.ckpt.1`, ...): a set is complete or absent, and the previous one
//! stays on any failure. A checkpoint with the stop signal (the wall-time pattern) says Hold
//! instead of Resume: no process of the tree runs program code after the cut; once the set is
//! committed the requester exits and the namespace ends with it (status 75), and a failed set
//! lets every process go on. A process that does not run the runtime (a static program, one that
//! cleared LD_PRELOAD), a traced one (ptrace) but a thread in a ptrace stop traced by a member (the
//! runtime's ptraced.rs) or Slurm's srun (its step runs outside the tree:
//! `launchers`) refuses the checkpoint at once with one line naming it.
//!
//! A process stopped by job control (SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU) cannot take its part
//! while it is stopped (its checkpoint thread does not run): it is woken with SIGCONT only once
//! every other process has stopped its threads (no program code of the tree runs while it is
//! awake; its own threads park in the runtime before they run: `jobstop::wake`), takes its
//! part, and once it is captured (or the checkpoint is called off) gets the signal that had
//! stopped it again (known from its parent's wait report: `stop_signal`), so that it is stopped
//! once more before any process resumes; the manifest names it, and the restart stops it again
//! before any process of the tree runs (`treemsg`). What the program can notice is in the
//! README.
//!
//! A program alone, whose image name has never held a set, is told to checkpoint itself (its
//! image stays one file, with increments, as without trees).

use crate::report::{recv_bytes, send_bytes};
use crate::treemsg::{kept_clause, socket_name, Failure, TreeMsg, Why, LEN};
use ckpt_image::tree::{image_name, pts_index_of_tty_nr, Ctty, Manifest, ProcState, TreeProc};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Where the tree's sets go: `DIR/NAME.ckpt`, keeping `keep` generations; `generation`: the
/// number of the last set (a restarted tree continues counting).
#[derive(Debug, Clone)]
pub struct Target {
    pub dir: PathBuf,
    pub name: Vec<u8>,
    pub keep: u32,
    pub generation: u64,
}

struct Member {
    fd: OwnedFd,
    pid: i32,
    /// The last phase message it sent in the checkpoint being taken.
    got: Option<TreeMsg>,
    /// It was asked to stop for the checkpoint being taken.
    asked: bool,
    /// It is in the cut of the checkpoint being taken (stopped when the tree was captured).
    in_cut: bool,
}

/// A process of the tree that was stopped by job control when the checkpoint began.
struct Sleeper {
    pid: i32,
    /// The signal that stopped it (sent again after its capture).
    sig: i32,
    /// We sent it SIGCONT for the checkpoint being taken.
    woken: bool,
}

pub(crate) struct Coord {
    listen: OwnedFd,
    members: Vec<Member>,
    /// The stopped processes of the checkpoint being taken.
    sleepers: Vec<Sleeper>,
    /// Their stop signals as their parents answered (pid, signal; 0: not known).
    stop_answers: Vec<(i32, i32)>,
    target: Target,
    tool: &'static str,
    /// The program init started.
    pub root: i32,
    /// The program asked for a stop checkpoint: it exits once the tree's result is known (75, or
    /// 74 when the set failed), and the namespace ends with it, the processes held stopped or
    /// not: none of them outlives it (`stopping`).
    stopping: bool,
    /// The process that serves the control socket (0: the program, `root`): the tree's root
    /// once the program ended while others live on (`keep_control`).
    control: i32,
    /// When this coordinator started (older unfinished sets of its name are leftovers).
    started: std::time::SystemTime,
    /// In a checkpoint of a joined step's rank 0: the processes its srun started, which are not
    /// the tree's (`launchers::beyond`), are left out of it (found again at each look: a task
    /// a stand-in srun starts here forks on while the checkpoint begins).
    beyond: bool,
    /// A restarted tree's processes that have not said `Running` yet (`restored`).
    awaiting: Vec<i32>,
    /// Whether the end of a restart is still to be told.
    restoring: bool,
    /// The directories of the processes of the checkpoint being taken that run as other users
    /// (`userdirs`).
    user_dirs: crate::userdirs::UserDirs,
    /// The process and reason the failed checkpoint being taken names (`Failed`), for the
    /// Result.
    failure: Option<Failure>,
    /// The attempt being taken failed because a process of the cut ended during it (killed by
    /// another process of the tree while that one was still running): worth another attempt.
    member_ended: bool,
}

/// The exit status of a program that stopped after its checkpoint (the runtime's
/// `triggers::EXIT_STOPPED`: EX_TEMPFAIL, run again).
const EXIT_STOPPED: i32 = 75;

/// How long processes have to connect (`join`) and to stop, capture and resume.
const PHASE: Duration = Duration::from_secs(60);
/// How long processes have to connect while a restart of the tree is not over yet.
const RESTORING_JOIN: Duration = Duration::from_secs(5);
/// How many times a checkpoint is tried when a process ends during it (`member_ended`).
const ATTEMPTS: u32 = 3;
/// How long a step task's program may take to pair the tree's connections with the other tasks
/// (its own bound with them, CKPT_STEP_TIMEOUT, is shorter: it answers first).
const STEP_PAIRING: Duration = Duration::from_secs(3600);

fn errno() -> std::io::Error {
    std::io::Error::last_os_error()
}

/// A process as init's /proc shows it.
#[derive(Debug, Clone)]
struct Proc {
    pid: i32,
    ppid: i32,
    pgid: i32,
    sid: i32,
    zombie: bool,
    /// The wait status of a zombie.
    exit_code: i32,
    /// The signal its parent gets when it ends: SIGCHLD for a fork, 0 for a clone without one
    /// (the program's `clone(fn, stack, 0, arg)`, and ckpt's image writers, left out by name).
    exit_signal: i32,
    /// The controlling terminal (tty_nr, 0: none) and its foreground process group (tpgid).
    tty_nr: i64,
    tpgid: i32,
}

/// The processes of the tree: every process in init's /proc but ckpt's own image writers
/// (`WRITER_NAME`, a clone without exit signal of a member, or init's child once its member
/// ended) unless they are members (a program that took that name runs the runtime). A child the
/// program made by clone without exit signal is one of them like any other: a member when the
/// runtime made it (glibc's clone), else named as a process without the runtime.
fn procs(members: &[Member]) -> Vec<Proc> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else { return out };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if pid <= 1 {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some((_, rest)) = stat.rsplit_once(") ") else { continue };
        let f: Vec<&str> = rest.split(' ').collect();
        // Field N of proc(5) is f[N - 3].
        let num = |n: usize| f.get(n - 3).and_then(|v| v.trim().parse::<i64>().ok()).unwrap_or(0) as i32;
        out.push(Proc { pid, ppid: num(4), pgid: num(5), sid: num(6), zombie: f.first() == Some(&"Z"), exit_code: num(52), exit_signal: num(38), tty_nr: num(7) as i64, tpgid: num(8) });
    }
    out.retain(|p| members.iter().any(|m| m.pid == p.pid) || comm(p.pid).as_bytes() != crate::WRITER_NAME.to_bytes());
    out.sort_by_key(|p| p.pid);
    out
}

/// Whether process `pid` exists and is not a zombie.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
}

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).map(|c| c.trim_end().to_string()).unwrap_or_default()
}

/// Each thread of `pid` as `TID STATE WCHAN` (from /proc), comma-separated.
fn threads_doing(pid: i32) -> String {
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return "gone".into() };
    let mut out = Vec::new();
    for t in rd.flatten() {
        let tid = t.file_name().to_string_lossy().into_owned();
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        // The state follows the command name's closing parenthesis.
        let state = stat.rsplit_once(") ").and_then(|(_, r)| r.split(' ').next()).unwrap_or("?").to_string();
        let wchan = std::fs::read_to_string(t.path().join("wchan")).unwrap_or_default();
        out.push(format!("{tid} {state} {}", if wchan.is_empty() { "-" } else { wchan.trim() }));
    }
    out.join(", ")
}

impl Coord {
    /// The processes of the tree (`procs`).
    fn procs(&self) -> Vec<Proc> {
        let mut all = procs(&self.members);
        if self.beyond {
            let members: Vec<i32> = self.members.iter().map(|m| m.pid).collect();
            let beyond = crate::launchers::beyond(&all.iter().map(|p| (p.pid, p.ppid)).collect::<Vec<_>>(), &members);
            all.retain(|p| !beyond.contains(&p.pid));
        }
        all
    }

    /// The live processes of the tree that are not members (not stopped by job control either).
    fn missing(&self) -> Vec<i32> {
        self.procs().iter().filter(|p| !p.zombie && self.index_of(p.pid).is_none() && !self.asleep(p.pid)).map(|p| p.pid).collect()
    }

    /// Listen on the tree's socket for the namespace of `outer_pid`.
    pub fn new(target: Target, outer_pid: i32, tool: &'static str) -> std::io::Result<Coord> {
        // SAFETY: a new socket, owned below.
        let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0) };
        if fd < 0 {
            return Err(errno());
        }
        // SAFETY: fd is new and ours.
        let listen = unsafe { OwnedFd::from_raw_fd(fd) };
        let name = socket_name(outer_pid);
        // SAFETY: an all-zero sockaddr_un is valid.
        let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        addr.sun_family = libc::AF_UNIX as u16;
        for (d, s) in addr.sun_path.iter_mut().zip(&name) {
            *d = *s as libc::c_char;
        }
        let len = (std::mem::size_of::<libc::sa_family_t>() + name.len()) as u32;
        // SAFETY: addr is valid for len bytes.
        if unsafe { libc::bind(fd, &addr as *const libc::sockaddr_un as *const libc::sockaddr, len) } != 0 || unsafe { libc::listen(fd, 64) } != 0 {
            return Err(errno());
        }
        Ok(Coord { listen, members: Vec::new(), sleepers: Vec::new(), stop_answers: Vec::new(), target, tool, root: 0, stopping: false, control: 0, started: std::time::SystemTime::now(), beyond: false, awaiting: Vec::new(), restoring: false, user_dirs: Default::default(), failure: None, member_ended: false })
    }

    /// A restart: wait for processes `pids` to say `Running` (none: nothing to wait for).
    pub fn await_running(&mut self, pids: &[i32]) {
        self.awaiting = pids.to_vec();
        self.restoring = !pids.is_empty();
    }

    /// Whether a restart is not told to be over yet.
    pub fn awaiting(&self) -> bool {
        self.restoring
    }

    /// True once, when every process of the restarted tree runs again: each said `Running`, or
    /// ended without saying it (a failed restart of its own). Once the root has said it, every
    /// process exists: the root runs only after the whole tree is made and staged.
    pub fn restored(&mut self) -> bool {
        if !self.restoring {
            return false;
        }
        if !self.awaiting.contains(&self.root) {
            self.awaiting.retain(|&pid| alive(pid));
        }
        self.restoring = !self.awaiting.is_empty();
        !self.restoring
    }

    fn running(&mut self, i: usize) {
        let pid = self.members[i].pid;
        self.awaiting.retain(|&p| p != pid);
    }

    /// The fds to poll: the listening socket, then every member.
    pub fn fds(&self) -> Vec<RawFd> {
        std::iter::once(self.listen.as_raw_fd()).chain(self.members.iter().map(|m| m.fd.as_raw_fd())).collect()
    }

    /// Something happened on our fds: accept members, serve requests. Some(wait status): the
    /// tree stopped after its checkpoint and the namespace is to end with that status.
    pub fn serve(&mut self) -> Option<i32> {
        self.accept();
        let mut i = 0;
        while i < self.members.len() {
            match self.recv(i) {
                Recv::Msg(TreeMsg::Request { stop, step }) => {
                    let pid = self.members[i].pid;
                    if let Some(status) = self.checkpoint(pid, stop, step) {
                        return Some(status);
                    }
                }
                Recv::Gone => {
                    self.members.remove(i);
                    continue;
                }
                Recv::Msg(TreeMsg::Running) => self.running(i),
                Recv::Msg(TreeMsg::AskStdio) => {
                    let own = crate::samefds::own_stdio_of(self.members[i].pid);
                    self.send(i, TreeMsg::OwnStdio { own: own.unwrap_or(0), known: own.is_some() }, None);
                }
                Recv::Msg(_) | Recv::Nothing => {}
            }
            i += 1;
        }
        None
    }

    fn accept(&mut self) {
        loop {
            // SAFETY: accepting on our listening socket.
            let fd = unsafe { libc::accept4(self.listen.as_raw_fd(), std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK) };
            if fd < 0 {
                return;
            }
            // SAFETY: a new fd of ours.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            let mut cred = libc::ucred { pid: 0, uid: u32::MAX, gid: 0 };
            let mut len = std::mem::size_of::<libc::ucred>() as u32;
            // SAFETY: reading the peer's credentials into cred.
            let ok = unsafe { libc::getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_PEERCRED, &mut cred as *mut libc::ucred as *mut libc::c_void, &mut len) } == 0;
            // SAFETY: geteuid has no preconditions.
            let euid = unsafe { libc::geteuid() };
            // pid 0: a process outside our pid namespace; another uid: not the user's (root's
            // tree may have processes that dropped to other ids: `userdirs`).
            if !ok || cred.pid <= 1 || (cred.uid != euid && !crate::userdirs::allowed()) {
                continue;
            }
            // A process that exec'd or restarted connects again: its old connection is stale.
            self.members.retain(|m| m.pid != cred.pid);
            self.members.push(Member { fd, pid: cred.pid, got: None, asked: false, in_cut: false });
        }
    }

    fn recv(&mut self, i: usize) -> Recv {
        let mut b = [0u8; LEN];
        match recv_bytes(self.members[i].fd.as_raw_fd(), &mut b, libc::MSG_DONTWAIT) {
            Ok((0, _)) => Recv::Gone,
            Ok((n, _)) => TreeMsg::decode(&b[..n]).map_or(Recv::Nothing, Recv::Msg),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EINTR)) => Recv::Nothing,
            Err(_) => Recv::Gone,
        }
    }

    fn send(&self, i: usize, m: TreeMsg, fd: Option<RawFd>) -> bool {
        send_bytes(self.members[i].fd.as_raw_fd(), &m.encode(), fd)
    }

    fn index_of(&self, pid: i32) -> Option<usize> {
        self.members.iter().position(|m| m.pid == pid)
    }

    /// Wait until `done` holds, reading every member's messages; false on the deadline.
    fn wait_until(&mut self, limit: Duration, mut done: impl FnMut(&Coord) -> bool) -> bool {
        let end = Instant::now() + limit;
        // The members poll said have something (None: all, the first time): a tree of hundreds
        // of processes read every connection at each message of each one.
        let mut ready: Option<std::collections::HashSet<RawFd>> = None;
        loop {
            self.accept();
            let mut gone = Vec::new();
            for i in 0..self.members.len() {
                if ready.as_ref().is_some_and(|r| !r.contains(&self.members[i].fd.as_raw_fd())) {
                    continue;
                }
                loop {
                    match self.recv(i) {
                        Recv::Msg(TreeMsg::Request { .. }) => {} // the checkpoint being taken serves it
                        Recv::Msg(TreeMsg::StopSig { pid, sig }) => self.stop_answers.push((pid, sig)),
                        Recv::Msg(TreeMsg::Running) => self.running(i),
                        Recv::Msg(m) => self.members[i].got = Some(m),
                        Recv::Gone => {
                            gone.push(i);
                            break;
                        }
                        Recv::Nothing => break,
                    }
                }
            }
            // Exited, or exec'd (the new program connects again).
            for i in gone.into_iter().rev() {
                self.members.remove(i);
            }
            if done(self) {
                return true;
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let mut p: Vec<libc::pollfd> = self.fds().into_iter().map(|fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 }).collect();
            // SAFETY: p holds valid pollfds.
            unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, left.as_millis().min(100) as i32) };
            ready = Some(p.iter().filter(|x| x.revents != 0).map(|x| x.fd).collect());
        }
    }

    fn say(&self, what: &str) {
        eprintln!("{}: {what}", self.tool);
    }

    /// A checkpoint's own line: said as the runtime says a single process's (`ckpt: checkpoint
    /// N: ...`), so that logs and scripts read both alike.
    fn say_checkpoint(&self, what: &str) {
        eprintln!("ckpt: {what}");
    }

    /// The generation of the newest image the program took alone (its image is a file, not a
    /// set), 0 when there is none.
    fn solo_generation(&self) -> u64 {
        let path = self.target.dir.join(std::ffi::OsStr::from_bytes(&self.set_name(0)));
        if !path.is_file() {
            return 0;
        }
        ckpt_image::trust::read_owned(&path, ckpt_image::trust::euid()).map_or(0, |r| r.index.meta.generation)
    }

    fn set_name(&self, i: u32) -> Vec<u8> {
        ckpt_image::generation_file_name(&self.target.name, i)
    }

    /// Take a checkpoint of the whole tree for member `requester` (then all exit, `stop`: Some(wait
    /// status) when the namespace is to end; `step`: as its part of a Slurm step's checkpoint).
    fn checkpoint(&mut self, requester: i32, stop: bool, step: bool) -> Option<i32> {
        let req = self.index_of(requester)?;
        let others = self.procs().into_iter().filter(|p| p.pid != requester).count();
        let had_set = self.target.dir.join(std::ffi::OsStr::from_bytes(&self.set_name(0))).is_dir();
        // One that runs as another user writes its image as a tree's part (`userdirs`).
        let other_user = crate::userdirs::allowed() && crate::userdirs::other_fs_ids(requester).is_some();
        if others == 0 && !had_set && !other_user {
            self.send(req, TreeMsg::Solo, None);
            return None;
        }
        let t0 = Instant::now();
        // A program that checkpointed itself alone before it forked goes on counting.
        let gen = self.target.generation.max(self.solo_generation()) + 1;
        // A process of the cut that ends during the capture (its parent SIGKILLed it just
        // before its own stop: a fork storm) fails the attempt: the tree is taken again, as it
        // is then (the dead one is a zombie or gone), a few times at most. Not a step's task:
        // the step's other tasks have given up this checkpoint by then.
        let mut outcome;
        let mut attempts = 0;
        loop {
            self.failure = None;
            self.member_ended = false;
            outcome = self.take(gen, stop, step.then_some(requester));
            attempts += 1;
            if outcome.is_ok() || !self.member_ended || step || attempts == ATTEMPTS || self.index_of(requester).is_none() {
                break;
            }
            if crate::verbose() {
                self.say(&format!("checkpoint {gen}: a process of the tree ended during the capture; taking the tree again"));
            }
        }
        let failure = self.failure.take().map(|f| Failure { kept: had_set, ..f }).unwrap_or_default();
        let ok = match outcome {
            Ok((n, raw, stored, paused)) => {
                self.target.generation = gen;
                let path = self.target.dir.join(std::ffi::OsStr::from_bytes(&self.set_name(0)));
                let size = ckpt_image::progress::Size;
                self.say_checkpoint(&format!(
                    "checkpoint {gen}: {} ({n} processes, {} of memory, {} on disk, {} ms, program paused {} ms)",
                    path.display(),
                    size(raw),
                    size(stored),
                    t0.elapsed().as_millis(),
                    paused / 1_000_000
                ));
                let lost: Vec<String> = ckpt_image::unshared::in_set(&path).into_iter().map(|u| u.what).collect();
                if !lost.is_empty() {
                    self.say(&format!("warning: checkpoint {gen}: {}, which a restart cannot share between processes again yet (ckpt-restart refuses the set; --ignore-missing-files goes on without them)", lost.join("; ")));
                }
                true
            }
            Err(e) => {
                // A reason said (`Failed`): what became of the sets too, as the requester says it.
                let kept = if failure.why == Why::Unsaid { String::new() } else { format!("; {}", kept_clause(had_set)) };
                self.say_checkpoint(&format!("checkpoint {gen} of the process tree failed, the program continues: {e}{kept}"));
                false
            }
        };
        let failure = if ok { Failure::default() } else { failure };
        // (Before any member hears it: the requester exits at once.)
        self.stopping |= stop && requester == self.root;
        for i in 0..self.members.len() {
            self.send(i, TreeMsg::Result { ok, failure }, None);
        }
        if !(ok && stop) {
            return None;
        }
        // Every process is held stopped after the cut. The requester exits (requeueing the job
        // first, if asked); the program's process doing so ends the namespace through init's
        // reaping. Another requester (a stop signal sent to a child) ends it here once gone.
        if requester == self.root {
            return None;
        }
        self.wait_until(PHASE, |c| c.index_of(requester).is_none());
        Some(EXIT_STOPPED << 8)
    }

    /// The two phases and the commit; (processes, memory bytes, bytes on disk, longest pause).
    /// `lead`: the step task's program that pairs the tree's connections to other tasks first.
    fn take(&mut self, gen: u64, stop: bool, lead: Option<i32>) -> Result<(usize, u64, u64, u64), String> {
        // Every live process of the tree must run the runtime (a fork's child connects in
        // its first milliseconds).
        // A member that ended while processes sharing its fd table (clone with CLONE_FILES) live
        // on: its connection stays open in that table, but it is gone.
        self.members.retain(|m| alive(m.pid));
        self.beyond = lead.is_some();
        let r = self.take_tree(gen, stop, lead);
        self.beyond = false;
        r
    }

    /// `take` once the processes of the tree are known.
    fn take_tree(&mut self, gen: u64, stop: bool, lead: Option<i32>) -> Result<(usize, u64, u64, u64), String> {
        // A traced process cannot take its part: said at once, before any waiting.
        // So can one that changed its user ids, unless we are root (`userdirs`).
        let root = crate::userdirs::allowed();
        let members: Vec<i32> = self.members.iter().map(|m| m.pid).collect();
        let unfit: Vec<String> = self
            .procs()
            .iter()
            .filter(|p| !p.zombie)
            .filter_map(|p| traced(p.pid, &members).or_else(|| if root { None } else { other_user(p.pid) }).or_else(|| crate::nscheck::other_namespace(p.pid)))
            .collect();
        if !unfit.is_empty() {
            return Err(unfit.join("; "));
        }
        // Stopped ones are woken later (`phases`); they cannot connect before.
        self.sleepers = self.procs().iter().filter(|p| !p.zombie && crate::jobstop::is_stopped(p.pid)).map(|p| Sleeper { pid: p.pid, sig: 0, woken: false }).collect();
        // The first srun is enough to name (it forks a helper of the same name).
        if let Some(why) = self.procs().iter().filter(|p| !p.zombie).find_map(|p| crate::launchers::outside_work(p.pid, lead.is_some())) {
            return Err(why);
        }
        let (left, _) = self.join();
        if !left.is_empty() {
            return Err(not_running_runtime(&left));
        }
        let (tmp, dirfd) = self.make_tmp()?;
        // Each process's image may build on its image in the newest set (`setchain`).
        crate::setchain::link_previous(&self.target.dir.join(std::ffi::OsStr::from_bytes(&self.set_name(0))), &tmp);
        let r = self.phases(gen, &tmp, &dirfd, stop, lead);
        if r.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        // (Each woken one is stopped again by now: `restop`.)
        self.sleepers.clear();
        r
    }

    /// Wait until every live process of the tree is a member (a fork's child connects from its
    /// fork handler, an exec'd program from the runtime's constructor: on a loaded machine either
    /// may take long), or those that are not never will or had their chance (`joins`); PHASE at
    /// most. The processes left (none: every one joined).
    /// Also those of them that never will join (`joins::Watch::never_joining`).
    fn join(&mut self) -> (Vec<i32>, Vec<i32>) {
        let restoring = self.restoring;
        let mut watch = crate::joins::Watch::default();
        // (While a restart is finished, its processes' /proc may not tell yet: waited for a
        // while, as before.)
        // The processes left as last seen: one born after that look (a fork storm) is the next
        // round's.
        let mut left = Vec::new();
        self.wait_until(if restoring { RESTORING_JOIN } else { PHASE }, |c| {
            left = c.missing();
            left.is_empty() || (!restoring && watch.settled(&left))
        });
        if crate::verbose() {
            for &p in &left {
                self.say(&format!("process {p} ({}) has not joined the tree: {}", comm(p), threads_doing(p)));
            }
        }
        let never = watch.never_joining().into_iter().filter(|p| left.contains(p)).collect();
        (left, never)
    }

    /// Whether `pid` is a stopped process of the checkpoint being taken not woken yet.
    fn asleep(&self, pid: i32) -> bool {
        self.sleepers.iter().any(|s| s.pid == pid && !s.woken)
    }

    /// Whether `pid` was stopped when the checkpoint being taken began.
    fn sleeper(&self, pid: i32) -> Option<&Sleeper> {
        self.sleepers.iter().find(|s| s.pid == pid)
    }

    /// The signal that stopped process `pid`: from the wait report its parent has not taken
    /// (asked of the parent, which is stopped for the checkpoint), or that init took (an
    /// orphan's); SIGSTOP when neither tells (a report the program took already).
    fn stop_signal(&mut self, pid: i32) -> i32 {
        let ppid = self.procs().iter().find(|p| p.pid == pid).map_or(0, |p| p.ppid);
        let sig = if ppid == 1 {
            crate::jobstop::reaped_stop(pid).unwrap_or(0)
        } else if let Some(i) = self.index_of(ppid).filter(|_| !self.asleep(ppid)) {
            self.stop_answers.retain(|a| a.0 != pid);
            self.send(i, TreeMsg::AskStop { pid }, None);
            self.wait_until(ASK, |c| c.stop_answers.iter().any(|a| a.0 == pid));
            self.stop_answers.iter().find(|a| a.0 == pid).map_or(0, |a| a.1)
        } else {
            0
        };
        if ckpt_image::tree::is_stop_signal(sig) {
            sig
        } else {
            libc::SIGSTOP
        }
    }

    /// Every other process has stopped its threads: wake the stopped ones to take their part.
    /// Before SIGCONT, each program thread (not those that block the runtime's stop signal: its
    /// checkpoint thread, helpers) gets the stop signal queued, marked as ours (`WAKE_MARK`), so
    /// that it parks in the runtime before it runs a single instruction of the program; where
    /// each was stopped (its /proc syscall line) goes into `<pid>.seen` in the set's temporary
    /// directory `tmp`, for the runtime to hide the interruption of a blocked call as it does
    /// for running threads (`jobstop::wake`). A member gets its Stop (checkpoint `gen`, set
    /// directory `dirfd`) before it is woken.
    fn wake(&mut self, tmp: &std::path::Path, gen: u64, dirfd: &OwnedFd) -> Result<(), String> {
        for i in 0..self.sleepers.len() {
            if self.sleepers[i].woken {
                continue;
            }
            let pid = self.sleepers[i].pid;
            self.sleepers[i].sig = self.stop_signal(pid);
            self.sleepers[i].woken = true;
            if let Some(m) = self.index_of(pid) {
                self.ask_to_stop(m, gen, tmp, dirfd)?;
            }
            crate::jobstop::wake(pid, &self.user_dirs.dir_of(tmp, pid));
        }
        Ok(())
    }

    /// Send member `i` its Stop for checkpoint `gen` (with the set's directory), saying which
    /// signal had stopped it if it was stopped.
    /// A member running as another user gets a directory of its own (`userdirs`).
    fn ask_to_stop(&mut self, i: usize, gen: u64, tmp: &std::path::Path, dirfd: &OwnedFd) -> Result<(), String> {
        self.members[i].asked = true;
        let members = self.members.len() as u32;
        let stopped = self.sleeper(self.members[i].pid).map_or(0, |s| s.sig as u32);
        let own = self.user_dirs.for_member(tmp, self.members[i].pid)?;
        self.send(i, TreeMsg::Stop { generation: gen, members, stopped }, Some(own.as_ref().unwrap_or(dirfd).as_raw_fd()));
        Ok(())
    }

    /// Stop the woken processes again with the signal that had stopped them, and wait until
    /// they are (their checkpoint thread takes it: the program's threads are held in the
    /// runtime); where that signal does not stop them (SIGTSTP, SIGTTIN, SIGTTOU in an orphaned
    /// process group), SIGSTOP does, and the manifest says so.
    fn restop(&mut self) {
        for s in self.sleepers.iter_mut().filter(|s| s.woken) {
            s.woken = false;
            for sig in [s.sig, libc::SIGSTOP] {
                // SAFETY: a signal to a process of our namespace.
                if unsafe { libc::kill(s.pid, sig) } != 0 {
                    break; // gone
                }
                s.sig = sig;
                let end = Instant::now() + RESTOP;
                while !crate::jobstop::all_stopped(s.pid) && Instant::now() < end {
                    std::thread::sleep(Duration::from_millis(1));
                }
                if crate::jobstop::all_stopped(s.pid) {
                    break;
                }
            }
        }
    }

    fn make_tmp(&self) -> Result<(PathBuf, OwnedFd), String> {
        let mut rnd = [0u8; 8];
        // SAFETY: filling rnd.
        unsafe { libc::getrandom(rnd.as_mut_ptr() as *mut libc::c_void, 8, 0) };
        let hex: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
        crate::sets::clean_leftovers(&self.target.dir, &self.set_name(0), self.started);
        let tmp = self.target.dir.join(format!("{}.tmp.{hex}", String::from_utf8_lossy(&self.set_name(0))));
        std::fs::DirBuilder::new().mode(0o700).create(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
        let fd = std::fs::File::open(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
        Ok((tmp, fd.into()))
    }

    fn phases(&mut self, gen: u64, tmp: &std::path::Path, dirfd: &OwnedFd, stop: bool, lead: Option<i32>) -> Result<(usize, u64, u64, u64), String> {
        for m in &mut self.members {
            m.got = None;
            m.asked = false;
            m.in_cut = false;
        }
        self.user_dirs.clear();
        let mut times = crate::phasetimes::PhaseTimes::new(gen);
        let all = |c: &Coord, want: fn(&TreeMsg) -> bool| c.members.iter().all(|m| m.got.as_ref().is_some_and(|g| want(g) || matches!(g, TreeMsg::Abort)));
        let failed = |c: &Coord| c.members.iter().filter(|m| matches!(m.got, Some(TreeMsg::Abort | TreeMsg::Failed { .. }))).map(|m| format!("{} ({})", m.pid, comm(m.pid))).collect::<Vec<_>>();
        // Phase 1: every process stops. A process forked just before its parent stopped, or a
        // program a member exec'd just then, connects meanwhile: it is asked to stop too, until
        // every live process of the tree is a stopped member.
        // A stopped process is woken only once every running one has stopped its threads, and
        // joins (a stopped one that had not connected yet) or answers in the next round.
        for round in 0.. {
            // One that never joins (a woken stopped one too): it does not run the runtime. One
            // that may still join (a child born while its parent was being stopped) is asked in
            // a later round.
            let (left, never) = self.join();
            let lost: Vec<i32> = left.into_iter().filter(|p| self.sleeper(*p).is_some() || never.contains(p)).collect();
            if !lost.is_empty() {
                self.abort();
                return Err(not_running_runtime(&lost));
            }
            for i in 0..self.members.len() {
                if !self.members[i].asked && !self.asleep(self.members[i].pid) {
                    if let Err(e) = self.ask_to_stop(i, gen, tmp, dirfd) {
                        self.abort();
                        return Err(e);
                    }
                }
            }
            // (A Done left over from an earlier checkpoint is no answer to this Stop.) Only the
            // members asked in this round are waited for: one that joins meanwhile (the child of
            // a member that was in fork() when its stop signal came, which joins from its fork
            // handler; gcc's vfork is a fork here) was not asked and would never answer (the
            // checkpoint failed after PHASE, `did not stop`); it is asked in the next round.
            let answered = |m: &Member| matches!(m.got, Some(TreeMsg::Stopped | TreeMsg::Abort | TreeMsg::Failed { .. }));
            if !self.wait_until(PHASE, |c| c.members.iter().all(|m| !m.asked || answered(m) || c.asleep(m.pid))) {
                let late = self.unanswered();
                // What each was doing (its threads' states and where they waited), read before
                // the abort lets it go: for a report of a checkpoint that could not happen.
                let doing: Vec<String> = late.iter().map(|&p| format!("{p} ({}: {})", comm(p), threads_doing(p))).collect();
                self.abort();
                return Err(format!("process {late:?} did not stop: {}", doing.join("; ")));
            }
            let bad = failed(self);
            if !bad.is_empty() {
                let said = self.said_failures();
                self.abort();
                return Err(said.unwrap_or_else(|| format!("process {} could not be stopped (its own line above says why)", bad.join(", "))));
            }
            if self.sleepers.iter().any(|s| !s.woken) {
                if let Err(e) = self.wake(tmp, gen, dirfd) {
                    self.abort();
                    return Err(e);
                }
                continue;
            }
            let left = self.missing();
            if left.is_empty() && self.members.iter().all(|m| m.asked) {
                break;
            }
            if round >= 50 {
                self.abort();
                return Err(not_running_runtime(&left));
            }
        }
        times.mark("stopped");
        let n = self.members.len();
        for m in &mut self.members {
            m.in_cut = true;
        }
        let cut: Vec<i32> = self.members.iter().map(|m| m.pid).collect();
        // While all are stopped: the fds several of them hold as one open file.
        let shared = crate::samefds::shared(&cut, &|pid| self.user_dirs.dir_of(tmp, pid));
        // Which process describes each socket and pipe several hold (`treemsg::LOWEST_HOLDERS`).
        if let Some(sh) = &shared {
            let text = crate::treemsg::encode_lowest(sh.lowest.iter().map(|l| (l.pipe, l.ino, l.pid)));
            if let Err(e) = std::fs::write(tmp.join(crate::treemsg::LOWEST_HOLDERS), text) {
                self.abort();
                return Err(format!("cannot write {}: {e}", tmp.join(crate::treemsg::LOWEST_HOLDERS).display()));
            }
        }
        let same = shared.map(|s| s.groups);
        // The tree as it is at the cut.
        let tree = self.procs();
        // The fd tables several of them share (clone with CLONE_FILES).
        let in_cut: Vec<(i32, i32)> = tree.iter().filter(|p| cut.contains(&p.pid)).map(|p| (p.pid, p.ppid)).collect();
        let tables = match crate::samefds::tables(&in_cut) {
            Ok(t) => t,
            Err(e) => {
                self.abort();
                return Err(e);
            }
        };
        // The processes in a time namespace of their own, with its offsets.
        let live_cut: Vec<i32> = tree.iter().filter(|p| cut.contains(&p.pid) && !p.zombie).map(|p| p.pid).collect();
        let (timens, timens_kids) = match crate::nscheck::time_namespaces(&live_cut) {
            Ok(t) => t,
            Err(e) => {
                self.abort();
                return Err(e);
            }
        };
        // Their fds 0 to 2 that are not the stdio the tree was given (ours).
        let own_stdio = crate::samefds::own_stdio(&live_cut, same.as_deref());
        times.mark("shared fds found");
        // A step's task: its program captures first, once it has paired the tree's connections
        // to other tasks and handed each process its own to drain (`treemsg`).
        if let Some(lead) = lead {
            self.lead_pairs(lead)?;
        }
        // Phase 2: every process captures and forks its snapshot.
        for i in 0..n {
            if Some(self.members[i].pid) != lead {
                self.send(i, TreeMsg::Capture, None);
            }
        }
        let captured = self.wait_until(PHASE, |c| c.members.len() != n || all(c, |g| matches!(g, TreeMsg::Captured | TreeMsg::Done { .. } | TreeMsg::Failed { .. })));
        if self.members.len() != n {
            self.abort();
            self.member_ended = true;
            return Err("a process of the tree ended while it was stopped (killed?)".into());
        }
        if !captured || !failed(self).is_empty() {
            let who = if captured { failed(self) } else { self.unanswered().iter().map(|p| p.to_string()).collect() };
            self.abort();
            if who.is_empty() {
                // (The last ones answered just after the deadline.)
                return Err(format!("the processes of the tree took longer than {} s to capture their state", PHASE.as_secs()));
            }
            return Err(format!("process {} could not be captured (its own line above says why)", who.join(", ")));
        }
        times.mark("captured");
        // The ids of the processes that run as other users, while they are stopped.
        if let Err(e) = self.user_dirs.note_ids() {
            self.abort();
            return Err(e);
        }
        // The stopped ones are stopped again before anyone resumes.
        self.restop();
        let _ = std::fs::remove_file(tmp.join(crate::treemsg::STEP_PAIRS));
        let _ = std::fs::remove_file(tmp.join(crate::treemsg::LOWEST_HOLDERS));
        for s in &self.sleepers {
            let _ = std::fs::remove_file(tmp.join(crate::jobstop::seen_name(s.pid)));
        }
        // Phase 3: all resume (a stop checkpoint: stay stopped until the Result); each snapshot
        // writes its image.
        let go_on = if stop { TreeMsg::Hold } else { TreeMsg::Resume };
        for i in 0..n {
            self.send(i, go_on, None);
        }
        times.mark("resumed");
        // New processes may start meanwhile (they are not in this set); a process of the cut may
        // end or exec once it has resumed: its image is complete when its snapshot committed it.
        // The stopped ones send no Done (they may be stopped before their image is written):
        // their image file is waited for, as an ended process's.
        self.wait_until(Duration::from_secs(24 * 3600), |c| c.members.iter().filter(|m| m.in_cut && c.sleeper(m.pid).is_none()).all(|m| matches!(m.got, Some(TreeMsg::Done { .. } | TreeMsg::Failed { .. }))));
        times.mark("written");
        let ended: Vec<i32> = cut.iter().copied().filter(|&p| self.sleeper(p).is_some() || !self.members.iter().any(|m| m.in_cut && m.pid == p)).collect();
        let lost: Vec<i32> = ended.iter().copied().filter(|&p| !committed(&self.user_dirs.dir_of(tmp, p), p)).collect();
        // The images written in directories of their own join the others (`userdirs`).
        self.user_dirs.gather(tmp, image_name)?;
        if !lost.is_empty() {
            return Err(format!("process {lost:?} ended before its image was written"));
        }
        let bad: Vec<String> = failed(self).into_iter().collect();
        if !bad.is_empty() {
            return Err(format!("the image of process {} could not be written", bad.join(", ")));
        }
        let (mut raw, mut stored, mut paused) = (0, 0, 0);
        for p in &ended {
            stored += std::fs::metadata(tmp.join(image_name(*p))).map_or(0, |m| m.len());
        }
        for m in self.members.iter().filter(|m| m.in_cut) {
            if let Some(TreeMsg::Done { raw: r, stored: s, paused_ns: p, .. }) = m.got {
                raw += r;
                stored += s;
                paused = paused.max(p);
            }
        }
        let root = self.root(&tree);
        let live: Vec<i32> = tree.iter().filter(|p| !p.zombie).map(|p| p.pid).collect();
        let reexec = crate::launchers::reruns(&live, lead.is_some());
        for &pid in &reexec {
            crate::launchers::write_rerun(tmp, pid)?;
        }
        let manifest = Manifest {
            generation: gen,
            root,
            procs: tree
                .iter()
                .map(|p| TreeProc {
                    pid: p.pid,
                    ppid: p.ppid,
                    pgid: p.pgid,
                    sid: p.sid,
                    state: if p.zombie { ProcState::Zombie { status: p.exit_code } } else { ProcState::Live { image: image_name(p.pid) } },
                })
                .collect(),
            same,
            tables,
            stopped: self.sleepers.iter().filter(|s| tree.iter().any(|p| p.pid == s.pid && !p.zombie)).map(|s| (s.pid, s.sig)).collect(),
            // Sessions of the tree (led by a live process of it) with a pseudo-terminal as
            // their controlling terminal.
            ctty: tree
                .iter()
                .filter(|p| p.sid == p.pid && !p.zombie)
                .filter_map(|p| Some(Ctty { sid: p.pid, index: pts_index_of_tty_nr(p.tty_nr)?, fg: p.tpgid.max(0) }))
                .collect(),
            exit_signals: tree.iter().filter(|p| p.exit_signal != libc::SIGCHLD).map(|p| (p.pid, p.exit_signal)).collect(),
            keep: (self.target.keep != ckpt_image::DEFAULT_KEEP).then_some(self.target.keep),
            // A joined step's srun, run again at restart (`launchers`).
            reexec,
            ids: self.user_dirs.ids(),
            timens,
            timens_kids,
            tree_time: crate::nscheck::tree_time(),
            own_stdio,
        };
        // Never replace the previous set with one a restart would refuse (a checkpoint asked for
        // while the program exits: no live process left to be the root).
        if root == 0 {
            return Err("no live process of the program is left (it is exiting); the previous set stays".into());
        }
        Manifest::parse(&manifest.encode()).map_err(|e| format!("the set would not read back ({e}); the previous set stays"))?;
        // Of the previous set's images, only those the new increments build on stay.
        crate::setchain::prune(tmp);
        self.commit(tmp, dirfd, &manifest)?;
        Ok((n, raw, stored, paused))
    }

    /// Phase 1b of a step task's tree: Capture to its program `lead` alone, and wait until it says
    /// Paired (each other process's connections to other tasks are named in the set's directory)
    /// or fails. Its own deadlines with the step's other tasks bound the wait.
    fn lead_pairs(&mut self, lead: i32) -> Result<(), String> {
        let Some(i) = self.index_of(lead) else {
            self.abort();
            return Err(format!("the task's program {lead} ended while it was stopped"));
        };
        self.send(i, TreeMsg::Capture, None);
        // (Its Captured may follow its Paired before we look.)
        let over = |c: &Coord| c.index_of(lead).is_none_or(|i| matches!(c.members[i].got, Some(TreeMsg::Paired | TreeMsg::Captured | TreeMsg::Abort | TreeMsg::Done { .. } | TreeMsg::Failed { .. })));
        let answered = self.wait_until(STEP_PAIRING, over);
        match self.index_of(lead).map(|i| self.members[i].got) {
            Some(Some(TreeMsg::Paired | TreeMsg::Captured)) => Ok(()),
            _ => {
                self.abort();
                Err(if answered {
                    format!("process {lead} ({}), the task's program, could not take the step's part (its own line above says why)", comm(lead))
                } else {
                    format!("process {lead}, the task's program, did not pair the step's connections in time")
                })
            }
        }
    }

    /// Whether the program asked for a stop checkpoint: the namespace ends with it (nothing
    /// outlives a program that was stopped).
    pub fn stopping(&self) -> bool {
        self.stopping
    }

    /// Once the program is gone and others live on (ns `leftover`): when the process that served
    /// the control socket is gone, the tree's root now (`root`: the first child of init) is told
    /// to take it, and the periodic timer, over; a root that has not joined yet is told later.
    pub fn keep_control(&mut self) {
        if self.control == 0 {
            self.control = self.root;
        }
        if alive(self.control) {
            return;
        }
        let tree = self.procs();
        let next = self.root(&tree);
        if let Some(i) = self.index_of(next).filter(|_| next != 0) {
            if self.send(i, TreeMsg::TakeControl, None) {
                if crate::verbose() {
                    self.say(&format!("process {next} ({}) serves ckpt-ctl now: the program ended, it is the tree's root", comm(next)));
                }
                self.control = next;
            }
        }
    }

    /// The program's process (the one init started), else the first child of init.
    fn root(&self, tree: &[Proc]) -> i32 {
        if tree.iter().any(|p| p.pid == self.root && !p.zombie) {
            return self.root;
        }
        tree.iter().find(|p| p.ppid == 1 && !p.zombie).map_or(0, |p| p.pid)
    }

    /// The members that said why they take no part (`Failed` with a reason), in one line with
    /// those that failed without saying; the first is kept for the Result. None when none said.
    fn said_failures(&mut self) -> Option<String> {
        let mut said = Vec::new();
        let mut unsaid = Vec::new();
        for m in &self.members {
            match m.got {
                Some(TreeMsg::Failed { why, comm: c }) if why != Why::Unsaid => {
                    // (Its own name, else /proc's: it may be gone by now.)
                    let c = if c[0] == 0 { crate::treemsg::comm_bytes(comm(m.pid).as_bytes()) } else { c };
                    said.push(Failure { why, pid: m.pid, comm: c, kept: false });
                }
                Some(TreeMsg::Failed { .. } | TreeMsg::Abort) => unsaid.push(format!("{} ({})", m.pid, comm(m.pid))),
                _ => {}
            }
        }
        self.failure = Some(*said.first()?);
        let mut lines: Vec<String> = said.iter().filter_map(Failure::what).collect();
        if !unsaid.is_empty() {
            lines.push(format!("process {} could not take its part (its own line above says why)", unsaid.join(", ")));
        }
        Some(lines.join("; "))
    }

    fn unanswered(&self) -> Vec<i32> {
        self.members.iter().filter(|m| m.got.is_none()).map(|m| m.pid).collect()
    }

    fn abort(&mut self) {
        // The woken ones are stopped again first (they see the Abort once continued).
        self.restop();
        for i in 0..self.members.len() {
            self.send(i, TreeMsg::Abort, None);
        }
        // Members that had captured write nothing; wait until they have resumed.
        self.wait_until(PHASE, |c| c.members.iter().all(|m| c.sleeper(m.pid).is_some() || !matches!(m.got, Some(TreeMsg::Captured | TreeMsg::Stopped))));
    }

    /// Write the manifest last, then make the set the newest generation in one rename.
    fn commit(&self, tmp: &std::path::Path, dirfd: &OwnedFd, m: &Manifest) -> Result<(), String> {
        use std::io::Write;
        let mpath = tmp.join(ckpt_image::tree::MANIFEST);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&mpath)
            .map_err(|e| format!("cannot write {}: {e}", mpath.display()))?;
        f.write_all(m.encode().as_bytes()).and_then(|_| f.sync_all()).map_err(|e| format!("cannot write {}: {e}", mpath.display()))?;
        // SAFETY: fsync of our directory fd.
        unsafe { libc::fsync(dirfd.as_raw_fd()) };
        crate::sets::commit(&self.target.dir, tmp, &self.target.name, self.target.keep)
    }
}

/// The line for live processes of the tree that never joined it: one that shares kernel state
/// with its parent (made by clone with CLONE_FILES, CLONE_FS, ...) is named for that.
fn not_running_runtime(pids: &[i32]) -> String {
    if let Some(line) = pids.iter().find_map(|&p| shared_with_parent(p)) {
        return line;
    }
    let list: Vec<String> = pids.iter().map(|&p| format!("{p} ({})", comm(p))).collect();
    format!(
        "process {} does not run ckpt's runtime or lost its link to the tree (a static or setuid program, one started without LD_PRELOAD, a child made by a raw clone system call instead of fork or by clone() from a process with several threads (with or without an exit signal), or one that closed the runtime's fds with a raw close system call or dup2): it cannot be checkpointed",
        list.join(", ")
    )
}

/// The line for process `pid`, not a member, when it shares its memory, its fd table, its
/// filesystem information (cwd, root, umask) or its signal handlers with its parent (kcmp): a
/// child made by clone with CLONE_VM, CLONE_FILES, CLONE_FS or CLONE_SIGHAND that the runtime
/// did not make (only CLONE_FILES is, from a process with one program thread).
fn shared_with_parent(pid: i32) -> Option<String> {
    const KCMP_VM: i32 = 1;
    const KCMP_FILES: i32 = 2;
    const KCMP_FS: i32 = 3;
    const KCMP_SIGHAND: i32 = 4;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ppid: i32 = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: kcmp only compares the two processes' kernel objects.
    let same = |kind: i32| unsafe { libc::syscall(libc::SYS_kcmp, pid, ppid, kind, 0, 0) } == 0;
    let what = [(KCMP_VM, "its memory (CLONE_VM)"), (KCMP_FILES, "its fd table (CLONE_FILES)"), (KCMP_FS, "its working directory, root and umask (CLONE_FS)"), (KCMP_SIGHAND, "its signal handlers (CLONE_SIGHAND)")];
    let shared: Vec<&str> = what.iter().filter(|(k, _)| same(*k)).map(|(_, w)| *w).collect();
    if shared.is_empty() {
        return None;
    }
    Some(format!(
        "process {pid} ({}) shares {} with its parent {ppid} ({}) and does not run ckpt's runtime: ckpt manages a child made by clone with CLONE_FILES (from a process with one thread), not one with CLONE_VM, CLONE_FS or CLONE_SIGHAND, so the tree cannot be checkpointed",
        comm(pid),
        shared.join(" and "),
        comm(ppid)
    ))
}

/// Why process `pid` cannot take its part in a checkpoint, if it cannot: one of its threads is
/// traced (ptrace) otherwise than the runtime handles (ptraced.rs there): the tracer must be a
/// thread of a member of the tree (`members`: it brings the thread into the stop handler and
/// attaches again at a restart), the thread must be in a ptrace stop (one that runs would stop
/// for our stop signal, seen by its tracer's program) and the tracer must neither catch nor
/// block SIGCHLD (the stop made again after the checkpoint sends it one). Which kind of stop (a
/// signal-delivery-stop only) only the tracer can tell: its runtime refuses the others.
fn traced(pid: i32, members: &[i32]) -> Option<String> {
    let rd = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    for t in rd.flatten() {
        let Ok(status) = std::fs::read_to_string(t.path().join("status")) else { continue };
        let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim).unwrap_or("");
        let tracer: i32 = field("TracerPid:").parse().unwrap_or(0);
        if tracer == 0 {
            continue;
        }
        let tid = t.file_name().to_string_lossy().into_owned();
        let tracer_status = std::fs::read_to_string(format!("/proc/{tracer}/status")).unwrap_or_default();
        let tfield = |name: &str| tracer_status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim).unwrap_or("").to_string();
        let tgid: i32 = tfield("Tgid:").parse().unwrap_or(0);
        let caught = u64::from_str_radix(&tfield("SigCgt:"), 16).unwrap_or(0);
        let blocked = u64::from_str_radix(&tfield("SigBlk:"), 16).unwrap_or(0);
        let why = if !members.contains(&tgid) {
            Some("its tracer is not a process of the tree that runs ckpt's runtime")
        } else if !field("State:").starts_with('t') {
            Some("it runs (ckpt checkpoints a traced thread only in a signal-delivery-stop)")
        } else if caught & (1 << (libc::SIGCHLD - 1)) != 0 {
            Some("its tracer catches SIGCHLD (the stop made again after the checkpoint would send it one more)")
        } else if blocked & (1 << (libc::SIGCHLD - 1)) != 0 {
            Some("its tracer thread blocks SIGCHLD (it may take it with sigwaitinfo or a signalfd: the stop made again after the checkpoint would give it one more)")
        } else {
            None
        };
        if let Some(why) = why {
            return Some(format!("process {pid} ({}) is traced (thread {tid}, by thread {tracer} of process {tgid} ({})) and cannot be checkpointed: {why}", comm(pid), comm(tgid)));
        }
    }
    None
}

/// Why process `pid` cannot take its part, if it runs as another user than the tree (ours): it
/// changed its user ids (setuid, setresuid, setfsuid, or an exec of a setuid program). Asked only
/// when we are not root: root's tree gives such a process a directory of its own (`userdirs`);
/// anyone else could neither take its image (another user's) nor have ckpt-restart take its ids
/// again.
fn other_user(pid: i32) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let uids: Vec<u32> = status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().filter_map(|u| u.parse().ok()).collect();
    // SAFETY: geteuid has no preconditions.
    let ours = unsafe { libc::geteuid() };
    if uids.len() == 4 && uids[1] == ours && uids[3] == ours {
        return None;
    }
    Some(format!(
        "process {pid} ({}) changed its user ids (real, effective, saved, filesystem: {:?}; the tree runs as uid {ours}): ckpt writes and restarts each process as the tree's user, so a tree with a process of another user cannot be checkpointed",
        comm(pid),
        uids
    ))
}

/// How long a parent may take to say by which signal its child is stopped.
const ASK: Duration = Duration::from_secs(2);

/// How long a woken process may take to be stopped again.
const RESTOP: Duration = Duration::from_secs(5);

/// Whether the image of process `pid` is in the set directory `tmp`: its writer (the snapshot of
/// a process that exec'd or exited after the cut, or of a stopped one) committed it, or gave up
/// (no temporary file, and no writer child of `pid` that may not have created it yet).
fn committed(tmp: &std::path::Path, pid: i32) -> bool {
    let name = image_name(pid);
    let writing = || writer_alive(pid) || std::fs::read_dir(tmp).map(|rd| rd.flatten().any(|e| e.file_name().to_string_lossy().starts_with(&format!("{name}.tmp")))).unwrap_or(false);
    let end = Instant::now() + Duration::from_secs(600);
    while !tmp.join(&name).is_file() {
        if !writing() || Instant::now() > end {
            return tmp.join(&name).is_file();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Whether process `pid` has a checkpoint writer child (`WRITER_NAME`) still at work.
fn writer_alive(pid: i32) -> bool {
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return false };
    rd.flatten().any(|t| {
        let children = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        children.split_whitespace().any(|c| comm(c.parse().unwrap_or(0)).as_bytes() == crate::WRITER_NAME.to_bytes())
    })
}

enum Recv {
    Msg(TreeMsg),
    Gone,
    Nothing,
}

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
