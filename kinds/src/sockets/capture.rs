//! Capture of one socket (runtime side, with the program's threads stopped): family, type,
//! addresses, state, shutdown bits, options, filter, unread messages with their senders and
//! in-flight files, a listener's waiting connections, the file a UNIX name created.
//! Whether a peer is one of the program's own sockets is decided at restart, when every fd is
//! known.

use ckpt_image::inetaddr::same_inet;
use super::{diag, opts, queue};
use crate::sys;
use ckpt_image::{Pending, SockFile, SockState, Socket};

const TCP_ESTABLISHED: u8 = 1;
const TCP_SYN_SENT: u8 = 2;
const TCP_SYN_RECV: u8 = 3;
const TCP_CLOSE: u8 = 7;
const TCP_CLOSE_WAIT: u8 = 8;
const TCP_LISTEN: u8 = 10;
const SOL_NETLINK: i32 = 270;
const NETLINK_LIST_MEMBERSHIPS: i32 = 9;

/// What one checkpoint learns once for all its sockets.
#[derive(Default)]
pub struct Context {
    /// sock_diag dumps of TCP/UDP/UDP-lite sockets, by (family, protocol).
    inet: Vec<((i32, i32), Vec<diag::InetInfo>)>,
    /// Sockets (by inode) that another process of the tree also holds and whose unread
    /// messages it captures: peeking one queue from two processes at once would move each
    /// other's peek offset (SO_PEEK_OFF is the socket's), so only one of them reads it.
    elsewhere: Vec<u64>,
    /// UNIX listeners (by inode) whose waiting connections were read and queued again at the
    /// cut (requeue.rs), with those connections in queue order.
    requeued: Vec<(u64, Vec<Pending>)>,
    /// UNIX sockets asked about so far, and every UNIX socket (by inode) once several were: a
    /// query by inode walks all of them in the kernel, so a process holding hundreds (a tree
    /// whose processes all inherited them) reads the table once instead.
    unix_asked: u32,
    unix_table: Option<std::collections::HashMap<u32, diag::UnixInfo>>,
}

impl Context {
    /// A context for a checkpoint in which the queues of sockets `elsewhere` are captured by
    /// another process of the tree (see the field).
    pub fn with_queues_elsewhere(mut elsewhere: Vec<u64>) -> Context {
        elsewhere.sort_unstable();
        elsewhere.dedup();
        Context { elsewhere, ..Context::default() }
    }

    /// Before any socket is captured: the bytes in the waiting connections of the program's
    /// UNIX listeners, where they can be read (see requeue.rs; this queues them again).
    pub fn requeue_waiting(&mut self, held: &[super::requeue::Held], bind_dir: &dyn Fn(u64) -> Option<Vec<u8>>, epolled: &dyn Fn(u64) -> bool) {
        self.requeued = super::requeue::waiting(held, bind_dir, epolled);
    }

    /// Whether socket `fd` (inode `ino`) is described in full by another process of the tree
    /// and only named by this one (`FdKind::TreeSocket`): a UNIX socket without a name (a
    /// socketpair's end, one never bound) that a process with a lower pid holds too (the lowest
    /// holder describes it, its queue with it). Named ones are described by each holder (their
    /// files and bind directories are seen from each). `domain`: the socket's SO_DOMAIN, which
    /// the caller asked already.
    pub fn described_elsewhere(&self, fd: i32, ino: u64, domain: Option<i32>) -> bool {
        self.elsewhere.binary_search(&ino).is_ok()
            && domain == Some(libc::AF_UNIX)
            && sys::sock_addr(fd, false).len() <= std::mem::size_of::<libc::sa_family_t>()
    }

    /// The unread messages of socket `fd` (`s`), or none when another process captures them.
    fn queue(&self, fd: i32, s: &Socket, offset: bool, inflight: &mut dyn FnMut(i32) -> i32) -> (Vec<ckpt_image::Message>, bool) {
        if self.elsewhere.binary_search(&s.ino).is_ok() {
            return (Vec::new(), true);
        }
        queue::capture(fd, s.sock_type, offset, inflight)
    }

    fn inet(&mut self, family: i32, protocol: i32) -> &[diag::InetInfo] {
        let key = (family, protocol);
        if let Some(i) = self.inet.iter().position(|e| e.0 == key) {
            return &self.inet[i].1;
        }
        self.inet.push((key, diag::inet_all(family, protocol)));
        &self.inet.last().expect("just pushed").1
    }

    /// The socket `fd` (inode `ino`). `bind_dir` is the working directory a UNIX socket was
    /// bound in (for a relative name), as the runtime recorded it; `inflight` describes a file
    /// passed with SCM_RIGHTS and not yet received (see queue::capture). None: not a socket
    /// we know how to describe.
    pub fn socket(&mut self, fd: i32, ino: u64, bind_dir: Option<Vec<u8>>, inflight: &mut dyn FnMut(i32) -> i32) -> Option<Socket> {
        let family = sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN).ok()?;
        let sock_type = sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE).ok()?;
        let protocol = sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL).unwrap_or(0);
        let listening = sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN).unwrap_or(0) != 0;
        let mut s = Socket {
            ino,
            family,
            sock_type,
            protocol,
            name: sys::sock_addr(fd, false),
            peer_name: sys::sock_addr(fd, true),
            opts: opts::capture(fd, family),
            filter: opts::capture_filter(fd),
            ..Default::default()
        };
        match family {
            libc::AF_UNIX => self.unix(fd, &mut s, listening, bind_dir, inflight),
            libc::AF_INET | libc::AF_INET6 => self.inet_socket(fd, &mut s, listening, inflight),
            libc::AF_NETLINK | libc::AF_PACKET => {
                s.state = if s.peer_name.iter().skip(4).any(|&b| b != 0) { SockState::Connected } else { SockState::Unconnected };
                if family == libc::AF_NETLINK {
                    s.groups = netlink_groups(fd);
                } else {
                    s.ring = super::ring::capture(fd, ino, &mut s.lost);
                }
                let (q, _) = queue::capture(fd, sock_type, false, inflight);
                if !q.is_empty() {
                    s.lost = "unread messages (they came from the kernel and cannot be sent again)".into();
                }
            }
            _ => return None,
        }
        Some(s)
    }

    /// What sock_diag says of UNIX socket `ino`.
    fn unix_info(&mut self, ino: u32) -> diag::UnixInfo {
        self.unix_asked += 1;
        if self.unix_table.is_none() && self.unix_asked > 8 {
            self.unix_table = diag::unix_all();
        }
        // (Not in the table: made since it was read; asked alone.)
        match self.unix_table.as_ref().and_then(|t| t.get(&ino)) {
            Some(d) => d.clone(),
            None => diag::unix(ino).unwrap_or_default(),
        }
    }

    fn unix(&mut self, fd: i32, s: &mut Socket, listening: bool, bind_dir: Option<Vec<u8>>, inflight: &mut dyn FnMut(i32) -> i32) {
        let d = self.unix_info(s.ino as u32);
        s.shutdown = d.shutdown;
        s.peer = d.peer as u64;
        if listening || d.state == TCP_LISTEN {
            s.state = SockState::Listening;
            s.backlog = d.rqlen.1;
            // The waiting sockets have no inode yet: found by the listener's name, with their
            // clients' inodes.
            if let Some((_, p)) = self.requeued.iter().find(|r| r.0 == s.ino) {
                s.pending = p.clone();
            } else if !d.icons.is_empty() && s.name.len() > 2 {
                s.pending = diag::unix_waiting(&s.name[2..]).into_iter().map(|(client, unread)| Pending { ino: client as u64, unread, ..Pending::default() }).collect();
            }
            while s.pending.len() < d.icons.len() {
                s.pending.push(Pending::default());
            }
        } else {
            // A datagram server is "established" once a client connects to it: only a peer counts.
            let connected = if s.sock_type == libc::SOCK_DGRAM { s.peer != 0 || !s.peer_name.is_empty() } else { d.state == TCP_ESTABLISHED };
            s.state = if connected { SockState::Connected } else { SockState::Unconnected };
            // A stream client whose connection waits in a listener's queue (its peer has no
            // inode yet; all shutdown bits are set when the peer has gone instead): what it sent
            // into that connection cannot be read, but the kernel counts it for the client.
            if connected && s.peer == 0 && s.sock_type != libc::SOCK_DGRAM && d.shutdown != 3 {
                s.unsent = d.rqlen.1;
            }
            let (q, complete) = self.queue(fd, s, true, inflight);
            s.queue = q;
            if !complete {
                s.lost = "a message too large to save".into();
            }
            if connected {
                s.peer_cred = super::peercred::capture(fd);
            }
        }
        // A path name (not abstract, not unnamed): how its file stands now.
        if s.name.len() > 2 && s.name[2] != 0 {
            let path: Vec<u8> = s.name[2..].iter().take_while(|&&b| b != 0).copied().collect();
            let relative = !path.starts_with(b"/");
            if relative {
                s.bind_dir = bind_dir.unwrap_or_default();
            }
            let full = if relative && !s.bind_dir.is_empty() { [&s.bind_dir[..], b"/", &path[..]].concat() } else { path };
            s.file = match std::ffi::CString::new(full).ok().map(|c| sys::stat(&c, false)) {
                Some(Ok(st)) if d.vfs.is_some_and(|v| v.0 as u64 == st.st_ino) => {
                    SockFile::Present { mode: st.st_mode & 0o7777, uid: st.st_uid, gid: st.st_gid }
                }
                Some(Ok(_)) => SockFile::Replaced,
                _ => SockFile::Deleted,
            };
        }
    }

    fn inet_socket(&mut self, fd: i32, s: &mut Socket, listening: bool, inflight: &mut dyn FnMut(i32) -> i32) {
        let diag_proto = match (s.sock_type, s.protocol) {
            (libc::SOCK_STREAM, _) => Some(libc::IPPROTO_TCP),
            (libc::SOCK_DGRAM, libc::IPPROTO_UDP | libc::IPPROTO_UDPLITE) => Some(s.protocol),
            _ => None,
        };
        let family = s.family;
        let info = diag_proto.and_then(|p| self.inet(family, p).iter().find(|i| i.inode as u64 == s.ino).cloned());
        let state = info.as_ref().map_or(if s.peer_name.is_empty() { TCP_CLOSE } else { TCP_ESTABLISHED }, |i| i.state);
        if let Some(i) = &info {
            s.shutdown = i.shutdown;
        }
        if listening || state == TCP_LISTEN {
            s.state = SockState::Listening;
            s.backlog = info.as_ref().map_or(libc::SOMAXCONN as u32, |i| i.wqueue);
            let (port, ip) = inet_addr(&s.name);
            // Connections not yet accepted: established sockets on the listener's address
            // that have no inode yet.
            s.pending = self
                .inet(family, libc::IPPROTO_TCP)
                .iter()
                .filter(|c| c.inode == 0 && matches!(c.state, TCP_ESTABLISHED | TCP_SYN_RECV | TCP_CLOSE_WAIT))
                .filter(|c| c.sport == port && (ip.iter().all(|&b| b == 0) || c.src[..ip.len()] == ip[..]))
                .map(|c| Pending { from: sockaddr(family, &c.dst, c.dport), unread: c.rqueue, ..Pending::default() })
                .collect();
            return;
        }
        // A TCP connection that has ended (both directions shut, or reset) with the program
        // still holding its socket: the kernel marks it done (sk_shutdown both ways, TCP_CLOSE)
        // and gives reads EOF; its port may be held by its TIME_WAIT remains for a minute.
        // (sock_diag does not list a closed socket: then TCP_INFO and SO_PEERNAME tell.)
        let ended = s.sock_type == libc::SOCK_STREAM && state == TCP_CLOSE && info.as_ref().map_or_else(|| tcp_ended(fd), |i| i.shutdown == 3);
        if ended {
            // getpeername refuses a closed socket; SO_PEERNAME still names the peer it had.
            if s.peer_name.is_empty() {
                s.peer_name = ended_peer(fd);
            }
            // (The kernel shuts both directions of a connection that ends.)
            s.shutdown = 3;
        }
        s.state = match state {
            _ if ended => SockState::PeerGone,
            TCP_CLOSE | TCP_SYN_SENT => SockState::Unconnected,
            _ if s.sock_type == libc::SOCK_STREAM && s.peer_name.is_empty() => SockState::PeerGone,
            _ if s.peer_name.is_empty() => SockState::Unconnected,
            _ => SockState::Connected,
        };
        if s.sock_type == libc::SOCK_STREAM && state != TCP_CLOSE {
            s.unsent = not_sent(fd);
        }
        if state == TCP_CLOSE_WAIT && s.sock_type == libc::SOCK_STREAM {
            s.shutdown |= 1; // the peer said it sends no more
        }
        if diag_proto.is_none() {
            // Ping and raw sockets: what they receive comes from the network.
            let (q, _) = queue::capture(fd, s.sock_type, false, inflight);
            if !q.is_empty() {
                s.lost = "unread packets (they came from the network and cannot be sent again)".into();
            }
            return;
        }
        let (q, complete) = self.queue(fd, s, true, inflight);
        s.queue = q;
        if !complete {
            s.lost = "a datagram too large to save".into();
        }
    }
}

/// Bytes of a TCP socket's send queue not sent yet (sent ones are in the peer's queue or on
/// their way: on loopback, in the peer's queue).
/// Whether the TCP socket `fd`, not listed by sock_diag, is a connection that has ended: in
/// TCP_CLOSE (TCP_INFO's first byte) with a peer address still recorded (SO_PEERNAME answers
/// for a closed socket that was connected; never-connected ones have none).
fn tcp_ended(fd: i32) -> bool {
    let mut info = [0u8; 232];
    let mut len = info.len() as libc::socklen_t;
    // SAFETY: info has room for len bytes.
    let r = unsafe { libc::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_INFO, info.as_mut_ptr().cast(), &mut len) };
    if r != 0 || len == 0 || info[0] != TCP_CLOSE {
        return false;
    }
    // (The kernel refuses a buffer longer than the address: ask for its family only.)
    let mut peer = [0u8; 2];
    let mut plen = peer.len() as libc::socklen_t;
    // SAFETY: peer has room for plen bytes.
    unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_PEERNAME, peer.as_mut_ptr().cast(), &mut plen) == 0 }
}

/// The peer address a closed TCP socket had (SO_PEERNAME; empty if none).
fn ended_peer(fd: i32) -> Vec<u8> {
    let mut a = [0u8; 128];
    // (The kernel refuses a buffer longer than the address: the family's length.)
    let len = match sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN) {
        Ok(libc::AF_INET6) => 28,
        _ => 16,
    };
    match sys::getsockopt(fd, libc::SOL_SOCKET, libc::SO_PEERNAME, &mut a[..len]) {
        Ok(n) => a[..n.min(len)].to_vec(),
        Err(_) => Vec::new(),
    }
}

fn not_sent(fd: i32) -> u32 {
    const SIOCOUTQNSD: u64 = 0x894b;
    sys::ioctl_int(fd, SIOCOUTQNSD).unwrap_or(0).max(0) as u32
}

/// (port, address bytes) of a raw inet sockaddr.
pub fn inet_addr(a: &[u8]) -> (u16, Vec<u8>) {
    let port = if a.len() >= 4 { u16::from_be_bytes([a[2], a[3]]) } else { 0 };
    let ip = match a.len() {
        n if n >= 24 && u16::from_ne_bytes([a[0], a[1]]) == libc::AF_INET6 as u16 => a[8..24].to_vec(),
        n if n >= 8 => a[4..8].to_vec(),
        _ => Vec::new(),
    };
    (port, ip)
}

/// A raw sockaddr_in / sockaddr_in6 for a sock_diag address.
pub(super) fn sockaddr(family: i32, ip: &[u8; 16], port: u16) -> Vec<u8> {
    if family == libc::AF_INET {
        let mut a = vec![0u8; 16];
        a[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        a[2..4].copy_from_slice(&port.to_be_bytes());
        a[4..8].copy_from_slice(&ip[..4]);
        a
    } else {
        let mut a = vec![0u8; 28];
        a[0..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        a[2..4].copy_from_slice(&port.to_be_bytes());
        a[8..24].copy_from_slice(ip);
        a
    }
}

/// The netlink multicast groups a socket joined (a bitmap, 32 groups per word).
fn netlink_groups(fd: i32) -> Vec<u32> {
    let mut buf = [0u8; 128];
    let n = sys::getsockopt(fd, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, &mut buf).unwrap_or(0);
    let mut g: Vec<u32> = buf[..n].chunks_exact(4).map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]])).collect();
    while g.last() == Some(&0) {
        g.pop();
    }
    g
}


/// TCP connections with both ends in the program (`socks`: (fd, socket) of every socket):
/// bytes one end sent that the other has not received yet stay in the sender's send queue,
/// which cannot be read (TCP_REPAIR needs privileges). They are moved into the receiver by
/// reading the receiver's queue to the end (the sender's bytes follow as it empties), then
/// written back through the sender at once, before any thread of the program runs again: the
/// program sees the same bytes, in the same order, once; the receiver's saved queue is all of
/// them. If they cannot all be written back, what is missing is said in `lost`.
pub fn settle_tcp_pairs(socks: &mut [(i32, &mut Socket)]) {
    for i in 0..socks.len() {
        let s = &socks[i].1;
        if s.unsent == 0 || s.sock_type != libc::SOCK_STREAM || s.state != SockState::Connected || s.shutdown & 2 != 0 {
            continue;
        }
        let ends = |x: &Socket| (x.name == s.peer_name && x.peer_name == s.name) || (same_inet(&x.name, &s.peer_name) && same_inet(&x.peer_name, &s.name));
        let Some(j) = (0..socks.len()).find(|&j| j != i && ends(socks[j].1)) else { continue };
        if socks[j].1.shutdown & 1 != 0 {
            continue;
        }
        let (a, b) = (socks[i].0, socks[j].0);
        let (data, missing) = move_unsent(a, b);
        socks[j].1.queue = if data.is_empty() { Vec::new() } else { vec![ckpt_image::Message { data, ..Default::default() }] };
        socks[i].1.unsent = 0;
        if missing > 0 {
            socks[i].1.lost = format!("{missing} bytes it sent to its peer in the program could not be put back in the connection at checkpoint time");
        }
    }
}

fn pause_ms(ms: u64) {
    let ts = libc::timespec { tv_sec: 0, tv_nsec: (ms * 1_000_000) as i64 };
    // SAFETY: a plain nanosleep.
    unsafe { libc::syscall(libc::SYS_nanosleep, &ts as *const libc::timespec, 0) };
}

/// Read `b`'s queue to the end while `a` sends what it holds; write it all back through `a`.
/// (the bytes, how many could not be written back).
fn move_unsent(a: i32, b: i32) -> (Vec<u8>, usize) {
    let mut data = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut idle = 0;
    while idle < 500 {
        // SAFETY: buf is a valid buffer of its length.
        let n = unsafe { libc::syscall(libc::SYS_recvfrom, b, buf.as_mut_ptr(), buf.len(), libc::MSG_DONTWAIT, 0, 0) };
        if n > 0 {
            data.extend_from_slice(&buf[..n as usize]);
            idle = 0;
            continue;
        }
        // Everything the sender holds is acknowledged: it is all in the receiver's queue (a
        // byte sent but not yet queued there would come after what we write back).
        if n == 0 || sys::ioctl_int(a, libc::TIOCOUTQ).unwrap_or(0) == 0 {
            break;
        }
        idle += 1;
        pause_ms(1);
    }
    let mut off = 0;
    idle = 0;
    while off < data.len() && idle < 2000 {
        match sys::sendto(a, &data[off..], libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL, &[]) {
            Ok(n) if n > 0 => {
                off += n;
                idle = 0;
            }
            _ => {
                idle += 1;
                pause_ms(1);
            }
        }
    }
    let missing = data.len() - off;
    (data, missing)
}
