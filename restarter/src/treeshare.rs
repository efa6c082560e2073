//! The sockets that processes of a tree share, made once by the tree's root before it forks the
//! tree (like its pipes, see `tree`): every socketpair and TCP connection of
//! `ckpt_image::unshared::TreeSocks::connections`, refilled once, and the listeners: those
//! several processes hold (TCP and UNIX), and the TCP ones those connections were accepted from
//! (`TreeSocks::listeners`); and the UNIX sockets that reach each other by name across processes
//! (`TreeSocks::unix_links`: a connection accepted from a named listener, datagram sockets connected
//! to a named one), each group made by the single-process restore of sockets as if one process
//! held it all (names bound again, deleted ones for the moment; clients connected; queues
//! refilled once). Every process inherits them and takes the ones its fd table holds (as fds or
//! in flight) through the socket restore's `job` (ckpt_kinds::sockets::restore); the rest it
//! closes with every other fd of ours. The other sockets several processes hold (UDP, raw,
//! TCP not connected inside the tree: `TreeSocks::lone_sockets`) are made the same way, together.
//! Everything of a socket made here is set here, once (options, shutdown, filter:
//! ckpt_kinds::sockets::restore::settle), not by each process that takes it.

use anyhow::{anyhow, Result};
use ckpt_image::unshared::TreeSocks;
use ckpt_image::{FdKind, FdState, Index, Socket};
use ckpt_kinds::sockets::restore::settle;
use std::collections::{HashMap, HashSet};
use std::os::fd::RawFd;

/// Our fd of each shared socket, by inode; those whose options, shutdown and filter are set
/// (all but the step's connections the root adopts); the socketpair ends whose queue carries
/// files in flight, made empty: the other end of each (by the end's inode), which the process
/// describing it refills it from once it has made those files (`feeders`).
#[derive(Default)]
pub struct TreeSockets(HashMap<u64, RawFd>, HashSet<u64>, HashMap<u64, RawFd>);

impl TreeSockets {
    /// Make the connections the processes of `socks`' images share (our fds above `top`; `lossy`:
    /// go on with a warning where something of them cannot be restored; `step`: the tree is a
    /// task of a step, whose listeners move off a port another program holds).
    pub fn make(socks: &TreeSocks, top: RawFd, lossy: bool, step: bool) -> Result<TreeSockets> {
        let indexes = socks.indexes();
        let mut me = TreeSockets::default();
        // A step task on a node that lacks its old node's addresses: its tree's connections at
        // the addresses now that stand for them (its runtime shows the old ones).
        if let Some(info) = indexes.iter().find_map(|(_, ix)| ix.step.as_ref()) {
            ckpt_kinds::sockets::pair::node_addresses(ckpt_step::addrmap::pair(&info.node_ips, &ckpt_step::addrmap::node_ips()));
        }
        let conns = socks.connections();
        // The program's listeners, first: the TCP ones those connections were accepted from are
        // made here with them (a listener bound later would find its port taken by their server
        // ends), and every listener several processes hold.
        let mut listeners = Vec::new();
        for l in socks.listeners() {
            let fd = ckpt_kinds::sockets::pair::listener(l, step).map_err(|e| anyhow!("{e}"))?;
            me.0.insert(l.ino, fd);
            listeners.push((l, fd));
            settle(fd, l, lossy).map_err(|e| anyhow!("{e}"))?;
            me.1.insert(l.ino);
        }
        let mut temps: Vec<(&[u8], RawFd)> = Vec::new();
        let made = conns.iter().try_for_each(|(a, b)| -> Result<()> {
            let mut via = listeners.iter().find(|(l, _)| l.family == a.family && ckpt_image::unshared::serves(l, a)).map(|x| x.1);
            if via.is_none() && a.family != libc::AF_UNIX {
                via = match temps.iter().find(|t| t.0 == &a.name[..]) {
                    Some(t) => Some(t.1),
                    None => {
                        let t = ckpt_kinds::sockets::pair::temp_listener(a).map_err(|e| anyhow!("{e}"))?;
                        temps.push((&a.name, t));
                        Some(t)
                    }
                };
            }
            // A queue with files in flight in it: its process sends it again (it makes those
            // files with its own), from the other end.
            let later = |s: &Socket| ckpt_image::unshared::carries_files(s).then(|| Socket { queue: Vec::new(), ..s.clone() });
            let (a2, b2) = (later(a), later(b));
            let (x, y) = ckpt_kinds::sockets::pair::make(a2.as_ref().unwrap_or(a), b2.as_ref().unwrap_or(b), via).map_err(|e| anyhow!("{e}"))?;
            me.0.insert(a.ino, x);
            me.0.insert(b.ino, y);
            if a2.is_some() {
                me.2.insert(a.ino, y);
            }
            if b2.is_some() {
                me.2.insert(b.ino, x);
            }
            for (fd, s) in [(x, a), (y, b)] {
                settle(fd, s, lossy).map_err(|e| anyhow!("{e}"))?;
                me.1.insert(s.ino);
            }
            Ok(())
        });
        for (_, t) in temps {
            // SAFETY: a listener of ours, no longer needed.
            unsafe { libc::close(t) };
        }
        made?;
        for group in socks.unix_links() {
            me.group(indexes, &group, top, lossy)?;
        }
        // All in one group: a datagram queued on one of them is sent again from another of
        // them that sent it (its address).
        let lone: Vec<(i32, &Socket)> = socks.lone_sockets().into_iter().map(|s| (socks.first_holder(s.ino).unwrap_or(0), s)).collect();
        if !lone.is_empty() {
            me.group(indexes, &lone, top, lossy)?;
        }
        Ok(me)
    }

    /// Make one group of `TreeSocks::unix_links` (or the sockets of `lone_sockets`) with the
    /// single-process restore of sockets.
    fn group(&mut self, indexes: &[(i32, Index)], group: &[(i32, &Socket)], top: RawFd, lossy: bool) -> Result<()> {
        let relative = |a: &[u8]| a.len() > 2 && a[2] != 0 && a[2] != b'/';
        let fds: Vec<FdState> = group
            .iter()
            .map(|&(pid, s)| {
                let mut s = s.clone();
                // Made by the tree's root, as its socketpairs are: SO_PEERCRED names the root.
                s.peer_cred = None;
                // A relative name whose directory the runtime did not see (an accepted end, a
                // client that connected to it): its process's working directory.
                if s.bind_dir.is_empty() && (relative(&s.name) || relative(&s.peer_name)) {
                    s.bind_dir = indexes.iter().find(|(p, _)| *p == pid).map(|(_, ix)| ix.process.cwd.clone()).unwrap_or_default();
                }
                FdState { fd: 0, flags: 0, pos: 0, cloexec: true, kind: FdKind::Socket(Box::new(s)), dup_of: None, mtime: 0, id: Default::default(), locks: Vec::new(), owner: None, held_with: Vec::new() }
            })
            .collect();
        let opts = ckpt_kinds::sockets::restore::Options { ignore: lossy, other_port: false, ..Default::default() };
        let socks = ckpt_kinds::sockets::restore::Sockets::make(&fds, top, opts, HashMap::new()).map_err(|e| anyhow!("{e}"))?;
        for &(_, s) in group {
            let fd = socks.open(s.ino).map_err(|e| anyhow!("{e}"))?;
            self.0.insert(s.ino, fd);
            self.1.insert(s.ino);
        }
        // Queues refilled, shutdown, options and filters set: each process only takes them.
        socks.finish(&|_| None).map(|_| ()).map_err(|e| anyhow!("{e}"))
    }

    /// Take the connections to other tasks of a step that the tree's root made again for the
    /// tree's processes (restarter/src/step.rs `join_tree`), by inode.
    pub fn adopt(&mut self, conns: HashMap<u64, RawFd>) {
        self.0.extend(conns);
    }

    /// New fds of ours (close-on-exec) for the other ends of the shared sockets of fd table
    /// `fds` whose queue this process refills (its image describes it, files in flight and
    /// all: the other holders' descriptions have no queue), by the inode of the end refilled.
    pub fn feeders(&self, fds: &[FdState]) -> Result<HashMap<u64, RawFd>> {
        dup_each(fds, &self.2, "the peer of the shared socket", &|s| ckpt_image::unshared::carries_files(s))
    }

    /// Whether the tree shares socket `ino` (made here).
    pub fn has(&self, ino: u64) -> bool {
        self.0.contains_key(&ino)
    }

    /// The shared sockets whose options, shutdown and filter are set already (`settle`).
    pub fn settled(&self) -> HashSet<u64> {
        self.1.clone()
    }

    /// New fds of ours (close-on-exec) for the shared sockets of fd table `fds`, by inode.
    pub fn of(&self, fds: &[FdState]) -> Result<HashMap<u64, RawFd>> {
        dup_each(fds, &self.0, "the shared socket", &|_| true)
    }
}

/// New fds of ours (close-on-exec) for the sockets of fd table `fds` that `which` accepts,
/// each from our fd for it in `ours` (by inode), by inode; `what` names them in an error.
fn dup_each(fds: &[FdState], ours: &HashMap<u64, RawFd>, what: &str, which: &dyn Fn(&Socket) -> bool) -> Result<HashMap<u64, RawFd>> {
    let mut out = HashMap::new();
    for f in fds {
        let FdKind::Socket(s) = &f.kind else { continue };
        let Some(&fd) = ours.get(&s.ino).filter(|_| which(s)) else { continue };
        if out.contains_key(&s.ino) {
            continue;
        }
        // SAFETY: fd is ours (inherited from the tree's root).
        let d = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
        if d < 0 {
            return Err(anyhow!("cannot take {what} socket:[{}]: {}", s.ino, std::io::Error::last_os_error()));
        }
        out.insert(s.ino, d);
    }
    Ok(out)
}
