//! A task's listeners across the step's restart (issue 14, docs/multinode.md part 6): once its
//! fds are back, each task reports where its program's listeners were at the checkpoint (their
//! name, and its node's addresses for one bound to every address) and where they are now (a
//! port another program took is another: kinds' `moveport`; a new node is another address);
//! rank 0 hands every report to every task in the rendezvous's `Ready`/`Go` (step.rs), and each
//! task makes of them the map its runtime's `connect` hook consults (ckpt_step::addrmap),
//! handed over in RestartInfo. A task whose program is a process tree reports the listeners of
//! every process of the tree, and each of them gets the map (treelisten). Its UDP sockets
//! connected before the checkpoint connect once the map exists, where their peers are now, and
//! the datagrams queued on them from other tasks go to the runtime with the map (`settle_udp`).

use crate::step::Joined;
use anyhow::{bail, Result};
use ckpt_image::{FdKind, FdState, Index, SockState};
use ckpt_kinds::sockets::stepudp::Later;
use ckpt_step::addrmap::{self, Listener, Lookup, Map, Report};

/// The TCP listeners and bound UDP sockets of the fd table `fds`, restored at their numbers:
/// where each was at the checkpoint and is now.
pub fn listeners(fds: &[FdState]) -> Vec<Listener> {
    // Restored with its options: IPV6_V6ONLY says whether IPv4 reaches an IPv6 socket.
    let v6only = |fd: i32, family: i32| family == libc::AF_INET6 && ckpt_step::sys::getsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY).is_ok_and(|v| v != 0);
    fds.iter()
        .filter(|f| f.dup_of.is_none() && f.fd >= 0)
        .filter_map(|f| match &f.kind {
            FdKind::Socket(s) if !matches!(s.family, libc::AF_INET | libc::AF_INET6) => None,
            FdKind::Socket(s) if s.state == SockState::Listening => Some(Listener { old: s.name.clone(), new: ckpt_step::sys::sock_name(f.fd, false), udp: false, v6only: v6only(f.fd, s.family) }),
            FdKind::Socket(s) if s.sock_type == libc::SOCK_DGRAM && s.protocol == libc::IPPROTO_UDP && s.name.len() >= 8 && ckpt_step::sys::port_of(&s.name) != 0 => {
                Some(Listener { old: s.name.clone(), new: ckpt_step::sys::sock_name(f.fd, false), udp: true, v6only: v6only(f.fd, s.family) })
            }
            _ => None,
        })
        .filter(|l| !l.new.is_empty())
        .collect()
}

/// This task's report (`addrmap::encode`) of `listeners` (its tree's).
pub fn report(index: &Index, listeners: Vec<Listener>) -> Vec<u8> {
    let Some(step) = index.step.as_ref() else { return Vec::new() };
    let (now_boot, now) = (ckpt_image::boot_id(), addrmap::node_ips());
    addrmap::encode(&[Report { rank: step.rank, boot: index.meta.origin.boot_id.clone(), node: step.node_ips.clone(), now_boot, now, listeners }])
}

/// The map for this task's runtime (`Map::encode`; empty: nothing moved and no node known)
/// from every task's `reports`.
pub fn map(j: &Joined, reports: &[u8]) -> Result<Vec<u8>> {
    let Some(reports) = addrmap::decode(reports) else { bail!("task 0 of the step sent an unreadable table of the tasks' listeners") };
    let m = Map::of(&reports, j.rank(), &j.addrs);
    if m.is_empty() {
        return Ok(Vec::new());
    }
    let b = m.encode();
    if b.len() > crate::plan::ADDR_MAP_MAX {
        bail!("the step's listeners make a table of {} bytes, more than ckpt-restart hands to the program ({} bytes)", b.len(), crate::plan::ADDR_MAP_MAX);
    }
    if crate::progress::log_level() >= 2 {
        let show = |ip: &[u8], port: u16| {
            let ip: Vec<String> = if ip.len() == 4 { ip.iter().map(u8::to_string).collect() } else { ip.chunks(2).map(|c| format!("{:x}", u16::from_be_bytes([c[0], c[1]]))).collect() };
            format!("{}:{port}", ip.join(if ip.len() == 4 { "." } else { ":" }))
        };
        for (ip, port, to) in &m.moved {
            ckpt_kinds::say!("ckpt-restart: step: a connect to {} goes to {}", show(ip, *port), ckpt_step::sys::show_addr(to));
        }
        for (ip, port, to) in &m.udp {
            ckpt_kinds::say!("ckpt-restart: step: a datagram to {} goes to {}", show(ip, *port), ckpt_step::sys::show_addr(to));
        }
    }
    Ok(b)
}

/// A step task's UDP sockets once the step's map exists (`later`: what kinds' stepudp left):
/// each connected one is connected where its peer is now (the map's UDP part; its peer as it
/// was where the map says nothing), and the datagrams sent again from stand-ins go to the
/// runtime with the map (`Map::queued`). The map for the runtime, with them.
pub fn settle_udp(fds: &[FdState], later: &Later, map: Vec<u8>) -> Result<Vec<u8>> {
    if later.connects.is_empty() && later.queued.is_empty() {
        return Ok(map);
    }
    let Some(mut m) = (if map.is_empty() { Some(Map::default()) } else { Map::decode(&map) }) else { bail!("the step's map for the program is unreadable") };
    for (ino, peer) in &later.connects {
        let at = fds.iter().find(|f| f.dup_of.is_none() && f.fd >= 0 && matches!(&f.kind, FdKind::Socket(s) if s.ino == *ino));
        let Some(f) = at else { continue };
        let to = match m.lookup_udp(peer) {
            Lookup::To(to) => to,
            _ => peer.clone(),
        };
        if crate::progress::log_level() >= 2 && to != *peer {
            ckpt_kinds::say!("ckpt-restart: step: the UDP socket at fd {} connected to {} is connected to {}", f.fd, ckpt_step::sys::show_addr(peer), ckpt_step::sys::show_addr(&to));
        }
        // SAFETY: `to` is a sockaddr of its length; f.fd is the program's socket, in place.
        if unsafe { libc::connect(f.fd, to.as_ptr().cast(), to.len() as libc::socklen_t) } != 0 {
            bail!("cannot connect the UDP socket at fd {} again to {}: {}", f.fd, ckpt_step::sys::show_addr(&to), std::io::Error::last_os_error());
        }
    }
    if later.queued.is_empty() {
        return Ok(map);
    }
    m.queued = later.queued.clone();
    let b = m.encode();
    if b.len() > crate::plan::ADDR_MAP_MAX {
        bail!("the step's listeners and the datagrams queued make a table of {} bytes, more than ckpt-restart hands to the program ({} bytes)", b.len(), crate::plan::ADDR_MAP_MAX);
    }
    Ok(b)
}
