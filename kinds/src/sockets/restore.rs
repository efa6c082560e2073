//! Making the program's sockets again (ckpt-restart side), all at once, since sockets that
//! talk to each other must be made together:
//!
//! 1. every socket is created (pairs of UNIX sockets with no names as socketpairs) and gets
//!    the options that matter before bind;
//! 2. UNIX names are bound again, name by name (see unix.rs for the file at the name); while a
//!    name is bound, datagram sockets connected to it connect, a listener accepts the
//!    connections it had accepted (each client connects and the listener accepts, so both
//!    ends have their names) and then its clients that were still waiting connect and stay in
//!    its queue; datagrams queued on it are sent again from their senders' names;
//! 3. TCP, UDP, ping, netlink and packet sockets are bound, TCP connections whose two ends are
//!    in the program are made through their listener (or one made for the moment), then the
//!    connections waiting in listeners; datagram sockets connect;
//! 4. `finish`, once every fd is in place: stream queues are refilled from the other end
//!    (with the files in flight), then shutdown, the late options and socket filters.
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
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Go on (with a warning) when something of a socket cannot be restored.
    pub ignore: bool,
}

/// The program's sockets, made again and held by fds of ours until `finish`.
pub struct Sockets<'a> {
    all: Vec<&'a Socket>,
    by_ino: HashMap<u64, &'a Socket>,
    /// Our fd for each socket, by inode.
    made: HashMap<u64, RawFd>,
    /// The fd each stream socket's unread bytes are written from (its peer), by inode.
    feeder: HashMap<u64, RawFd>,
    /// Sockets whose queue is already refilled.
    filled: HashSet<u64>,
    bound: HashSet<u64>,
    /// Named sockets whose name was taken care of.
    served: HashSet<u64>,
    /// Clients whose connection is queued in a listener again.
    queued: HashSet<u64>,
    /// Listeners of ours for connections whose listener the program has closed, by address.
    temp_listeners: Vec<(Vec<u8>, RawFd)>,
    /// Sockets of other families that came back as a UNIX socket whose peer has gone.
    stand_ins: HashSet<u64>,
    /// Sockets bound with SO_REUSEPORT for the moment (another socket shares their port).
    reuseport_forced: HashSet<u64>,
    /// Ends we made for the moment (closed peers), closed after the refill.
    temps: Vec<RawFd>,
    /// Above every fd number of the program: where our fds live.
    top: RawFd,
    opts: Options,
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

fn is_named_unix(s: &Socket) -> bool {
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
    /// Make every socket of `fds` (parked at numbers >= `top`).
    pub fn make(fds: &'a [FdState], top: RawFd, opts: Options) -> Result<Sockets<'a>> {
        let all = sockets_of(fds);
        let by_ino = all.iter().map(|s| (s.ino, *s)).collect();
        let mut me = Sockets { all, by_ino, made: HashMap::new(), feeder: HashMap::new(), filled: HashSet::new(), bound: HashSet::new(), served: HashSet::new(), queued: HashSet::new(), reuseport_forced: HashSet::new(), stand_ins: HashSet::new(), temp_listeners: Vec::new(), temps: Vec::new(), top, opts };
        if let Err(e) = me.make_all() {
            me.close_all();
            return Err(e);
        }
        Ok(me)
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

    fn park(&self, fd: RawFd) -> Result<RawFd> {
        // SAFETY: fd is ours.
        let p = check(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, self.top) }, || "fcntl".into());
        close(fd);
        p
    }

    /// Go on or not when `what` of socket `s` cannot be restored.
    fn lost(&self, s: &Socket, what: &str) -> Result<()> {
        let msg = format!("socket {}: {what}", s.describe());
        if self.opts.ignore {
            warn(&msg);
            return Ok(());
        }
        Err(Error::Refused(format!("{msg} (--ignore-missing-files goes on without it)")))
    }

    fn new_socket(&mut self, s: &Socket) -> Result<RawFd> {
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
        Ok(fd)
    }

    /// The options that matter before bind (failures are reported once the socket is final:
    /// see `check_options`).
    fn early(&self, fd: RawFd, s: &Socket) {
        let _ = opts::restore(fd, &s.opts, opts::Phase::Early);
    }

    /// Every socket as it will be: options that still differ are set now, or reported.
    fn check_options(&self) {
        for s in &self.all {
            let Some(&fd) = self.made.get(&s.ino) else { continue };
            if self.stand_ins.contains(&s.ino) {
                continue; // a UNIX socket stands for it: its options do not apply
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
        // SAFETY: sv has room for two fds.
        check(unsafe { libc::socketpair(libc::AF_UNIX, a.sock_type | libc::SOCK_CLOEXEC, 0, sv.as_mut_ptr()) }, || "socketpair".into())?;
        let (x, y) = (self.park(sv[0])?, self.park(sv[1])?);
        self.early(x, a);
        self.early(y, b);
        self.made.insert(a.ino, x);
        self.made.insert(b.ino, y);
        self.feeder.insert(a.ino, y);
        self.feeder.insert(b.ino, x);
        Ok(())
    }

    /// The accepted end of a UNIX connection: named like the listener it came from, its peer
    /// connected to that name.
    fn is_accepted(&self, s: &Socket) -> bool {
        s.family == libc::AF_UNIX
            && s.sock_type != libc::SOCK_DGRAM
            && s.state == SockState::Connected
            && is_named_unix(s)
            && self.by_ino.get(&s.peer).is_some_and(|c| c.peer_name == s.name && c.peer == s.ino)
    }

    /// A UNIX stream client whose connection waits in the queue of listener `l`.
    fn waits_on(&self, c: &Socket, l: &Socket) -> bool {
        c.family == libc::AF_UNIX
            && c.sock_type == l.sock_type
            && c.state == SockState::Connected
            && c.peer == 0
            && c.shutdown & 3 != 3
            && c.peer_name == l.name
            && !self.queued.contains(&c.ino)
    }

    /// Bind a UNIX socket that is a client of something (not a server of this name).
    fn ensure_bound(&mut self, s: &Socket) -> Result<()> {
        if !is_named_unix(s) || self.is_accepted(s) || !self.bound.insert(s.ino) {
            return Ok(());
        }
        let fd = self.made[&s.ino];
        unix::bind(fd, s, self.opts.ignore)?.finish();
        Ok(())
    }

    /// Everything about the UNIX name `n`.
    fn unix_name(&mut self, n: &[u8]) -> Result<()> {
        let mut members: Vec<&Socket> = self.all.iter().copied().filter(|s| s.family == libc::AF_UNIX && s.name == n && !self.is_accepted(s)).collect();
        // Gone files first; the file still present last.
        members.sort_by_key(|s| matches!(s.file, ckpt_image::SockFile::Present { .. }));
        let accepted: Vec<&Socket> = self.all.iter().copied().filter(|s| s.name == n && self.is_accepted(s)).collect();
        let has_listener = members.iter().any(|s| s.state == SockState::Listening);
        for s in &members {
            if !self.served.insert(s.ino) {
                continue;
            }
            let fd = self.made[&s.ino];
            // Bound already as a client of another name: served all the same (its own name
            // exists while it is bound, unless it was removed: then datagrams for it are sent
            // once everything is in place, through its peer).
            let undo = if self.bound.insert(s.ino) { Some(unix::bind(fd, s, self.opts.ignore)?) } else { None };
            let r = self.serve(s, fd, &accepted);
            if let Some(u) = undo {
                u.finish();
            }
            r?;
        }
        if !has_listener && accepted.iter().any(|a| !self.feeder.contains_key(&a.ino)) {
            // Connections accepted from a listener the program has closed since: through a
            // listener of ours at the name.
            let tmpl = accepted[0];
            // SAFETY: plain socket creation.
            let l = check(unsafe { libc::socket(libc::AF_UNIX, tmpl.sock_type | libc::SOCK_CLOEXEC, 0) }, || "socket".into())?;
            let fake = Socket { name: tmpl.name.clone(), file: ckpt_image::SockFile::Deleted, bind_dir: self.by_ino[&tmpl.peer].bind_dir.clone(), ..Socket::default() };
            let undo = match unix::bind(l, &fake, self.opts.ignore) {
                Ok(u) => u,
                Err(e) => {
                    close(l);
                    return Err(e);
                }
            };
            // SAFETY: l is a bound socket of ours.
            unsafe { libc::listen(l, 128) };
            let r = self.accept_all(l, &accepted, &fake.bind_dir);
            undo.finish();
            close(l);
            r?;
        }
        Ok(())
    }

    /// A UNIX socket bound to its name: what must happen while the name exists.
    fn serve(&mut self, s: &Socket, fd: RawFd, accepted: &[&Socket]) -> Result<()> {
        match s.state {
            SockState::Listening => {
                // SAFETY: fd is a bound socket of ours.
                check(unsafe { libc::listen(fd, s.backlog.max(1) as i32) }, || format!("cannot listen on {} again", s.describe()))?;
                self.accept_all(fd, accepted, &s.bind_dir)?;
                // Its clients still waiting: the program's own connect again and stay queued
                // (the queue's order is not known: the order of the kernel's table); a client
                // outside the program (or closed) becomes a connection whose peer has gone.
                let pending = s.pending.clone();
                for p in &pending {
                    let own = self.by_ino.get(&p.ino).copied().filter(|_| p.ino != 0);
                    let own = own.or_else(|| self.all.iter().copied().find(|c| p.ino == 0 && self.waits_on(c, s)));
                    match own {
                        Some(c) => {
                            self.ensure_bound(c)?;
                            let cfd = self.made[&c.ino];
                            check(unix::connect(cfd, &s.name, &s.bind_dir), || format!("cannot queue the connection of {} on {} again", c.describe(), s.describe()))?;
                            self.queued.insert(c.ino);
                            if p.unread > 0 || c.unsent > 0 {
                                let n = if p.unread > 0 { p.unread.to_string() } else { format!("about {}", c.unsent) };
                                self.lost(c, &format!("{n} bytes it had sent into its connection not yet accepted by {} (they cannot be read without accepting it)", s.describe()))?;
                            }
                        }
                        None => {
                            // SAFETY: plain socket creation.
                            let t = check(unsafe { libc::socket(libc::AF_UNIX, s.sock_type | libc::SOCK_CLOEXEC, 0) }, || "socket".into())?;
                            let r = unix::connect(t, &s.name, &s.bind_dir);
                            close(t);
                            check(r, || format!("cannot queue a connection on {} again", s.describe()))?;
                            // What its client sent into it cannot be read, nor even counted.
                            warn(&format!(
                                "socket {}: a connection waiting to be accepted, from a client outside the program (or closed since), comes back closed by its peer; bytes that client had sent, if any, are lost",
                                s.describe()
                            ));
                        }
                    }
                }
            }
            _ if s.sock_type == libc::SOCK_DGRAM => {
                // Datagram sockets connected to this one.
                let clients: Vec<&Socket> = self.all.iter().copied().filter(|c| c.family == libc::AF_UNIX && c.sock_type == libc::SOCK_DGRAM && c.peer == s.ino && c.state == SockState::Connected && !self.feeder.contains_key(&c.ino)).collect();
                for c in clients {
                    if c.ino != s.ino {
                        self.ensure_bound(c)?;
                    }
                    let cfd = self.made[&c.ino];
                    check(unix::connect(cfd, &s.name, &s.bind_dir), || format!("cannot connect {} to {} again", c.describe(), s.describe()))?;
                }
                if s.queue.iter().all(|m| m.fds.is_empty()) {
                    self.refill_dgram(s)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Each accepted connection of `accepted` (ends whose client is in the program): its
    /// client connects to the listener `l` and the listener accepts.
    fn accept_all(&mut self, l: RawFd, accepted: &[&Socket], dir: &[u8]) -> Result<()> {
        for a in accepted {
            let Some(c) = self.by_ino.get(&a.peer).copied() else { continue };
            if self.feeder.contains_key(&a.ino) {
                continue;
            }
            self.ensure_bound(c)?;
            let cfd = self.made[&c.ino];
            check(unix::connect(cfd, &a.name, dir), || format!("cannot connect {} to {} again", c.describe(), a.describe()))?;
            // SAFETY: l is a listening socket of ours with one connection queued.
            let got = check(unsafe { libc::accept4(l, std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_CLOEXEC) }, || format!("cannot accept the connection of {} again", a.describe()))?;
            let got = self.park(got)?;
            self.early(got, a);
            if let Some(old) = self.made.insert(a.ino, got) {
                close(old);
            }
            self.bound.insert(a.ino);
            self.feeder.insert(a.ino, cfd);
            self.feeder.insert(c.ino, got);
        }
        Ok(())
    }

    /// UNIX sockets that no name took care of.
    fn unix_rest(&mut self, s: &Socket) -> Result<()> {
        if is_named_unix(s) && !self.is_accepted(s) && !self.bound.contains(&s.ino) {
            self.ensure_bound(s)?;
        }
        if self.feeder.contains_key(&s.ino) {
            return Ok(());
        }
        let waiting = self.queued.contains(&s.ino);
        match (s.state, s.sock_type) {
            (SockState::Connected, libc::SOCK_DGRAM) => {
                if self.by_ino.contains_key(&s.peer) {
                    return Ok(()); // connected while its peer's name was bound
                }
                // Connected to a socket outside the program (syslog's /dev/log, ...): again.
                let fd = self.made[&s.ino];
                if s.peer_name.len() > 2 && unix::connect(fd, &s.peer_name, &[]) == 0 {
                    return Ok(());
                }
                info(&format!("socket {}: its peer is gone; sending fails", s.describe()));
                if is_named_unix(s) {
                    self.dead_peer(fd, s)?;
                } else {
                    // Only its peer could send to it: a pair whose other end we close.
                    self.peer_gone(s)?;
                }
            }
            (SockState::Unconnected, libc::SOCK_DGRAM) if !is_named_unix(s) && !s.queue.is_empty() => {
                // Unnamed and unconnected with messages queued: it was one end of a pair whose
                // other end has closed (only it could send here).
                self.peer_gone(s)?;
            }
            (SockState::Connected | SockState::PeerGone, _) if !waiting => {
                // A connection whose other end is not in the program: its peer has closed.
                self.peer_gone(s)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// A datagram socket connected to a peer that no longer exists: connected to a socket of
    /// ours that is then closed.
    fn dead_peer(&mut self, fd: RawFd, s: &Socket) -> Result<()> {
        // SAFETY: plain socket calls on fds of ours; the autobind gives t an abstract name.
        unsafe {
            let t = check(libc::socket(libc::AF_UNIX, s.sock_type | libc::SOCK_CLOEXEC, 0), || "socket".into())?;
            let fam = libc::AF_UNIX as u16;
            libc::bind(t, (&fam as *const u16).cast(), 2);
            let mut a = [0u8; 110];
            let mut len = a.len() as u32;
            libc::getsockname(t, a.as_mut_ptr().cast(), &mut len);
            libc::connect(fd, a.as_ptr().cast(), len);
            close(t);
        }
        Ok(())
    }

    /// Replace the socket of `s` with one end of a socketpair whose other end we close after
    /// refilling: reads give the unread bytes, then end of file; writes fail with EPIPE.
    fn peer_gone(&mut self, s: &Socket) -> Result<()> {
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
            info(&format!("socket {}: its peer is outside the program; it comes back as a connection closed by its peer", s.describe()));
        }
        Ok(())
    }

    /// The datagrams queued on `s` (bound, reachable by its name now), sent again from their
    /// senders' names.
    fn refill_dgram(&mut self, s: &Socket) -> Result<()> {
        if !self.filled.insert(s.ino) {
            return Ok(());
        }
        for m in &s.queue {
            self.send_datagram(s, m, &[])?;
        }
        Ok(())
    }

    /// One datagram for `to`, from a socket named `m.from`: a socket connected to `to` with
    /// that name sends it without an address (its peer, the other end of a pair, or a client),
    /// else the program's socket of that name, else one of ours bound to it.
    fn send_datagram(&mut self, to: &Socket, m: &Message, fds: &[RawFd]) -> Result<()> {
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
    fn address_of(&self, s: &Socket) -> Vec<u8> {
        let mut a = s.name.clone();
        match s.family {
            libc::AF_INET if a.len() >= 8 && a[4..8] == [0, 0, 0, 0] => a[4..8].copy_from_slice(&[127, 0, 0, 1]),
            libc::AF_INET6 if a.len() >= 24 && a[8..24].iter().all(|&b| b == 0) => a[23] = 1,
            _ => {}
        }
        a
    }

    fn inet_bind(&mut self, s: &Socket) -> Result<()> {
        let (port, ip) = super::capture::inet_addr(&s.name);
        let named = port != 0 || ip.iter().any(|&b| b != 0);
        let fd = self.made[&s.ino];
        match s.state {
            SockState::Listening => {
                self.bind_inet(fd, s, &s.name)?;
                // SAFETY: fd is a bound socket of ours.
                check(unsafe { libc::listen(fd, s.backlog.max(1) as i32) }, || format!("cannot listen on {} again", s.describe()))
                    .map(|_| ())
            }
            SockState::Unconnected if named => self.bind_inet(fd, s, &s.name),
            SockState::Connected if named && s.sock_type != libc::SOCK_STREAM => self.bind_inet(fd, s, &s.name),
            // TCP connections are bound with their peer (inet_connect).
            _ => Ok(()),
        }
    }

    /// A TCP client whose connection waits in one of the program's listeners.
    fn is_waiting_inet(&self, s: &Socket) -> bool {
        !s.name.is_empty() && self.all.iter().any(|l| l.state == SockState::Listening && l.pending.iter().any(|p| p.from == s.name))
    }

    /// bind with SO_REUSEADDR for the moment (the killed program's connections may linger in
    /// TIME_WAIT), then the program's own setting again. A port that several of the program's
    /// sockets share is bound with SO_REUSEPORT by each (the program may have turned it off
    /// since on some: it is turned off again once all are bound). An address that is not
    /// configured here is bound with IP_FREEBIND, as the program must have done.
    fn bind_inet(&mut self, fd: RawFd, s: &Socket, addr: &[u8]) -> Result<()> {
        let one: i32 = 1;
        let mine = opts::value(&s.opts, libc::SOL_SOCKET, libc::SO_REUSEADDR).unwrap_or(0);
        let (port, _) = super::capture::inet_addr(addr);
        let shared = port != 0
            && self.all.iter().any(|o| o.ino != s.ino && o.family == s.family && o.sock_type == s.sock_type && super::capture::inet_addr(&o.name).0 == port && o.state != SockState::Connected);
        let setopt = |level: i32, name: i32, v: i32| {
            // SAFETY: an int option on a socket of ours.
            unsafe { libc::setsockopt(fd, level, name, (&v as *const i32).cast(), 4) }
        };
        setopt(libc::SOL_SOCKET, libc::SO_REUSEADDR, 1);
        if shared && s.state != SockState::Connected {
            setopt(libc::SOL_SOCKET, libc::SO_REUSEPORT, 1);
            self.reuseport_forced.insert(s.ino);
        }
        let bind = || {
            // SAFETY: addr is a sockaddr of addr.len() bytes.
            let r = unsafe { libc::bind(fd, addr.as_ptr().cast(), addr.len() as u32) };
            (r, std::io::Error::last_os_error())
        };
        let (mut r, mut e) = bind();
        if r < 0 && e.raw_os_error() == Some(libc::EADDRNOTAVAIL) {
            let (level, name) = if s.family == libc::AF_INET6 { (libc::IPPROTO_IPV6, opts::IPV6_FREEBIND) } else { (libc::IPPROTO_IP, libc::IP_FREEBIND) };
            setopt(level, name, 1);
            (r, e) = bind();
            setopt(level, name, opts::value(&s.opts, level, name).unwrap_or(0));
        }
        setopt(libc::SOL_SOCKET, libc::SO_REUSEADDR, mine);
        let _ = one;
        if r < 0 {
            return Err(Error::Refused(format!("cannot bind {} again: {e}", ckpt_image::describe_addr(s.family, addr))));
        }
        Ok(())
    }

    fn inet_connect(&mut self, s: &Socket) -> Result<()> {
        if s.state != SockState::Connected && s.state != SockState::PeerGone {
            return Ok(());
        }
        if self.feeder.contains_key(&s.ino) || self.is_waiting_inet(s) {
            return Ok(());
        }
        let fd = self.made[&s.ino];
        if s.sock_type != libc::SOCK_STREAM {
            // UDP, ping: connected again (the peer need not be there).
            if s.state == SockState::Connected {
                // SAFETY: peer_name is a sockaddr of its length.
                check(unsafe { libc::connect(fd, s.peer_name.as_ptr().cast(), s.peer_name.len() as u32) }, || format!("cannot connect {} again", s.describe()))?;
            }
            return Ok(());
        }
        // A TCP connection: both ends in the program?
        let peer = self.all.iter().copied().find(|p| {
            p.ino != s.ino && p.sock_type == libc::SOCK_STREAM && matches!(p.family, libc::AF_INET | libc::AF_INET6) && p.name == s.peer_name && p.peer_name == s.name
        });
        let Some(p) = peer.filter(|_| s.state == SockState::Connected) else {
            if s.unsent > 0 {
                info(&format!("socket {}: {} bytes it sent were not yet received by its peer outside the program", s.describe(), s.unsent));
            }
            return self.peer_gone(s);
        };
        // The server end is the one on a listener's address (the program's, else ours).
        let listens_on = |x: &Socket| {
            self.all.iter().copied().find(|l| {
                l.state == SockState::Listening && l.sock_type == libc::SOCK_STREAM && {
                    let (lp, lip) = super::capture::inet_addr(&l.name);
                    let (xp, xip) = super::capture::inet_addr(&x.name);
                    lp == xp && (lip.iter().all(|&b| b == 0) || lip == xip)
                }
            })
        };
        // Without a listener: the end whose address other connections share (the listener's,
        // closed since); both ends get their own addresses either way.
        let sharing = |x: &Socket| self.all.iter().filter(|o| o.family == x.family && o.sock_type == x.sock_type && o.name == x.name).count();
        let s_first = match (listens_on(s).is_some(), listens_on(p).is_some()) {
            (true, _) => true,
            (false, true) => false,
            _ => sharing(s) > sharing(p) || (sharing(s) == sharing(p) && s.ino < p.ino),
        };
        let (server, client) = if s_first { (s, p) } else { (p, s) };
        let listener = listens_on(server).map(|l| self.made[&l.ino]);
        let l = match listener {
            Some(l) => l,
            None => self.temp_listener(server)?,
        };
        let cfd = self.made[&client.ino];
        let r = self.bind_inet(cfd, client, &client.name).and_then(|()| {
            // SAFETY: server.name is a sockaddr of its length.
            check(unsafe { libc::connect(cfd, server.name.as_ptr().cast(), server.name.len() as u32) }, || format!("cannot connect {} again", client.describe()))?;
            // SAFETY: l is a listening socket of ours with our connection queued.
            check(unsafe { libc::accept4(l, std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_CLOEXEC) }, || format!("cannot accept {} again", server.describe()))
        });
        let got = self.park(r?)?;
        if let Some(old) = self.made.insert(server.ino, got) {
            close(old);
        }
        self.feeder.insert(server.ino, cfd);
        self.feeder.insert(client.ino, got);
        for x in [s, p] {
            if x.unsent > 0 {
                self.lost(x, &format!("{} bytes sent to its peer in the program and not yet received (full buffers: they cannot be read without privileges)", x.unsent))?;
            }
        }
        Ok(())
    }

    /// A listener of ours on the address of `server` (an end of a connection whose listener
    /// the program has closed), one for all such connections, closed once they are made.
    fn temp_listener(&mut self, server: &Socket) -> Result<RawFd> {
        if let Some(&(_, l)) = self.temp_listeners.iter().find(|t| t.0 == server.name) {
            return Ok(l);
        }
        let t = self.new_plain(server)?;
        if let Err(e) = self.bind_inet(t, server, &server.name) {
            close(t);
            return Err(e);
        }
        // SAFETY: t is a bound socket of ours.
        unsafe { libc::listen(t, 64) };
        self.temp_listeners.push((server.name.clone(), t));
        Ok(t)
    }

    fn new_plain(&self, s: &Socket) -> Result<RawFd> {
        // SAFETY: plain socket creation.
        let t = check(unsafe { libc::socket(s.family, s.sock_type | libc::SOCK_CLOEXEC, s.protocol) }, || "socket".into())?;
        Ok(t)
    }

    /// Connections waiting in a TCP listener: their clients connect again (the program's own,
    /// else one of ours that then closes: the program will accept a connection whose peer
    /// has gone).
    fn inet_pending(&mut self, l: &Socket) -> Result<()> {
        let connect_to = self.address_of(l);
        for p in &l.pending {
            let client = self.all.iter().copied().find(|c| c.name == p.from && c.sock_type == libc::SOCK_STREAM && !p.from.is_empty());
            match client {
                Some(c) => {
                    let cfd = self.made[&c.ino];
                    self.bind_inet(cfd, c, &c.name)?;
                    // SAFETY: connect_to is a sockaddr of its length.
                    check(unsafe { libc::connect(cfd, connect_to.as_ptr().cast(), connect_to.len() as u32) }, || format!("cannot queue the connection of {} again", c.describe()))?;
                    self.feeder.remove(&c.ino);
                    if p.unread > 0 {
                        self.lost(c, &format!("{} bytes it had sent into a connection not yet accepted (they cannot be read without accepting it)", p.unread))?;
                    }
                }
                None => {
                    let t = self.new_plain(l)?;
                    // SAFETY: as above.
                    let r = unsafe { libc::connect(t, connect_to.as_ptr().cast(), connect_to.len() as u32) };
                    close(t);
                    check(r, || format!("cannot queue a connection on {} again", l.describe()))?;
                    if p.unread > 0 {
                        self.lost(l, &format!("{} unread bytes in a connection not yet accepted whose client is outside the program", p.unread))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Netlink and packet sockets: bound (with their multicast groups) and connected again.
    fn raw_family(&mut self, s: &Socket) -> Result<()> {
        let fd = self.made[&s.ino];
        let mut name = s.name.clone();
        let named = match (s.family, s.sock_type) {
            (libc::AF_NETLINK, _) => name.len() >= 12 && name[4..12].iter().any(|&b| b != 0),
            // SOCK_PACKET: a device name in a struct sockaddr.
            (_, 10 /* SOCK_PACKET */) => name.len() > 2 && name[2..].iter().any(|&b| b != 0),
            // struct sockaddr_ll, of which getsockname gives only the part in use: an interface.
            _ => {
                name.resize(name.len().max(20), 0);
                name[4..8].iter().any(|&b| b != 0)
            }
        };
        if named {
            // SAFETY: name is a sockaddr of its length.
            check(unsafe { libc::bind(fd, name.as_ptr().cast(), name.len() as u32) }, || format!("cannot bind {} again", s.describe()))?;
        }
        for (w, bits) in s.groups.iter().enumerate().skip(1) {
            for b in 0..32 {
                if bits & (1 << b) != 0 {
                    let g = (w * 32 + b + 1) as i32;
                    // SAFETY: an int option.
                    if unsafe { libc::setsockopt(fd, 270, libc::NETLINK_ADD_MEMBERSHIP, (&g as *const i32).cast(), 4) } < 0 {
                        self.lost(s, &format!("multicast group {g} cannot be joined again: {}", std::io::Error::last_os_error()))?;
                    }
                }
            }
        }
        if s.state == SockState::Connected {
            // SAFETY: peer_name is a sockaddr of its length.
            check(unsafe { libc::connect(fd, s.peer_name.as_ptr().cast(), s.peer_name.len() as u32) }, || format!("cannot connect {} again", s.describe()))?;
        }
        Ok(())
    }

    /// Once every fd of the program is in place: refill what is left to refill (with the
    /// files in flight, which `file` gives as fds: a program fd number, or an in-flight entry's
    /// fd of ours), shut down, set the late options and filters; close our fds.
    pub fn finish(mut self, file: &dyn Fn(i32) -> Option<RawFd>) -> Result<()> {
        let r = self.finish_all(file);
        self.close_all();
        r
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
        for s in &all {
            let fd = self.made[&s.ino];
            if let Some(how) = shut_how(s.shutdown) {
                // SAFETY: fd is a socket of ours.
                unsafe { libc::shutdown(fd, how) };
            }
            if self.stand_ins.contains(&s.ino) {
                continue;
            }
            if let Err(e) = opts::restore_filter(fd, &s.filter) {
                self.lost(s, &e)?;
            }
            let failed = opts::restore(fd, &s.opts, opts::Phase::Late);
            if !failed.is_empty() {
                warn(&format!("socket {}: options not restored: {}", s.describe(), failed.join(", ")));
            }
        }
        Ok(())
    }
}
