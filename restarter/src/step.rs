//! Restarting one task of a Slurm step (issue 14): every task's ckpt-restart meets the others
//! before its program runs, on whatever nodes and addresses the new allocation gives.
//!
//! 1. Checks: this task is the same rank of a step of the same size (SLURM_* of the new run),
//!    and the image is the one the step's manifest names for it (a set is restarted whole).
//! 2. Rendezvous: rank 0 listens, publishes `BASE.step-restart` under the restart's epoch; the
//!    others connect, authenticate with the step's key and `Join` (rank, checkpoint number, the
//!    port where they accept the step's connections). Rank 0 checks that every rank restarts
//!    from the same step checkpoint and sends each the `Table` of addresses (as that rank can
//!    reach them: the address it connected through).
//! 3. Connections between tasks: of each pair the lower rank accepts, the higher connects and
//!    sends the connection's id with a proof that it knows the key; then every connection is
//!    refilled with the bytes the image holds for it (ckpt_kinds::sockets::jobconn). The fds go
//!    to the socket restore, which puts them at their numbers with their options.
//! 4. `Ready`/`Go`: no task's program runs before every task's fds are restored; a task that
//!    fails makes every task fail with one line naming it.
//!
//! A task whose program is a process tree meets the others once, in the tree's root before it
//! makes the tree's processes (`join_tree`): it makes again the connections to other tasks that
//! every process of the tree held (each process's image records its own, drained by it; one
//! that several processes held, once, with the drainer's bytes), and each process takes its own
//! from the tree's shared sockets (treeshare), as it takes a socketpair. The root's restore then uses that meeting (`join`) for the `Ready`/`Go`.
//!
//! getsockname/getpeername of a connection made again give the new addresses (docs/restored.md).

use anyhow::{anyhow, bail, Context, Result};
use ckpt_image::{FdKind, Index, Socket};
use ckpt_kinds::sockets::jobconn;
use ckpt_step::files::{self, Addr};
use ckpt_step::ident::Ident;
use ckpt_step::sys;
use ckpt_step::wire::{self, Msg};
use std::collections::HashMap;
use std::os::fd::RawFd;
use std::path::Path;

/// A task that has met the others: its connections to them, made again and refilled (by
/// inode), and its links, kept open until every task is ready.
pub struct Joined {
    pub conns: HashMap<u64, RawFd>,
    links: Vec<RawFd>,
    coordinator: bool,
    /// The epoch of the restarted step's runtime coordinator (RestartInfo::step_epoch).
    pub epoch: u64,
    rank: u32,
    /// Every task's address as this task reaches it (the rendezvous's table), for `stepaddrs`.
    pub addrs: Vec<Vec<u8>>,
}

fn timeout_ms() -> u64 {
    std::env::var("CKPT_STEP_TIMEOUT").ok().and_then(|t| t.parse::<u64>().ok()).filter(|&t| t > 0).map_or(120_000, |t| t * 1000)
}

fn strerror(e: i32) -> String {
    std::io::Error::from_raw_os_error(e).to_string()
}

/// The connections to other tasks that the images `indexes` hold, each once. One that several
/// processes of a tree held is recorded in each of their images, with its unread bytes in the
/// image of the one that drained it only (runtime/src/step.rs): that record is the one kept, so
/// the bytes go back once. Err: two records of one connection both hold bytes (not an image the
/// runtime writes).
fn job_sockets<'a>(indexes: impl Iterator<Item = &'a Index>) -> Result<Vec<&'a Socket>> {
    let mut out: Vec<&Socket> = Vec::new();
    let mut at: HashMap<u64, usize> = HashMap::new();
    let socks = indexes.flat_map(|index| index.fds.iter()).filter(|f| f.dup_of.is_none()).filter_map(|f| match &f.kind {
        FdKind::Socket(s) if s.job.is_some() => Some(&**s),
        _ => None,
    });
    for s in socks {
        let Some(&i) = at.get(&s.ino) else {
            at.insert(s.ino, out.len());
            out.push(s);
            continue;
        };
        match (out[i].queue.is_empty(), s.queue.is_empty()) {
            (true, false) => out[i] = s,
            (false, false) => bail!("the connection socket:[{}] to task {} is recorded with unread bytes by two processes of the tree: the images are not one checkpoint's", s.ino, s.job.map_or(0, |j| j.peer_rank)),
            _ => {}
        }
    }
    Ok(out)
}

/// Move `fd` above `top` (out of the way of the program's fd numbers).
fn high(fd: RawFd, top: RawFd) -> Result<RawFd> {
    // SAFETY: fd is ours.
    let h = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, top) };
    sys::close(fd);
    if h < 0 {
        bail!("fcntl: {}", std::io::Error::last_os_error());
    }
    Ok(h)
}

fn listener() -> Result<RawFd> {
    let fd = sys::socket(libc::AF_INET, libc::SOCK_STREAM).map_err(|e| anyhow!("socket: {}", strerror(e)))?;
    sys::bind(fd, &sys::sockaddr_in([0; 4], 0)).and_then(|()| sys::listen(fd, 4096)).map_err(|e| {
        sys::close(fd);
        anyhow!("cannot listen for the step's tasks: {}", strerror(e))
    })?;
    Ok(fd)
}

fn connect_addr(a: &Addr, deadline: u64) -> Result<RawFd> {
    connect_any(&ckpt_step::node::candidates(a), deadline)
}

fn connect_any(addrs: &[Vec<u8>], deadline: u64) -> Result<RawFd> {
    let mut last = String::from("no address");
    for a in addrs {
        let fd = sys::socket(libc::AF_INET, libc::SOCK_STREAM).map_err(|e| anyhow!("socket: {}", strerror(e)))?;
        match sys::connect(fd, a, deadline.saturating_sub(sys::now_ms()).clamp(1, 5000)) {
            Ok(()) => return Ok(fd),
            Err(e) => {
                last = format!("{}: {}", sys::show_addr(a), strerror(e));
                sys::close(fd);
            }
        }
    }
    bail!("{last}")
}

/// The meeting the root of a step task's tree made for its tree (`join_tree`), with the pid of
/// the process that made it (the tree's processes inherit a copy: not theirs).
static TREE_JOINED: std::sync::Mutex<Option<(u32, Joined)>> = std::sync::Mutex::new(None);

fn tree_joined() -> Option<Joined> {
    let mut g = TREE_JOINED.lock().ok()?;
    g.take_if(|(pid, _)| *pid == std::process::id()).map(|(_, j)| j)
}

/// Meet the other tasks of the image's step (None: the image is not part of a step).
/// `image_hash`: the header hash of the image being restarted; `top`: above the program's fds.
/// In the root of a tree that met them already (`join_tree`), that meeting.
pub fn join(index: &Index, image: &Path, image_hash: u64, top: RawFd) -> Result<Option<Joined>> {
    if index.step.is_none() {
        return Ok(None);
    }
    if let Some(j) = tree_joined() {
        return Ok(Some(j));
    }
    join_with(index, job_sockets(std::iter::once(index))?, image, image_hash, top)
}

/// The root of a step task's tree, before it makes the tree's processes: meet the other tasks
/// for the connections every process of the tree held (`indexes`; `root`'s image, at `image`
/// with header hash `image_hash`, carries the step). The connections made again, by inode, for
/// the tree to share; the meeting is kept for the root's restore (`join`). Nothing when the
/// tree is no task of a step.
pub fn join_tree(indexes: &[(i32, Index)], root: i32, image: &Path, image_hash: u64, top: RawFd) -> Result<HashMap<u64, RawFd>> {
    let Some((_, ix)) = indexes.iter().find(|(p, _)| *p == root).filter(|(_, ix)| ix.step.is_some()) else { return Ok(HashMap::new()) };
    let Some(mut j) = join_with(ix, job_sockets(indexes.iter().map(|(_, ix)| ix))?, image, image_hash, top)? else { return Ok(HashMap::new()) };
    let conns = std::mem::take(&mut j.conns);
    if let Ok(mut g) = TREE_JOINED.lock() {
        *g = Some((std::process::id(), j));
    }
    Ok(conns)
}

/// Whether a process of the tree other than `root` holds a connection to another task.
pub fn others_hold(indexes: &[(i32, Index)], root: i32) -> bool {
    indexes.iter().filter(|(p, _)| *p != root).any(|(_, ix)| ix.fds.iter().any(|f| matches!(&f.kind, FdKind::Socket(s) if s.job.is_some())))
}

/// The tree's restart failed before its root's restore said so: tell the other tasks.
pub fn abandon(why: &str) {
    if let Some(j) = tree_joined() {
        let _ = j.ready(Some(why), &[]);
        j.close();
    }
}

fn join_with(index: &Index, socks: Vec<&Socket>, image: &Path, image_hash: u64, top: RawFd) -> Result<Option<Joined>> {
    let Some(info) = index.step.as_ref() else { return Ok(None) };
    let whole = || format!("restart the whole step: srun -n{} ckpt-run --resume ...", info.ntasks);
    let var = |k: &str| std::env::var(k).ok();
    // Rank 0 of a joined step (the tree whose srun is run again) knows its size from its image.
    let joined_root = || (info.rank == 0).then(|| Ident::join_root(var, &info.base)).flatten().map(|id| Ident { ntasks: info.ntasks, ..id });
    let id = Ident::from_env(var).or_else(joined_root).ok_or_else(|| anyhow!("this image is task {} of a step of {} tasks; {}", info.rank, info.ntasks, whole()))?;
    if id.ntasks != info.ntasks || id.rank != info.rank {
        bail!("this image is task {} of a step of {} tasks, but this is task {} of {}; {}", info.rank, info.ntasks, id.rank, id.ntasks, whole());
    }
    let parent = |p: &Path| p.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    // The image of a task whose program is a process tree is its root's, in the tree's set
    // (`DIR/NAME.ckpt/PID.ckpt`): the step's files are next to the set.
    let dir_path = parent(image);
    let dir_path = if ckpt_image::tree::is_set(&dir_path) { parent(&dir_path) } else { dir_path };
    let dir = files::Dir::open(dir_path.as_os_str().as_encoded_bytes()).map_err(|e| anyhow!(e))?;
    let manifest = dir
        .read_own(&files::manifest_name(&info.base), 1 << 20)
        .map_err(|e| anyhow!(e))?
        .and_then(|b| files::Manifest::decode(&b))
        .ok_or_else(|| anyhow!("{}: missing or unreadable: the step has no complete checkpoint", dir.show(&files::manifest_name(&info.base))))?;
    if manifest.generation != info.generation || manifest.hashes.get(info.rank as usize) != Some(&Some(image_hash)) {
        bail!("{} is not task {}'s image of the step's last complete checkpoint ({} names checkpoint {})", image.display(), info.rank, dir.show(&files::manifest_name(&info.base)), manifest.generation);
    }
    let key = dir.key(&info.base, false).map_err(|e| anyhow!(e))?.ok_or_else(|| anyhow!("{}: the step's key is missing", dir.show(&files::key_name(&info.base))))?;
    let deadline = sys::now_ms() + timeout_ms();
    let epoch = id.epoch(true);
    let accept_on = high(listener()?, top)?;
    let my_port = sys::port_of(&sys::sock_name(accept_on, false));
    let r = (|| {
        let (links, table) = if id.rank == 0 { coordinate(&dir, &info.base, &id, &key, &manifest, epoch, my_port, deadline, top)? } else { member(&dir, &info.base, &id, &key, info.generation, epoch, my_port, deadline, top)? };
        let conns = reconnect(&socks, &id, &key, epoch, accept_on, &table, deadline, top).with_context(|| format!("task {}: the connections to the other tasks", id.rank));
        match conns {
            Ok(conns) => Ok(Joined { conns, links, coordinator: id.rank == 0, epoch: id.epoch(false), rank: id.rank, addrs: table.clone() }),
            Err(e) => {
                let j = Joined { conns: HashMap::new(), links, coordinator: id.rank == 0, epoch: 0, rank: id.rank, addrs: Vec::new() };
                let _ = j.ready(Some(&format!("{e:#}")), &[]);
                Err(e)
            }
        }
    })();
    sys::close(accept_on);
    r.map(Some)
}

/// Rank 0: wait for every other rank but those the manifest says had ended (a joined step's
/// srun that was gone at the checkpoint: not run again, no link, an empty address in the
/// table), check they restart the same checkpoint, send the table.
#[allow(clippy::too_many_arguments)]
fn coordinate(dir: &files::Dir, base: &str, id: &Ident, key: &[u8], manifest: &files::Manifest, epoch: u64, my_port: u16, deadline: u64, top: RawFd) -> Result<(Vec<RawFd>, Vec<Vec<u8>>)> {
    let gen = manifest.generation;
    let l = high(listener()?, top)?;
    let addr = Addr { epoch, port: sys::port_of(&sys::sock_name(l, false)), boot: ckpt_step::node::boot_id(), addrs: ckpt_step::node::local_addrs(), ended: None };
    dir.write_new(&files::addr_name(base, true), &addr.encode()).map_err(|e| anyhow!(e))?;
    let n = id.ntasks as usize;
    let mut links: Vec<RawFd> = vec![-1; n];
    let mut ports = vec![0u16; n];
    let mut why = String::new();
    let r = (|| -> Result<()> {
        let missing = |links: &[RawFd]| (1..n).filter(|&r| links[r] < 0 && !manifest.ended(r as u32)).collect::<Vec<usize>>();
        while !missing(&links).is_empty() {
            let now = sys::now_ms();
            if now >= deadline {
                let missing = missing(&links);
                bail!("task(s) {missing:?} of the step did not join the restart within {} s", timeout_ms() / 1000);
            }
            if sys::poll1(l, libc::POLLIN, Some(deadline - now)).unwrap_or(0) == 0 {
                continue;
            }
            let Ok((fd, from)) = sys::accept(l, 0) else { continue };
            let fd = high(fd, top)?;
            let hello = ckpt_step::auth::server(fd, key, sys::now_ms() + 5000).map_err(|e| e.to_string()).and_then(|()| wire::recv(fd, sys::now_ms() + 5000).map_err(|e| e.to_string()));
            match hello {
                Ok(Msg::Join { rank, ntasks, gen: g, port }) if Ident { ntasks, ..id.clone() }.fits(id.ntasks) && rank > 0 && (rank as usize) < n && links[rank as usize] < 0 && !manifest.ended(rank) => {
                    if g != gen && why.is_empty() {
                        why = format!("task {rank} restarts from step checkpoint {g}, task 0 from {gen}");
                    }
                    links[rank as usize] = fd;
                    ports[rank as usize] = port;
                }
                Ok(m) => {
                    ckpt_kinds::say!("ckpt-restart: step: refused a connection from {}: not a task of this step ({m:?})", sys::show_addr(&from));
                    sys::close(fd);
                }
                Err(e) => {
                    ckpt_kinds::say!("ckpt-restart: step: refused a connection from {}: {e}", sys::show_addr(&from));
                    sys::close(fd);
                }
            }
        }
        Ok(())
    })();
    sys::close(l);
    if let Err(e) = r {
        for &f in links.iter().filter(|&&f| f >= 0) {
            let _ = wire::send(f, &Msg::Table { why: format!("{e:#}"), addrs: Vec::new() }, sys::now_ms() + 2000);
            sys::close(f);
        }
        return Err(e);
    }
    // Each rank's address as the others reach it: the address its link came from.
    let mut table: Vec<Vec<u8>> = (0..n).map(|r| if r == 0 || links[r] < 0 { Vec::new() } else { with_port(&sys::sock_name(links[r], true), ports[r]) }).collect();
    for (r, &link) in links.iter().enumerate().skip(1).filter(|&(_, &l)| l >= 0) {
        let mut t = table.clone();
        t[0] = with_port(&sys::sock_name(link, false), my_port);
        wire::send(link, &Msg::Table { why: why.clone(), addrs: t }, deadline).map_err(|e| anyhow!("task {r}: {e}"))?;
    }
    if !why.is_empty() {
        bail!("the tasks do not restart from the same checkpoint of the step: {why}");
    }
    table[0] = sys::sockaddr_in([127, 0, 0, 1], my_port);
    Ok((links, table))
}

/// An inet sockaddr with another port.
fn with_port(a: &[u8], port: u16) -> Vec<u8> {
    let mut a = a.to_vec();
    if a.len() >= 4 {
        a[2..4].copy_from_slice(&port.to_be_bytes());
    }
    a
}

/// A rank other than 0: find rank 0's rendezvous, join, get the table.
#[allow(clippy::too_many_arguments)]
fn member(dir: &files::Dir, base: &str, id: &Ident, key: &[u8], gen: u64, epoch: u64, my_port: u16, deadline: u64, top: RawFd) -> Result<(Vec<RawFd>, Vec<Vec<u8>>)> {
    let addr = loop {
        if let Some(a) = dir.read_own(&files::addr_name(base, true), 4096).map_err(|e| anyhow!(e))?.and_then(|b| Addr::decode(&b)).filter(|a| a.epoch == epoch) {
            break a;
        }
        if sys::now_ms() >= deadline {
            bail!("task 0 of the step did not start its restart within {} s ({} did not appear)", timeout_ms() / 1000, dir.show(&files::addr_name(base, true)));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let fd = high(connect_addr(&addr, deadline).context("cannot reach task 0 of the step")?, top)?;
    let r = (|| -> Result<Vec<Vec<u8>>> {
        ckpt_step::auth::client(fd, key, deadline).map_err(|e| anyhow!("task 0 of the step: {e}"))?;
        wire::send(fd, &Msg::Join { rank: id.rank, ntasks: id.ntasks, gen, port: my_port }, deadline)?;
        match wire::recv(fd, deadline)? {
            Msg::Table { why, .. } if !why.is_empty() => bail!("{why}"),
            Msg::Table { addrs, .. } if u32::try_from(addrs.len()).is_ok_and(|n| id.fits(n)) => Ok(addrs),
            m => bail!("task 0 of the step sent {m:?}"),
        }
    })();
    match r {
        Ok(t) => Ok((vec![fd], t)),
        Err(e) => {
            sys::close(fd);
            Err(e)
        }
    }
}

/// Make every connection of this task to another task again and refill it.
#[allow(clippy::too_many_arguments)]
fn reconnect(socks: &[&Socket], id: &Ident, key: &[u8], epoch: u64, accept_on: RawFd, table: &[Vec<u8>], deadline: u64, top: RawFd) -> Result<HashMap<u64, RawFd>> {
    let mut made: HashMap<u64, RawFd> = HashMap::new();
    let fail = |made: &HashMap<u64, RawFd>| made.values().for_each(|&f| sys::close(f));
    // The higher rank connects (the lower one's listener queues it even before it accepts).
    for s in socks.iter().filter(|s| s.job.is_some_and(|j| j.peer_rank < id.rank)) {
        let j = s.job.expect("filtered");
        let to = table.get(j.peer_rank as usize).ok_or_else(|| anyhow!("no address for task {}", j.peer_rank))?;
        let r = connect_any(std::slice::from_ref(to), deadline)
            .and_then(|fd| high(fd, top))
            .and_then(|fd| wire::send_all(fd, &ckpt_step::conn_proof(key, epoch, j.id), deadline).map(|()| fd).map_err(|e| anyhow!("{e}")));
        match r {
            Ok(fd) => {
                made.insert(s.ino, fd);
            }
            Err(e) => {
                fail(&made);
                bail!("cannot connect to task {} again: {e:#}", j.peer_rank);
            }
        }
    }
    let mut expect: HashMap<u64, u64> = socks.iter().filter_map(|s| s.job.filter(|j| j.peer_rank > id.rank).map(|j| (j.id, s.ino))).collect();
    while !expect.is_empty() {
        let now = sys::now_ms();
        if now >= deadline {
            fail(&made);
            let from: Vec<u32> = socks.iter().filter_map(|s| s.job.filter(|j| expect.contains_key(&j.id)).map(|j| j.peer_rank)).collect();
            bail!("task(s) {from:?} did not connect again in time");
        }
        if sys::poll1(accept_on, libc::POLLIN, Some(deadline - now)).unwrap_or(0) == 0 {
            continue;
        }
        let Ok((fd, from)) = sys::accept(accept_on, 0) else { continue };
        let mut p = [0u8; 40];
        let ok = wire::recv_exact(fd, &mut p, sys::now_ms() + 5000).is_ok();
        let cid = u64::from_le_bytes(p[..8].try_into().expect("8 bytes"));
        if !ok || !ckpt_step::sha256::same(&p, &ckpt_step::conn_proof(key, epoch, cid)) || !expect.contains_key(&cid) {
            ckpt_kinds::say!("ckpt-restart: step: refused a connection from {}: not a connection of this step", sys::show_addr(&from));
            sys::close(fd);
            continue;
        }
        let ino = expect.remove(&cid).expect("checked");
        made.insert(ino, high(fd, top)?);
    }
    // Refill: every connection at once (a ring would deadlock one by one).
    let refills: Vec<jobconn::Refill> = socks
        .iter()
        .map(|s| jobconn::Refill { fd: made[&s.ino], mine: s.queue.iter().flat_map(|m| m.data.iter().copied()).collect(), read: Vec::new() })
        .collect();
    if let Err(e) = jobconn::refill(refills, deadline) {
        fail(&made);
        bail!("cannot give back the bytes in flight: {e}");
    }
    Ok(made)
}

impl Joined {
    /// Tell the step this task's fds are restored (`failed`: why not) with this task's
    /// listeners (`report`: `addrmap::encode` of its report), and wait until every task's are.
    /// Every task's reports (rank 0 gathers them: `stepaddrs`). Err: this task or another
    /// failed (the restart must not go on).
    pub fn ready(&self, failed: Option<&str>, report: &[u8]) -> Result<Vec<u8>> {
        let deadline = sys::now_ms() + timeout_ms();
        let why = failed.unwrap_or("").to_string();
        if !self.coordinator {
            let fd = self.links[0];
            wire::send(fd, &Msg::Ready { why: why.clone() }, deadline).map_err(|e| anyhow!("task 0 of the step: {e}"))?;
            if failed.is_some() {
                return Ok(Vec::new());
            }
            wire::send(fd, &Msg::Listeners { report: report.to_vec() }, deadline).map_err(|e| anyhow!("task 0 of the step: {e}"))?;
            return match wire::recv(fd, deadline).map_err(|e| anyhow!("task 0 of the step: {e}"))? {
                Msg::Go { why } if why.is_empty() => match wire::recv(fd, deadline).map_err(|e| anyhow!("task 0 of the step: {e}"))? {
                    Msg::Moved { reports } => Ok(reports),
                    m => bail!("task 0 of the step sent {m:?}"),
                },
                Msg::Go { why } => bail!("{why}"),
                m => bail!("task 0 of the step sent {m:?}"),
            };
        }
        let mut first = if why.is_empty() { String::new() } else { format!("task 0 could not be restarted: {why}") };
        let mut reports = ckpt_step::addrmap::decode(report).unwrap_or_default();
        // (A rank that had ended at the checkpoint has no link: `coordinate`.)
        for (r, &fd) in self.links.iter().enumerate().skip(1).filter(|&(_, &f)| f >= 0) {
            match wire::recv(fd, deadline) {
                Ok(Msg::Ready { why }) if why.is_empty() => match wire::recv(fd, deadline).map(|m| match m {
                    Msg::Listeners { report } => ckpt_step::addrmap::decode(&report).ok_or_else(|| "an unreadable report of its listeners".to_string()),
                    m => Err(format!("{m:?}")),
                }) {
                    Ok(Ok(mut theirs)) => reports.append(&mut theirs),
                    Ok(Err(m)) => first = format!("task {r} sent {m}"),
                    Err(e) => {
                        if first.is_empty() {
                            first = format!("task {r} did not finish its restart: {e}");
                        }
                    }
                },
                Ok(Msg::Ready { why }) => {
                    if first.is_empty() {
                        first = format!("task {r} could not be restarted: {why}");
                    }
                }
                Ok(m) => first = format!("task {r} sent {m:?}"),
                Err(e) => {
                    if first.is_empty() {
                        first = format!("task {r} did not finish its restart: {e}");
                    }
                }
            }
        }
        let all = ckpt_step::addrmap::encode(&reports);
        for &fd in self.links.iter().skip(1).filter(|&&f| f >= 0) {
            if wire::send(fd, &Msg::Go { why: first.clone() }, deadline).is_ok() && first.is_empty() {
                let _ = wire::send(fd, &Msg::Moved { reports: all.clone() }, deadline);
            }
        }
        if first.is_empty() {
            Ok(all)
        } else {
            bail!("{first}")
        }
    }

    /// This task's rank.
    pub fn rank(&self) -> u32 {
        self.rank
    }

    /// The links (kept open while the fds are restored).
    pub fn links(&self) -> Vec<RawFd> {
        self.links.iter().copied().filter(|&f| f >= 0).collect()
    }

    /// Close the links (just before the switch: the program must not inherit them).
    pub fn close(self) {
        for &fd in self.links.iter().filter(|&&f| f >= 0) {
            sys::close(fd);
        }
        let _ = self.rank;
    }
}
