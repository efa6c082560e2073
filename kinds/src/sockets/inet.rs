//! Restoring TCP, UDP, ping, netlink and packet sockets (part of `restore`): bound again (with
//! SO_REUSEADDR, SO_REUSEPORT and IP_FREEBIND for the moment where needed), TCP connections
//! whose two ends are in the program made through their listener (the program's, or one of
//! ours at its address), the connections waiting in listeners queued again, datagram sockets
//! connected again, netlink sockets bound with their groups.

use ckpt_image::inetaddr::{in_family, same_inet};
use super::opts;
use super::restore::Sockets;
use crate::{check, close, info, Error, Result};
use ckpt_image::{SockState, Socket};
use std::os::fd::RawFd;

impl Sockets<'_> {
    pub(super) fn inet_bind(&mut self, s: &Socket) -> Result<()> {
        if self.given.contains(&s.ino) {
            return Ok(()); // bound (and listening) already: a tree's shared listener
        }
        let (port, ip) = super::capture::inet_addr(&s.name);
        let named = port != 0 || ip.iter().any(|&b| b != 0);
        let fd = self.made[&s.ino];
        match s.state {
            SockState::Listening => {
                let mut r = self.listen_at(fd, s, true);
                // A step's task restarted where it ran, its port held only by the killed run's
                // closed connections whose peers were elsewhere (not ended by `timewait::clear`):
                // they are waited out rather than the listener moved.
                if matches!(&r, Err(e) if self.may_move(s, e)) && super::timewait::wait_gone(s.family, &s.name) {
                    r = self.remade(fd, s).and_then(|()| self.listen_at(fd, s, true));
                }
                match r {
                    Err(e) if self.may_move(s, &e) => self.bind_elsewhere(fd, s, &e).and_then(|()| self.listen_at(fd, s, false)),
                    r => r,
                }
            }
            SockState::Unconnected if named && s.sock_type == libc::SOCK_STREAM => self.bind_inet(fd, s, &s.name),
            SockState::Unconnected | SockState::Connected if named && s.sock_type != libc::SOCK_STREAM => {
                let at = self.udp_bind_addr(s);
                self.bind_inet(fd, s, &at)
            }
            // TCP connections are bound with their peer (inet_connect).
            _ => Ok(()),
        }
    }

    /// Bind (`bind`: unless `bind_elsewhere` did) and listen again.
    fn listen_at(&mut self, fd: RawFd, s: &Socket, bind: bool) -> Result<()> {
        if bind {
            self.bind_inet(fd, s, &s.name)?;
        }
        // listen checks the port again, more strictly than bind: the killed program's
        // connections lingering on it (TIME_WAIT) conflict unless SO_REUSEADDR is on
        // here too. The program's own setting comes back once it listens.
        let set = |v: i32| {
            // SAFETY: an int option on a socket of ours.
            unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, (&v as *const i32).cast(), 4) };
        };
        set(1);
        // SAFETY: fd is a bound socket of ours.
        let listen = || unsafe { libc::listen(fd, s.backlog.max(1) as i32) };
        let mut r = listen();
        if r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EADDRINUSE) && super::timewait::clear(s.family, &s.name) {
            r = listen();
        }
        let r = check(r, || format!("cannot listen on {} again", s.describe())).map(|_| ());
        set(opts::value(&s.opts, libc::SOL_SOCKET, libc::SO_REUSEADDR).unwrap_or(0));
        r
    }

    /// A TCP client whose connection waits in one of the program's listeners.
    pub(super) fn is_waiting_inet(&self, s: &Socket) -> bool {
        !s.name.is_empty() && self.all.iter().any(|l| l.state == SockState::Listening && l.pending.iter().any(|p| p.from == s.name))
    }

    /// bind with SO_REUSEADDR for the moment (the killed program's connections may linger in
    /// TIME_WAIT; those it left without SO_REUSEADDR are ended, see `timewait`), then the
    /// program's own setting again. A port that several of the program's
    /// sockets share is bound with SO_REUSEPORT by each (the program may have turned it off
    /// since on some: it is turned off again once all are bound). An address that is not
    /// configured here is bound with IP_FREEBIND, as the program must have done.
    pub(super) fn bind_inet(&mut self, fd: RawFd, s: &Socket, addr: &[u8]) -> Result<()> {
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
        // Remains of the killed program's connections the program left without SO_REUSEADDR.
        if r < 0 && e.raw_os_error() == Some(libc::EADDRINUSE) && s.sock_type == libc::SOCK_STREAM && super::timewait::clear(s.family, addr) {
            (r, e) = bind();
        }
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

    pub(super) fn inet_connect(&mut self, s: &Socket) -> Result<()> {
        if s.state != SockState::Connected && s.state != SockState::PeerGone {
            return Ok(());
        }
        if self.feeder.contains_key(&s.ino) || self.is_waiting_inet(s) || self.given.contains(&s.ino) {
            return Ok(());
        }
        let fd = self.made[&s.ino];
        if s.sock_type != libc::SOCK_STREAM {
            // UDP, ping: connected again (the peer need not be there); a step task's UDP
            // socket once the step's map says where its peer is now (stepudp).
            if s.state == SockState::Connected && !self.connect_later(s) {
                // SAFETY: peer_name is a sockaddr of its length.
                check(unsafe { libc::connect(fd, s.peer_name.as_ptr().cast(), s.peer_name.len() as u32) }, || format!("cannot connect {} again", s.describe()))?;
            }
            return Ok(());
        }
        // A TCP connection: both ends in the program?
        let peer = self.all.iter().copied().find(|p| {
            p.ino != s.ino && p.sock_type == libc::SOCK_STREAM && matches!(p.family, libc::AF_INET | libc::AF_INET6) && same_inet(&p.name, &s.peer_name) && same_inet(&p.peer_name, &s.name)
        });
        // Both ends connected, or both ended (each shut down both ways, as the program left
        // them: a real connection ended again once its queues are refilled, so that
        // SO_PEERNAME and getsockname answer as before).
        let both = |p: &&Socket| (s.state == SockState::Connected && p.state == SockState::Connected) || (s.state == SockState::PeerGone && p.state == SockState::PeerGone && s.shutdown == 3 && p.shutdown == 3);
        let Some(p) = peer.filter(both) else {
            if s.unsent > 0 {
                info(&format!("socket {}: {} bytes it sent were not yet received by its peer outside the program", s.describe(), s.unsent));
            }
            return self.peer_gone(s);
        };
        // The server end is the one on a listener's address (the program's, else ours).
        let on_addr = |l: &Socket, x: &Socket| {
            l.state == SockState::Listening && l.sock_type == libc::SOCK_STREAM && {
                let (lp, lip) = super::capture::inet_addr(&l.name);
                let (xp, xip) = super::capture::inet_addr(&x.name);
                lp == xp && (lip.iter().all(|&b| b == 0) || lip == xip)
            }
        };
        let listens_on = |x: &Socket| self.all.iter().copied().find(|l| on_addr(l, x));
        // Without a listener: the end whose address other connections share (the listener's,
        // closed since); both ends get their own addresses either way.
        let sharing = |x: &Socket| self.all.iter().filter(|o| o.family == x.family && o.sock_type == x.sock_type && o.name == x.name).count();
        let s_first = match (listens_on(s).is_some(), listens_on(p).is_some()) {
            (true, _) => true,
            (false, true) => false,
            _ => sharing(s) > sharing(p) || (sharing(s) == sharing(p) && s.ino < p.ino),
        };
        let (server, client) = if s_first { (s, p) } else { (p, s) };
        if s.state == SockState::PeerGone {
            // An ended connection's TIME_WAIT remain holds one end's port and names the other
            // end's address, which ending it binds for a moment: before either is bound here.
            for x in [s, p] {
                super::timewait::clear(x.family, &x.name);
            }
        }
        // Every listener of ours on the server's address: the program's may be several bound
        // with SO_REUSEPORT, among which the kernel picks one for our connection by its
        // addresses (not always the first: the restart waited for ever in accept on the other,
        // zdtm socket-tcp-reuseport).
        let mut group: Vec<RawFd> = self
            .all
            .iter()
            .filter(|l| on_addr(l, server))
            .map(|l| self.made[&l.ino])
            .collect();
        if group.is_empty() {
            group.push(self.temp_listener(server)?);
        }
        let cfd = self.made[&client.ino];
        let r = self.bind_inet(cfd, client, &client.name).and_then(|()| {
            // The server's address as the client's family sees it (an IPv4 client of an IPv6
            // server's v4-mapped address).
            let to = in_family(&self.now_at(group[0], &server.name), client.family);
            // SAFETY: to is a sockaddr of its length.
            check(unsafe { libc::connect(cfd, to.as_ptr().cast(), to.len() as u32) }, || format!("cannot connect {} again", client.describe()))?;
            accept_in(&group).map_err(|e| Error::Refused(format!("cannot accept {} again: {e}", server.describe())))
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
    pub(super) fn temp_listener(&mut self, server: &Socket) -> Result<RawFd> {
        if let Some(&(_, l)) = self.temp_listeners.iter().find(|t| t.0 == server.name) {
            return Ok(l);
        }
        let t = self.new_plain(server)?;
        self.early(t, server); // IPV6_V6ONLY (inherited from its listener) and the like
        if let Err(e) = self.bind_inet(t, server, &server.name) {
            close(t);
            return Err(e);
        }
        // SAFETY: t is a bound socket of ours.
        unsafe { libc::listen(t, 64) };
        self.temp_listeners.push((server.name.clone(), t));
        Ok(t)
    }

    pub(super) fn new_plain(&self, s: &Socket) -> Result<RawFd> {
        // SAFETY: plain socket creation.
        let t = check(unsafe { libc::socket(s.family, s.sock_type | libc::SOCK_CLOEXEC, s.protocol) }, || "socket".into())?;
        Ok(t)
    }

    /// Connections waiting in a TCP listener: their clients connect again (the program's own,
    /// else one of ours that then closes: the program will accept a connection whose peer
    /// has gone).
    pub(super) fn inet_pending(&mut self, l: &Socket) -> Result<()> {
        let connect_to = self.now_at(self.made[&l.ino], &self.address_of(l));
        for p in &l.pending {
            let client = self.all.iter().copied().find(|c| (c.name == p.from || same_inet(&c.name, &p.from)) && c.sock_type == libc::SOCK_STREAM && !p.from.is_empty());
            match client {
                Some(c) => {
                    let cfd = self.made[&c.ino];
                    self.bind_inet(cfd, c, &c.name)?;
                    let to = in_family(&connect_to, c.family);
                    // SAFETY: to is a sockaddr of its length.
                    check(unsafe { libc::connect(cfd, to.as_ptr().cast(), to.len() as u32) }, || format!("cannot queue the connection of {} again", c.describe()))?;
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
    pub(super) fn raw_family(&mut self, s: &Socket) -> Result<()> {
        if self.given.contains(&s.ino) {
            return Ok(()); // made already: a socket processes of a tree share
        }
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
}

/// Accept the connection just made to one of the listeners `group` (the one the kernel queued it
/// in: SO_REUSEPORT spreads connections over a port's listeners). A connect over loopback has
/// queued it by the time it returns; the wait is bounded all the same, so that a restart never
/// hangs on it.
fn accept_in(group: &[RawFd]) -> std::io::Result<RawFd> {
    const WAIT_MS: i32 = 10_000;
    let mut p: Vec<libc::pollfd> = group.iter().map(|&fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 }).collect();
    loop {
        // SAFETY: p holds valid pollfds.
        let n = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, WAIT_MS) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the connection did not reach its listener"));
        }
        for q in &p {
            if q.revents & libc::POLLIN != 0 {
                // SAFETY: a listening socket of ours with a connection queued.
                let fd = unsafe { libc::accept4(q.fd, std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_CLOEXEC) };
                return if fd >= 0 { Ok(fd) } else { Err(std::io::Error::last_os_error()) };
            }
        }
    }
}
