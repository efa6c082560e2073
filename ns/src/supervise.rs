//! The outer process after the program started: it stands for the program towards whatever
//! started us (a shell, mpirun, slurmstepd) until the program ends, then exits with the
//! program's status or dies by the same signal.
//!
//! - Signals sent to us are read from a signalfd (all were blocked by `start`) and forwarded to
//!   the program through its pidfd, by the rule in `forward` (init is asked whether it got the
//!   same signal; reports arriving meanwhile wait in `deferred`).
//! - After a restart, the signals to forward wait (in order) until init says that every process
//!   of the tree runs again (`Msg::Running`): sent earlier, one would reach a process still
//!   being restored (the restarter, which its default action ends, or a program whose memory is
//!   not back yet). Then they go, each once, in the order they came. Signals that reached the
//!   program directly (its process group's) are the kernel's to deliver: the restarter blocks
//!   every signal once the tree is staged, so they wait in the kernel until the program runs.
//! - Job control: when the program stops (^Z, SIGTSTP, SIGSTOP), we stop with the same signal, so
//!   the shell sees its job stopped; when it continues, init wakes us with SIGCONT.
//! - A SIGKILL of ours kills init (its parent-death signal) and with it the whole namespace.
//! - When the program ends and other processes of the namespace live on, init says `Outlived`
//!   once it no longer dies with us, and we exit at once as the program did (`leave`); they
//!   live on with init (ns `leftover`).

use crate::forward::{self, Received, Surroundings, Verdict};
use crate::report::{self, Msg};
use crate::spawn::{full_set, sigmask, Namespace};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Instant;

struct Env<'a> {
    ns: &'a Namespace,
    /// The program's pid as we see it.
    outside: Option<i32>,
    /// Reports from init that arrived while we waited for an answer.
    deferred: RefCell<VecDeque<Msg>>,
    /// The signals to forward once the restarted program runs (None: it runs, send at once).
    held: RefCell<Option<Vec<(i32, bool, Instant)>>>,
}

/// How long to wait for init's answer (it could be stopped, by a SIGSTOP sent to it alone).
const WITNESS_MS: i32 = 200;

impl Surroundings for Env<'_> {
    fn parent_pid(&self) -> i32 {
        // SAFETY: getppid has no preconditions.
        unsafe { libc::getppid() }
    }
    fn session_leader(&self) -> bool {
        // SAFETY: getsid and getpid have no preconditions.
        unsafe { libc::getsid(0) == libc::getpid() }
    }
    fn is_slurmstepd(&self, pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == "slurmstepd")
    }
    fn marked(&self, signo: i32) -> bool {
        self.ns.opts.marked.contains(&signo)
    }
    fn group_got_it(&self, signo: i32) -> bool {
        let seen = self.ask_witness(signo); // first: the question also clears init's record
        // SAFETY: getpgrp has no preconditions.
        let ours = unsafe { libc::getpgrp() };
        seen && self.outside.and_then(pgrp_of).is_some_and(|g| g == ours)
    }
}

impl Env<'_> {
    /// Ask init whether it got `sig` too; other reports meanwhile are kept for later.
    fn ask_witness(&self, sig: i32) -> bool {
        let sock = self.ns.sock.as_raw_fd();
        report::send(sock, Msg::Witness { sig }, None);
        loop {
            let mut p = libc::pollfd { fd: sock, events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd.
            if unsafe { libc::poll(&mut p, 1, WITNESS_MS) } <= 0 {
                return false;
            }
            match report::recv(sock, libc::MSG_DONTWAIT) {
                Ok(Some((Msg::Witnessed { sig: s, yes }, _))) if s == sig => return yes,
                Ok(Some((m, _))) => self.deferred.borrow_mut().push_back(m),
                Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EINTR)) => {}
                Ok(None) | Err(_) => return false,
            }
        }
    }
}

/// The process group of process `pid` (field 5 of /proc/PID/stat).
fn pgrp_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.split(' ').nth(2)?.parse().ok()
}

/// The pid, as we see it, of the process a pidfd refers to (from the pidfd's fdinfo).
fn pid_of_pidfd(pidfd: RawFd) -> Option<i32> {
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{pidfd}")).ok()?;
    text.lines().find_map(|l| l.strip_prefix("Pid:")).and_then(|v| v.trim().parse().ok()).filter(|&p: &i32| p > 0)
}

/// Whether process `pid` is stopped now ('T' in /proc/PID/stat).
fn is_stopped(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('T'))
}

impl Namespace {
    /// Stand for the program until it ends; never returns.
    pub fn supervise(self) -> ! {
        // SAFETY: a signalfd for every signal (those that cannot be caught are left out by the kernel).
        let sfd = unsafe { libc::signalfd(-1, &full_set(), libc::SFD_CLOEXEC) };
        if sfd < 0 {
            eprintln!("{}: cannot read signals ({}); signals sent to this process are not forwarded", self.opts.tool, std::io::Error::last_os_error());
        }
        let outside = pid_of_pidfd(self.pidfd.as_raw_fd());
        let held = (!self.opts.restored.is_empty()).then(Vec::new);
        let env = Env { ns: &self, outside, deferred: RefCell::default(), held: RefCell::new(held) };
        let sock = self.sock.as_raw_fd();
        loop {
            let mut fds = [libc::pollfd { fd: sock, events: libc::POLLIN, revents: 0 }, libc::pollfd { fd: sfd, events: libc::POLLIN, revents: 0 }];
            let n = if sfd >= 0 { 2 } else { 1 };
            // SAFETY: fds holds n valid pollfd entries.
            if unsafe { libc::poll(fds.as_mut_ptr(), n, -1) } < 0 {
                continue;
            }
            if fds[1].revents & libc::POLLIN != 0 {
                self.forward_pending(sfd, &env);
            }
            if fds[0].revents != 0 || !env.deferred.borrow().is_empty() {
                self.read_reports(sock, &env);
            }
        }
    }

    fn forward_pending(&self, sfd: RawFd, env: &Env) {
        // SAFETY: an all-zero signalfd_siginfo is valid; read fills it.
        let mut si: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let len = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: reading one record into si.
        if unsafe { libc::read(sfd, &mut si as *mut _ as *mut libc::c_void, len) } != len as isize {
            return;
        }
        let read_at = Instant::now();
        let got = Received { signo: si.ssi_signo as i32, code: si.ssi_code, sender: si.ssi_pid as i32, value: si.ssi_int };
        match forward::decide(&got, env) {
            Verdict::Forward { marked } => match env.held.borrow_mut().as_mut() {
                Some(held) => held.push((got.signo, marked, read_at)),
                None => self.send(got.signo, marked, read_at),
            },
            Verdict::Skip(why) => {
                if crate::verbose() && got.signo != libc::SIGCHLD {
                    eprintln!("{}: signal {} not forwarded: {why}", self.opts.tool, got.signo);
                }
            }
        }
    }

    /// Send `sig`, read at `read_at`, to the program (as SI_QUEUE with FORWARD_MARK when `marked`).
    fn send(&self, sig: i32, marked: bool, read_at: Instant) {
        forward::send(self.pidfd.as_raw_fd(), sig, marked, read_at.elapsed().as_millis().try_into().unwrap_or(u64::MAX));
    }

    fn read_reports(&self, sock: RawFd, env: &Env) {
        let mut stop = None;
        loop {
            let deferred = env.deferred.borrow_mut().pop_front();
            let next = match deferred {
                Some(m) => Ok(Some((m, None))),
                None => report::recv(sock, libc::MSG_DONTWAIT),
            };
            match next {
                Ok(Some((Msg::Stopped { sig }, _))) => stop = Some(sig),
                Ok(Some((Msg::Continued, _))) => stop = None,
                Ok(Some((Msg::Running, _))) => {
                    for (sig, marked, read_at) in env.held.borrow_mut().take().unwrap_or_default() {
                        self.send(sig, marked, read_at);
                    }
                }
                Ok(Some((Msg::Exited { status }, _))) => self.finish(status),
                Ok(Some((Msg::Outlived { status }, _))) => self.leave(status),
                Ok(Some(_)) => {}
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => break,
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                // Init is gone without a word: the namespace and the program with it.
                Ok(None) | Err(_) => self.init_died(),
            }
        }
        if let Some(sig) = stop {
            if env.outside.is_some_and(is_stopped) {
                self.stop_like_the_program(sig);
            }
        }
    }

    /// Stop ourselves with the program's stop signal (its default action), until SIGCONT.
    fn stop_like_the_program(&self, sig: i32) {
        // SAFETY: an all-zero sigset plus sigaddset is valid.
        let one = unsafe {
            let mut s: libc::sigset_t = std::mem::zeroed();
            libc::sigaddset(&mut s, sig);
            s
        };
        // SAFETY: the signal is ours; with it pending and then unblocked, its default action stops us.
        unsafe {
            libc::kill(libc::getpid(), sig);
            sigmask(libc::SIG_UNBLOCK, &one);
            sigmask(libc::SIG_BLOCK, &one);
        }
    }

    fn init_died(&self) -> ! {
        let mut st = 0;
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(self.init_pid, &mut st, 0) };
        eprintln!("{}: the program's namespace ended unexpectedly (its init: wait status {st:#x}); the program is gone", self.opts.tool);
        self.die_by(libc::SIGKILL)
    }

    /// Exit as the program did: its exit status, or death by its signal.
    fn finish(&self, status: i32) -> ! {
        // SAFETY: reaping init, which exits right after its report.
        unsafe { libc::waitpid(self.init_pid, std::ptr::null_mut(), 0) };
        if libc::WIFSIGNALED(status) {
            self.die_by(libc::WTERMSIG(status));
        }
        std::process::exit(libc::WEXITSTATUS(status))
    }

    /// The program ended and other processes of its namespace live on (`leftover`): init stays
    /// with them and no longer dies with us (it said so only after it disarmed that). Exit as
    /// the program did, at once, as its own end would have returned to the shell. Our name
    /// says first that the namespace is not being killed (`ENDED_NAME`, for the runtime's
    /// hangup gate: our exit may hang the terminal up).
    fn leave(&self, status: i32) -> ! {
        // SAFETY: renaming our own (only) thread.
        unsafe { libc::prctl(libc::PR_SET_NAME, crate::ENDED_NAME.as_ptr()) };
        if crate::verbose() {
            eprintln!("{}: the program ended; processes it left behind live on in its namespace", self.opts.tool);
        }
        if libc::WIFSIGNALED(status) {
            self.die_by(libc::WTERMSIG(status));
        }
        std::process::exit(libc::WEXITSTATUS(status))
    }

    /// Die by `sig` (its default action), without a core file of ours: the program made its own.
    fn die_by(&self, sig: i32) -> ! {
        // SAFETY: changing our own limits, disposition and mask, then signalling ourselves.
        unsafe {
            let none = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            libc::setrlimit(libc::RLIMIT_CORE, &none);
            libc::signal(sig, libc::SIG_DFL);
            let mut s: libc::sigset_t = std::mem::zeroed();
            libc::sigaddset(&mut s, sig);
            libc::kill(libc::getpid(), sig);
            sigmask(libc::SIG_UNBLOCK, &s);
        }
        std::process::exit(128 + sig)
    }
}
