//! Where the tasks' listeners are after a restart (issue 14, docs/multinode.md part 6): a pair of
//! tasks that first connects after the restart connects to the address and port the peer
//! published before the checkpoint (MPI's modex, a ports file). At the step's checkpoint each
//! task records its node's addresses (`node_ips`, in its image's `StepInfo`); at the restart
//! each task reports its listeners, old name and new name (`Report`, in the rendezvous's
//! `Ready`), rank 0 hands every report to every task, and each task makes of them a `Map`
//! (old address and port -> new sockaddr, as that task reaches it) that the runtime's
//! `connect` hook consults. A task restarted on a node that lacks its old node's addresses
//! sees them as before (`Map::bind`, `Map::back`): a bind to its old node's address goes to its
//! new one, and the new address of a task shows as its old one where the program reads a
//! socket's address (Open MPI's TCP BTL binds its connecting socket to its own address of the
//! modex and checks the accepted connection's source against the connector's). Raw system
//! calls only (the runtime reads the node's addresses while the program is stopped).

use crate::sys;

/// One listener of a task: its sockaddr at the checkpoint and now; `udp`: a bound UDP socket
/// (its port is another port space than TCP's); `v6only`: an IPv6 socket with IPV6_V6ONLY,
/// which IPv4 does not reach (Open MPI's TCP BTL listens so at [::], and at 0.0.0.0 with
/// another socket: the same port number on both may be two different listeners).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Listener {
    pub old: Vec<u8>,
    pub new: Vec<u8>,
    pub udp: bool,
    pub v6only: bool,
}

/// `Listener`'s flags on the wire.
const UDP: u32 = 1;
const V6ONLY: u32 = 2;

/// What a task says at the restart: its rank, its node at the checkpoint (its boot id and its
/// addresses, IPv4 and IPv6, 4 or 16 bytes each), its node now (the same) and its listeners.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    pub rank: u32,
    pub boot: Vec<u8>,
    pub node: Vec<Vec<u8>>,
    pub now_boot: Vec<u8>,
    pub now: Vec<Vec<u8>>,
    pub listeners: Vec<Listener>,
}

/// Where a connect goes (`Map::lookup`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The old address of a listener of the step: connect here instead.
    To(Vec<u8>),
    /// An old address of a task's node, but no listener of the step was at that port.
    Uncovered,
    /// Not an address of the step.
    Other,
}

/// Old (address, port) of the step's listeners -> new sockaddr, as one task reaches them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Map {
    pub moved: Vec<(Vec<u8>, u16, Vec<u8>)>,
    /// The same for the step's bound UDP sockets: where a datagram to the old address and
    /// port goes (sendto, sendmsg, a datagram socket's connect).
    pub udp: Vec<(Vec<u8>, u16, Vec<u8>)>,
    /// Every old address (other than loopback) of the step's nodes.
    pub nodes: Vec<Vec<u8>>,
    /// This task's old node's addresses that its node now lacks -> its address now that
    /// stands for each (`pair`): where a bind to the old one goes, and what a socket's own
    /// name at the new one shows.
    pub bind: Vec<(Vec<u8>, Vec<u8>)>,
    /// A task's address now -> its old address it stands for, where that is one and the same
    /// for every task at that address now (a peer's address read from a socket shows it).
    pub back: Vec<(Vec<u8>, Vec<u8>)>,
    /// Datagrams queued unread at the checkpoint that ckpt-restart sent again from a stand-in
    /// address of its own: (the receiving socket's inode now, the stand-in's sockaddr, the
    /// source the program knew). Each is shown from that source when read.
    pub queued: Vec<(u64, Vec<u8>, Vec<u8>)>,
}

/// How many leading bits two addresses of one family have in common.
fn common_bits(a: &[u8], b: &[u8]) -> u32 {
    let mut n = 0;
    for (x, y) in a.iter().zip(b) {
        let d = (x ^ y).leading_zeros();
        n += d;
        if d < 8 {
            break;
        }
    }
    n
}

/// A node's old addresses that it lacks now, each with the address now that stands for it: of
/// the same family, the one with the longest prefix in common (the same subnet: the same
/// network), the first on a tie. Loopback and link-local stay out (node_ips).
pub fn pair(old: &[Vec<u8>], now: &[Vec<u8>]) -> Vec<(Vec<u8>, Vec<u8>)> {
    old.iter()
        .filter(|o| !now.contains(o) && !loopback(o) && !unspecified(o))
        .filter_map(|o| {
            let best = now.iter().filter(|n| n.len() == o.len() && !loopback(n)).fold(None::<&Vec<u8>>, |b, n| match b {
                Some(b) if common_bits(b, o) >= common_bits(n, o) => Some(b),
                _ => Some(n),
            })?;
            Some((o.clone(), best.clone()))
        })
        .collect()
}

/// `a` (an inet sockaddr) with the IP `ip` (4 or 16 bytes), in `a`'s own form (an IPv4
/// address in an IPv6 sockaddr IPv4-mapped); None: `a` cannot hold it.
pub fn with_ip(a: &[u8], ip: &[u8]) -> Option<Vec<u8>> {
    let fam = u16::from_ne_bytes([*a.first()?, *a.get(1)?]);
    let mut out = a.to_vec();
    match (fam == libc::AF_INET6 as u16, ip.len()) {
        (false, 4) if a.len() >= 8 && fam == libc::AF_INET as u16 => out[4..8].copy_from_slice(ip),
        (true, 4) if a.len() >= 24 => {
            out[8..18].fill(0);
            out[18..20].fill(0xff);
            out[20..24].copy_from_slice(ip);
        }
        (true, 16) if a.len() >= 24 => out[8..24].copy_from_slice(ip),
        _ => return None,
    }
    Some(out)
}

/// The IP of an inet sockaddr (16 bytes for AF_INET6, 4 for AF_INET and for an IPv4-mapped
/// IPv6 address).
pub fn ip_of(a: &[u8]) -> Option<Vec<u8>> {
    let fam = u16::from_ne_bytes([*a.first()?, *a.get(1)?]);
    if fam == libc::AF_INET as u16 && a.len() >= 8 {
        return Some(a[4..8].to_vec());
    }
    if fam == libc::AF_INET6 as u16 && a.len() >= 24 {
        let ip = &a[8..24];
        if ip[..10].iter().all(|&b| b == 0) && ip[10] == 0xff && ip[11] == 0xff {
            return Some(ip[12..].to_vec());
        }
        return Some(ip.to_vec());
    }
    None
}

fn unspecified(ip: &[u8]) -> bool {
    ip.iter().all(|&b| b == 0)
}

fn loopback(ip: &[u8]) -> bool {
    match ip.len() {
        4 => ip[0] == 127,
        16 => ip[..15].iter().all(|&b| b == 0) && ip[15] == 1,
        _ => false,
    }
}

/// A sockaddr for `ip` (4 or 16 bytes) and `port`; `v6`: an IPv4 address as IPv4-mapped IPv6.
fn sockaddr(ip: &[u8], port: u16, v6: bool) -> Vec<u8> {
    if ip.len() == 4 && !v6 {
        return sys::sockaddr_in(ip.try_into().expect("4 bytes"), port);
    }
    let mut a = vec![0u8; 28];
    a[0..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
    a[2..4].copy_from_slice(&port.to_be_bytes());
    if ip.len() == 4 {
        a[18] = 0xff;
        a[19] = 0xff;
        a[20..24].copy_from_slice(ip);
    } else {
        a[8..24].copy_from_slice(ip);
    }
    a
}

/// This node's addresses other than loopback and IPv6 link-local: IPv4 from the local routes
/// (crate::node), IPv6 from /proc/net/if_inet6.
pub fn node_ips() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = crate::node::local_addrs().iter().map(|a| a.to_vec()).collect();
    for l in crate::node::read_proc(c"/proc/net/if_inet6").lines() {
        let Some(hex) = l.split_whitespace().next().filter(|h| h.len() == 32) else { continue };
        let ip: Option<Vec<u8>> = (0..16).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()).collect();
        let link_local = |ip: &[u8]| ip[0] == 0xfe && ip[1] & 0xc0 == 0x80;
        if let Some(ip) = ip.filter(|ip| !(loopback(ip) || link_local(ip) || out.contains(ip))) {
            out.push(ip);
        }
    }
    out
}

struct Enc(Vec<u8>);

impl Enc {
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v);
    }
    fn list(&mut self, l: &[Vec<u8>]) {
        self.u32(l.len() as u32);
        l.iter().for_each(|b| self.bytes(b));
    }
}

struct Dec<'a>(&'a [u8]);

impl Dec<'_> {
    fn u32(&mut self) -> Option<u32> {
        let (a, b) = self.0.split_at_checked(4)?;
        self.0 = b;
        Some(u32::from_le_bytes(a.try_into().ok()?))
    }
    fn count(&mut self) -> Option<usize> {
        self.u32().map(|n| n as usize).filter(|&n| n <= self.0.len())
    }
    fn bytes(&mut self) -> Option<Vec<u8>> {
        let n = self.count()?;
        let (a, b) = self.0.split_at_checked(n)?;
        self.0 = b;
        Some(a.to_vec())
    }
    fn list(&mut self) -> Option<Vec<Vec<u8>>> {
        (0..self.count()?).map(|_| self.bytes()).collect()
    }
}

/// Reports as bytes (the rendezvous carries them as they are).
pub fn encode(reports: &[Report]) -> Vec<u8> {
    let mut e = Enc(Vec::new());
    e.u32(reports.len() as u32);
    for r in reports {
        e.u32(r.rank);
        e.bytes(&r.boot);
        e.list(&r.node);
        e.bytes(&r.now_boot);
        e.list(&r.now);
        e.u32(r.listeners.len() as u32);
        for l in &r.listeners {
            e.bytes(&l.old);
            e.bytes(&l.new);
            e.u32(if l.udp { UDP } else { 0 } | if l.v6only { V6ONLY } else { 0 });
        }
    }
    e.0
}

pub fn decode(b: &[u8]) -> Option<Vec<Report>> {
    let mut d = Dec(b);
    let reports = (0..d.count()?)
        .map(|_| {
            let rank = d.u32()?;
            let boot = d.bytes()?;
            let node = d.list()?;
            let (now_boot, now) = (d.bytes()?, d.list()?);
            let listener = |d: &mut Dec| {
                let (old, new, flags) = (d.bytes()?, d.bytes()?, d.u32()?);
                Some(Listener { old, new, udp: flags & UDP != 0, v6only: flags & V6ONLY != 0 })
            };
            let listeners = (0..d.count()?).map(|_| listener(&mut d)).collect::<Option<Vec<_>>>()?;
            Some(Report { rank, boot, node, now_boot, now, listeners })
        })
        .collect::<Option<Vec<_>>>()?;
    d.0.is_empty().then_some(reports)
}

/// Every task's address now that stands for an old one of its node (`pair`), with that old
/// one; an address now where two tasks would show differently (a task that kept it, or two
/// tasks from different old nodes on one new one) is left out: a connection from it could be
/// either's.
fn back_of(reports: &[Report]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut shown: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
    for r in reports.iter().filter(|r| !r.node.is_empty()) {
        let pairs = pair(&r.node, &r.now);
        for n in &r.now {
            let s = if r.node.contains(n) { None } else { pairs.iter().find(|(_, p)| p == n).map(|(o, _)| o.clone()) };
            match shown.iter_mut().find(|(k, _)| k == n) {
                Some((_, v)) if *v != s => *v = None,
                Some(_) => {}
                None => shown.push((n.clone(), s)),
            }
        }
    }
    shown.into_iter().filter_map(|(n, o)| Some((n, o?))).collect()
}

impl Map {
    /// Task `me`'s map from every task's report; `addrs[r]`: task r's address as `me` reaches
    /// it (the rendezvous's table), for a listener bound to every address. Loopback (and a
    /// listener bound to it) stands for a task of `me`'s old node only (the same boot id, or an
    /// address in common). Where the listener's node still answers at the old address (its
    /// task's node now has that address; loopback: `me` and that task are on one node now),
    /// only the port changes, and nothing when the port did not: the connection then comes
    /// from the address it came from before, which the peer may check against the addresses
    /// it was told (Open MPI's TCP BTL drops a connection from any other).
    pub fn of(reports: &[Report], me: u32, addrs: &[Vec<u8>]) -> Map {
        let me_r = reports.iter().find(|r| r.rank == me);
        let mine: &[Vec<u8>] = me_r.map_or(&[], |r| &r.node);
        let my_boot: &[u8] = me_r.map_or(&[], |r| &r.boot);
        let my_boot_now: &[u8] = me_r.map_or(&[], |r| &r.now_boot);
        let mut m = Map::default();
        for r in reports {
            let same_node = r.rank == me || (!r.boot.is_empty() && r.boot == my_boot) || r.node.iter().any(|ip| mine.contains(ip));
            let together_now = r.rank == me || (!r.now_boot.is_empty() && r.now_boot == my_boot_now);
            for l in &r.listeners {
                let (Some(old_ip), Some(new_ip)) = (ip_of(&l.old), ip_of(&l.new)) else { continue };
                let (port, new_port) = (sys::port_of(&l.old), sys::port_of(&l.new));
                let v4_only = u16::from_ne_bytes([l.old[0], l.old[1]]) == libc::AF_INET as u16;
                let mut olds: Vec<Vec<u8>> = if unspecified(&old_ip) {
                    let mut v = r.node.clone();
                    if same_node {
                        v.extend([vec![127, 0, 0, 1], sockaddr_ip6_loopback()]);
                    }
                    v
                } else if loopback(&old_ip) && !same_node {
                    Vec::new()
                } else {
                    vec![old_ip]
                };
                // An IPv4 socket is reached at IPv4 addresses only, an IPv6 one with
                // IPV6_V6ONLY at IPv6 ones only (another task's IPv4 listener may have the
                // same port: a connect to an IPv4 address and that port is that one's).
                if v4_only {
                    olds.retain(|ip| ip.len() == 4);
                } else if l.v6only {
                    olds.retain(|ip| ip.len() == 16);
                }
                // Bound to one address now, or to every address of its node (then reached at
                // the address `me` reaches its task at, unless the old one still answers).
                let bound = (!unspecified(&new_ip)).then_some(new_ip);
                let elsewhere = bound.clone().or_else(|| addrs.get(r.rank as usize).and_then(|a| ip_of(a)));
                for ip in olds {
                    let answers = if loopback(&ip) { together_now } else { r.now.contains(&ip) };
                    let still = answers && bound.as_ref().is_none_or(|b| *b == ip);
                    let to_ip = match (still, &elsewhere) {
                        (true, _) => ip.clone(),
                        (false, Some(e)) => e.clone(),
                        (false, None) => continue,
                    };
                    if to_ip == ip && port == new_port {
                        continue;
                    }
                    let list = if l.udp { &mut m.udp } else { &mut m.moved };
                    list.retain(|(i, p, _)| !(*i == ip && *p == port));
                    list.push((ip, port, sockaddr(&to_ip, new_port, false)));
                }
            }
            for ip in &r.node {
                if !m.nodes.contains(ip) {
                    m.nodes.push(ip.clone());
                }
            }
        }
        if let Some(r) = me_r {
            m.bind = pair(&r.node, &r.now);
        }
        m.back = back_of(reports);
        m
    }

    /// Where a bind to the IP `ip` goes (this task's old node's address that its node lacks).
    pub fn bind_to(&self, ip: &[u8]) -> Option<&[u8]> {
        self.bind.iter().find(|(o, _)| o == ip).map(|(_, n)| n.as_slice())
    }

    /// What this task's own address `ip` (a socket's name) shows: the old one it stands for.
    pub fn own_shown(&self, ip: &[u8]) -> Option<&[u8]> {
        self.bind.iter().find(|(_, n)| n == ip).map(|(o, _)| o.as_slice())
    }

    /// What a peer's address `ip` shows: the old address of the task(s) there now.
    pub fn peer_shown(&self, ip: &[u8]) -> Option<&[u8]> {
        self.back.iter().find(|(n, _)| n == ip).map(|(_, o)| o.as_slice())
    }

    /// The sockaddr `from` (a peer's) as a peer's address shows (`peer_shown`).
    pub fn peer_shown_addr(&self, from: &[u8]) -> Vec<u8> {
        ip_of(from).and_then(|ip| self.peer_shown(&ip)).and_then(|o| with_ip(from, o)).unwrap_or_else(|| from.to_vec())
    }

    /// Where a connect to `dest` (a sockaddr) goes.
    pub fn lookup(&self, dest: &[u8]) -> Lookup {
        self.lookup_in(&self.moved, dest)
    }

    /// Where a datagram to `dest` (a sockaddr) goes, or a datagram socket's connect.
    pub fn lookup_udp(&self, dest: &[u8]) -> Lookup {
        self.lookup_in(&self.udp, dest)
    }

    /// The old port a datagram from `src` (a sockaddr: a task's UDP socket where it is now)
    /// shows: that of the one bound UDP socket of the step now there whose port moved. None:
    /// its port as it is (not moved, or no such socket, or more than one old port).
    pub fn udp_port_shown(&self, src: &[u8]) -> Option<u16> {
        let (ip, port) = (ip_of(src)?, sys::port_of(src));
        let mut olds = self.udp.iter().filter(|(_, _, to)| ip_of(to).as_ref() == Some(&ip) && sys::port_of(to) == port).map(|(_, p, _)| *p);
        let old = olds.next()?;
        (old != port && olds.all(|p| p == old)).then_some(old)
    }

    fn lookup_in(&self, moved: &[(Vec<u8>, u16, Vec<u8>)], dest: &[u8]) -> Lookup {
        let Some(ip) = ip_of(dest) else { return Lookup::Other };
        let port = sys::port_of(dest);
        let v6 = u16::from_ne_bytes([dest[0], dest[1]]) == libc::AF_INET6 as u16;
        if let Some((_, _, to)) = moved.iter().find(|(i, p, _)| *i == ip && *p == port) {
            let to_ip = ip_of(to).expect("made by Map::of");
            // An IPv4 socket cannot reach an IPv6 address.
            if !v6 && to_ip.len() == 16 {
                return Lookup::Uncovered;
            }
            return Lookup::To(sockaddr(&to_ip, sys::port_of(to), v6));
        }
        if self.nodes.contains(&ip) {
            Lookup::Uncovered
        } else {
            Lookup::Other
        }
    }

    /// This map after another restart that moved the listeners again as `next` says: an
    /// address of the first run still reaches its listener.
    pub fn then(self, next: Map) -> Map {
        // A bind to the first run's address goes where its address of the second run goes now
        // (the second run's address itself the program never saw: it saw the first's); a peer
        // at an address of the second run's shows as the first run's address.
        let bind = self.bind.iter().map(|(o, n)| (o.clone(), next.bind_to(n).unwrap_or(n).to_vec())).chain(next.bind.iter().filter(|(o, _)| !self.bind.iter().any(|(x, n)| x == o || n == o)).cloned()).filter(|(o, n)| o != n).collect();
        let mut back: Vec<(Vec<u8>, Vec<u8>)> = next.back.iter().map(|(n, o)| (n.clone(), self.peer_shown(o).unwrap_or(o).to_vec())).filter(|(n, o)| n != o).collect();
        back.extend(self.back.iter().filter(|(n, _)| !next.back.iter().any(|(x, _)| x == n)).cloned());
        // A datagram queued at this checkpoint came from an address of the run before: the
        // program knew it as this map shows it; or, one this map's restart sent again from a
        // stand-in and not read since, from the source that one showed.
        let earlier = |from: &[u8]| self.queued.iter().find(|(_, at, _)| ip_of(at) == ip_of(from) && sys::port_of(at) == sys::port_of(from)).map(|(_, _, f)| f.clone());
        let queued = next.queued.iter().map(|(ino, at, from)| (*ino, at.clone(), earlier(from).unwrap_or_else(|| self.peer_shown_addr(from)))).collect();
        let moved = compose(self.moved, next.moved.clone(), |to| next.lookup(to));
        let udp = compose(self.udp, next.udp.clone(), |to| next.lookup_udp(to));
        let mut m = Map { moved, udp, nodes: self.nodes, bind, back, queued };
        for ip in next.nodes {
            if !m.nodes.contains(&ip) {
                m.nodes.push(ip);
            }
        }
        m
    }

    /// Map::encode: the UDP part comes last and only where there is one (the runtime of a
    /// program checkpointed before it existed reads the rest as it did).
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc(Vec::new());
        e.u32(self.moved.len() as u32);
        for (ip, port, to) in &self.moved {
            e.bytes(ip);
            e.u32(u32::from(*port));
            e.bytes(to);
        }
        e.list(&self.nodes);
        // Only where a node was left behind: the runtime of a program checkpointed before
        // these pairs existed reads the rest as it did (it is restored with the program).
        if self.bind.is_empty() && self.back.is_empty() && self.udp.is_empty() && self.queued.is_empty() {
            return e.0;
        }
        for l in [&self.bind, &self.back] {
            e.u32(l.len() as u32);
            for (a, b) in l {
                e.bytes(a);
                e.bytes(b);
            }
        }
        if !self.udp.is_empty() || !self.queued.is_empty() {
            e.u32(self.udp.len() as u32);
            for (ip, port, to) in &self.udp {
                e.bytes(ip);
                e.u32(u32::from(*port));
                e.bytes(to);
            }
        }
        // Last, and only where there is one (as the UDP part).
        if !self.queued.is_empty() {
            e.u32(self.queued.len() as u32);
            for (ino, at, from) in &self.queued {
                e.u32(*ino as u32);
                e.u32((*ino >> 32) as u32);
                e.bytes(at);
                e.bytes(from);
            }
        }
        e.0
    }

    pub fn decode(b: &[u8]) -> Option<Map> {
        let mut d = Dec(b);
        let moves = |d: &mut Dec| (0..d.count()?).map(|_| Some((d.bytes()?, d.u32()? as u16, d.bytes()?))).collect::<Option<Vec<_>>>();
        let moved = moves(&mut d)?;
        let nodes = d.list()?;
        let none = d.0.is_empty();
        let pairs = |d: &mut Dec| (0..d.count()?).map(|_| Some((d.bytes()?, d.bytes()?))).collect::<Option<Vec<_>>>();
        let (bind, back) = if none { (Vec::new(), Vec::new()) } else { (pairs(&mut d)?, pairs(&mut d)?) };
        let udp = if d.0.is_empty() { Vec::new() } else { moves(&mut d)? };
        let queued = if d.0.is_empty() {
            Vec::new()
        } else {
            (0..d.count()?).map(|_| Some((u64::from(d.u32()?) | u64::from(d.u32()?) << 32, d.bytes()?, d.bytes()?))).collect::<Option<Vec<_>>>()?
        };
        d.0.is_empty().then_some(Map { moved, udp, nodes, bind, back, queued })
    }

    pub fn is_empty(&self) -> bool {
        self.moved.is_empty() && self.udp.is_empty() && self.nodes.is_empty() && self.bind.is_empty() && self.back.is_empty() && self.queued.is_empty()
    }
}

/// `first`'s moves (old address and port -> where) after `next`'s: a first run's address
/// goes where its place after the first restart went (`then`, asked of `next`), and `next`'s
/// own moves replace any of the same old address and port.
fn compose(first: Vec<(Vec<u8>, u16, Vec<u8>)>, next: Vec<(Vec<u8>, u16, Vec<u8>)>, then: impl Fn(&[u8]) -> Lookup) -> Vec<(Vec<u8>, u16, Vec<u8>)> {
    let mut out: Vec<_> = first
        .into_iter()
        .map(|(ip, port, to)| match then(&to) {
            Lookup::To(t) => (ip, port, t),
            _ => (ip, port, to),
        })
        .collect();
    for (ip, port, to) in next {
        out.retain(|(i, p, _)| !(*i == ip && *p == port));
        out.push((ip, port, to));
    }
    out
}

fn sockaddr_ip6_loopback() -> Vec<u8> {
    let mut ip = vec![0u8; 16];
    ip[15] = 1;
    ip
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(ip: [u8; 4], port: u16) -> Vec<u8> {
        sys::sockaddr_in(ip, port)
    }

    #[test]
    fn reports_and_maps_round_trip() {
        let r = vec![Report { rank: 1, boot: vec![], node: vec![vec![10, 0, 0, 5]], listeners: vec![Listener { old: v4([0; 4], 5000), new: v4([0; 4], 6000), udp: false, v6only: false }], now_boot: b"b".to_vec(), now: vec![vec![10, 1, 0, 5]] }];
        assert_eq!(decode(&encode(&r)), Some(r.clone()));
        assert_eq!(decode(&encode(&r)[1..]), None);
        let m = Map::of(&r, 0, &[vec![], v4([10, 0, 0, 9], 0)]);
        assert_eq!(Map::decode(&m.encode()), Some(m.clone()));
        // No node left behind: the bytes a runtime of before the pairs reads (without them).
        let plain = Map { bind: Vec::new(), back: Vec::new(), ..m.clone() };
        assert!(plain.encode().len() + 8 < m.encode().len());
        let mut old = plain.encode();
        assert_eq!(Map::decode(&old), Some(plain.clone()));
        old.extend_from_slice(&[0; 8]);
        assert_eq!(Map::decode(&old), Some(plain));
        assert_eq!(Map::decode(&old[..old.len() - 4]), None);
    }

    #[test]
    fn a_moved_listener_is_reached_at_its_new_node_and_port() {
        let reports = vec![
            Report { rank: 0, boot: vec![], node: vec![vec![10, 0, 0, 1]], listeners: vec![], ..Default::default() },
            Report { rank: 1, boot: vec![], node: vec![vec![10, 0, 0, 2]], listeners: vec![Listener { old: v4([0; 4], 5000), new: v4([0; 4], 6000), udp: false, v6only: false }], ..Default::default() },
            Report { rank: 2, boot: vec![], node: vec![vec![10, 0, 0, 1]], listeners: vec![Listener { old: v4([127, 0, 0, 3], 7000), new: v4([127, 0, 0, 3], 7001), udp: false, v6only: false }], ..Default::default() },
        ];
        let addrs = vec![v4([127, 0, 0, 1], 1), v4([10, 1, 0, 2], 1), v4([10, 1, 0, 1], 1)];
        let m = Map::of(&reports, 0, &addrs);
        assert_eq!(m.lookup(&v4([10, 0, 0, 2], 5000)), Lookup::To(v4([10, 1, 0, 2], 6000)));
        // Loopback means a task of task 0's old node: not task 1.
        assert_eq!(m.lookup(&v4([127, 0, 0, 1], 5000)), Lookup::Other);
        assert_eq!(m.lookup(&v4([127, 0, 0, 3], 7000)), Lookup::To(v4([127, 0, 0, 3], 7001)));
        assert_eq!(m.lookup(&v4([10, 0, 0, 2], 5001)), Lookup::Uncovered);
        assert_eq!(m.lookup(&v4([10, 9, 9, 9], 5000)), Lookup::Other);
        // An IPv6 socket connecting to the IPv4-mapped old address.
        assert_eq!(m.lookup(&sockaddr(&[10, 0, 0, 2], 5000, true)), Lookup::To(sockaddr(&[10, 1, 0, 2], 6000, true)));
        // Task 1 itself: its own listener through loopback, which still reaches it.
        let m1 = Map::of(&reports, 1, &addrs);
        assert_eq!(m1.lookup(&v4([127, 0, 0, 1], 5000)), Lookup::To(v4([127, 0, 0, 1], 6000)));
        // A second restart moves it again: the first run's address still reaches it.
        let next = Map { moved: vec![(vec![10, 1, 0, 2], 6000, v4([10, 2, 0, 2], 6500))], nodes: vec![vec![10, 1, 0, 2]], ..Default::default() };
        let both = m.then(next);
        assert_eq!(both.lookup(&v4([10, 0, 0, 2], 5000)), Lookup::To(v4([10, 2, 0, 2], 6500)));
    }

    /// Open MPI's TCP BTL listens with two sockets, at 0.0.0.0 and at [::] with IPV6_V6ONLY,
    /// each taking the first free port of its family: one rank's IPv4 port may be another's
    /// (or its own) IPv6 port. Both moved: a connect to an IPv4 address and that port goes to
    /// the IPv4 listener's new port, whatever the order of the reports (before, the IPv6 one
    /// reported last took the IPv4 addresses too: the connect went to a port nothing listened
    /// at for IPv4, refused, and the ring hung in MPI_Reduce).
    #[test]
    fn an_ipv6_only_listener_at_the_port_of_an_ipv4_one_does_not_take_its_connects() {
        let v6 = |port: u16| sockaddr(&[0; 16], port, true);
        let host = b"host".to_vec();
        let node = vec![vec![192, 0, 2, 2], vec![0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]];
        let report = |rank: u32, listeners: Vec<Listener>| Report { rank, boot: host.clone(), node: node.clone(), now_boot: host.clone(), now: node.clone(), listeners };
        let ipv4 = Listener { old: v4([0; 4], 1027), new: v4([0; 4], 33487), udp: false, v6only: false };
        let ipv6 = Listener { old: v6(1027), new: v6(36035), udp: false, v6only: true };
        let addrs = vec![v4([127, 0, 0, 1], 1), v4([127, 0, 0, 1], 1)];
        for reports in [vec![report(0, vec![ipv4.clone()]), report(1, vec![ipv6.clone()])], vec![report(0, vec![ipv6.clone()]), report(1, vec![ipv4.clone()])], vec![report(0, vec![ipv4.clone(), ipv6.clone()])]] {
            let m = Map::of(&reports, 0, &addrs);
            assert_eq!(m.lookup(&v4([192, 0, 2, 2], 1027)), Lookup::To(v4([192, 0, 2, 2], 33487)));
            assert_eq!(m.lookup(&v4([127, 0, 0, 1], 1027)), Lookup::To(v4([127, 0, 0, 1], 33487)));
            // An IPv6 socket to the IPv4-mapped address reaches the IPv4 listener too.
            assert_eq!(m.lookup(&sockaddr(&[192, 0, 2, 2], 1027, true)), Lookup::To(sockaddr(&[192, 0, 2, 2], 33487, true)));
            // IPv6 addresses reach the IPv6 listener.
            assert_eq!(m.lookup(&sockaddr(&node[1], 1027, true)), Lookup::To(sockaddr(&node[1], 36035, true)));
            assert_eq!(m.lookup(&sockaddr(&sockaddr_ip6_loopback(), 1027, true)), Lookup::To(sockaddr(&sockaddr_ip6_loopback(), 36035, true)));
        }
        // A dual-stack [::] listener (no IPV6_V6ONLY) is reached at IPv4 addresses as before.
        let dual = Listener { v6only: false, ..ipv6 };
        let m = Map::of(&[report(0, vec![dual])], 0, &addrs);
        assert_eq!(m.lookup(&v4([192, 0, 2, 2], 1027)), Lookup::To(v4([192, 0, 2, 2], 36035)));
        // The flag crosses the rendezvous.
        let r = vec![report(0, vec![ipv4, Listener { old: v6(1), new: v6(2), udp: true, v6only: true }])];
        assert_eq!(decode(&encode(&r)), Some(r));
    }

    /// Tasks on their old nodes again (or on nodes that have the old addresses): a connect to
    /// the old address keeps it (its source address is the one the peer knows: Open MPI's TCP
    /// BTL checks it), only a port that moved changes; on another node it goes to where the
    /// rendezvous reached that task.
    #[test]
    fn a_listener_whose_node_still_has_the_old_address_is_reached_there() {
        let node = |ip: [u8; 4]| vec![ip.to_vec()];
        let every = |old: u16, new: u16| vec![Listener { old: v4([0; 4], old), new: v4([0; 4], new), udp: false, v6only: false }];
        let host = b"host".to_vec();
        let reports = vec![
            Report { rank: 0, boot: host.clone(), node: node([192, 0, 2, 2]), now_boot: host.clone(), now: node([192, 0, 2, 2]), listeners: every(5000, 5000) },
            Report { rank: 1, boot: host.clone(), node: node([192, 0, 2, 2]), now_boot: host.clone(), now: node([192, 0, 2, 2]), listeners: every(5001, 6001) },
            Report { rank: 2, boot: b"b".to_vec(), node: node([10, 0, 0, 3]), now_boot: b"c".to_vec(), now: node([10, 1, 0, 3]), listeners: every(5002, 5002) },
        ];
        let addrs = vec![v4([127, 0, 0, 1], 1), v4([127, 0, 0, 1], 1), v4([10, 1, 0, 3], 1)];
        let m = Map::of(&reports, 0, &addrs);
        // The same port at the same address: left alone (no entry for it).
        assert_eq!(m.lookup(&v4([192, 0, 2, 2], 5000)), Lookup::Uncovered);
        assert!(!m.moved.iter().any(|(_, p, _)| *p == 5000));
        // Another port at the same address: the port alone changes.
        assert_eq!(m.lookup(&v4([192, 0, 2, 2], 5001)), Lookup::To(v4([192, 0, 2, 2], 6001)));
        assert_eq!(m.lookup(&v4([127, 0, 0, 1], 5001)), Lookup::To(v4([127, 0, 0, 1], 6001)));
        // A task on another node now: its address there.
        assert_eq!(m.lookup(&v4([10, 0, 0, 3], 5002)), Lookup::To(v4([10, 1, 0, 3], 5002)));
        // Loopback reaches a listener of the same node only while both are on one node.
        let far = vec![v4([127, 0, 0, 1], 1), v4([10, 9, 9, 1], 1), v4([10, 1, 0, 3], 1)];
        let apart = vec![Report { now_boot: b"other".to_vec(), ..reports[0].clone() }, reports[1].clone()];
        let m = Map::of(&apart, 0, &far);
        assert_eq!(m.lookup(&v4([127, 0, 0, 1], 5001)), Lookup::To(v4([10, 9, 9, 1], 6001)));
        assert_eq!(m.lookup(&v4([192, 0, 2, 2], 5001)), Lookup::To(v4([192, 0, 2, 2], 6001)));
        let moved = [Report { now: node([192, 0, 2, 9]), ..apart[0].clone() }, Report { now: node([192, 0, 2, 7]), ..apart[1].clone() }];
        let m = Map::of(&moved, 0, &far);
        assert_eq!(m.lookup(&v4([192, 0, 2, 2], 5001)), Lookup::To(v4([10, 9, 9, 1], 6001)));
    }

    /// Two tasks whose nodes swapped (task 0 now where task 1 was): each binds its old address
    /// at its new one, and each shows the other's new address as its old one (the address the
    /// other published); a task that kept its address, or an address two tasks from different
    /// old nodes share now, shows as it is.
    #[test]
    fn a_task_on_another_node_keeps_its_old_address_in_view() {
        let a = |x: u8| vec![10, 7, 0, x];
        let rep = |rank, old: Vec<Vec<u8>>, now: Vec<Vec<u8>>| Report { rank, boot: b"b".to_vec(), node: old, now_boot: b"b".to_vec(), now, listeners: vec![] };
        let reports = vec![rep(0, vec![a(1)], vec![a(2)]), rep(1, vec![a(2)], vec![a(1)])];
        let m = Map::of(&reports, 0, &[]);
        assert_eq!(m.bind_to(&a(1)), Some(&a(2)[..]));
        assert_eq!(m.bind_to(&a(2)), None);
        assert_eq!(m.own_shown(&a(2)), Some(&a(1)[..]));
        assert_eq!(m.peer_shown(&a(1)), Some(&a(2)[..]));
        assert_eq!(m.peer_shown(&a(2)), Some(&a(1)[..]));
        assert_eq!(Map::decode(&m.encode()), Some(m.clone()));
        assert_eq!(with_ip(&v4([10, 7, 0, 1], 9), &a(2)), Some(v4([10, 7, 0, 2], 9)));
        assert_eq!(with_ip(&sockaddr(&a(1), 9, true), &a(2)), Some(sockaddr(&a(2), 9, true)));
        // Of two addresses now, the one of the old one's subnet stands for it.
        assert_eq!(pair(&[vec![192, 168, 1, 5], a(1)], &[a(9), vec![192, 168, 1, 6]]), vec![(vec![192, 168, 1, 5], vec![192, 168, 1, 6]), (a(1), a(9))]);
        // A task that kept a(3), and one that came there from a(4): a(3) shows as it is.
        let kept = vec![rep(0, vec![a(1)], vec![a(2)]), rep(1, vec![a(3)], vec![a(3)]), rep(2, vec![a(4)], vec![a(3)])];
        let m = Map::of(&kept, 0, &[]);
        assert_eq!(m.peer_shown(&a(3)), None);
        assert_eq!(m.peer_shown(&a(2)), Some(&a(1)[..]));
        // A second restart moves task 0 again: the first run's address binds at the newest,
        // and the newest shows as the first run's.
        let next = Map::of(&[rep(0, vec![a(2)], vec![a(5)])], 0, &[]);
        let both = m.then(next);
        assert_eq!(both.bind_to(&a(1)), Some(&a(5)[..]));
        assert_eq!(both.peer_shown(&a(5)), Some(&a(1)[..]));
        assert_eq!(both.own_shown(&a(5)), Some(&a(1)[..]));
        // Swapped, then swapped back: every task at its first address again, nothing to show
        // otherwise.
        let first = Map::of(&reports, 0, &[]);
        let back = Map::of(&[rep(0, vec![a(2)], vec![a(1)]), rep(1, vec![a(1)], vec![a(2)])], 0, &[]);
        let both = first.then(back);
        assert_eq!((both.bind.len(), both.back.len()), (0, 0), "{both:?}");
    }

    /// Two tasks whose nodes swapped, each with a UDP socket bound on every address (one of
    /// them at another port now): a datagram to a task's old address and port goes where its
    /// socket is now, a TCP connect to the same port is not mapped by it, and the source port
    /// of a datagram from the moved socket shows as its old one.
    #[test]
    fn a_datagram_to_a_task_on_another_node_reaches_it_there() {
        let a = |x: u8| vec![10, 8, 0, x];
        let udp = |old: u16, new: u16| vec![Listener { old: v4([0; 4], old), new: v4([0; 4], new), udp: true, v6only: false }];
        let rep = |rank, old: Vec<u8>, now: Vec<u8>, l| Report { rank, boot: b"b".to_vec(), node: vec![old], now_boot: b"b".to_vec(), now: vec![now], listeners: l };
        let reports = vec![rep(0, a(1), a(2), udp(4000, 4000)), rep(1, a(2), a(1), udp(4001, 4501))];
        let addrs = vec![v4([10, 8, 0, 2], 1), v4([10, 8, 0, 1], 1)];
        let m = Map::of(&reports, 1, &addrs);
        assert_eq!(m.lookup_udp(&v4([10, 8, 0, 1], 4000)), Lookup::To(v4([10, 8, 0, 2], 4000)));
        assert_eq!(m.lookup(&v4([10, 8, 0, 1], 4000)), Lookup::Uncovered);
        assert!(m.moved.is_empty(), "{m:?}");
        let m0 = Map::of(&reports, 0, &addrs);
        assert_eq!(m0.lookup_udp(&v4([10, 8, 0, 2], 4001)), Lookup::To(v4([10, 8, 0, 1], 4501)));
        assert_eq!(m0.udp_port_shown(&v4([10, 8, 0, 1], 4501)), Some(4001));
        assert_eq!(m0.udp_port_shown(&v4([10, 8, 0, 1], 4000)), None);
        assert_eq!(m0.peer_shown(&a(1)), Some(&a(2)[..]));
        assert_eq!(Map::decode(&m0.encode()), Some(m0.clone()));
        assert_eq!(decode(&encode(&reports)), Some(reports.clone()));
        // Only UDP moved and no node left behind: still read back whole.
        let only = Map { udp: m0.udp.clone(), ..Default::default() };
        assert_eq!(Map::decode(&only.encode()), Some(only));
        // Restarted again where each was at first: the first run's address reaches it there
        // (as it is).
        let back = Map::of(&[rep(0, a(2), a(1), udp(4000, 4000)), rep(1, a(1), a(2), udp(4501, 4001))], 1, &[v4([10, 8, 0, 1], 1), v4([10, 8, 0, 2], 1)]);
        let both = m.then(back);
        assert_eq!(both.lookup_udp(&v4([10, 8, 0, 1], 4000)), Lookup::To(v4([10, 8, 0, 1], 4000)));
    }

    /// Datagrams queued at a checkpoint and sent again from stand-ins: carried whole (alone
    /// too), their sources shown through the map before them, and one still unread at the
    /// next checkpoint (its source then the stand-in's) keeps the source it showed.
    #[test]
    fn a_datagram_queued_at_the_checkpoint_keeps_its_source() {
        let a = |x: u8| vec![10, 8, 0, x];
        let alone = Map { queued: vec![(7 | 9 << 40, v4([127, 31, 7, 3], 5000), v4([10, 8, 0, 2], 4001))], ..Default::default() };
        assert_eq!(Map::decode(&alone.encode()), Some(alone.clone()));
        assert!(!alone.is_empty());
        let swapped = Map { back: vec![(a(1), a(2)), (a(2), a(1))], ..alone.clone() };
        assert_eq!(Map::decode(&swapped.encode()), Some(swapped.clone()));
        // The next restart: one queued from the stand-in of the first, one from a peer at an
        // address of the first restart.
        let next = Map { back: vec![(a(2), a(1)), (a(1), a(2))], queued: vec![(11, v4([127, 31, 7, 3], 6000), v4([127, 31, 7, 3], 5000)), (12, v4([127, 31, 7, 3], 6001), v4([10, 8, 0, 1], 4000))], ..Default::default() };
        let both = swapped.then(next);
        assert_eq!(both.queued, vec![(11, v4([127, 31, 7, 3], 6000), v4([10, 8, 0, 2], 4001)), (12, v4([127, 31, 7, 3], 6001), v4([10, 8, 0, 2], 4000))]);
    }
}
