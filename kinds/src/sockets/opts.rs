//! Socket options: every option getsockopt can read back is read at checkpoint time, and set
//! again at restart where a fresh socket's value differs (so that setting an option never has a
//! side effect the program did not cause, such as locking a buffer size). Options that must be
//! in place before bind (SO_REUSEADDR/PORT, IP_FREEBIND, IPV6_V6ONLY, SO_BINDTODEVICE) are set
//! right after the socket is made; those that would get in the way of refilling the queues
//! (TCP_CORK, UDP_CORK, SO_PEEK_OFF) at the very end, with the socket filter (SO_ATTACH_FILTER,
//! read with SO_GET_FILTER) and SO_LOCK_FILTER.
//!
//! Not readable, so not restored: multicast memberships (IP_ADD_MEMBERSHIP, ...), IP_OPTIONS
//! of received packets, eBPF programs attached with SO_ATTACH_BPF (SO_GET_FILTER shows only
//! classic filters), TCP_MD5SIG keys, TLS (TCP_ULP) state.

use crate::sys;
use ckpt_image::SockOpt;

const SOL_TCP: i32 = 6;
const SOL_UDP: i32 = 17;
const SOL_UDPLITE: i32 = 136;
const SOL_RAW: i32 = 255;
const SOL_NETLINK: i32 = 270;
const SOL_PACKET: i32 = 263;
const SOL_ICMPV6: i32 = 58;

pub const SO_BUF_LOCK: i32 = 72;
pub const SO_GET_FILTER: i32 = libc::SO_ATTACH_FILTER;
pub const IPV6_FREEBIND: i32 = 78;

/// When an option is set again.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Right after socket(): before bind, connect and listen.
    Early,
    /// After the queues are refilled.
    Late,
}

/// (level, name, largest value in bytes, phase).
const TABLE: &[(i32, i32, usize, Phase)] = &[
    (libc::SOL_SOCKET, libc::SO_REUSEADDR, 4, Phase::Early),
    (libc::SOL_SOCKET, libc::SO_REUSEPORT, 4, Phase::Early),
    (libc::SOL_SOCKET, libc::SO_BINDTODEVICE, 16, Phase::Early),
    (libc::SOL_SOCKET, libc::SO_KEEPALIVE, 4, Phase::Early),
    (libc::SOL_SOCKET, libc::SO_BROADCAST, 4, Phase::Early),
    (libc::SOL_SOCKET, libc::SO_DONTROUTE, 4, Phase::Early),
    (libc::SOL_SOCKET, libc::SO_OOBINLINE, 4, Phase::Early),
    (libc::SOL_SOCKET, libc::SO_NO_CHECK, 4, Phase::Early),
    (libc::SOL_SOCKET, libc::SO_PRIORITY, 4, Phase::Early),
    (libc::SOL_SOCKET, libc::SO_LINGER, 8, Phase::Early),
    (libc::SOL_SOCKET, libc::SO_PASSCRED, 4, Phase::Early),
    (libc::SOL_SOCKET, libc::SO_PASSSEC, 4, Phase::Early),
    (libc::SOL_SOCKET, libc::SO_RCVLOWAT, 4, Phase::Early),
    (libc::SOL_SOCKET, libc::SO_RCVTIMEO, 16, Phase::Early),
    (libc::SOL_SOCKET, libc::SO_SNDTIMEO, 16, Phase::Early),
    (libc::SOL_SOCKET, libc::SO_TIMESTAMP, 4, Phase::Early),
    (libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 4, Phase::Early),
    (libc::SOL_SOCKET, libc::SO_TIMESTAMPING, 4, Phase::Early),
    (libc::SOL_SOCKET, libc::SO_MARK, 4, Phase::Early),
    (libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 4, Phase::Early),
    (libc::SOL_SOCKET, libc::SO_WIFI_STATUS, 4, Phase::Early),
    (libc::SOL_SOCKET, libc::SO_NOFCS, 4, Phase::Early),
    (libc::SOL_SOCKET, libc::SO_SELECT_ERR_QUEUE, 4, Phase::Early),
    (libc::SOL_SOCKET, libc::SO_BUSY_POLL, 4, Phase::Early),
    (libc::SOL_SOCKET, libc::SO_INCOMING_CPU, 4, Phase::Early),
    (libc::SOL_SOCKET, libc::SO_ZEROCOPY, 4, Phase::Early),
    (libc::SOL_SOCKET, 47, 8, Phase::Early), // SO_MAX_PACING_RATE
    (libc::SOL_SOCKET, 61, 8, Phase::Early), // SO_TXTIME
    (libc::SOL_SOCKET, 69, 4, Phase::Early), // SO_PREFER_BUSY_POLL
    (libc::SOL_SOCKET, 70, 4, Phase::Early), // SO_BUSY_POLL_BUDGET
    (libc::SOL_SOCKET, 74, 4, Phase::Early), // SO_TXREHASH
    (libc::SOL_SOCKET, 75, 4, Phase::Early), // SO_RCVMARK
    (libc::SOL_SOCKET, 76, 4, Phase::Early), // SO_PASSPIDFD
    // Buffer sizes: only when the program set them (the lock bits say so); then SO_BUF_LOCK.
    (libc::SOL_SOCKET, libc::SO_SNDBUF, 4, Phase::Early),
    (libc::SOL_SOCKET, libc::SO_RCVBUF, 4, Phase::Early),
    (libc::SOL_SOCKET, SO_BUF_LOCK, 4, Phase::Early),
    (libc::SOL_SOCKET, libc::SO_PEEK_OFF, 4, Phase::Late),
    (libc::SOL_SOCKET, libc::SO_LOCK_FILTER, 4, Phase::Late),
    (libc::IPPROTO_IP, libc::IP_FREEBIND, 4, Phase::Early),
    (libc::IPPROTO_IP, libc::IP_TRANSPARENT, 4, Phase::Early),
    (libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, 4, Phase::Early),
    (libc::IPPROTO_IP, libc::IP_TOS, 4, Phase::Early),
    (libc::IPPROTO_IP, libc::IP_TTL, 4, Phase::Early),
    (libc::IPPROTO_IP, libc::IP_HDRINCL, 4, Phase::Early),
    (libc::IPPROTO_IP, libc::IP_RECVOPTS, 4, Phase::Early),
    (libc::IPPROTO_IP, libc::IP_RETOPTS, 4, Phase::Early),
    (libc::IPPROTO_IP, libc::IP_PKTINFO, 4, Phase::Early),
    (libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, 4, Phase::Early),
    (libc::IPPROTO_IP, libc::IP_RECVERR, 4, Phase::Early),
    (libc::IPPROTO_IP, libc::IP_RECVTTL, 4, Phase::Early),
    (libc::IPPROTO_IP, libc::IP_RECVTOS, 4, Phase::Early),
    (libc::IPPROTO_IP, libc::IP_PASSSEC, 4, Phase::Early),
    (libc::IPPROTO_IP, libc::IP_RECVORIGDSTADDR, 4, Phase::Early),
    (libc::IPPROTO_IP, libc::IP_MINTTL, 4, Phase::Early),
    (libc::IPPROTO_IP, libc::IP_NODEFRAG, 4, Phase::Early),
    (libc::IPPROTO_IP, libc::IP_CHECKSUM, 4, Phase::Early),
    (libc::IPPROTO_IP, 25, 4, Phase::Early), // IP_RECVFRAGSIZE
    (libc::IPPROTO_IP, 26, 4, Phase::Early), // IP_RECVERR_RFC4884
    (libc::IPPROTO_IP, libc::IP_MULTICAST_TTL, 4, Phase::Early),
    (libc::IPPROTO_IP, libc::IP_MULTICAST_LOOP, 4, Phase::Early),
    (libc::IPPROTO_IP, libc::IP_MULTICAST_ALL, 4, Phase::Early),
    (libc::IPPROTO_IP, 51, 4, Phase::Early), // IP_LOCAL_PORT_RANGE
    (libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 4, Phase::Early),
    (libc::IPPROTO_IPV6, IPV6_FREEBIND, 4, Phase::Early),
    (libc::IPPROTO_IPV6, 75, 4, Phase::Early), // IPV6_TRANSPARENT
    (libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 4, Phase::Early),
    (libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, 4, Phase::Early),
    (libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_HOPS, 4, Phase::Early),
    (libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_LOOP, 4, Phase::Early),
    (libc::IPPROTO_IPV6, libc::IPV6_RECVERR, 4, Phase::Early),
    (libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER, 4, Phase::Early),
    (libc::IPPROTO_IPV6, libc::IPV6_TCLASS, 4, Phase::Early),
    (libc::IPPROTO_IPV6, libc::IPV6_RECVTCLASS, 4, Phase::Early),
    (libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, 4, Phase::Early),
    (libc::IPPROTO_IPV6, libc::IPV6_RECVRTHDR, 4, Phase::Early),
    (libc::IPPROTO_IPV6, libc::IPV6_RECVHOPOPTS, 4, Phase::Early),
    (libc::IPPROTO_IPV6, libc::IPV6_RECVDSTOPTS, 4, Phase::Early),
    (libc::IPPROTO_IPV6, 70, 4, Phase::Early), // IPV6_AUTOFLOWLABEL
    (libc::IPPROTO_IPV6, 62, 4, Phase::Early), // IPV6_DONTFRAG
    (libc::IPPROTO_IPV6, 60, 4, Phase::Early), // IPV6_RECVPATHMTU
    (libc::IPPROTO_IPV6, 74, 4, Phase::Early), // IPV6_RECVORIGDSTADDR
    (libc::IPPROTO_IPV6, 73, 4, Phase::Early), // IPV6_MINHOPCOUNT
    (libc::IPPROTO_IPV6, 72, 4, Phase::Early), // IPV6_ADDR_PREFERENCES
    (libc::IPPROTO_IPV6, 29, 4, Phase::Early), // IPV6_MULTICAST_ALL
    (libc::IPPROTO_IPV6, 31, 4, Phase::Early), // IPV6_RECVERR_RFC4884
    (SOL_TCP, libc::TCP_NODELAY, 4, Phase::Early),
    (SOL_TCP, libc::TCP_KEEPIDLE, 4, Phase::Early),
    (SOL_TCP, libc::TCP_KEEPINTVL, 4, Phase::Early),
    (SOL_TCP, libc::TCP_KEEPCNT, 4, Phase::Early),
    (SOL_TCP, libc::TCP_SYNCNT, 4, Phase::Early),
    (SOL_TCP, libc::TCP_LINGER2, 4, Phase::Early),
    (SOL_TCP, libc::TCP_DEFER_ACCEPT, 4, Phase::Early),
    (SOL_TCP, libc::TCP_WINDOW_CLAMP, 4, Phase::Early),
    (SOL_TCP, libc::TCP_CONGESTION, 16, Phase::Early),
    (SOL_TCP, libc::TCP_USER_TIMEOUT, 4, Phase::Early),
    (SOL_TCP, libc::TCP_THIN_LINEAR_TIMEOUTS, 4, Phase::Early),
    (SOL_TCP, libc::TCP_NOTSENT_LOWAT, 4, Phase::Early),
    (SOL_TCP, libc::TCP_FASTOPEN, 4, Phase::Early),
    (SOL_TCP, libc::TCP_FASTOPEN_CONNECT, 4, Phase::Early),
    (SOL_TCP, 34, 4, Phase::Early), // TCP_FASTOPEN_NO_COOKIE
    (SOL_TCP, 36, 4, Phase::Early), // TCP_INQ
    (SOL_TCP, libc::TCP_SAVE_SYN, 4, Phase::Early),
    (SOL_TCP, libc::TCP_CORK, 4, Phase::Late),
    (SOL_UDP, 101, 4, Phase::Early), // UDP_NO_CHECK6_TX
    (SOL_UDP, 102, 4, Phase::Early), // UDP_NO_CHECK6_RX
    (SOL_UDP, 103, 4, Phase::Early), // UDP_SEGMENT
    (SOL_UDP, 104, 4, Phase::Early), // UDP_GRO
    (SOL_UDP, 1, 4, Phase::Late),    // UDP_CORK
    (SOL_UDPLITE, 10, 4, Phase::Early), // UDPLITE_SEND_CSCOV
    (SOL_UDPLITE, 11, 4, Phase::Early), // UDPLITE_RECV_CSCOV
    (SOL_RAW, 1, 4, Phase::Early),      // ICMP_FILTER
    (SOL_ICMPV6, 1, 32, Phase::Early),  // ICMP6_FILTER
    (SOL_NETLINK, 3, 4, Phase::Early),  // NETLINK_PKTINFO
    (SOL_NETLINK, 4, 4, Phase::Early),  // NETLINK_BROADCAST_ERROR
    (SOL_NETLINK, 5, 4, Phase::Early),  // NETLINK_NO_ENOBUFS
    (SOL_NETLINK, 8, 4, Phase::Early),  // NETLINK_LISTEN_ALL_NSID
    (SOL_NETLINK, 10, 4, Phase::Early), // NETLINK_CAP_ACK
    (SOL_NETLINK, 11, 4, Phase::Early), // NETLINK_EXT_ACK
    (SOL_NETLINK, 12, 4, Phase::Early), // NETLINK_GET_STRICT_CHK
    (SOL_PACKET, 10, 4, Phase::Early),  // PACKET_VERSION
    (SOL_PACKET, 12, 4, Phase::Early),  // PACKET_RESERVE
    (SOL_PACKET, 8, 4, Phase::Early),   // PACKET_AUXDATA
    (SOL_PACKET, 9, 4, Phase::Early),   // PACKET_ORIGDEV
    (SOL_PACKET, 15, 4, Phase::Early),  // PACKET_VNET_HDR
    (SOL_PACKET, 17, 4, Phase::Early),  // PACKET_TIMESTAMP
    (SOL_PACKET, 14, 4, Phase::Early),  // PACKET_LOSS
    (SOL_PACKET, 20, 4, Phase::Early),  // PACKET_QDISC_BYPASS
    (SOL_PACKET, 23, 4, Phase::Early),  // PACKET_IGNORE_OUTGOING
    (SOL_PACKET, 18, 4, Phase::Early),  // PACKET_FANOUT
];

/// Whether a socket of `family` can answer options of `level` at all: a UNIX socket answers
/// SOL_SOCKET only, a netlink or packet socket its own level besides, an IP socket no netlink or
/// packet level (the kernel refuses the others with EOPNOTSUPP or ENOPROTOOPT). Asking only
/// those spares a hundred failing calls per UNIX socket, which a tree of processes holding
/// hundreds of sockets each pays for every socket of every process.
fn may_answer(family: i32, level: i32) -> bool {
    match family {
        libc::AF_INET | libc::AF_INET6 => level != SOL_NETLINK && level != SOL_PACKET,
        libc::AF_NETLINK => level == libc::SOL_SOCKET || level == SOL_NETLINK,
        libc::AF_PACKET => level == libc::SOL_SOCKET || level == SOL_PACKET,
        _ => level == libc::SOL_SOCKET,
    }
}

/// Every option of the table that `fd`, a socket of `family`, answers (capture side).
pub fn capture(fd: i32, family: i32) -> Vec<SockOpt> {
    let mut out = Vec::new();
    let mut buf = [0u8; 32];
    for &(level, name, size, _) in TABLE.iter().filter(|o| may_answer(family, o.0)) {
        if let Ok(n) = sys::getsockopt(fd, level, name, &mut buf[..size]) {
            out.push(SockOpt { level, name, value: buf[..n].to_vec() });
        }
    }
    out
}

/// The classic BPF filter attached to `fd` (SO_GET_FILTER: the number of instructions first,
/// then the instructions).
pub fn capture_filter(fd: i32) -> Vec<(u16, u8, u8, u32)> {
    // With a zero length the kernel answers the number of instructions in the length itself.
    let mut len: u32 = 0;
    let mut dummy = 0u8;
    // SAFETY: len is a valid in/out length; with len 0 nothing is written to dummy.
    let r = unsafe { libc::syscall(libc::SYS_getsockopt, fd, libc::SOL_SOCKET, SO_GET_FILTER, &mut dummy as *mut u8, &mut len as *mut u32) };
    if r < 0 || len == 0 || len > 4096 {
        return Vec::new();
    }
    let count = len as usize;
    let mut insns = vec![0u8; count * 8];
    let mut blocks = len;
    // SAFETY: insns has room for `count` 8-byte instructions; the length is in instructions.
    let r = unsafe { libc::syscall(libc::SYS_getsockopt, fd, libc::SOL_SOCKET, SO_GET_FILTER, insns.as_mut_ptr(), &mut blocks as *mut u32) };
    if r < 0 {
        return Vec::new();
    }
    insns
        .chunks_exact(8)
        .take(blocks as usize)
        .map(|c| (u16::from_ne_bytes([c[0], c[1]]), c[2], c[3], u32::from_ne_bytes([c[4], c[5], c[6], c[7]])))
        .collect()
}

fn phase_of(o: &SockOpt) -> Phase {
    TABLE.iter().find(|t| t.0 == o.level && t.1 == o.name).map_or(Phase::Early, |t| t.3)
}

fn int(v: &[u8]) -> i32 {
    v.get(..4).map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// Set the options of `phase` on the new socket `fd` where its value differs; the options that
/// could not be set, as "level/name: error" for a warning.
pub fn restore(fd: i32, opts: &[SockOpt], phase: Phase) -> Vec<String> {
    let mut failed = Vec::new();
    let stream = sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE) == Ok(libc::SOCK_STREAM)
        && sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN).is_ok_and(|d| d != libc::AF_UNIX);
    let lock = opts.iter().find(|o| o.level == libc::SOL_SOCKET && o.name == SO_BUF_LOCK).map(|o| int(&o.value));
    // TCP sizes its buffers itself unless the program set them (the lock bits say so); other
    // sockets keep what they were given.
    let tuned = |bit: i32| stream && lock.is_some_and(|l| l & bit == 0);
    let mut buf = [0u8; 32];
    for o in opts.iter().filter(|o| phase_of(o) == phase) {
        // Read as at checkpoint time: some options answer in another form to a shorter buffer.
        let size = TABLE.iter().find(|t| t.0 == o.level && t.1 == o.name).map_or(4, |t| t.2);
        let now = sys::getsockopt(fd, o.level, o.name, &mut buf[..size]).map(|n| buf[..n].to_vec());
        if now.as_deref() == Ok(&o.value[..]) {
            continue;
        }
        let value = match (o.level, o.name) {
            // getsockopt shows twice what was asked for; only sizes the program chose.
            (libc::SOL_SOCKET, libc::SO_SNDBUF) if !tuned(1) => (int(&o.value) / 2).to_ne_bytes().to_vec(),
            (libc::SOL_SOCKET, libc::SO_RCVBUF) if !tuned(2) => (int(&o.value) / 2).to_ne_bytes().to_vec(),
            (libc::SOL_SOCKET, libc::SO_SNDBUF | libc::SO_RCVBUF) => continue,
            // An empty device name unbinds; a fresh socket is not bound to one. Fanout group 0
            // means none.
            (libc::SOL_SOCKET, libc::SO_BINDTODEVICE) | (SOL_PACKET, 18) if o.value.iter().all(|&b| b == 0) => continue,
            // Multicast settings mean nothing to TCP (an accepted socket's TTL is its SYN's).
            (libc::IPPROTO_IP, libc::IP_MULTICAST_TTL | libc::IP_MULTICAST_LOOP | libc::IP_MULTICAST_ALL) if stream => continue,
            (libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_HOPS | libc::IPV6_MULTICAST_LOOP | 29) if stream => continue,
            _ => o.value.clone(),
        };
        if let Err(e) = sys::setsockopt(fd, o.level, o.name, &value) {
            failed.push(format!("{} ({})", name_of(o.level, o.name), std::io::Error::from_raw_os_error(e)));
        }
    }
    failed
}

/// Attach a classic BPF filter again.
pub fn restore_filter(fd: i32, filter: &[(u16, u8, u8, u32)]) -> Result<(), String> {
    if filter.is_empty() {
        return Ok(());
    }
    let insns: Vec<libc::sock_filter> = filter.iter().map(|&(code, jt, jf, k)| libc::sock_filter { code, jt, jf, k }).collect();
    let prog = libc::sock_fprog { len: insns.len() as u16, filter: insns.as_ptr() as *mut libc::sock_filter };
    // SAFETY: prog points at insns, which lives until the call returns.
    let r = unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, (&prog as *const libc::sock_fprog).cast(), std::mem::size_of::<libc::sock_fprog>() as u32) };
    if r < 0 {
        return Err(format!("socket filter ({})", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// The value of an integer option among `opts`.
pub fn value(opts: &[SockOpt], level: i32, name: i32) -> Option<i32> {
    opts.iter().find(|o| o.level == level && o.name == name).map(|o| int(&o.value))
}

/// "SOL_SOCKET/SO_PRIORITY"-like names for messages (numbers where we have no name).
fn name_of(level: i32, name: i32) -> String {
    let l = match level {
        libc::SOL_SOCKET => "SOL_SOCKET",
        libc::IPPROTO_IP => "SOL_IP",
        libc::IPPROTO_IPV6 => "SOL_IPV6",
        SOL_TCP => "SOL_TCP",
        SOL_UDP => "SOL_UDP",
        SOL_NETLINK => "SOL_NETLINK",
        SOL_PACKET => "SOL_PACKET",
        _ => return format!("option {level}/{name}"),
    };
    let n = match (level, name) {
        (libc::SOL_SOCKET, libc::SO_PRIORITY) => "SO_PRIORITY",
        (libc::SOL_SOCKET, libc::SO_MARK) => "SO_MARK",
        (libc::SOL_SOCKET, libc::SO_BINDTODEVICE) => "SO_BINDTODEVICE",
        (libc::SOL_SOCKET, libc::SO_SNDBUF) => "SO_SNDBUF",
        (libc::SOL_SOCKET, libc::SO_RCVBUF) => "SO_RCVBUF",
        (libc::IPPROTO_IP, libc::IP_TRANSPARENT) => "IP_TRANSPARENT",
        (SOL_TCP, libc::TCP_CONGESTION) => "TCP_CONGESTION",
        _ => return format!("{l}/{name}"),
    };
    format!("{l}/{n}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Asking a socket only the levels its family answers reads the same options as asking
    /// every level of the table.
    #[test]
    fn only_the_levels_a_family_answers_are_asked_and_nothing_is_missed() {
        for (family, ty) in [(libc::AF_UNIX, libc::SOCK_STREAM), (libc::AF_INET, libc::SOCK_STREAM), (libc::AF_INET6, libc::SOCK_DGRAM)] {
            // SAFETY: a new socket of ours, closed below.
            let fd = unsafe { libc::socket(family, ty, 0) };
            assert!(fd >= 0);
            let mut buf = [0u8; 32];
            let all: Vec<(i32, i32)> = TABLE.iter().filter(|o| sys::getsockopt(fd, o.0, o.1, &mut buf[..o.2]).is_ok()).map(|o| (o.0, o.1)).collect();
            let asked: Vec<(i32, i32)> = capture(fd, family).iter().map(|o| (o.level, o.name)).collect();
            assert_eq!(asked, all, "family {family}");
            sys::close(fd);
        }
    }
}
