//! Making the program's sockets again (ckpt-restart side), all at once, since sockets that
//! talk to each other must be made together:
//!
//! 1. every socket is created (two UNIX sockets connected to each other, not through a
//!    listener, as a socketpair) and gets the options that matter before bind;
//! 2. UNIX names are bound again, name by name (names.rs; unix.rs for the file at the name):
//!    while a name is bound, datagram sockets connected to it connect, a listener accepts the
//!    connections it had accepted (each client connects and the listener accepts, so both
//!    ends have their names) and then its clients that were still waiting connect and stay in
//!    its queue; datagrams queued on it are sent again from their senders' names;
//! 3. TCP, UDP, ping, netlink and packet sockets are bound (inet.rs), TCP connections whose
//!    two ends are in the program are made through their listener (or one made for the
//!    moment), then the connections waiting in listeners; datagram sockets connect;
//! 4. `finish`, once every fd is in place: stream queues are refilled from the other end
//!    (with the files in flight), then shutdown, the late options and socket filters.
//!
//! A socket a process tree's restart made once for all its holders (ckpt-restart's treeshare)
//! comes with everything of it set there (`settle`: options, shutdown, filter are the socket's,
//! not one holder's): each holder only takes it (`make_given`), or P processes holding N such
//! sockets set them P x N times (and a filter locked by the first could not be set again).
//!
//! Outside the program nothing is made again: a stream connection to a peer outside comes back
//! as a socket whose peer has closed (its unread bytes, then end of file); a datagram socket
//! connected outside connects to the same name or address again.

use super::{opts, queue, unix};
use crate::{check, close, info, warn, Error, Result};
use ckpt_image::{FdKind, FdState, Message, SockState, Socket};
use std::collections::{HashMap, HashSet};
use std::os::fd::RawFd;

/// How strict to be.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Go on (with a warning) when something of a socket cannot be restored.
    pub ignore: bool,
    /// A task of a step: a TCP listener whose port another program holds now gets another
    /// port (the other tasks' connects to the old one are sent to it: `moveport`).
    pub other_port: bool,
    /// A task of a step (or a process of its tree): its UDP sockets' connects and the
    /// datagrams queued on them from other tasks wait for the step's map (stepudp).
    pub step: bool,
    /// A step task's old node's addresses that its node lacks now, each with the address now
    /// that stands for it (ckpt_step::addrmap::pair): where its UDP sockets bound there go.
    pub rebind: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The program's sockets, made again and held by fds of ours until `finish`.
pub struct Sockets<'a> {
    pub(super) all: Vec<&'a Socket>,
    pub(super) by_ino: HashMap<u64, &'a Socket>,
    /// Our fd for each socket, by inode.
    pub(super) made: HashMap<u64, RawFd>,
    /// The fd each stream socket's unread bytes are written from (its peer), by inode.
    pub(super) feeder: HashMap<u64, RawFd>,
    /// Sockets whose queue is already refilled.
    pub(super) filled: HashSet<u64>,
    pub(super) bound: HashSet<u64>,
    /// Named sockets whose name was taken care of.
    pub(super) served: HashSet<u64>,
    /// Clients whose connection is queued in a listener again.
    pub(super) queued: HashSet<u64>,
    /// Listeners of ours for connections whose listener the program has closed, by address.
    pub(super) temp_listeners: Vec<(Vec<u8>, RawFd)>,
    /// Sockets of other families that came back as a UNIX socket whose peer has gone.
    pub(super) stand_ins: HashSet<u64>,
    /// Sockets bound with SO_REUSEPORT for the moment (another socket shares their port).
    pub(super) reuseport_forced: HashSet<u64>,
    /// Ends we made for the moment (closed peers), closed after the refill.
    pub(super) temps: Vec<RawFd>,
    /// Above every fd number of the program: where our fds live.
    pub(super) top: RawFd,
    /// Connections to other tasks of a step, made again (and refilled) by the caller through
    /// the step's coordinator: our fd for each, by inode (see jobconn).
    pub(super) job: HashMap<u64, RawFd>,
    /// The sockets `job` gave (connections to other tasks, a tree's shared socketpairs).
    pub(super) given: HashSet<u64>,
    /// Those of them whose options, shutdown and filter are set already (`settle`).
    pub(super) settled: HashSet<u64>,
    pub(super) opts: Options,
    /// What the caller does once the step's map exists (stepudp).
    pub(super) later: super::stepudp::Later,
}

fn sockets_of(fds: &[FdState]) -> Vec<&Socket> {
    let mut seen = HashSet::new();
    fds.iter()
        .filter(|f| f.dup_of.is_none())
        .filter_map(|f| match &f.kind {
            FdKind::Socket(s) if seen.insert(s.ino) => Some(&**s),
            _ => None,
        })
        .collect()
}

pub(super) fn is_named_unix(s: &Socket) -> bool {
    s.family == libc::AF_UNIX && s.name.len() > 2
}

/// Whether a sender's name `name` is the `from` a datagram came with (unnamed: a family-only
/// address or none).
fn unnamed_or(name: &[u8], from: &[u8]) -> bool {
    name == from || (name.len() <= 2 && from.len() <= 2)
}

fn shut_how(bits: u8) -> Option<i32> {
    match bits & 3 {
        1 => Some(libc::SHUT_RD),
        2 => Some(libc::SHUT_WR),
        3 => Some(libc::SHUT_RDWR),
        _ => None,
    }
}

impl<'a> Sockets<'a> {
    /// Make every socket of `fds` (parked at numbers >= `top`); `job`: the connections to other
    /// tasks of a step or socketpairs a tree shares, already made and refilled (our fds, by
    /// inode; taken over).
    pub fn make(fds: &'a [FdState], top: RawFd, opts: Options, job: HashMap<u64, RawFd>) -> Result<Sockets<'a>> {
        Sockets::make_given(fds, top, opts, job, HashSet::new())
    }

    /// `make`, where the sockets of `job` that are in `settled` have everything of theirs set
    /// already (`settle`: a tree's shared sockets, made by its root): they are only taken.
    pub fn make_given(fds: &'a [FdState], top: RawFd, opts: Options, job: HashMap<u64, RawFd>, mut settled: HashSet<u64>) -> Result<Sockets<'a>> {
        settled.retain(|ino| job.contains_key(ino));
        let all = sockets_of(fds);
        let by_ino = all.iter().map(|s| (s.ino, *s)).collect();
        let mut me = Sockets { all, by_ino, made: HashMap::new(), feeder: HashMap::new(), filled: HashSet::new(), bound: HashSet::new(), served: HashSet::new(), queued: HashSet::new(), reuseport_forced: HashSet::new(), stand_ins: HashSet::new(), temp_listeners: Vec::new(), temps: Vec::new(), top, job, given: HashSet::new(), settled, opts, later: Default::default() };
        if let Err(e) = me.make_all() {
            me.close_all();
            return Err(e);
        }
        Ok(me)
    }

    /// Sockets `job` gave (made and refilled by the tree's root) whose queue this process
    /// refills itself, with the files in flight in it, which it makes: our fd of the other end
    /// of each, by inode; refilled from it by `finish`, and closed then.
    pub fn feed_from(&mut self, feeders: HashMap<u64, RawFd>) -> Result<()> {
        for (ino, fd) in feeders {
            let fd = self.park(fd)?;
            self.temps.push(fd);
            if self.given.contains(&ino) {
                self.filled.remove(&ino);
                self.feeder.insert(ino, fd);
            }
        }
        Ok(())
    }

    /// A new fd of ours (close-on-exec) for the socket `ino`.
    pub fn open(&self, ino: u64) -> Result<RawFd> {
        let fd = *self.made.get(&ino).ok_or_else(|| Error::Refused(format!("socket:[{ino}] was not made")))?;
        // SAFETY: fd is ours.
        check(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) }, || "fcntl".into())
    }

    /// Every fd we hold (the restarter must not close them before `finish`).
    pub fn held(&self) -> Vec<RawFd> {
        self.made.values().chain(self.feeder.values()).chain(self.temps.iter()).copied().collect()
    }

    fn close_all(&mut self) {
        let mut fds: Vec<RawFd> = self.held();
        fds.extend(self.job.drain().map(|j| j.1));
        fds.extend(self.temp_listeners.drain(..).map(|t| t.1));
        fds.sort_unstable();
        fds.dedup();
        for fd in fds {
            close(fd);
        }
        self.made.clear();
        self.feeder.clear();
        self.temps.clear();
    }

    pub(super) fn park(&self, fd: RawFd) -> Result<RawFd> {
        // SAFETY: fd is ours.
        let p = check(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, self.top) }, || "fcntl".into());
        close(fd);
        p
    }

    /// Go on or not when `what` of socket `s` cannot be restored.
    pub(super) fn lost(&self, s: &Socket, what: &str) -> Result<()> {
        lost(s, what, self.opts.ignore)
    }

    pub(super) fn new_socket(&mut self, s: &Socket) -> Result<RawFd> {
        // SAFETY: plain socket creation.
        let fd = unsafe { libc::socket(s.family, s.sock_type | libc::SOCK_CLOEXEC, s.protocol) };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            let why = if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES)) && matches!(s.family, libc::AF_PACKET) || s.sock_type == libc::SOCK_RAW {
                " (it needs CAP_NET_RAW, which the program had and ckpt-restart has not)"
            } else {
                ""
            };
            return Err(Error::Refused(format!("cannot make socket {} again: {e}{why}", s.describe())));
        }
        let fd = self.park(fd)?;
        self.early(fd, s);
        if let Some(rings) = &s.ring {
            // After PACKET_VERSION and PACKET_RESERVE (which a ring makes final), before bind.
            super::ring::set(fd, rings).map_err(|e| Error::Refused(format!("cannot set the mapped ring of socket {} again: {e}", s.describe())))?;
        }
        Ok(fd)
    }

    /// The options that matter before bind (failures are reported once the socket is final:
    /// see `check_options`).
    pub(super) fn early(&self, fd: RawFd, s: &Socket) {
        let _ = opts::restore(fd, &s.opts, opts::Phase::Early);
    }

    /// Every socket as it will be: options that still differ are set now, or reported.
    fn check_options(&self) {
        for s in &self.all {
            let Some(&fd) = self.made.get(&s.ino) else { continue };
            if self.stand_ins.contains(&s.ino) || self.settled.contains(&s.ino) {
                continue; // a UNIX socket stands for it (its options do not apply), or set already
            }
            let failed = opts::restore(fd, &s.opts, opts::Phase::Early);
            if !failed.is_empty() {
                warn(&format!("socket {}: options not restored: {}", s.describe(), failed.join(", ")));
            }
        }
    }

    fn make_all(&mut self) -> Result<()> {
        let all = self.all.clone();
        // 1. Every socket; two UNIX sockets connected to each other (not through a listener)
        // as a socketpair, which their names (if any) are bound to afterwards.
        for s in &all {
            if self.made.contains_key(&s.ino) {
                continue;
            }
            if let Some(fd) = self.job.remove(&s.ino) {
                // A connection to another task of the step: made and refilled already.
                let fd = self.park(fd)?;
                if !self.settled.contains(&s.ino) {
                    self.early(fd, s);
                }
                self.made.insert(s.ino, fd);
                self.filled.insert(s.ino);
                self.given.insert(s.ino);
                // Bound already (a tree's shared listener, listening; a connection or datagram
                // socket made by name with its peers, see ckpt-restart's treeshare).
                self.bound.insert(s.ino);
                self.served.insert(s.ino);
                continue;
            }
            if s.family == libc::AF_UNIX && s.state == SockState::Connected {
                if let Some(p) = self.by_ino.get(&s.peer).copied() {
                    let mutual = p.peer == s.ino && p.ino != s.ino && p.state == SockState::Connected;
                    if mutual && !self.is_accepted(s) && !self.is_accepted(p) {
                        self.socketpair(s, p)?;
                        continue;
                    }
                }
            }
            let fd = self.new_socket(s)?;
            self.made.insert(s.ino, fd);
        }
        // 2. UNIX names, name by name: sockets whose file is gone first, the one whose file is
        // still there last (it must stay).
        let mut names: Vec<Vec<u8>> = all.iter().filter(|s| is_named_unix(s) && !self.is_accepted(s)).map(|s| s.name.clone()).collect();
        for s in all.iter().filter(|s| self.is_accepted(s)) {
            if !names.contains(&s.name) {
                names.push(s.name.clone());
            }
        }
        names.dedup();
        let mut done_names = HashSet::new();
        for n in names {
            if !done_names.insert(n.clone()) {
                continue;
            }
            self.unix_name(&n)?;
        }
        // UNIX sockets left: connected to something outside, or waiting connections' clients
        // of listeners outside the program.
        for s in &all {
            if s.family == libc::AF_UNIX {
                self.unix_rest(s)?;
            }
        }
        // 3. Other families.
        for s in all.iter().filter(|s| matches!(s.family, libc::AF_INET | libc::AF_INET6)) {
            self.inet_bind(s)?;
        }
        for s in all.iter().filter(|s| matches!(s.family, libc::AF_INET | libc::AF_INET6)) {
            self.inet_connect(s)?;
        }
        for (_, t) in std::mem::take(&mut self.temp_listeners) {
            close(t);
        }
        for s in all.iter().filter(|s| s.state == SockState::Listening && matches!(s.family, libc::AF_INET | libc::AF_INET6)) {
            self.inet_pending(s)?;
        }
        for s in all.iter().filter(|s| matches!(s.family, libc::AF_NETLINK | libc::AF_PACKET)) {
            self.raw_family(s)?;
        }
        // The program's SO_REUSEPORT where it was set for the moment (see bind_inet).
        for s in all.iter().filter(|s| self.reuseport_forced.contains(&s.ino)) {
            let v = opts::value(&s.opts, libc::SOL_SOCKET, libc::SO_REUSEPORT).unwrap_or(0);
            // SAFETY: an int option on a socket of ours.
            unsafe { libc::setsockopt(self.made[&s.ino], libc::SOL_SOCKET, libc::SO_REUSEPORT, (&v as *const i32).cast(), 4) };
        }
        self.check_options();
        for s in &all {
            if !s.lost.is_empty() {
                self.lost(s, &s.lost)?;
            }
        }
        Ok(())
    }

    fn socketpair(&mut self, a: &Socket, b: &Socket) -> Result<()> {
        let mut sv = [0; 2];
        // Made by another process of the program, or under other ids: made so again.
        if let Some(c) = a.peer_cred.or(b.peer_cred) {
            let lost;
            (sv, lost) = super::peercred::socketpair(a.sock_type, &c)?;
            if let Some(what) = lost {
                warn(&format!("socket {}: SO_PEERCRED of it and its peer does not give the {what} of the process that made them", a.describe()));
            }
        } else {
            // SAFETY: sv has room for two fds.
            check(unsafe { libc::socketpair(libc::AF_UNIX, a.sock_type | libc::SOCK_CLOEXEC, 0, sv.as_mut_ptr()) }, || "socketpair".into())?;
        }
        let (x, y) = (self.park(sv[0])?, self.park(sv[1])?);
        self.early(x, a);
        self.early(y, b);
        self.made.insert(a.ino, x);
        self.made.insert(b.ino, y);
        self.feeder.insert(a.ino, y);
        self.feeder.insert(b.ino, x);
        Ok(())
    }

    /// Replace the socket of `s` with one end of a socketpair whose other end we close after
    /// refilling: reads give the unread bytes, then end of file; writes fail with EPIPE.
    pub(super) fn peer_gone(&mut self, s: &Socket) -> Result<()> {
        let t = if s.sock_type == libc::SOCK_DGRAM || s.sock_type == libc::SOCK_SEQPACKET { s.sock_type } else { libc::SOCK_STREAM };
        let mut sv = [0; 2];
        // SAFETY: sv has room for two fds.
        check(unsafe { libc::socketpair(libc::AF_UNIX, t | libc::SOCK_CLOEXEC, 0, sv.as_mut_ptr()) }, || "socketpair".into())?;
        let (x, y) = (self.park(sv[0])?, self.park(sv[1])?);
        if s.family == libc::AF_UNIX {
            self.early(x, s);
        }
        // Room for all the unread bytes (as far as the kernel allows: wmem_max).
        let unread: usize = s.queue.iter().map(|m| m.data.len()).sum();
        if unread > 64 * 1024 {
            let want = unread.min(i32::MAX as usize) as i32;
            // SAFETY: an int option on a socket of ours.
            unsafe { libc::setsockopt(y, libc::SOL_SOCKET, libc::SO_SNDBUF, (&want as *const i32).cast(), 4) };
        }
        if let Some(old) = self.made.insert(s.ino, x) {
            close(old);
        }
        self.feeder.insert(s.ino, y);
        self.temps.push(y);
        if s.family != libc::AF_UNIX {
            self.stand_ins.insert(s.ino);
            if s.peer_name.is_empty() || s.state == SockState::PeerGone {
                info(&format!("socket {}: its connection had ended; it comes back as a connection closed by its peer", s.describe()));
            } else {
                // A live connection is lost: said, as any loss of a restart is.
                warn(&format!("socket {}: its peer is outside the program; it comes back as a connection closed by its peer", s.describe()));
            }
        }
        Ok(())
    }

    /// One datagram for `to`, from a socket named `m.from`: a socket connected to `to` with
    /// that name sends it without an address (its peer, the other end of a pair, or a client),
    /// else the program's socket of that name, else one of ours bound to it.
    pub(super) fn send_datagram(&mut self, to: &Socket, m: &Message, fds: &[RawFd]) -> Result<()> {
        let dest = self.address_of(to);
        let connected = self.all.iter().find(|x| x.ino != to.ino && x.peer == to.ino && x.family == to.family && unnamed_or(&x.name, &m.from));
        let via_peer = match (self.feeder.get(&to.ino), connected) {
            (Some(&f), _) => Some(f),
            (None, Some(x)) => Some(self.made[&x.ino]),
            _ => None,
        };
        let sender = self.all.iter().find(|x| !m.from.is_empty() && x.name == m.from && x.family == to.family && x.sock_type == to.sock_type);
        let dir = if to.family == libc::AF_UNIX { &to.bind_dir[..] } else { &[][..] };
        let sent = match (via_peer, sender) {
            (None, None) if self.by_stand_in(to, m) => self.send_from_stand_in(to, m, fds),
            (Some(p), _) => queue::send(p, &m.data, fds, &[]),
            (None, Some(x)) => unix::in_dir(dir, || queue::send(self.made[&x.ino], &m.data, fds, &dest)),
            (None, None) => unix::in_dir(dir, || self.send_from_temp(to, &dest, m, fds)),
        };
        match sent {
            Ok(_) => Ok(()),
            Err(e) => self.lost(to, &format!("an unread datagram of {} bytes cannot be queued again: {e}", m.data.len())),
        }
    }

    /// Send from a socket of ours bound to the sender's address (if it can be had; otherwise
    /// from an unnamed one, and say so).
    fn send_from_temp(&self, to: &Socket, dest: &[u8], m: &Message, fds: &[RawFd]) -> std::io::Result<usize> {
        // SAFETY: plain socket calls on a socket of ours.
        let t = unsafe { libc::socket(to.family, to.sock_type | libc::SOCK_CLOEXEC, to.protocol) };
        if t < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut undo = None;
        if !m.from.is_empty() && m.from.len() > 2 {
            let bound = if to.family == libc::AF_UNIX {
                let fake = Socket { family: libc::AF_UNIX, name: m.from.clone(), file: ckpt_image::SockFile::Deleted, ..Socket::default() };
                unix::bind(t, &fake, true).ok().map(|u| undo = Some(u)).is_some()
            } else {
                let one: i32 = 1;
                // SAFETY: an int option; m.from is a sockaddr of its length.
                unsafe {
                    libc::setsockopt(t, libc::SOL_SOCKET, libc::SO_REUSEADDR, (&one as *const i32).cast(), 4);
                    libc::bind(t, m.from.as_ptr().cast(), m.from.len() as u32) == 0
                }
            };
            if !bound {
                warn(&format!(
                    "socket {}: an unread datagram from {} is queued again from another address",
                    to.describe(),
                    ckpt_image::describe_addr(to.family, &m.from)
                ));
            }
        }
        let r = queue::send(t, &m.data, fds, dest);
        close(t);
        if let Some(u) = undo {
            u.finish();
        }
        r
    }

    /// The address datagrams for `s` are sent to (an inet wildcard address as loopback).
    pub(super) fn address_of(&self, s: &Socket) -> Vec<u8> {
        let mut a = s.name.clone();
        match s.family {
            libc::AF_INET if a.len() >= 8 && a[4..8] == [0, 0, 0, 0] => a[4..8].copy_from_slice(&[127, 0, 0, 1]),
            libc::AF_INET6 if a.len() >= 24 && a[8..24].iter().all(|&b| b == 0) => a[23] = 1,
            _ => {}
        }
        a
    }

    /// Once every fd of the program is in place: refill what is left to refill (with the
    /// files in flight, which `file` gives as fds: a program fd number, or an in-flight entry's
    /// fd of ours), shut down, set the late options and filters; close our fds.
    /// What is left for the caller of a step's task: `stepudp::Later`.
    pub fn finish(mut self, file: &dyn Fn(i32) -> Option<RawFd>) -> Result<super::stepudp::Later> {
        let r = self.finish_all(file);
        self.close_all();
        r.map(|()| std::mem::take(&mut self.later))
    }

    fn finish_all(&mut self, file: &dyn Fn(i32) -> Option<RawFd>) -> Result<()> {
        let all = self.all.clone();
        for s in &all {
            if s.queue.is_empty() || self.filled.contains(&s.ino) {
                continue;
            }
            self.filled.insert(s.ino);
            for m in &s.queue {
                let mut fds = Vec::new();
                for &n in &m.fds {
                    match file(n) {
                        Some(f) => fds.push(f),
                        None => self.lost(s, "a file passed with SCM_RIGHTS and not yet received")?,
                    }
                }
                if s.sock_type == libc::SOCK_STREAM {
                    let Some(&from) = self.feeder.get(&s.ino) else {
                        self.lost(s, &format!("{} unread bytes", m.data.len()))?;
                        continue;
                    };
                    if let Err(e) = queue::send_all(from, m, &fds) {
                        self.lost(s, &format!("{} unread bytes cannot be queued again ({e})", m.data.len()))?;
                    }
                } else {
                    self.send_datagram(s, m, &fds)?;
                }
            }
        }
        // Ends whose peer has gone: the peer closes now.
        for t in std::mem::take(&mut self.temps) {
            self.feeder.retain(|_, f| *f != t);
            close(t);
        }
        for s in all.iter().filter(|s| !self.settled.contains(&s.ino)) {
            let fd = self.made[&s.ino];
            if self.stand_ins.contains(&s.ino) {
                if let Some(how) = shut_how(s.shutdown) {
                    // SAFETY: fd is a socket of ours.
                    unsafe { libc::shutdown(fd, how) };
                }
                continue;
            }
            settle_late(fd, s, self.opts.ignore)?;
        }
        Ok(())
    }
}

/// Go on (`ignore`, with a warning) or not when `what` of socket `s` cannot be restored.
fn lost(s: &Socket, what: &str, ignore: bool) -> Result<()> {
    let msg = format!("socket {}: {what}", s.describe());
    if ignore {
        warn(&msg);
        return Ok(());
    }
    Err(Error::Refused(format!("{msg} (--ignore-missing-files goes on without it)")))
}

/// What is set on socket `fd` (described by `s`) once its queues are refilled: shutdown, the
/// socket filter and the late options. `ignore`: go on (with a warning) without a filter that
/// cannot be set.
fn settle_late(fd: RawFd, s: &Socket, ignore: bool) -> Result<()> {
    if let Some(how) = shut_how(s.shutdown) {
        // SAFETY: fd is a socket of ours.
        unsafe { libc::shutdown(fd, how) };
    }
    if let Err(e) = opts::restore_filter(fd, &s.filter) {
        lost(s, &e, ignore)?;
    }
    let failed = opts::restore(fd, &s.opts, opts::Phase::Late);
    if !failed.is_empty() {
        warn(&format!("socket {}: options not restored: {}", s.describe(), failed.join(", ")));
    }
    Ok(())
}

/// Everything of socket `fd` (described by `s`, made and refilled) that its holders would set
/// each (a socket a tree's restart made once for all, before the processes are made): the
/// options (those that did not take before its queues were refilled are reported), shutdown,
/// filter. Its holders then take it as settled (`make_given`).
pub fn settle(fd: RawFd, s: &Socket, ignore: bool) -> Result<()> {
    let failed = opts::restore(fd, &s.opts, opts::Phase::Early);
    if !failed.is_empty() {
        warn(&format!("socket {}: options not restored: {}", s.describe(), failed.join(", ")));
    }
    settle_late(fd, s, ignore)
}
