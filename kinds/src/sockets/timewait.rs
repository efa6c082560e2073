//! The TIME_WAIT remains of the killed program's TCP connections, which hold its ports for a
//! minute (TCP_TIMEWAIT_LEN) after the kill: a remain that the program's socket left without
//! SO_REUSEADDR makes every bind of its address fail with EADDRINUSE, whatever the new
//! socket's SO_REUSEADDR says (the kernel wants it on both). `clear` ends the remains on an
//! address where their peer's address is on this machine, unprivileged, with what RFC 1337
//! calls TIME-WAIT assassination: a socket bound at the peer's address connects to the remain;
//! the remain answers the SYN with an ACK of the old connection, which our connecting socket
//! refuses with a RST of exactly the sequence number the remain expects, and a remain that gets
//! such a RST is gone at once (unless net.ipv4.tcp_rfc1337 is 1). Remains whose peer is on
//! another machine, or whose peer's port is taken, stay: the caller waits or refuses as before.
//! `wait_gone` waits those out (a step's task restarted on its node right after the kill, whose
//! peers were on other nodes), with the other remains of closed connections (FIN_WAIT1,
//! FIN_WAIT2, CLOSING, LAST_ACK), where nothing else holds the port.

use super::diag::{self, InetInfo};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

const TCP_TIME_WAIT: u8 = 6;

/// The states of a connection its program has closed that end by themselves: FIN_WAIT1,
/// FIN_WAIT2, TIME_WAIT, LAST_ACK, CLOSING.
const CLOSED_BY_ITS_PROGRAM: [u8; 5] = [4, 5, TCP_TIME_WAIT, 9, 11];

/// How long `wait_gone` waits: TCP's TIME_WAIT (TCP_TIMEWAIT_LEN, 60 s; an orphan's FIN_WAIT2,
/// net.ipv4.tcp_fin_timeout, 60 s by default) and a margin.
const WAIT: Duration = Duration::from_secs(65);

/// Every TCP socket of this network namespace (of either family) whose local address conflicts
/// with binding `ip` (4 or 16 bytes) at `port`.
fn holding(port: u16, ip: &[u8]) -> Vec<(i32, InetInfo)> {
    [libc::AF_INET, libc::AF_INET6]
        .into_iter()
        .flat_map(|f| diag::inet_all(f, libc::IPPROTO_TCP).into_iter().map(move |i| (f, i)))
        .filter(|(f, i)| i.sport == port && (same_ip(ip, *f, &i.src) || i.src.iter().all(|&b| b == 0)))
        .collect()
}

/// Wait (at most `WAIT`, said in one line) until the sockets that hold `addr` (a sockaddr_in or
/// sockaddr_in6 of `family`, to be bound by a TCP listener) are gone, where every one of them
/// is a connection the killed program closed (a state in `CLOSED_BY_ITS_PROGRAM`): true once
/// none is left. False at once where none holds it or another does (a listener, a connection
/// of another program), and where one still holds it after the wait.
pub fn wait_gone(family: i32, addr: &[u8]) -> bool {
    let (port, ip) = super::capture::inet_addr(addr);
    if port == 0 || !matches!(family, libc::AF_INET | libc::AF_INET6) {
        return false;
    }
    let closed = |h: &[(i32, InetInfo)]| h.iter().all(|(_, i)| CLOSED_BY_ITS_PROGRAM.contains(&i.state));
    let mut left = holding(port, &ip);
    if left.is_empty() || !closed(&left) {
        return false;
    }
    crate::info(&format!(
        "waiting for {}: {} closed TCP connection(s) of the killed program still hold it (TIME_WAIT or another closing state; at most {} s)",
        ckpt_image::describe_addr(family, addr),
        left.len(),
        WAIT.as_secs()
    ));
    let start = Instant::now();
    while !left.is_empty() && closed(&left) && start.elapsed() < WAIT {
        std::thread::sleep(Duration::from_millis(250));
        left = holding(port, &ip);
    }
    left.is_empty()
}

/// End the TIME_WAIT remains that hold `addr` (a sockaddr_in or sockaddr_in6 of `family`, to
/// be bound by a TCP socket). True if there were some and none is left.
pub fn clear(family: i32, addr: &[u8]) -> bool {
    let (port, ip) = super::capture::inet_addr(addr);
    if port == 0 || !matches!(family, libc::AF_INET | libc::AF_INET6) {
        return false;
    }
    let holding = || -> Vec<(i32, InetInfo)> { holding(port, &ip).into_iter().filter(|(_, i)| i.state == TCP_TIME_WAIT).collect() };
    let mut left = holding();
    if left.is_empty() {
        return false;
    }
    // The remain's ACK can be held back by the kernel's rate limit on answers to segments out
    // of the window (net.ipv4.tcp_invalid_ratelimit, 0.5 s): try again a few times.
    let start = Instant::now();
    while !left.is_empty() && start.elapsed() < Duration::from_secs(2) {
        let tries: Vec<RawFd> = left.iter().filter_map(|(f, i)| knock(*f, i)).collect();
        if tries.is_empty() {
            return false; // no peer address of ours
        }
        let round = Instant::now();
        while round.elapsed() < Duration::from_millis(600) {
            std::thread::sleep(Duration::from_millis(10));
            left = holding();
            if left.is_empty() {
                break;
            }
        }
        tries.into_iter().for_each(crate::close);
    }
    left.is_empty()
}

/// Whether a remain on local address `src` (of family `f`) conflicts with a bind on `ip`
/// (4 or 16 bytes; all zero: every address).
fn same_ip(ip: &[u8], f: i32, src: &[u8; 16]) -> bool {
    if ip.iter().all(|&b| b == 0) {
        return true;
    }
    let v4 = |a: &[u8]| -> Option<[u8; 4]> {
        match a.len() {
            4 => a.try_into().ok(),
            16 if a[..10].iter().all(|&b| b == 0) && a[10..12] == [0xff, 0xff] => a[12..16].try_into().ok(),
            _ => None,
        }
    };
    let theirs: &[u8] = if f == libc::AF_INET { &src[..4] } else { &src[..] };
    match (v4(ip), v4(theirs)) {
        (Some(a), Some(b)) => a == b,
        _ => ip == theirs,
    }
}

/// A non-blocking socket bound at the remain's peer address, connecting to the remain: its
/// SYN makes the remain answer, and our RST ends it. None if the peer's address is not ours
/// to bind (another machine's, or taken).
fn knock(f: i32, tw: &InetInfo) -> Option<RawFd> {
    let peer = super::capture::sockaddr(f, &tw.dst, tw.dport);
    let local = super::capture::sockaddr(f, &tw.src, tw.sport);
    let s = crate::sys::socket(f, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0).ok()?;
    let _ = crate::sys::setsockopt(s, libc::SOL_SOCKET, libc::SO_REUSEADDR, &1i32.to_ne_bytes());
    // SAFETY: peer and local are sockaddrs of their lengths; s is a socket of ours.
    let ok = unsafe {
        libc::bind(s, peer.as_ptr().cast(), peer.len() as u32) == 0
            && (libc::connect(s, local.as_ptr().cast(), local.len() as u32) == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EINPROGRESS))
    };
    if !ok {
        crate::close(s);
        return None;
    }
    Some(s)
}
