//! The UDP sockets of a task of a step restarted on another node (issue 14, docs/multinode.md
//! part 6), the restore's half: where the map of the step (which exists only once every task's
//! fds are back) decides, the restore leaves it to the caller (`Later`).
//!
//! - A UDP socket bound to an address of the task's old node that its node now lacks is bound
//!   at the address now that stands for it (`Options::rebind`, ckpt_step::addrmap::pair; the
//!   port kept), as the runtime's bind hook does after the restart: a socket connected before
//!   the checkpoint has its node's address as its name, and one bound with IP_FREEBIND at the
//!   old address could send nothing.
//! - A connected UDP socket is connected once the map says where its peer is now
//!   (`Later::connects`: the caller connects it, ckpt-restart's stepaddrs).
//! - A datagram queued unread whose sender is outside the program (another task) is sent again
//!   from a stand-in socket of ours at a loopback address (`STAND_IN`), and its receiving
//!   socket, the stand-in's address and the datagram's source go to the runtime
//!   (`Later::queued`), whose recvfrom, recvmsg and recvmmsg show that source: its sender's old
//!   address, which no socket of this node may have (two tasks swapped), is what the program
//!   knew. Sent before the socket connects (a connected UDP socket drops a datagram from
//!   another address).

use super::restore::Sockets;
use super::queue;
use ckpt_image::{Message, SockState, Socket};
use std::os::fd::RawFd;

/// What the restore of a step task's UDP sockets leaves to its caller.
#[derive(Debug, Clone, Default)]
pub struct Later {
    /// The image's inode of each connected UDP socket, with its peer at the checkpoint.
    pub connects: Vec<(u64, Vec<u8>)>,
    /// Datagrams sent again from a stand-in: (the receiving socket's inode now, the
    /// stand-in's sockaddr, the source at the checkpoint).
    pub queued: Vec<(u64, Vec<u8>, Vec<u8>)>,
}

/// The IPv4 address the stand-ins are bound at (any port): of loopback's 127/8, one nothing of
/// the program is likely to use.
const STAND_IN: [u8; 4] = [127, 31, 7, 3];

pub(super) fn is_udp(s: &Socket) -> bool {
    matches!(s.family, libc::AF_INET | libc::AF_INET6) && s.sock_type == libc::SOCK_DGRAM && s.protocol == libc::IPPROTO_UDP
}

fn sockaddr_in6_loopback() -> Vec<u8> {
    let mut a = vec![0u8; std::mem::size_of::<libc::sockaddr_in6>()];
    a[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
    a[23] = 1;
    a
}

impl Sockets<'_> {
    /// A step task's UDP socket `s`: the address it is bound at (its old one, or the address
    /// now that stands for it).
    pub(super) fn udp_bind_addr(&self, s: &Socket) -> Vec<u8> {
        if !self.opts.step || !is_udp(s) {
            return s.name.clone();
        }
        let Some(ip) = ckpt_step::addrmap::ip_of(&s.name) else { return s.name.clone() };
        match self.opts.rebind.iter().find(|(o, _)| *o == ip) {
            Some((_, now)) => ckpt_step::addrmap::with_ip(&s.name, now).unwrap_or_else(|| s.name.clone()),
            None => s.name.clone(),
        }
    }

    /// Whether the connect of `s` waits for the step's map (`Later::connects`).
    pub(super) fn connect_later(&mut self, s: &Socket) -> bool {
        if !self.opts.step || !is_udp(s) || s.state != SockState::Connected || s.shutdown != 0 {
            return false;
        }
        self.later.connects.push((s.ino, s.peer_name.clone()));
        true
    }

    /// Whether a datagram for `to` from `m.from`, a sender outside the program, is sent from a
    /// stand-in (a step task's UDP socket, not connected yet: one connected drops it).
    pub(super) fn by_stand_in(&self, to: &Socket, m: &Message) -> bool {
        let unconnected = to.state != SockState::Connected || self.later.connects.iter().any(|(ino, _)| *ino == to.ino);
        self.opts.step && is_udp(to) && unconnected && m.from.len() >= 8 && !self.given.contains(&to.ino)
    }

    /// Send `m` to `to` from a stand-in socket of ours at a loopback address; its receiving
    /// socket's inode and the stand-in's address go to `Later::queued`.
    pub(super) fn send_from_stand_in(&mut self, to: &Socket, m: &Message, fds: &[RawFd]) -> std::io::Result<usize> {
        let fd = self.made[&to.ino];
        let name = ckpt_step::sys::sock_name(fd, false);
        let port = ckpt_step::sys::port_of(&name);
        let ip = ckpt_step::addrmap::ip_of(&name).unwrap_or_default();
        let any = ip.iter().all(|&b| b == 0);
        let v6_only = to.family == libc::AF_INET6 && ckpt_step::sys::getsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY) == Ok(1);
        // An IPv4 stand-in where the socket takes IPv4 (an IPv6 one bound to every address,
        // or at an IPv4-mapped one, too); at IPv6 loopback otherwise. A socket bound to every
        // address is reached at loopback.
        let (fam, at, dest) = match (to.family == libc::AF_INET6, ip.len()) {
            (false, _) | (true, 4) => (libc::AF_INET, ckpt_step::sys::sockaddr_in(STAND_IN, 0), ckpt_step::sys::sockaddr_in(if any { [127, 0, 0, 1] } else { ip[..4].try_into().expect("4 bytes") }, port)),
            (true, _) if any && !v6_only => (libc::AF_INET, ckpt_step::sys::sockaddr_in(STAND_IN, 0), ckpt_step::sys::sockaddr_in([127, 0, 0, 1], port)),
            (true, _) => {
                let mut d = name.clone();
                if any && d.len() >= 24 {
                    d[23] = 1;
                }
                (libc::AF_INET6, sockaddr_in6_loopback(), d)
            }
        };
        self.stand_in_send(to, fam, &at, &dest, m, fds)
    }

    fn stand_in_send(&mut self, to: &Socket, fam: i32, at: &[u8], dest: &[u8], m: &Message, fds: &[RawFd]) -> std::io::Result<usize> {
        // SAFETY: plain socket calls on a socket of ours; `at` is a sockaddr of its length.
        let t = unsafe { libc::socket(fam, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, libc::IPPROTO_UDP) };
        if t < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: as above.
        let r = if unsafe { libc::bind(t, at.as_ptr().cast(), at.len() as u32) } == 0 { queue::send(t, &m.data, fds, dest) } else { Err(std::io::Error::last_os_error()) };
        let standin = ckpt_step::sys::sock_name(t, false);
        crate::close(t);
        if r.is_ok() {
            let ino = super::requeue::fstat_ino(self.made[&to.ino]);
            self.later.queued.push((ino, standin, m.from.clone()));
        }
        r
    }
}
