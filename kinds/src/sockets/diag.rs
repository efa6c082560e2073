//! The kernel's sock_diag netlink interface (what `ss` uses, unprivileged): for a UNIX socket,
//! its peer, the sockets waiting in a listener's queue, queue lengths, shutdown state and the
//! file its name created; for TCP and UDP, state, shutdown and queue lengths of every socket
//! (connections not yet accepted included: they have no inode yet; TIME_WAIT remains, which
//! the restore side looks for, see `timewait`).

use crate::sys;

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_DONE: u16 = 3;
const NLMSG_ERROR: u16 = 2;
const TCP_ESTABLISHED: u8 = 1;

/// What sock_diag says about one UNIX socket.
#[derive(Debug, Default, Clone)]
pub struct UnixInfo {
    /// TCP_ESTABLISHED (1), TCP_CLOSE (7) or TCP_LISTEN (10).
    pub state: u8,
    /// Inode and device of the file the socket's name created.
    pub vfs: Option<(u32, u32)>,
    pub peer: u32,
    /// Sockets waiting in a listener's accept queue (0: one whose client closed... or unknown).
    pub icons: Vec<u32>,
    /// Listener: (waiting connections, backlog); others: (unread bytes, bytes in flight).
    pub rqlen: (u32, u32),
    pub shutdown: u8,
}

/// What sock_diag says about one TCP or UDP socket.
#[derive(Debug, Default, Clone)]
pub struct InetInfo {
    pub state: u8,
    pub sport: u16,
    pub dport: u16,
    /// Addresses as 16 bytes (IPv4 in the first 4).
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub rqueue: u32,
    pub wqueue: u32,
    pub inode: u32,
    pub shutdown: u8,
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_ne_bytes([b[o], b[o + 1]])
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

/// Send one request (`body` after the nlmsghdr) and call `each` with every answer message's
/// payload (after its nlmsghdr) until the end (one answer, or NLMSG_DONE for a dump).
fn query(body: &[u8], dump: bool, mut each: impl FnMut(&[u8])) -> Option<()> {
    let s = sys::socket(libc::AF_NETLINK, libc::SOCK_DGRAM, libc::NETLINK_SOCK_DIAG).ok()?;
    let mut req = vec![0u8; 16 + body.len()];
    let total = req.len() as u32;
    req[0..4].copy_from_slice(&total.to_ne_bytes());
    req[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    let flags = libc::NLM_F_REQUEST as u16 | if dump { libc::NLM_F_DUMP as u16 } else { 0 };
    req[6..8].copy_from_slice(&flags.to_ne_bytes());
    req[16..].copy_from_slice(body);
    let mut sa = [0u8; 12];
    sa[0..2].copy_from_slice(&(libc::AF_NETLINK as u16).to_ne_bytes());
    let mut ok = sys::sendto(s, &req, 0, &sa).is_ok();
    let mut buf = vec![0u8; 32 * 1024];
    let mut rounds = 0;
    'outer: while ok && rounds < 10_000 {
        rounds += 1;
        let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        // SAFETY: an all-zero msghdr is valid; it points at iov only.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        let n = match sys::recvmsg(s, &mut msg, 0) {
            Ok(n) => n,
            Err(libc::EINTR) => continue,
            Err(_) => {
                ok = false;
                break;
            }
        };
        let mut off = 0;
        while off + 16 <= n {
            let len = u32_at(&buf, off) as usize;
            let ty = u16_at(&buf, off + 4);
            if len < 16 || off + len > n {
                break 'outer;
            }
            match ty {
                NLMSG_DONE => break 'outer,
                NLMSG_ERROR => {
                    ok = false;
                    break 'outer;
                }
                SOCK_DIAG_BY_FAMILY => each(&buf[off + 16..off + len]),
                _ => {}
            }
            off += (len + 3) & !3;
        }
        if !dump {
            break;
        }
    }
    sys::close(s);
    ok.then_some(())
}

/// Attributes (type, payload) after a fixed header of `skip` bytes.
fn attrs(b: &[u8], skip: usize) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut off = skip;
    while off + 4 <= b.len() {
        let len = u16_at(b, off) as usize;
        let ty = u16_at(b, off + 2);
        if len < 4 || off + len > b.len() {
            break;
        }
        out.push((ty & 0x3fff, &b[off + 4..off + len]));
        off += (len + 3) & !3;
    }
    out
}

/// One UNIX socket by inode. (The kernel finds it by walking every UNIX socket of the network
/// namespace: for many sockets, `unix_all` once is cheaper.)
pub fn unix(ino: u32) -> Option<UnixInfo> {
    let mut out = None;
    query(&unix_request(ino), false, |m| {
        if let Some((i, u)) = unix_info(m) {
            if i == ino {
                out = Some(u);
            }
        }
    })?;
    out
}

/// Every UNIX socket of the network namespace, by inode (one sock_diag dump).
pub fn unix_all() -> Option<std::collections::HashMap<u32, UnixInfo>> {
    let mut out = std::collections::HashMap::new();
    query(&unix_request(0), true, |m| {
        if let Some((i, u)) = unix_info(m) {
            out.insert(i, u);
        }
    })?;
    Some(out)
}

/// The request for UNIX socket `ino` (0: all of them, in a dump), with what `unix_info` reads.
fn unix_request(ino: u32) -> [u8; 24] {
    const SHOW: u32 = 0x2 | 0x4 | 0x8 | 0x10; // VFS, PEER, ICONS, RQLEN
    let mut body = [0u8; 24];
    body[0] = libc::AF_UNIX as u8;
    body[4..8].copy_from_slice(&u32::MAX.to_ne_bytes());
    body[8..12].copy_from_slice(&ino.to_ne_bytes());
    body[12..16].copy_from_slice(&SHOW.to_ne_bytes());
    body[16..24].copy_from_slice(&[0xff; 8]);
    body
}

/// One answer of a UNIX socket: its inode and what it says.
fn unix_info(m: &[u8]) -> Option<(u32, UnixInfo)> {
    if m.len() < 16 {
        return None;
    }
    let mut u = UnixInfo { state: m[2], ..Default::default() };
    for (ty, p) in attrs(m, 16) {
        match ty {
            1 if p.len() >= 8 => u.vfs = Some((u32_at(p, 0), u32_at(p, 4))),
            2 if p.len() >= 4 => u.peer = u32_at(p, 0),
            3 => u.icons = p.chunks_exact(4).map(|c| u32_at(c, 0)).collect(),
            4 if p.len() >= 8 => u.rqlen = (u32_at(p, 0), u32_at(p, 4)),
            6 if !p.is_empty() => u.shutdown = p[0],
            _ => {}
        }
    }
    Some((u32_at(m, 4), u))
}

/// The connections waiting in the queue of the UNIX listener named `name` (sun_path bytes):
/// (the inode of each one's client, 0 if it has gone; the bytes the client sent into it). These
/// sockets have no inode of their own yet, so the whole table is read.
pub fn unix_waiting(name: &[u8]) -> Vec<(u32, u32)> {
    const SHOW: u32 = 0x1 | 0x4 | 0x10; // NAME, PEER, RQLEN
    let mut body = [0u8; 24];
    body[0] = libc::AF_UNIX as u8;
    body[4..8].copy_from_slice(&(1u32 << TCP_ESTABLISHED).to_ne_bytes());
    body[12..16].copy_from_slice(&SHOW.to_ne_bytes());
    body[16..24].copy_from_slice(&[0xff; 8]);
    let mut out = Vec::new();
    let _ = query(&body, true, |m| {
        if m.len() < 16 || u32_at(m, 4) != 0 {
            return;
        }
        let (mut named, mut peer, mut rq) = (false, 0, 0);
        for (ty, p) in attrs(m, 16) {
            match ty {
                0 => named = p == name,
                2 if p.len() >= 4 => peer = u32_at(p, 0),
                4 if p.len() >= 8 => rq = u32_at(p, 0),
                _ => {}
            }
        }
        if named {
            out.push((peer, rq));
        }
    });
    out
}

/// Every socket of `protocol` (IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE) and `family`.
pub fn inet_all(family: i32, protocol: i32) -> Vec<InetInfo> {
    let mut body = [0u8; 56];
    body[0] = family as u8;
    body[1] = protocol as u8;
    body[4..8].copy_from_slice(&u32::MAX.to_ne_bytes());
    body[48..56].copy_from_slice(&[0xff; 8]);
    let mut out = Vec::new();
    let _ = query(&body, true, |m| {
        if m.len() < 72 {
            return;
        }
        let mut i = InetInfo {
            state: m[1],
            sport: u16::from_be_bytes([m[4], m[5]]),
            dport: u16::from_be_bytes([m[6], m[7]]),
            rqueue: u32_at(m, 56),
            wqueue: u32_at(m, 60),
            inode: u32_at(m, 68),
            ..Default::default()
        };
        i.src.copy_from_slice(&m[8..24]);
        i.dst.copy_from_slice(&m[24..40]);
        for (ty, p) in attrs(m, 72) {
            if ty == 8 && !p.is_empty() {
                i.shutdown = p[0];
            }
        }
        out.push(i);
    });
    out
}

/// The rings of packet socket `ino` (PACKET_SHOW_INFO for the version, PACKET_SHOW_RING_CFG
/// for the rings; the kernel answers dumps only, of every packet socket of the network
/// namespace): Some(None) when the socket has none. None: sock_diag does not answer for packet
/// sockets (a kernel without packet_diag).
pub fn packet_rings(ino: u32) -> Option<Option<ckpt_image::PacketRings>> {
    const SHOW: u32 = 0x1 | 0x4; // INFO, RING_CFG
    let mut body = [0u8; 20];
    body[0] = libc::AF_PACKET as u8;
    body[4..8].copy_from_slice(&ino.to_ne_bytes());
    body[8..12].copy_from_slice(&SHOW.to_ne_bytes());
    let mut out = None;
    query(&body, true, |m| {
        if m.len() < 16 || u32_at(m, 4) != ino {
            return;
        }
        let mut r = ckpt_image::PacketRings::default();
        for (ty, p) in attrs(m, 16) {
            match ty {
                0 if p.len() >= 8 => r.version = u32_at(p, 4),
                2 | 3 if p.len() >= 28 => {
                    let q = ckpt_image::RingReq {
                        block_size: u32_at(p, 0),
                        block_nr: u32_at(p, 4),
                        frame_size: u32_at(p, 8),
                        frame_nr: u32_at(p, 12),
                        retire_tmo: u32_at(p, 16),
                        sizeof_priv: u32_at(p, 20),
                        features: u32_at(p, 24),
                    };
                    if ty == 2 { r.rx = Some(q) } else { r.tx = Some(q) }
                }
                _ => {}
            }
        }
        if r.rx.is_some() || r.tx.is_some() {
            out = Some(r);
        }
    })?;
    Some(out)
}
