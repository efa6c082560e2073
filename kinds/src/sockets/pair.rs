//! A connection that several processes of a tree share (see ckpt_image::unshared::TreeSocks::
//! connections), made again once by the tree's restart before the processes are forked:
//! a new socketpair of the same type, or a TCP connection between the same two addresses
//! (through a listener of ours on the server end's address, both bound with SO_REUSEADDR: the
//! killed tree's ends may linger in TIME_WAIT, see `timewait`); each end's unread messages queued again from
//! the other end (exactly once, since it is made once), message by message for datagrams and
//! seqpackets.
//! The tree's restart then sets their options, shutdown and filters once (`restore::settle`),
//! and each process takes its ends through `Sockets::make_given`'s `job`.
//! A step task's tree restarted on a node that lacks its old node's addresses (issue 14: two
//! MPI ranks of one node talking over TCP, restarted on another node) makes them at the
//! addresses now that stand for the old ones (`node_addresses`), as its runtime shows them.

use super::queue;
use crate::{check, close, info, Error, Result};
use ckpt_image::Socket;
use std::os::fd::RawFd;
use std::sync::OnceLock;

/// Each old address of a step task's node that its node lacks now, with the address now that
/// stands for it (ckpt_step::addrmap::pair): empty where nothing moved.
static NODE: OnceLock<Vec<(Vec<u8>, Vec<u8>)>> = OnceLock::new();

/// Before the tree's connections are made: the old node's addresses (4 or 16 bytes) this
/// node lacks, each with the one that stands for it now.
pub fn node_addresses(pairs: Vec<(Vec<u8>, Vec<u8>)>) {
    let _ = NODE.set(pairs);
}

/// `addr` (a sockaddr) where it is on this node: at the address that stands for its own where
/// this node lacks that (`node_addresses`), else as it is.
fn here(addr: &[u8]) -> Vec<u8> {
    let now = ckpt_step::addrmap::ip_of(addr).and_then(|ip| NODE.get()?.iter().find(|(o, _)| *o == ip).map(|(_, n)| n.clone()));
    now.and_then(|n| ckpt_step::addrmap::with_ip(addr, &n)).unwrap_or_else(|| addr.to_vec())
}

/// A listener of the program bound and listening again, for a tree that shares it (several
/// processes hold it, or connections accepted from it are made with it, `make`): our fd,
/// close-on-exec. TCP: SO_REUSEADDR as the program had it once it listens; UNIX: bound to its
/// name as the single-process restore binds one (unix::bind), the name's file as it was at
/// checkpoint time (removed again if it had been). `other_port`: a TCP listener of a task of a
/// step whose port another program holds gets another port at its address (`moveport`), and
/// the connections made through it connect there.
pub fn listener(l: &Socket, other_port: bool) -> Result<RawFd> {
    if l.family == libc::AF_UNIX {
        return unix_listener(l);
    }
    let fd = if other_port { bound_or_elsewhere(l)? } else { bound(l)? };
    // SAFETY: fd is a bound socket of ours.
    if unsafe { libc::listen(fd, l.backlog.max(1) as i32) } < 0 {
        let e = std::io::Error::last_os_error();
        close(fd);
        return Err(Error::Refused(format!("cannot listen on {} again: {e}", l.describe())));
    }
    let mine = super::opts::value(&l.opts, libc::SOL_SOCKET, libc::SO_REUSEADDR).unwrap_or(0);
    // SAFETY: an int option on a socket of ours.
    unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, (&mine as *const i32).cast(), 4) };
    Ok(fd)
}

fn unix_listener(l: &Socket) -> Result<RawFd> {
    // SAFETY: plain socket creation.
    let fd = check(unsafe { libc::socket(libc::AF_UNIX, l.sock_type | libc::SOCK_CLOEXEC, 0) }, || "socket".into())?;
    let listening = super::unix::bind(fd, l, false).and_then(|bound| {
        // SAFETY: fd is a bound socket of ours.
        let r = check(unsafe { libc::listen(fd, l.backlog.max(1) as i32) }, || format!("cannot listen on {} again", l.describe()));
        bound.finish();
        r
    });
    match listening {
        Ok(_) => Ok(fd),
        Err(e) => {
            close(fd);
            Err(e)
        }
    }
}

/// `l` bound at its address, or where its port is in use at another port of it (said).
fn bound_or_elsewhere(l: &Socket) -> Result<RawFd> {
    let mut r = bound_to(l, &l.name, false);
    // Held only by the killed run's closed connections whose peers were elsewhere: waited out.
    if matches!(&r, Err(e) if super::moveport::in_use(e)) && super::timewait::wait_gone(l.family, &here(&l.name)) {
        r = bound_to(l, &l.name, false);
    }
    match r {
        Err(e) if super::moveport::in_use(&e) => {
            let fd = bound_to(l, &super::moveport::any_port(&l.name), false).map_err(|e2| Error::Refused(format!("{e}; another port: {e2}")))?;
            super::moveport::said_moved(l, fd);
            Ok(fd)
        }
        r => r,
    }
}

/// A listener of ours on the address of `a`, the server end of TCP connections whose listener
/// the program has closed (one for all the connections on that address: a second one could
/// not bind while the first one's connections are there).
pub fn temp_listener(a: &Socket) -> Result<RawFd> {
    let l = bound(a)?;
    // SAFETY: l is a bound socket of ours.
    unsafe { libc::listen(l, 64) };
    Ok(l)
}

/// The connection of `a` and `b` (each the other's peer), refilled: our fds, close-on-exec.
/// `via`: for TCP, the program's listener on `a`'s address made again (`listener`), or one of
/// ours (`temp_listener`); None: one of ours for this connection alone.
pub fn make(a: &Socket, b: &Socket, via: Option<RawFd>) -> Result<(RawFd, RawFd)> {
    let mut sv = [0; 2];
    if a.family == libc::AF_UNIX {
        // SAFETY: sv has room for two fds.
        check(unsafe { libc::socketpair(libc::AF_UNIX, a.sock_type | libc::SOCK_CLOEXEC, 0, sv.as_mut_ptr()) }, || "socketpair".into())?;
    } else {
        sv = tcp(a, b, via)?;
    }
    // The program's buffer sizes before the refill: a queue that filled the program's larger
    // receive buffer fits in it again.
    for (fd, s) in [(sv[0], a), (sv[1], b)] {
        let _ = super::opts::restore(fd, &s.opts, super::opts::Phase::Early);
    }
    let r = refill(sv[1], sv[0], a).and_then(|_| refill(sv[0], sv[1], b));
    if let Err(e) = r {
        close(sv[0]);
        close(sv[1]);
        return Err(e);
    }
    Ok((sv[0], sv[1]))
}

/// A socket of `s`'s family and type bound to its address with SO_REUSEADDR (the killed tree's
/// connections may linger on it), waiting for the port if it must.
fn bound(s: &Socket) -> Result<RawFd> {
    bound_to(s, &s.name, true)
}

/// `wait`: for a port held by remains of the killed tree's connections that cannot be ended
/// (`timewait`), wait until they are gone; else EADDRINUSE at once.
fn bound_to(s: &Socket, addr: &[u8], wait: bool) -> Result<RawFd> {
    let addr = &here(addr)[..];
    // SAFETY: plain socket creation.
    let fd = check(unsafe { libc::socket(s.family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) }, || "socket".into())?;
    // The options bind depends on (IPV6_V6ONLY above all: a [::] listener beside a 0.0.0.0 one
    // at the same port; SO_REUSEPORT, SO_BINDTODEVICE, IP_FREEBIND) before it, as the
    // single-process restore sets them (`Sockets::early`); the rest are set again later.
    let _ = super::opts::restore(fd, &s.opts, super::opts::Phase::Early);
    let one: i32 = 1;
    let bind = || {
        // SAFETY: an int option on a socket of ours; addr is a sockaddr of its length.
        let r = unsafe {
            libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, (&one as *const i32).cast(), 4);
            libc::bind(fd, addr.as_ptr().cast(), addr.len() as u32)
        };
        if r < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
    };
    let in_use = |r: &std::io::Result<()>| matches!(r, Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE));
    let mut r = bind();
    // The killed tree's ends of its connections hold the port for TCP's TIME_WAIT (60 s), and
    // SO_REUSEADDR does not help where the program had not set it on them (Open MPI's mpirun
    // and orted do not): ended where their peers are on this machine, else waited out.
    if in_use(&r) && super::timewait::clear(s.family, addr) {
        r = bind();
    }
    let start = std::time::Instant::now();
    let mut said = false;
    while wait && in_use(&r) && start.elapsed() < TIME_WAIT {
        if !said {
            crate::say!(
                "ckpt-restart: waiting for {}: the killed program's TCP connections still hold it (TIME_WAIT, at most 60 s)",
                ckpt_image::describe_addr(s.family, addr)
            );
            said = true;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
        r = bind();
    }
    if let Err(e) = r {
        close(fd);
        return Err(Error::Refused(format!("cannot bind {} again (a TCP connection between processes of the tree): {e}", ckpt_image::describe_addr(s.family, addr))));
    }
    Ok(fd)
}

/// How long a port held by the killed tree's connections is waited for: TCP's TIME_WAIT
/// (TCP_TIMEWAIT_LEN, 60 s) and a margin.
const TIME_WAIT: std::time::Duration = std::time::Duration::from_secs(65);

/// A TCP connection from `b`'s address to `a`'s (the server end), through `via` (the program's
/// listener there) or a listener of ours: [a's fd, b's fd].
fn tcp(a: &Socket, b: &Socket, via: Option<RawFd>) -> Result<[RawFd; 2]> {
    let l = match via {
        Some(l) => l,
        None => {
            let l = bound(a)?;
            // SAFETY: l is a bound socket of ours.
            unsafe { libc::listen(l, 1) };
            l
        }
    };
    // The client end's port may still be held by the killed tree's end of the connection
    // (TIME_WAIT, which the program's own SO_REUSEADDR setting decides about, and whose peer's
    // port, the server's, is taken by now: it cannot be ended): then, without waiting, another
    // port of the same address (its getsockname and its peer's getpeername show it).
    let c = match bound_to(b, &b.name, false).or_else(|_| {
        let mut any = b.name.clone();
        any[2..4].copy_from_slice(&[0, 0]);
        let c = bound_to(b, &any, false)?;
        info(&format!("socket {}: its port is still taken (TIME_WAIT): connected again from another port", b.describe()));
        Ok(c)
    }) {
        Ok(c) => c,
        Err(e) => {
            if via.is_none() {
                close(l);
            }
            return Err(e);
        }
    };
    // a's address (at the port of its listener now: one of a step's tasks may have moved) as
    // b's family sees it (an IPv4 client of an IPv6 server's v4-mapped address).
    let to = ckpt_image::inetaddr::in_family(&super::moveport::with_port_of(l, &here(&a.name)), b.family);
    // SAFETY: l and c are sockets of ours; to is a sockaddr of its length.
    let r = unsafe {
        if libc::connect(c, to.as_ptr().cast(), to.len() as u32) == 0 {
            libc::accept4(l, std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_CLOEXEC)
        } else {
            -1
        }
    };
    let e = std::io::Error::last_os_error();
    if via.is_none() {
        close(l);
    }
    if r < 0 {
        close(c);
        return Err(Error::Refused(format!("cannot make the TCP connection {} again: {e}", a.describe())));
    }
    Ok([r, c])
}

/// Queue the unread messages of `to` (our fd `to_fd`) again, sent from `from` (its peer). The
/// bytes filled both buffers at the cut, maybe to the last byte: room is made for the moment
/// as for a drained connection's refill (jobconn: the sender's buffer raised, the receiver's
/// grown and the sender told of it), then the sizes set back.
fn refill(from: RawFd, to_fd: RawFd, to: &Socket) -> Result<()> {
    if to.queue.is_empty() {
        return Ok(());
    }
    let (saved, lowat) = (super::jobconn::raise_sndbuf(from), super::jobconn::grow_rcvbuf(to_fd));
    let r = to.queue.iter().try_for_each(|m| {
        let sent = if to.sock_type == libc::SOCK_STREAM {
            send_stream(from, to_fd, &m.data)
        } else {
            queue::send(from, &m.data, &[], &[]).and_then(|n| if n == m.data.len() { Ok(()) } else { Err(std::io::Error::from_raw_os_error(libc::EMSGSIZE)) })
        };
        sent.map_err(|e| Error::Refused(format!("socket {}: {} unread bytes cannot be queued again ({e})", to.describe(), m.data.len())))
    });
    // An end shut for reading (its peer's FIN had come: a closing state) is shut again by its
    // process, which makes reads end where its queue does: every byte must be in it by then.
    let r = r.and_then(|_| if to.sock_type == libc::SOCK_STREAM && to.family != libc::AF_UNIX && to.shutdown & 1 != 0 { arrived(from, to_fd, to) } else { Ok(()) });
    super::jobconn::restore_sndbuf(from, saved);
    super::jobconn::set_rcvlowat(to_fd, lowat);
    r
}

/// Wait until what `from` sent has all reached its peer `to_fd`'s receive queue (`to`: its
/// socket), telling the sender of the receiver's room.
fn arrived(from: RawFd, to_fd: RawFd, to: &Socket) -> Result<()> {
    let mut idle = 0;
    let outq = || {
        let mut v: i32 = 0;
        // SAFETY: an int out-parameter.
        unsafe { libc::ioctl(from, libc::TIOCOUTQ, &mut v) };
        v
    };
    let mut left = outq();
    while left > 0 {
        if idle >= 2000 {
            return Err(Error::Refused(format!("socket {}: {left} of its unread bytes do not fit in its receive buffer again, before the end of its stream", to.describe())));
        }
        super::jobconn::nudge(to_fd);
        std::thread::sleep(std::time::Duration::from_millis(1));
        let now = outq();
        idle = if now < left { 0 } else { idle + 1 };
        left = now;
    }
    Ok(())
}

/// All of `data` from `from` into its peer `to_fd`'s queue: a full queue is waited for a
/// moment, telling the sender of the receiver's room.
fn send_stream(from: RawFd, to_fd: RawFd, data: &[u8]) -> std::io::Result<()> {
    let (mut off, mut idle) = (0, 0);
    while off < data.len() {
        match queue::send(from, &data[off..], &[], &[]) {
            Ok(n) => {
                off += n;
                idle = 0;
            }
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) && idle < 2000 => {
                super::jobconn::nudge(to_fd);
                idle += 1;
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
