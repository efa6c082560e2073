//! Restoring UNIX sockets by name (part of `restore`): every socket bound to one name is bound
//! in turn (those whose file is gone first, the one whose file is still there last), and while
//! its name exists the datagram sockets connected to it connect, its queue is refilled from its
//! senders' names, a listener accepts the connections it had accepted (their clients connect
//! again) and then queues its waiting clients' connections again, with the bytes in them when
//! they were read at the cut. Sockets no name took care of
//! are connected to outside names again, or get a peer that has gone.

use super::restore::{is_named_unix, Sockets};
use super::unix;
use crate::{check, close, info, warn, Result};
use ckpt_image::{SockState, Socket};
use std::os::fd::RawFd;

impl Sockets<'_> {
    /// The accepted end of a UNIX connection: named like the listener it came from, its peer
    /// connected to that name.
    pub(super) fn is_accepted(&self, s: &Socket) -> bool {
        s.family == libc::AF_UNIX
            && s.sock_type != libc::SOCK_DGRAM
            && s.state == SockState::Connected
            && is_named_unix(s)
            && self.by_ino.get(&s.peer).is_some_and(|c| c.peer_name == s.name && c.peer == s.ino)
    }

    /// A UNIX stream client whose connection waits in the queue of listener `l`.
    pub(super) fn waits_on(&self, c: &Socket, l: &Socket) -> bool {
        c.family == libc::AF_UNIX
            && c.sock_type == l.sock_type
            && c.state == SockState::Connected
            && c.peer == 0
            && c.shutdown & 3 != 3
            && c.peer_name == l.name
            && !self.queued.contains(&c.ino)
    }

    /// Bind a UNIX socket that is a client of something (not a server of this name).
    pub(super) fn ensure_bound(&mut self, s: &Socket) -> Result<()> {
        if !is_named_unix(s) || self.is_accepted(s) || !self.bound.insert(s.ino) {
            return Ok(());
        }
        let fd = self.made[&s.ino];
        unix::bind(fd, s, self.opts.ignore)?.finish();
        Ok(())
    }

    /// Everything about the UNIX name `n`.
    pub(super) fn unix_name(&mut self, n: &[u8]) -> Result<()> {
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
    pub(super) fn serve(&mut self, s: &Socket, fd: RawFd, accepted: &[&Socket]) -> Result<()> {
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
                    // (A connection read at the cut names its client exactly: 0 is one that had closed.)
                    let own = own.or_else(|| self.all.iter().copied().find(|c| p.ino == 0 && p.data.is_none() && self.waits_on(c, s)));
                    match own {
                        Some(c) => {
                            self.ensure_bound(c)?;
                            let cfd = self.made[&c.ino];
                            check(unix::connect(cfd, &s.name, &s.bind_dir), || format!("cannot queue the connection of {} on {} again", c.describe(), s.describe()))?;
                            self.queued.insert(c.ino);
                            if let Some(d) = &p.data {
                                self.refill_waiting(cfd, c, d)?;
                            } else if p.unread > 0 || c.unsent > 0 {
                                let n = if p.unread > 0 { p.unread.to_string() } else { format!("about {}", c.unsent) };
                                self.lost(c, &format!("{n} bytes it had sent into its connection not yet accepted by {} (they cannot be read without accepting it)", s.describe()))?;
                            }
                        }
                        None => {
                            // SAFETY: plain socket creation.
                            let t = check(unsafe { libc::socket(libc::AF_UNIX, s.sock_type | libc::SOCK_CLOEXEC, 0) }, || "socket".into())?;
                            let r = unix::connect(t, &s.name, &s.bind_dir);
                            let filled = match (&p.data, r) {
                                (Some(d), 0) => self.refill_waiting(t, s, d),
                                _ => Ok(()),
                            };
                            close(t);
                            check(r, || format!("cannot queue a connection on {} again", s.describe()))?;
                            filled?;
                            if p.data.is_some() {
                                continue; // its client had closed; what it sent is there again
                            }
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

    /// The bytes read at the cut from a connection not yet accepted, sent into it again from
    /// its client end `fd` (`s`: the client, or the listener when the client had closed).
    fn refill_waiting(&mut self, fd: RawFd, s: &Socket, data: &[Vec<u8>]) -> Result<()> {
        for d in data {
            let m = ckpt_image::Message { data: d.clone(), ..Default::default() };
            if let Err(e) = super::queue::send_all(fd, &m, &[]) {
                self.lost(s, &format!("{} bytes sent into a connection not yet accepted cannot be sent again ({e})", d.len()))?;
            }
        }
        Ok(())
    }

    /// Each accepted connection of `accepted` (ends whose client is in the program): its
    /// client connects to the listener `l` and the listener accepts.
    pub(super) fn accept_all(&mut self, l: RawFd, accepted: &[&Socket], dir: &[u8]) -> Result<()> {
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
    pub(super) fn unix_rest(&mut self, s: &Socket) -> Result<()> {
        if self.given.contains(&s.ino) {
            return Ok(()); // made by the caller with its peer (a tree's shared socketpair)
        }
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
    pub(super) fn dead_peer(&mut self, fd: RawFd, s: &Socket) -> Result<()> {
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

    /// The datagrams queued on `s` (bound, reachable by its name now), sent again from their
    /// senders' names.
    pub(super) fn refill_dgram(&mut self, s: &Socket) -> Result<()> {
        if !self.filled.insert(s.ino) {
            return Ok(());
        }
        for m in &s.queue {
            self.send_datagram(s, m, &[])?;
        }
        Ok(())
    }
}
