//! What kernel objects behind fds hold, read at checkpoint time with the world stopped: unread
//! bytes in sockets (MSG_PEEK), copied without consuming them, socket addresses and roles, and
//! eventfd/timerfd/signalfd/epoll/inotify state (fdinfo). The kinds moved to the
//! ckpt-kinds crate (capture and restore side by side) are read there.
//! Raw system calls only; allocations go to the checkpoint's scratch arena.

use crate::sys::{self, syscall};
use ckpt_image::{EpollEntry, FdKind, InotifyWatch};

fn sockopt(fd: i32, opt: i32) -> Option<i32> {
    let mut v: i32 = 0;
    let mut len: u32 = 4;
    syscall!(libc::SYS_getsockopt, fd, libc::SOL_SOCKET, opt, &mut v as *mut i32, &mut len as *mut u32).ok()?;
    Some(v)
}

/// A socket: its role decides how it comes back (see FdKind).
pub fn socket(fd: i32, ino: u64) -> Option<FdKind> {
    let family = sockopt(fd, libc::SO_DOMAIN)?;
    let sock_type = sockopt(fd, libc::SO_TYPE)?;
    let protocol = sockopt(fd, libc::SO_PROTOCOL).unwrap_or(0);
    let listening = sockopt(fd, libc::SO_ACCEPTCONN).unwrap_or(0) != 0;
    let mut addr = [0u8; 128];
    let mut alen: u32 = addr.len() as u32;
    let named = syscall!(libc::SYS_getsockname, fd, addr.as_mut_ptr(), &mut alen as *mut u32).is_ok();
    let addr = &addr[..(alen as usize).min(128)];
    let mut paddr = [0u8; 128];
    let mut plen: u32 = paddr.len() as u32;
    let connected = syscall!(libc::SYS_getpeername, fd, paddr.as_mut_ptr(), &mut plen as *mut u32).is_ok();
    if family == libc::AF_UNIX && !listening {
        let peer = unix_peer(ino as u32).unwrap_or(0);
        if peer != 0 || connected {
            return Some(FdKind::UnixPair { ino, peer: peer as u64, sock_type, queue: peek_queue(fd, sock_type) });
        }
    }
    let bound = named && addr_has_name(family, addr);
    if listening || (bound && !connected && sock_type != libc::SOCK_STREAM) {
        return Some(FdKind::Bound { family, sock_type, protocol, addr: addr.to_vec(), listening, opts: int_options(fd, family) });
    }
    let queue = if connected { peek_queue(fd, sock_type) } else { Vec::new() };
    Some(FdKind::Closed { family, sock_type, queue })
}

/// Integer socket options that change how a bound socket behaves (IPV6_V6ONLY must be set
/// before bind).
const OPTIONS: [(i32, i32); 6] = [
    (libc::SOL_SOCKET, libc::SO_REUSEADDR),
    (libc::SOL_SOCKET, libc::SO_REUSEPORT),
    (libc::SOL_SOCKET, libc::SO_KEEPALIVE),
    (libc::SOL_SOCKET, libc::SO_BROADCAST),
    (libc::IPPROTO_TCP, libc::TCP_NODELAY),
    (libc::IPPROTO_IPV6, libc::IPV6_V6ONLY),
];

fn int_options(fd: i32, family: i32) -> Vec<(i32, i32, i32)> {
    let mut out = Vec::new();
    for (level, name) in OPTIONS {
        if (level == libc::IPPROTO_IPV6 && family != libc::AF_INET6) || (level == libc::IPPROTO_TCP && family == libc::AF_UNIX) {
            continue;
        }
        let mut v: i32 = 0;
        let mut len: u32 = 4;
        if syscall!(libc::SYS_getsockopt, fd, level, name, &mut v as *mut i32, &mut len as *mut u32).is_ok() {
            out.push((level, name, v));
        }
    }
    out
}

/// Whether getsockname's address names something (a port, a path or an abstract name).
fn addr_has_name(family: i32, addr: &[u8]) -> bool {
    match family {
        libc::AF_INET | libc::AF_INET6 => addr.len() >= 4 && (addr[2] != 0 || addr[3] != 0),
        libc::AF_UNIX => addr.len() > 2,
        _ => false,
    }
}

/// The messages in a socket's receive queue, read with MSG_PEEK at a moving peek offset
/// (SO_PEEK_OFF), so the queue itself is left as it is.
fn peek_queue(fd: i32, sock_type: i32) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let zero: i32 = 0;
    if syscall!(libc::SYS_setsockopt, fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, &zero as *const i32, 4).is_err() {
        return out;
    }
    let mut buf = vec![0u8; 1 << 16];
    for _ in 0..100_000 {
        match syscall!(libc::SYS_recvfrom, fd, buf.as_mut_ptr(), buf.len(), libc::MSG_PEEK | libc::MSG_DONTWAIT, 0, 0) {
            Ok(0) if sock_type == libc::SOCK_STREAM => break,
            Ok(n) => out.push(buf[..n as usize].to_vec()),
            Err(libc::EINTR) => continue,
            Err(_) => break,
        }
    }
    let off: i32 = -1;
    let _ = syscall!(libc::SYS_setsockopt, fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, &off as *const i32, 4);
    if sock_type == libc::SOCK_STREAM && out.len() > 1 {
        let all: Vec<u8> = out.concat();
        return vec![all];
    }
    out
}

/// The inode of a UNIX socket's peer, from the sock_diag netlink interface (UDIAG_SHOW_PEER).
fn unix_peer(ino: u32) -> Option<u32> {
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const UDIAG_SHOW_PEER: u32 = 4;
    const UNIX_DIAG_PEER: u16 = 2;
    let s = syscall!(libc::SYS_socket, libc::AF_NETLINK, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, libc::NETLINK_SOCK_DIAG).ok()? as i32;
    // nlmsghdr (16) + unix_diag_req (24).
    let mut req = [0u8; 40];
    req[0..4].copy_from_slice(&40u32.to_ne_bytes());
    req[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req[6..8].copy_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    req[16] = libc::AF_UNIX as u8;
    req[20..24].copy_from_slice(&u32::MAX.to_ne_bytes()); // all states
    req[24..28].copy_from_slice(&ino.to_ne_bytes());
    req[28..32].copy_from_slice(&UDIAG_SHOW_PEER.to_ne_bytes());
    req[32..40].copy_from_slice(&[0xff; 8]); // no cookie
    let mut sa = [0u8; 12];
    sa[0..2].copy_from_slice(&(libc::AF_NETLINK as u16).to_ne_bytes());
    let sent = syscall!(libc::SYS_sendto, s, req.as_ptr(), req.len(), 0, sa.as_ptr(), sa.len());
    let mut buf = [0u8; 512];
    let got = if sent.is_ok() { syscall!(libc::SYS_recvfrom, s, buf.as_mut_ptr(), buf.len(), 0, 0, 0) } else { Err(0) };
    sys::close(s);
    let n = (got.ok()? as usize).min(buf.len());
    // nlmsghdr (16) + unix_diag_msg (16), then rtattrs {len u16, type u16, payload}.
    let msg_type = u16::from_ne_bytes([buf[4], buf[5]]);
    if n < 32 || msg_type != SOCK_DIAG_BY_FAMILY {
        return None;
    }
    let mut off = 32;
    while off + 4 <= n {
        let len = u16::from_ne_bytes([buf[off], buf[off + 1]]) as usize;
        let ty = u16::from_ne_bytes([buf[off + 2], buf[off + 3]]);
        if len < 4 {
            break;
        }
        if ty == UNIX_DIAG_PEER && len >= 8 && off + 8 <= n {
            return Some(u32::from_ne_bytes(buf[off + 4..off + 8].try_into().ok()?));
        }
        off += (len + 3) & !3;
    }
    Some(0)
}

/// Parse a hex or decimal number after `key` in `s` (first occurrence).
fn field(s: &str, key: &str, radix: u32) -> Option<u64> {
    let i = s.find(key)? + key.len();
    let v = s[i..].trim_start();
    let end = v.find(|c: char| !c.is_digit(radix)).unwrap_or(v.len());
    u64::from_str_radix(&v[..end], radix).ok()
}

/// eventfd, timerfd, signalfd, epoll and inotify, from fdinfo (and timerfd_gettime).
pub fn anon(fd: i32, link: &[u8], info: &[u8]) -> Option<FdKind> {
    let s = std::str::from_utf8(info).ok()?;
    match link {
        b"anon_inode:[eventfd]" => Some(FdKind::EventFd {
            count: field(s, "eventfd-count:", 16)?,
            semaphore: field(s, "eventfd-semaphore:", 10).unwrap_or(0) != 0,
        }),
        b"anon_inode:[timerfd]" => {
            let mut its = [0i64; 4];
            syscall!(libc::SYS_timerfd_gettime, fd, its.as_mut_ptr()).ok()?;
            Some(FdKind::TimerFd {
                clockid: field(s, "clockid:", 10)? as i32,
                interval_ns: (its[0] * 1_000_000_000 + its[1]) as u64,
                value_ns: (its[2] * 1_000_000_000 + its[3]) as u64,
                ticks: field(s, "ticks:", 10).unwrap_or(0),
            })
        }
        b"anon_inode:[signalfd]" => Some(FdKind::SignalFd { mask: field(s, "sigmask:", 16)? }),
        b"anon_inode:[eventpoll]" => Some(FdKind::Epoll {
            entries: s
                .lines()
                .filter(|l| l.starts_with("tfd:"))
                .filter_map(|l| {
                    Some(EpollEntry { fd: field(l, "tfd:", 10)? as i32, events: field(l, "events:", 16)? as u32, data: field(l, "data:", 16)? })
                })
                .collect(),
        }),
        b"anon_inode:inotify" => Some(FdKind::Inotify {
            watches: s
                .lines()
                .filter(|l| l.starts_with("inotify wd:"))
                .filter_map(|l| {
                    let ino = field(l, " ino:", 16)?;
                    let sdev = field(l, "sdev:", 16)?;
                    Some(InotifyWatch {
                        wd: field(l, "wd:", 16)? as i32,
                        mask: field(l, "mask:", 16)? as u32,
                        path: crate::fdhooks::watch_path(ino, sdev),
                    })
                })
                .collect(),
        }),
        _ => None,
    }
}
