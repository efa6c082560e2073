//! Pid 1 of the program's namespace.
//!
//! The program must not be pid 1 itself: pid 1 ignores every signal it has no handler for
//! (SIGTERM, SIGINT, ... from inside the namespace and from outside), inherits orphans and sees
//! getppid() == 0. So init is a small process of ours: it dies with the outer process
//! (PR_SET_PDEATHSIG; when pid 1 dies the kernel kills the whole namespace), mounts a /proc of
//! the namespace (so /proc/self, /proc/PID and getpid() agree) and a devpts instance of its own
//! (`devpts`), starts the program as its child
//! with its pid (clone3 set_tid: ckpt-run's pid; at restart the restarter with the program's old
//! pid, in a time namespace that continues its clocks), sends its pidfd to the outer process,
//! and then serves until the program is gone:
//! - it reaps every child, and reports the program's stops, continues and end;
//! - it is the witness of signals sent to the whole process group or cgroup: init is in the outer
//!   process's process group and cgroup and reads every signal it gets (all are blocked, read
//!   from a signalfd), noting when; when the outer process receives a signal it asks init whether
//!   init got it too within `WITNESS_WINDOW_MS` (then the program got it directly as well, and the
//!   outer process does not forward it). The kernel queues a signal to a process group for every
//!   member in one go, so init's copy is there by the time the outer process asks;
//! - after a restart, it tells the outer process when every process of the tree runs again
//!   (each one's runtime says so to the coordinator), so that the signals held meanwhile go.
//!
//! When the program is gone, init waits for the checkpoint writers it left (an image begun before
//! the end is finished), then exits, which ends the namespace. When other processes of the
//! namespace live on (`leftover`: what the program left behind), init instead stops dying with
//! the outer process, says `Outlived` (the outer process exits as the program did) and stays with
//! them, reaping and coordinating, until no process is left.
//! Init runs in a fork-like child of the outer process with every signal blocked; the program
//! gets the outer process's signal mask and capability bounding set back before its execve.

use crate::report::{self, Msg, Stage};
use crate::{caps, timens, CloneArgs, Payload};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub(crate) struct Init<'a> {
    pub report: OwnedFd,
    pub sync: OwnedFd,
    /// A pidfd of the outer process (None if pidfd_open failed).
    pub outer: Option<OwnedFd>,
    /// The outer process's /proc/PID directory, for the program's runtime (`OUTER_PROC_VAR`),
    /// when the outer process leads its session.
    pub outer_proc: Option<OwnedFd>,
    pub payload: &'a Payload,
    pub mask: libc::sigset_t,
    /// The outer process's capability bounding set.
    pub bounding: u64,
    /// We are in a user namespace of our own (not when the caller is root).
    pub userns: bool,
    pub tool: &'static str,
    /// Coordinate the program's process tree (sets go there), as the outer process `outer_pid`.
    pub tree: Option<crate::TreeTarget>,
    pub outer_pid: i32,
    /// A restart: the processes that say `Running` when they run again (`Options::restored`).
    pub restored: Vec<i32>,
    /// A restart: the indices of the program's own pseudo-terminal pairs (`Options::pairs`).
    pub pairs: Vec<u32>,
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

fn fail(report: RawFd, stage: Stage, errno: i32) -> ! {
    report::send(report, Msg::Failed { stage, errno }, None);
    // SAFETY: leaving this process.
    unsafe { libc::_exit(1) }
}

pub(crate) fn main(i: Init) -> ! {
    let report = i.report.as_raw_fd();
    // SAFETY: plain prctl/read/mount calls on our own process and valid buffers.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        // The outer process writes our id maps, then one byte; EOF means it gave up or died.
        let mut b = 0u8;
        if libc::read(i.sync.as_raw_fd(), &mut b as *mut u8 as *mut libc::c_void, 1) != 1 {
            libc::_exit(1);
        }
        libc::prctl(libc::PR_SET_NAME, c"ckpt-init".as_ptr());
        // Our mounts must not propagate out (in a user namespace of our own they cannot: the
        // kernel made shared mounts slaves already).
        if libc::mount(std::ptr::null(), c"/".as_ptr(), std::ptr::null(), libc::MS_REC | libc::MS_SLAVE, std::ptr::null()) != 0 {
            fail(report, Stage::Mount, errno());
        }
        let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        if libc::mount(c"proc".as_ptr(), c"/proc".as_ptr(), c"proc".as_ptr(), flags, std::ptr::null()) != 0 {
            fail(report, Stage::Proc, errno());
        }
    }
    // The terminal the program starts with keeps its name in the instance; its pair there is
    // held for the namespace's life (closed on exec in the program).
    let terminals = crate::devpts::host_terminals();
    let _held = match crate::devpts::mount_own(!i.userns, i.tool) {
        Ok(()) => crate::devpts::name_host_terminals(terminals, &i.pairs, i.tool),
        Err(e) => {
            if crate::verbose() {
                eprintln!("{}: {e}; the program's pseudo-terminals are numbered among the host's (after a restart a pair whose index another terminal took meanwhile is made at another index)", i.tool);
            }
            Vec::new()
        }
    };
    // Listening before the program starts: its runtime connects in its constructor.
    let mut coord = i.tree.clone().and_then(|t| match crate::coord::Coord::new(t, i.outer_pid, i.tool) {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("{}: warning: the program's child processes will not be checkpointed: cannot listen for them: {e}", i.tool);
            None
        }
    });
    let (pid, pidfd) = match start(&i) {
        Ok(s) => s,
        Err(e) => fail(report, Stage::Start, e),
    };
    report::send(report, Msg::Started { pid }, Some(pidfd.as_raw_fd()));
    drop(pidfd);
    if let Some(c) = coord.as_mut() {
        c.root = pid;
        c.await_running(&i.restored);
    } else if !i.restored.is_empty() {
        // Nobody can say when it runs: the outer process holds nothing back.
        report::send(report, Msg::Running, None);
    }
    let outer = i.outer.as_ref().map(|f| f.as_raw_fd());
    let life = Life { program: pid, report, outer, lifeline: Some(i.sync), may_outlive: crate::leftover::allowed(), outlived: false, restoring: false };
    serve(life, coord)
}

/// What init knows of the program's life and of the outer process.
struct Life {
    /// The program's pid.
    program: i32,
    /// The socket to the outer process.
    report: RawFd,
    /// A pidfd of the outer process.
    outer: Option<RawFd>,
    /// Our end of the start pipe, kept open while we die with the outer process (spawn.rs
    /// `kill_with_us`).
    lifeline: Option<OwnedFd>,
    /// Other processes may outlive the program (`leftover::allowed`).
    may_outlive: bool,
    /// The program is gone and others live on: we stay until none is left (`leftover`).
    outlived: bool,
    /// A restarted tree does not run yet (`Coord::awaiting`): a restarter that ends then failed,
    /// and the namespace ends with it (the others give up).
    restoring: bool,
}

/// clone3 a child process with pid `want` (0: any); returns (pid, pidfd) in the parent, 0 in the
/// child.
fn clone_with_pid(want: i32) -> Result<(i32, RawFd), i32> {
    let mut pidfd: RawFd = -1;
    let tid = [want];
    let mut a = CloneArgs { flags: libc::CLONE_PIDFD as u64, pidfd: &mut pidfd as *mut RawFd as u64, exit_signal: libc::SIGCHLD as u64, ..Default::default() };
    if want > 0 {
        a.set_tid = tid.as_ptr() as u64;
        a.set_tid_size = 1;
    }
    // SAFETY: a fork-like clone3 of this single-threaded process (no stack: the child continues
    // on a copy of ours); the child only execs or exits.
    let r = unsafe { libc::syscall(libc::SYS_clone3, &a as *const CloneArgs, std::mem::size_of::<CloneArgs>()) };
    if r < 0 {
        return Err(errno());
    }
    Ok((r as i32, pidfd))
}

/// Start the program with the pid asked for (the restarter in a time namespace continuing the
/// program's clocks, and with any pid, after a warning, if its old one cannot be had). The
/// program's later children get pids after its own, as they would outside.
fn start(i: &Init) -> Result<(i32, OwnedFd), i32> {
    let (want, clocks) = match i.payload {
        Payload::Exec { pid, .. } => (*pid, None),
        Payload::Restore { pid, clocks, .. } => (*pid, *clocks),
    };
    if let Some(c) = clocks {
        if let Err(e) = timens::enter_for_children(c) {
            if crate::verbose() {
                eprintln!("{}: CLOCK_MONOTONIC and CLOCK_BOOTTIME will not continue from the checkpoint: cannot create a time namespace: {e}", i.tool);
            }
        }
    }
    let (pid, pidfd) = match (clone_with_pid(want), i.payload) {
        (Ok(r), _) => r,
        // ckpt-run's settings name the pid: without it, better no namespace at all.
        (Err(e), Payload::Exec { .. }) => return Err(e),
        (Err(e), Payload::Restore { .. }) => {
            let why = std::io::Error::from_raw_os_error(e);
            eprintln!("{}: warning: exact process ids are not available: cannot create a process with pid {want}: {why}; using virtual ids", i.tool);
            clone_with_pid(0)?
        }
    };
    if pid == 0 {
        exec_program(i)
    }
    // SAFETY: a new fd that nobody else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    let _ = std::fs::write("/proc/sys/kernel/ns_last_pid", pid.to_string());
    Ok((pid, pidfd))
}

/// Let `fd` (close-on-exec until now) through the program's execve and name it in
/// `OUTER_PROC_VAR`: its runtime holds a kernel hangup while the outer process is exiting
/// (runtime hupgate.rs), takes the fd out of the program's view and removes the variable (a
/// restarter hands it to the restarted runtime: restarter outerproc.rs).
fn pass_outer_proc(fd: RawFd) {
    let Ok(v) = std::ffi::CString::new(fd.to_string()) else { return };
    // SAFETY: fcntl on our own fd; setenv with NUL-terminated strings in this single-threaded
    // child before its execve.
    unsafe {
        if libc::fcntl(fd, libc::F_SETFD, 0) == 0 {
            libc::setenv(crate::OUTER_PROC_VAR.as_ptr() as *const libc::c_char, v.as_ptr(), 1);
        }
    }
}

/// In the program's process: capabilities and signal mask as outside, then execve. A failing
/// execve is reported like ckpt-run and ckpt-restart do without namespaces.
fn exec_program(i: &Init) -> ! {
    if let (Payload::Restore { .. }, true) = (i.payload, i.userns) {
        if let Err(e) = caps::keep_across_exec(caps::CAP_CHECKPOINT_RESTORE) {
            eprintln!("{}: warning: cannot keep CAP_CHECKPOINT_RESTORE for the restart ({e}): threads get new ids", i.tool);
        }
    }
    caps::limit_bounding(i.bounding);
    crate::spawn::sigmask(libc::SIG_SETMASK, &i.mask);
    if let Some(dir) = &i.outer_proc {
        pass_outer_proc(dir.as_raw_fd());
    }
    let (exe, argv) = match i.payload {
        Payload::Exec { argv, .. } => (None, argv),
        Payload::Restore { exe, argv, .. } => (Some(exe), argv),
    };
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    // SAFETY: a NULL-terminated array of valid C strings.
    unsafe {
        match exe {
            Some(e) => libc::execv(e.as_ptr(), ptrs.as_ptr()),
            None => libc::execvp(ptrs[0], ptrs.as_ptr()),
        }
    };
    let e = std::io::Error::last_os_error();
    eprintln!("{}: cannot run {}: {e}", i.tool, exe.unwrap_or(&argv[0]).to_string_lossy());
    // As env(1): 127 when the program does not exist, 126 when it cannot be run; 1 for the
    // restarter (ckpt-restart's status when an image cannot be restarted).
    let status = match (exe, e.kind()) {
        (Some(_), _) => 1,
        (None, std::io::ErrorKind::NotFound) => 127,
        (None, _) => 126,
    };
    // SAFETY: leaving the child.
    unsafe { libc::_exit(status) }
}

/// A signal init got counts as a witness of one the outer process got this long afterwards.
const WITNESS_WINDOW_MS: u64 = 250;

fn now_ms() -> u64 {
    let c = timens::Clocks::now();
    (c.monotonic / 1_000_000) as u64
}

/// When init last got each signal (CLOCK_MONOTONIC ms; 0: not since it was last asked).
struct Witness([u64; 65]);

impl Witness {
    fn got(&mut self, sig: u32) {
        if let Some(t) = self.0.get_mut(sig as usize) {
            *t = now_ms().max(1);
        }
    }
    /// Note the signals waiting in signalfd `sfd` (non-blocking).
    fn note_pending(&mut self, sfd: RawFd) {
        // SAFETY: an all-zero signalfd_siginfo is valid; read fills it.
        let mut si: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let len = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: reading whole records into si.
        while unsafe { libc::read(sfd, &mut si as *mut _ as *mut libc::c_void, len) } == len as isize {
            if si.ssi_signo != libc::SIGCHLD as u32 {
                self.got(si.ssi_signo);
            }
        }
    }
    /// Whether `sig` came just now; forget it either way.
    fn answer(&mut self, sig: i32) -> bool {
        let Some(t) = usize::try_from(sig).ok().and_then(|s| self.0.get_mut(s)) else { return false };
        let at = std::mem::take(t);
        at != 0 && now_ms().saturating_sub(at) <= WITNESS_WINDOW_MS
    }
}

/// Reap every child that changed state; report the program's stops, continues and end (then
/// leave, which ends the namespace, unless other processes live on: `leftover`). Once the
/// program is gone and others lived on, leave when no process is left.
fn reap(life: &mut Life, block: bool) {
    let (program, report) = (life.program, life.report);
    loop {
        let mut st = 0;
        let flags = libc::__WALL | libc::WUNTRACED | libc::WCONTINUED | if block { 0 } else { libc::WNOHANG };
        // SAFETY: waiting for our children with a valid status pointer.
        let r = unsafe { libc::waitpid(-1, &mut st, flags) };
        if r < 0 && errno() == libc::EINTR {
            continue;
        }
        if r < 0 && life.outlived {
            // No process is left in the namespace (writers included: they are our children
            // once their process ended).
            // SAFETY: leaving init.
            unsafe { libc::_exit(0) }
        }
        if r < 0 {
            // No child at all: the program is gone without our seeing it (cannot happen).
            report::send(report, Msg::Exited { status: 0x7f00 }, None);
            // SAFETY: leaving init.
            unsafe { libc::_exit(1) }
        }
        if r == 0 {
            return;
        }
        // (Orphans stopped by job control: the coordinator asks which signal stopped them.)
        if libc::WIFSTOPPED(st) {
            crate::jobstop::note_reaped(r, Some(libc::WSTOPSIG(st)));
        } else {
            crate::jobstop::note_reaped(r, None);
        }
        // (Once the program is gone, its pid may be a new process's.)
        if r != program || life.outlived {
            continue;
        }
        if libc::WIFSTOPPED(st) {
            report::send(report, Msg::Stopped { sig: libc::WSTOPSIG(st) }, None);
        } else if libc::WIFCONTINUED(st) {
            report::send(report, Msg::Continued, None);
            if let Some(o) = life.outer {
                crate::forward::send(o, libc::SIGCONT, true, 0);
            }
        } else if life.may_outlive && !life.restoring && crate::leftover::others_live(program) && crate::leftover::detach(life.lifeline.take(), life.outer) {
            // Others live on: the outer process exits as the program did; we stay with them.
            life.outlived = true;
            report::send(report, Msg::Outlived { status: st }, None);
            continue;
        } else {
            wait_for_writers();
            report::send(report, Msg::Exited { status: st }, None);
            // SAFETY: leaving init.
            unsafe { libc::_exit(0) }
        }
        if block {
            return;
        }
    }
}

/// Once the program is gone: wait for the checkpoint writers it left (named `WRITER_NAME`),
/// which finish, commit and report an image begun before it ended, before the namespace ends
/// (which would kill them); the rest end with the namespace.
fn wait_for_writers() {
    loop {
        let children = std::fs::read_to_string("/proc/thread-self/children").unwrap_or_default();
        let writer = children.split_whitespace().filter_map(|p| p.parse::<i32>().ok()).find(|p| {
            let comm = std::fs::read(format!("/proc/{p}/comm")).unwrap_or_default();
            comm.strip_suffix(b"\n").unwrap_or(&comm) == crate::WRITER_NAME.to_bytes()
        });
        let Some(pid) = writer else { return };
        let mut st = 0;
        // SAFETY: waiting for a child of ours with a valid status pointer (__WALL: writers have
        // no exit signal).
        while unsafe { libc::waitpid(pid, &mut st, libc::__WALL) } < 0 && errno() == libc::EINTR {}
    }
}

/// Reap children and answer the outer process's questions until the program is gone (and,
/// when others outlive it, until they are gone too).
fn serve(mut life: Life, mut coord: Option<crate::coord::Coord>) -> ! {
    let report = life.report;
    // SAFETY: a signalfd for every signal (all are blocked).
    let sfd = unsafe { libc::signalfd(-1, &crate::spawn::full_set(), libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
    let mut sock = report;
    let mut witness = Witness([0; 65]);
    if sfd < 0 && coord.as_ref().is_some_and(|c| c.awaiting()) {
        // (The coordinator is not served then: nobody would say when the tree runs.)
        report::send(report, Msg::Running, None);
    }
    loop {
        if sfd < 0 {
            reap(&mut life, true); // no witness then: just reap
            hand_over(&life, &mut coord);
            continue;
        }
        let mut fds = vec![libc::pollfd { fd: sfd, events: libc::POLLIN, revents: 0 }, libc::pollfd { fd: sock, events: libc::POLLIN, revents: 0 }];
        fds.extend(coord.iter().flat_map(|c| c.fds()).map(|fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 }));
        // While a restarted tree is not all running, now and then: whether one of its
        // processes ended without saying so (`Coord::restored`).
        let timeout = if coord.as_ref().is_some_and(|c| c.awaiting()) { 100 } else { -1 };
        // SAFETY: fds holds valid entries (a negative fd is ignored).
        if unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) } < 0 {
            continue;
        }
        if fds[2..].iter().any(|p| p.revents != 0) {
            // The tree stopped after its checkpoint: the namespace ends as the program would.
            let status = coord.as_mut().and_then(|c| c.serve());
            // (The program's own stop request: its exit ends the other processes too.)
            life.may_outlive &= !coord.as_ref().is_some_and(|c| c.stopping());
            if let Some(status) = status {
                wait_for_writers();
                report::send(report, Msg::Exited { status }, None);
                // SAFETY: leaving init, which ends the namespace.
                unsafe { libc::_exit(0) }
            }
            hand_over(&life, &mut coord);
        }
        if coord.as_mut().is_some_and(|c| c.restored()) {
            report::send(report, Msg::Running, None);
        }
        life.restoring = coord.as_ref().is_some_and(|c| c.awaiting());
        // Signals first: a question about a signal must find init's copy already noted.
        if fds[0].revents != 0 {
            witness.note_pending(sfd);
            reap(&mut life, false);
            hand_over(&life, &mut coord);
        }
        if fds[1].revents != 0 {
            match report::recv(sock, libc::MSG_DONTWAIT) {
                Ok(Some((Msg::Witness { sig }, _))) => {
                    // Also what came after the poll (the question can be that fast).
                    witness.note_pending(sfd);
                    report::send(report, Msg::Witnessed { sig, yes: witness.answer(sig) }, None);
                    // A SIGCHLD read with them is not left unanswered.
                    reap(&mut life, false);
                }
                Ok(Some(_)) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EINTR)) => {}
                // The outer process is gone (its death signal will end us): stop listening.
                Ok(None) | Err(_) => sock = -1,
            }
        }
    }
}

/// Once the program is gone and others live on: the tree's root (the first child of init) serves
/// ckpt-ctl and runs the periodic timer in its stead (`Coord::keep_control`).
fn hand_over(life: &Life, coord: &mut Option<crate::coord::Coord>) {
    if let (true, Some(c)) = (life.outlived, coord.as_mut()) {
        c.keep_control();
    }
}
