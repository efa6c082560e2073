//! Restarting a process tree from an image set (`NAME.ckpt/` with its manifest, see
//! ckpt_image::tree), inside the namespace ckpt-restart made: this process was created with
//! the root's pid by init. It makes the kernel objects that several processes of the tree
//! share (pipes and socketpairs between them (`treeshare`), pseudo-terminal pairs split between
//! two of them, open files inherited by fork (one offset), deleted files several of them hold
//! (one inode), shared memory inherited by fork),
//! then creates the tree with
//! the exact pids (clone3 set_tid), parents before children, so that each process is its old
//! parent's child again (orphans become init's, CLONE_PARENT; a process whose parent never was
//! in its session is made below it and handed up: `sessions`, `handover`, which is why such a
//! tree is made one process at a time; the others are made in parallel); zombies are processes that exit
//! at once with their status and are left for their parent to reap. Every process inherits the
//! shared objects, takes its process group and session, and restores its own image with the
//! single-process path, which places those objects at its fd numbers and maps the shared memory
//! from them. A process with children stages its image before it makes them, so that they
//! share its memory copy-on-write again where their images hold the same (`cowshare`). All of
//! them wait at one barrier before they switch to their images, so that no
//! process runs (and writes shared memory, or a pipe) before every other is staged. A process
//! that was stopped by job control at the cut (the manifest's `stopped` lines) stops itself
//! right after its switch, before its program's threads run, with the signal that had stopped
//! it (its runtime, from the image); the others switch only once it is stopped.
//!
//! A process that was in a time namespace of its own (the manifest's `timens` lines) enters one
//! with the same offsets as soon as it is made (`treetime`).
//!
//! A process that shared its parent's fd table (the manifest's `files` lines: clone with
//! CLONE_FILES) is made by its parent with CLONE_FILES again. The table is restored once, by
//! the process at its head (`table_owner`), from its own image; the tree's shared objects see
//! only that process's fds (the others' images hold the same fds). Every process of such a
//! table is done with fds of its own (its image is staged) before the owner places the
//! program's fds (which closes every other fd of ours in the table), and waits for that before
//! it goes on (`before_fds`, `after_fds`).

use anyhow::{anyhow, bail, Context, Result};
use crate::sessions::{Plan, Step};
use ckpt_image::tree::{Manifest, ProcState, TreeProc};
use ckpt_image::{FdKind, Index, SharedMem};
use std::collections::{HashMap, HashSet};
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::sync::OnceLock;

/// What every process of the tree inherits from the one that made it.
struct Shared {
    pipes: ckpt_kinds::pipe::Pipes,
    /// Pseudo-terminals whose master one process holds and whose slave another.
    ptys: ckpt_kinds::tty::TreePairs,
    sockets: crate::treeshare::TreeSockets,
    /// Open files several processes hold as one (one offset), by holder (pid, fd): our fd and
    /// the size to cut it back to.
    files: SharedFiles,
    /// The holders (pid, fd) that add the interest list of a shared epoll instance.
    fillers: HashSet<(i32, i32)>,
    /// Entries of epoll instances only in flight that another process than the instance's adds
    /// with its fd of their file (`unshared::flight_epolls`).
    epoll_adds: Vec<EpollAdd>,
    /// Inotify instances only in flight with watches another process added, by holder (pid,
    /// number in flight): their descriptions with those watches' paths, which another process's
    /// runtime saw (`unshared::flight_inotify`).
    inotify_paths: HashMap<(i32, i32), ckpt_image::FdState>,
    /// Shared memory objects by device and inode: a memfd each.
    shm: HashMap<(u64, u64), RawFd>,
    /// The barrier page (MAP_SHARED) and how many processes meet there.
    barrier: &'static Barrier,
    live: u32,
    /// Processes in the set (zombies too).
    total: u32,
    /// The highest process and thread id of the set.
    max_id: i32,
    /// Group helpers the plan makes (`Barrier::led`).
    group_helpers: u32,
    /// The processes stopped by job control at the cut, with their stop signal.
    stopped: Vec<(i32, i32)>,
    /// The processes that share their parent's fd table: (pid, owner of the table).
    tables: Vec<(i32, i32)>,
    /// Whether a parent stages its memory before it makes its children (`cowshare`): new
    /// threads (staging's) get ids above the set's and its helpers' then.
    early: bool,
    /// Every socket the set describes, for the images that only name one (`treesockets`).
    sockets_described: ckpt_image::treesockets::Described,
    /// Pidfds one process holds of another's thread (`handpidfds`).
    handoffs: Vec<crate::handpidfds::Handoff>,
    /// The fds 0 to 2 that were not the outside's stdio, by holder (pid, fd): the manifest's
    /// `ownstdio` lines.
    own_stdio: Vec<(i32, i32)>,
}

/// An entry of an epoll instance only in flight in one process (`epoll`, pid and number in
/// flight; made once here: `files`), which process `by.0` adds with its fd `by.1` of the
/// entry's file once its fds are in place.
pub struct EpollAdd {
    pub epoll: (i32, i32),
    pub entry: ckpt_image::EpollEntry,
    pub by: (i32, i32),
}

/// The tree's open files by holder (pid, fd): our fd and the size to cut the file back to.
type SharedFiles = HashMap<(i32, i32), (RawFd, Option<u64>)>;

#[repr(C)]
struct Barrier {
    ready: AtomicU32,
    failed: AtomicU32,
    /// Processes created so far: nobody starts threads before all are, since a thread would take
    /// a pid that a process of the set needs (a parent staging before it makes its children does:
    /// `Shared::early`, ids above the set's).
    created: AtomicU32,
    /// Processes that lead their process group again (members join only then).
    grouped: AtomicU32,
    /// Processes in their process group (group helpers leave then).
    joined: AtomicU32,
    /// Helper processes made so far (each takes the next id above the set's).
    helpers: AtomicU32,
    /// Group helpers that lead their group again (members join only then: a group must exist
    /// in the session before anyone can join it).
    led: AtomicU32,
    /// Processes sharing another's fd table that need no fd of their own any more.
    tables_free: AtomicU32,
    /// Shared fd tables restored by their owner.
    tables_made: AtomicU32,
    /// The fd on the outer process's /proc directory that the owner of a shared fd table keeps
    /// (outerproc.rs), plus one (0: none), by the owner's place among the owners (`owner_slot`).
    outer_proc: [AtomicI32; OUTER_SLOTS],
}

/// How many shared fd tables' owners can hand the outer process's /proc fd to the processes
/// that share their table (a table beyond: its sharers' SIGHUP handlers are not gated).
const OUTER_SLOTS: usize = 64;

static SHARED: OnceLock<Shared> = OnceLock::new();

/// The set to restart from `path`: the set directory itself, or in a directory of images the
/// newest entry when it is a set.
pub fn find_set(path: &Path) -> Option<PathBuf> {
    if ckpt_image::tree::is_set(path) {
        return Some(path.to_path_buf());
    }
    if !path.is_dir() {
        return None;
    }
    let mut entries: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(path)
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".ckpt"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    entries.sort();
    entries.pop().map(|(_, p)| p).filter(|p| ckpt_image::tree::is_set(p))
}

/// The set's root image (what the namespace is made for) and the coordinator's target.
pub fn root_image(set: &Path) -> Result<(PathBuf, Manifest)> {
    let m = Manifest::read(set).ok_or_else(|| anyhow!("{}: not a process-tree image set (no manifest)", set.display()))?.map_err(|e| anyhow!(e))?;
    let image = m.root_image().ok_or_else(|| anyhow!("{}: the root process has no image", set.display()))?;
    Ok((set.join(image), m))
}

/// Where the restarted tree's coordinator commits its sets: next to `set`, under its name,
/// keeping `keep` of them (the manifest's, i.e. ckpt-run's `--keep`).
pub fn target(set: &Path, generation: u64, keep: u32) -> Option<ckpt_ns::TreeTarget> {
    let name = ckpt_image::parse_image_name(set.file_name()?.as_encoded_bytes())?.0.to_vec();
    let dir = std::path::absolute(set.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))).ok()?;
    Some(ckpt_ns::TreeTarget { dir, name, keep, generation })
}

/// The pipes made for the tree (empty outside a tree's restart).
pub fn pipes() -> ckpt_kinds::pipe::Pipes {
    SHARED.get().map(|s| s.pipes.clone()).unwrap_or_default()
}

/// The tree's pseudo-terminal pairs (empty outside a tree's restart).
pub fn ptys() -> ckpt_kinds::tty::TreePairs {
    SHARED.get().map(|s| s.ptys.clone()).unwrap_or_default()
}

/// Replace the sockets `fds` (this process's) name by inode by their description in the set
/// (`treesockets`); outside a tree's restart an image that names one cannot be restarted.
pub fn resolve_sockets(fds: &mut [ckpt_image::FdState]) -> Result<()> {
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    match SHARED.get() {
        Some(s) => s.sockets_described.resolve(me, fds).map_err(|e| anyhow!(e)),
        None => match ckpt_image::treesockets::names_any(fds) {
            Some((fd, ino)) => bail!("fd {fd} is socket:[{ino}], which the image of another process of its tree describes: restart the tree's image set (the NAME.ckpt directory), not one process's image"),
            None => Ok(()),
        },
    }
}

/// New fds of ours for the sockets of fd table `fds` that the tree shares (none outside a
/// tree's restart), by inode.
pub fn sockets(fds: &[ckpt_image::FdState]) -> Result<HashMap<u64, RawFd>> {
    SHARED.get().map_or(Ok(HashMap::new()), |s| s.sockets.of(fds))
}

/// Our fds of the other ends of the tree's socketpair ends of fd table `fds` whose queues
/// (with files in flight) this process refills (`TreeSockets::feeders`), by inode.
pub fn socket_feeders(fds: &[ckpt_image::FdState]) -> Result<HashMap<u64, RawFd>> {
    SHARED.get().map_or(Ok(HashMap::new()), |s| s.sockets.feeders(fds))
}

/// The shared sockets whose options, shutdown and filter the root set (`treeshare`): the
/// processes only take them.
pub fn settled_sockets() -> HashSet<u64> {
    SHARED.get().map(|s| s.sockets.settled()).unwrap_or_default()
}

/// The tree's memfd and offset for the shared memory region at `start` of `index`.
pub fn shared_memory(shared: &[SharedMem], start: u64) -> Option<(RawFd, u64)> {
    let s = SHARED.get()?;
    let m = shared.iter().find(|m| m.start == start)?;
    Some((*s.shm.get(&(m.dev, m.ino))?, m.offset))
}

/// Wait until every process of the tree is ready to switch (no-op outside a tree); a process
/// stopped at the cut switches at once (and stops itself), the others once it is stopped.
pub fn barrier() -> Result<()> {
    // From here on a signal sent to us (by a process of the tree that already runs, or to the
    // program's process group) is the program's: it waits in the kernel until the program's
    // threads run (the switch keeps every signal blocked, sigreturn gives the program its mask).
    let all: u64 = !0;
    // SAFETY: blocking signals on our own, only, thread.
    unsafe { libc::syscall(libc::SYS_rt_sigprocmask, libc::SIG_SETMASK, &all as *const u64, 0, 8) };
    let Some(s) = SHARED.get() else { return Ok(()) };
    meet(&s.barrier.ready, s.live, "ready to run")?;
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    if s.stopped.iter().any(|(pid, _)| *pid == me) {
        return Ok(());
    }
    let start = std::time::Instant::now();
    for &(pid, _) in &s.stopped {
        while !ckpt_ns::jobstop::all_stopped(pid) {
            if start.elapsed() > std::time::Duration::from_secs(10) {
                ckpt_kinds::say!("ckpt-restart: warning: process {pid} of the tree was stopped at the checkpoint and is not stopped again yet; the others go on");
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
    Ok(())
}

/// Whether this process shares the fd table of another one of the tree, whose owner restores
/// it: it restores no fds itself.
pub fn table_of_another() -> bool {
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    SHARED.get().is_some_and(|s| s.tables.iter().any(|t| t.0 == me))
}

/// Just before this process restores its fds (or would): a process that shares another's fd
/// table says it needs no fd of its own any more (its image is staged) and waits until every
/// shared table is restored; the owner of a shared table waits until every such process has
/// said so (restoring the table closes every fd of ours in it).
pub fn before_fds() -> Result<()> {
    let Some(s) = SHARED.get() else { return Ok(()) };
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    let owners = s.tables.iter().map(|t| t.1).collect::<HashSet<i32>>();
    if table_of_another() {
        s.barrier.tables_free.fetch_add(1, Ordering::AcqRel);
        futex(&s.barrier.tables_free, libc::FUTEX_WAKE, i32::MAX as u32);
        return wait_count(&s.barrier.tables_made, owners.len() as u32, "done with the fd tables they share");
    }
    if owners.contains(&me) {
        return wait_count(&s.barrier.tables_free, s.tables.len() as u32, "done with the fd table they share");
    }
    Ok(())
}

/// The place of shared fd table owner `owner` among the owners, the same in every process.
fn owner_slot(s: &Shared, owner: i32) -> Option<usize> {
    let mut owners: Vec<i32> = s.tables.iter().map(|t| t.1).collect();
    owners.sort_unstable();
    owners.dedup();
    owners.iter().position(|&o| o == owner).filter(|&i| i < OUTER_SLOTS)
}

/// As the owner of a shared fd table, before it restores the table: the fd on the outer
/// process's /proc directory it keeps there (outerproc.rs), for the processes that share the
/// table to take a copy of once it is restored (`outer_proc_of_table`).
pub fn publish_outer_proc(fd: Option<RawFd>) {
    let (Some(s), Some(fd)) = (SHARED.get(), fd) else { return };
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    if let Some(i) = owner_slot(s, me) {
        s.barrier.outer_proc[i].store(fd + 1, Ordering::Release);
    }
}

/// As a process that shares another's fd table, once the table is restored (`before_fds`
/// returned): the fd on the outer process's /proc directory its owner keeps in it (None: none).
pub fn outer_proc_of_table() -> Option<RawFd> {
    let s = SHARED.get()?;
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    let owner = s.tables.iter().find(|t| t.0 == me)?.1;
    let fd = s.barrier.outer_proc[owner_slot(s, owner)?].load(Ordering::Acquire) - 1;
    (fd > 2).then_some(fd)
}

/// This process restored its fds: as the owner of a shared fd table, it lets the processes that
/// share it go on.
pub fn after_fds() {
    let Some(s) = SHARED.get() else { return };
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    if s.tables.iter().any(|t| t.1 == me) {
        s.barrier.tables_made.fetch_add(1, Ordering::AcqRel);
        futex(&s.barrier.tables_made, libc::FUTEX_WAKE, i32::MAX as u32);
    }
}

/// Count ourselves in `word` and wait until `n` processes are. Only the last one wakes the
/// others (everyone waiting on `word` waits for the same `n`): a wake at every arrival woke
/// every process waiting there, processes x processes times per barrier (65,000 wakes at each
/// of a 256-process tree's four barriers).
fn meet(word: &AtomicU32, n: u32, what: &str) -> Result<()> {
    if word.fetch_add(1, Ordering::AcqRel) + 1 >= n {
        futex(word, libc::FUTEX_WAKE, i32::MAX as u32);
    }
    wait_count(word, n, what)
}

/// Wait until `n` processes are counted in `word`.
pub(crate) fn wait_count(word: &AtomicU32, n: u32, what: &str) -> Result<()> {
    let b = SHARED.get().expect("in a tree").barrier;
    let start = std::time::Instant::now();
    loop {
        if b.failed.load(Ordering::Acquire) != 0 {
            bail!("another process of the tree could not be restarted");
        }
        let got = word.load(Ordering::Acquire);
        if got >= n {
            return Ok(());
        }
        if start.elapsed() > std::time::Duration::from_secs(600) {
            bail!("the other processes of the tree are not {what} ({got} of {n} in 10 minutes)");
        }
        futex(word, libc::FUTEX_WAIT, got);
    }
}

/// This process failed: the others give up at the barrier.
pub fn fail() {
    if let Some(s) = SHARED.get() {
        s.barrier.failed.store(1, Ordering::Release);
        futex(&s.barrier.ready, libc::FUTEX_WAKE, i32::MAX as u32);
    }
}

pub(crate) fn futex(word: &AtomicU32, op: i32, val: u32) {
    let ts = libc::timespec { tv_sec: 1, tv_nsec: 0 };
    // SAFETY: a futex on a word of the shared barrier page (not FUTEX_PRIVATE: several processes).
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), op, val, &ts as *const libc::timespec, 0, 0) };
}

/// Restart the tree of `set` (we are its root, created by init with the root's pid). Returns
/// in every process of the tree with the image it restores (then `run` restores it). Objects
/// its processes share that the restart cannot share again (`unshared`) refuse the set, unless
/// `lossy` (--ignore-missing-files): then a warning names each.
pub fn build(set: &Path, lossy: bool, no_truncate: bool) -> Result<PathBuf> {
    let m = Manifest::read(set).ok_or_else(|| anyhow!("{}: not a process-tree image set", set.display()))?.map_err(|e| anyhow!(e))?;
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    if me != m.root {
        bail!("{}: a process tree is restarted only with its exact ids (in a namespace of its own); here the root would get pid {me}, not {}", set.display(), m.root);
    }
    let euid = ckpt_image::trust::euid();
    // Processes run again (srun): their descendants are not made (`rerun`).
    let mut m = m;
    m.drop_not_made();
    if euid == 0 {
        let _ = VOUCHED.set(m.ids.clone());
    }
    crate::rerun::check(set, &m, euid)?;
    let mut indexes: Vec<(i32, Index)> = Vec::new();
    let mut root_hash = 0;
    for (p, image) in m.live() {
        let path = set.join(image);
        // A process of root's tree that ran as another user: its image was taken by it.
        let taker = m.taker(p.pid, euid);
        let r = ckpt_image::trust::read_taken_by(&path, euid, taker).with_context(|| format!("{}", path.display()))?;
        if r.header.parent != 0 {
            // An increment over the process's older images in the set (ckpt_ns setchain): each
            // of them there and sound, before anything is made.
            ckpt_image::Chain::open_taken_by(&path, euid, taker).with_context(|| format!("{}", path.display()))?;
        }
        if p.pid == m.root {
            root_hash = r.header.index_hash;
        }
        indexes.push((p.pid, r.index));
    }
    // The sockets an image names and another describes (`treesockets`), as each process will
    // see them (main.rs, from the descriptions kept in `Shared`).
    let sockets_described = ckpt_image::treesockets::resolve_all(&mut indexes).map_err(|e| anyhow!("{}: {e}", set.display()))?;
    for (pid, ix) in indexes.iter_mut() {
        // As each process will judge them (main.rs): before anything is made.
        ckpt_kinds::deleted::resolve_saved(&mut ix.fds);
        if m.reexec.contains(pid) {
            ix.fds.retain(crate::rerun::keeps);
        }
        if m.table_parent(*pid).is_some() {
            // Its fds are its table owner's (restored there).
            ix.fds.clear();
        }
    }
    let plan = crate::sessions::plan(&m).map_err(|e| anyhow!("{}: {e}", set.display()))?;
    if let Some((pid, parent)) = m.tables.iter().find(|(pid, parent)| !plan.steps(*parent).contains(&Step::Child(*pid))) {
        bail!("{}: process {pid} shares the fd table of its parent {parent}, which this restart would not make it a child of (its session or group is made otherwise): it cannot be restarted", set.display());
    }
    exit_signals_made(&m, &plan).map_err(|e| anyhow!("{}: {e}", set.display()))?;
    if let Some(same) = m.same.as_mut() {
        // (The fds of the processes that share a table are its owner's.)
        for group in same.iter_mut() {
            group.retain(|(pid, _)| m.tables.iter().all(|t| t.0 != *pid));
        }
        same.retain(|g| g.iter().any(|h| h.0 != g[0].0));
        // Files in flight that are one open file with other processes' fds: made with them.
        ckpt_image::unshared::join_in_flight(&indexes, same);
    }
    // Every socket's holders, once for the refusal and the making of the shared ones.
    let socks = ckpt_image::unshared::TreeSocks::of(&indexes);
    refuse_unshared(&socks, m.same.as_deref(), lossy)?;
    // The namespace's System V objects (every image records them all: the root's are used).
    if let Some((_, ix)) = indexes.iter().find(|(pid, _)| *pid == m.root) {
        crate::sysv_objects(ix)?;
    }
    let cttys: Vec<u32> = m.ctty.iter().map(|c| c.index).collect();
    // (A process run again execs without waiting at the barrier: `rerun`.)
    // A task of a step: its tree's listeners move off a port another program holds, and every
    // process reports them through the root (treelisten).
    let step_task = indexes.iter().any(|(pid, ix)| *pid == m.root && ix.step.is_some());
    let mut shared = make_shared(&socks, (m.live().count() - m.reexec.len()) as u32, lossy, &cttys, step_task)?;
    if let Some(same) = m.same.as_deref() {
        let boot = indexes.iter().find(|(pid, _)| *pid == m.root).map(|(_, ix)| ix.meta.origin.boot_id.clone()).unwrap_or_default();
        let opts = crate::fds::Options { no_truncate, ignore_missing: lossy, same_boot: !boot.is_empty() && boot == ckpt_image::boot_id(), exact_ids: true, other_port: false, rebind: Vec::new() };
        (shared.files, shared.fillers) = share_files(&indexes, same, &opts, &mut shared.pipes)?;
        shared.epoll_adds = share_flight_epolls(&indexes, same, &mut shared.files, &mut shared.fillers)?;
        shared.inotify_paths = ckpt_image::unshared::flight_inotify(&indexes, same).into_iter().collect();
        share_deleted(set, &m, &indexes, same, euid, &mut shared.files)?;
    }
    share_mqueues(&indexes, m.same.as_deref().unwrap_or(&[]), &mut shared.files)?;
    // Pidfds of one exited process that several processes hold: one pidfs inode again.
    shared.files.extend(crate::fdobjs::tree_exited(&indexes, m.same.as_deref())?.into_iter().map(|(at, fd)| (at, (fd, None))));
    // A task of a Slurm step: its connections to the other tasks, whichever process held them,
    // made again once for the tree (after its own listeners are bound).
    let top = indexes.iter().flat_map(|(_, ix)| ix.fds.iter().map(|f| f.fd)).max().unwrap_or(2) + 1;
    let root_path = m.root_image().map(|i| set.join(i)).unwrap_or_default();
    // (A tree that runs srun again meets them only once srun runs: its root does, `rerun`.)
    if step_task {
        crate::treelisten::init(m.root, shared.live)?;
    }
    if !crate::rerun::root_meets_later(&m, &indexes)? {
        shared.sockets.adopt(crate::step::join_tree(&indexes, m.root, &root_path, root_hash, top)?);
    }
    shared.total = m.procs.len() as u32;
    shared.sockets_described = sockets_described;
    shared.handoffs = crate::handpidfds::plan(&indexes, &m)?;
    shared.stopped = m.stopped.clone();
    // (Not srun's stderr: it forwards its tasks' ckpt-restart warnings there.)
    shared.own_stdio = m.own_stdio.iter().copied().filter(|&(pid, fd)| m.own_stdio(pid, fd)).collect();
    shared.tables = m.tables.iter().map(|&(pid, _)| (pid, m.table_owner(pid))).collect();
    let ids = indexes.iter().flat_map(|(pid, ix)| ix.threads.iter().map(|t| t.tid).chain([*pid, ix.ids.ckpt_tid]));
    // (Dead session and group leaders too: helpers may take those ids.)
    shared.max_id = ids.chain(m.procs.iter().flat_map(|p| [p.pid, p.pgid, p.sid])).max().unwrap_or(0);
    shared.group_helpers = plan.group_helpers();
    // Helpers take ids from max_id + 1 (`helper_id`, at most one per process and group
    // helper); threads made before every process is (a parent's staging, `stage_before_children`)
    // take ids above those.
    let reserved = shared.max_id + 1 + m.procs.len() as i32 + shared.group_helpers as i32;
    shared.early = std::fs::write("/proc/sys/kernel/ns_last_pid", reserved.to_string()).is_ok();
    // Freed once, here, before any process is made: every process of the tree inherited them,
    // and freeing them in each (touching, and so copying, every page they are on) cost
    // processes x the set's fd records (minutes for zdtm session03: 250 x 250 x 682). Each
    // process reads its own image again.
    drop(indexes);
    // And given back to the kernel: the freed heap stays mapped and resident otherwise, and
    // every process made copies its page tables at its fork and drops them at its switch (136 MiB
    // at 64 processes of 682 fds, 4 times that at 256: processes x processes x fds again).
    // SAFETY: malloc_trim only returns free heap memory; nothing refers to it.
    unsafe { libc::malloc_trim(0) };
    SHARED.set(shared).map_err(|_| anyhow!("internal: the tree was built twice"))?;
    // One process at a time only where a process is handed up to its parent (`handover`), or
    // where processes share a time namespace the first of them makes (`treetime` finds it made).
    let timens = !m.timens.is_empty() || !m.timens_kids.is_empty();
    crate::handover::init(plan.hands_up() || timens)?;
    crate::treetime::init(&m)?;
    let mine = spawn_children(&m, &plan, m.root, set)?;
    let s = SHARED.get().expect("set above");
    meet(&s.barrier.created, s.total, "created")?;
    enter_group(&mine)?;
    foreground(&m, mine.pid);
    if let ProcState::Zombie { status } = mine.state {
        exit_as(status);
    }
    if mine.pid == m.root {
        // New processes and threads (the restarted programs' own, our staging threads) get ids
        // above every id of the set, which its processes take again with set_tid.
        let _ = std::fs::write("/proc/sys/kernel/ns_last_pid", s.max_id.to_string());
    }
    Ok(set.join(image_of(&mine)))
}

/// Every process with another exit signal than SIGCHLD (the manifest's `exitsig` lines) is made
/// by its parent (`Step::Child`, which gives it that signal); one made otherwise (with
/// CLONE_PARENT by a session helper, or through init: an orphan) would get SIGCHLD: refused.
fn exit_signals_made(m: &Manifest, plan: &Plan) -> Result<(), String> {
    match m.exit_signals.iter().find(|&&(pid, _)| !m.procs.iter().any(|p| p.pid == pid && plan.steps(p.ppid).contains(&Step::Child(pid)))) {
        Some((pid, sig)) => Err(format!("process {pid} had exit signal {sig} (made by clone with it), and this restart would not make it as its parent's child (its session is made otherwise): it would get SIGCHLD; it cannot be restarted faithfully")),
        None => Ok(()),
    }
}

/// Refuse a tree whose processes share objects that would come back separate (or warn, `lossy`).
fn refuse_unshared(socks: &ckpt_image::unshared::TreeSocks, same: Option<&[Vec<(i32, i32)>]>, lossy: bool) -> Result<()> {
    let found = ckpt_image::unshared::find(socks, same);
    if lossy {
        for u in &found {
            ckpt_kinds::say!("ckpt-restart: warning: {}; they come back as {} (ckpt cannot share them again yet)", u.what, u.instead);
        }
        return Ok(());
    }
    if found.is_empty() {
        return Ok(());
    }
    let what: Vec<&str> = found.iter().map(|u| u.what.as_str()).collect();
    let mut instead: Vec<&str> = found.iter().map(|u| u.instead).collect();
    instead.sort_unstable();
    instead.dedup();
    bail!(
        "cannot restart this tree faithfully: {}, which ckpt cannot share between processes again yet; --ignore-missing-files goes on with them as {}",
        what.join("; "),
        instead.join(", ")
    )
}

fn image_of(p: &TreeProc) -> &str {
    match &p.state {
        ProcState::Live { image } => image,
        ProcState::Zombie { .. } => "",
    }
}

/// The pipes found in the fd tables of two processes or more, every shared memory object, the
/// sockets the tree shares (`treeshare`; `lossy`: go on where something of them is lost;
/// `step`: a task of a step's), the
/// pseudo-terminal pairs split between processes or controlling a session (`cttys`).
fn make_shared(socks: &ckpt_image::unshared::TreeSocks, live: u32, lossy: bool, cttys: &[u32], step: bool) -> Result<Shared> {
    let indexes = socks.indexes();
    let shared_pipes = ckpt_image::unshared::tree_pipes(indexes);
    let mut pipes = ckpt_kinds::pipe::Pipes::default();
    for (_, ix) in indexes {
        for f in ix.fds.iter().filter(|f| f.dup_of.is_none()) {
            if matches!(&f.kind, FdKind::Pipe { ino, .. } if shared_pipes.contains(ino)) {
                pipes.prepare(f, &ix.fds).map_err(|e| anyhow!("{e}"))?;
            }
        }
    }
    let top = indexes.iter().flat_map(|(_, ix)| ix.fds.iter().map(|f| f.fd)).max().unwrap_or(2) + 1;
    let fd_lists: Vec<&[ckpt_image::FdState]> = indexes.iter().map(|(_, ix)| &ix.fds[..]).collect();
    let ptys = ckpt_kinds::tty::tree_pairs(&fd_lists, top, cttys).map_err(|e| anyhow!("{e}"))?;
    let mut sizes: HashMap<(u64, u64), u64> = HashMap::new();
    for (_, ix) in indexes {
        for s in &ix.shared {
            // (System V segments are made again as themselves, with their ids.)
            if let Some(r) = ix.regions.iter().find(|r| r.start == s.start && ckpt_kinds::sysv::mapped_segment(ix, r.start, &r.name).is_none()) {
                let end = s.offset + r.len();
                let e = sizes.entry((s.dev, s.ino)).or_default();
                *e = (*e).max(end);
            }
        }
    }
    let mut shm = HashMap::new();
    for (id, size) in sizes {
        // SAFETY: a new memfd (close-on-exec), owned by the tree until every process mapped it.
        let fd = unsafe { libc::memfd_create(c"ckpt-shared".as_ptr(), libc::MFD_CLOEXEC) };
        // SAFETY: fd is ours.
        if fd < 0 || unsafe { libc::ftruncate(fd, size as i64) } != 0 {
            bail!("cannot make the shared memory of the tree ({size} bytes): {}", std::io::Error::last_os_error());
        }
        shm.insert(id, fd);
    }
    // SAFETY: a new shared anonymous page, never unmapped by us (the switch unmaps it).
    let page = unsafe { libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1, 0) };
    if page == libc::MAP_FAILED {
        bail!("cannot map the tree's barrier: {}", std::io::Error::last_os_error());
    }
    // SAFETY: a zeroed page, valid for the life of the process, holding two atomics.
    let barrier: &'static Barrier = unsafe { &*(page as *const Barrier) };
    let sockets = crate::treeshare::TreeSockets::make(socks, top, lossy, step)?;
    Ok(Shared { pipes, ptys, sockets, files: HashMap::new(), fillers: HashSet::new(), epoll_adds: Vec::new(), inotify_paths: HashMap::new(), shm, barrier, live, total: 0, max_id: 0, group_helpers: 0, stopped: Vec::new(), tables: Vec::new(), early: false, sockets_described: Default::default(), handoffs: Vec::new(), own_stdio: Vec::new() })
}

/// Open once each file that processes of the tree hold as one (`unshared::tree_files`), at its
/// offset, and make once each event, timer and signal fd, epoll and inotify instance and open
/// file of one of the tree's pipes they hold as one (`unshared::tree_objects`), for every holder; the holders that fill a shared epoll
/// instance (made empty here).
fn share_files(indexes: &[(i32, Index)], same: &[Vec<(i32, i32)>], opts: &crate::fds::Options, pipes: &mut ckpt_kinds::pipe::Pipes) -> Result<(SharedFiles, HashSet<(i32, i32)>)> {
    let mut out = HashMap::new();
    let mut fillers = HashSet::new();
    // The description of a holder that ran as the tree's user; one that ran as another user
    // (`vouched`) wrote its own image: what it says is opened for it only as a pipe.
    let first = |group: &Vec<(i32, i32)>| -> Result<Option<&ckpt_image::FdState>> {
        let trusted = group.iter().filter(|at| vouched(at.0).is_none()).find_map(|&at| state(indexes, at));
        match trusted.or_else(|| group.iter().find_map(|&at| state(indexes, at))) {
            Some(f) if trusted.is_none() && !matches!(f.kind, FdKind::Pipe { .. }) => {
                bail!("pid {} fd {} is shared only by processes that ran as other users than the tree's: ckpt-restart (root) does not open it for them", group[0].0, group[0].1)
            }
            f => Ok(f),
        }
    };
    for group in ckpt_image::unshared::tree_files(indexes, same) {
        let Some(f) = first(group)? else { continue };
        // (Gone, with --ignore-missing-files: each process gets /dev/null.)
        let Some(opened) = crate::fds::open_shared(f, opts)? else { continue };
        for &at in group {
            out.insert(at, opened);
        }
    }
    for group in ckpt_image::unshared::tree_objects(indexes, same) {
        let Some(f) = first(group)? else { continue };
        let mut f = f.clone();
        if let FdKind::Inotify { watches, .. } = &mut f.kind {
            // A watch one holder added is seen being added (its path) by its runtime only.
            for w in watches.iter_mut().filter(|w| w.path.is_empty()) {
                let theirs = group.iter().filter_map(|&at| state(indexes, at)).find_map(|g| match &g.kind {
                    FdKind::Inotify { watches, .. } => watches.iter().find(|o| o.wd == w.wd && !o.path.is_empty()),
                    _ => None,
                });
                if let Some(o) = theirs {
                    *w = o.clone();
                }
            }
        }
        let what = || format!("pid {} fd {}, shared by the tree", group[0].0, group[0].1);
        let made = if matches!(f.kind, FdKind::Pipe { .. }) {
            // One open file of a pipe the tree made (the pipe restore opens one per call).
            let pid = group.iter().find(|&&at| state(indexes, at).is_some()).map_or(0, |at| at.0);
            let all = indexes.iter().find(|(p, _)| *p == pid).map_or(&[][..], |(_, ix)| &ix.fds[..]);
            pipes.open(&f, all).map_err(|e| anyhow!("{}: {e}", what()))?
        } else {
            crate::fds::object(&f, opts.ignore_missing, &|_| None).with_context(what)?
        };
        for &at in group {
            out.insert(at, (made, None));
        }
        // (Asked only of an epoll instance: the others have no interest list to fill.)
        let filler = if matches!(f.kind, FdKind::Epoll { .. }) { ckpt_image::unshared::epoll_filler(indexes, group) } else { None };
        if let Some(at) = filler {
            fillers.insert(at);
        }
    }
    Ok((out, fillers))
}

/// Make each epoll instance only in flight whose entries' files only other processes hold
/// (`unshared::flight_epolls`), empty, into `files` for its process, which adds the entries
/// whose files it holds (`fillers`); the other entries, which the processes holding their
/// files add (`EpollAdd`).
fn share_flight_epolls(indexes: &[(i32, Index)], same: &[Vec<(i32, i32)>], files: &mut SharedFiles, fillers: &mut HashSet<(i32, i32)>) -> Result<Vec<EpollAdd>> {
    let mut out = Vec::new();
    for e in ckpt_image::unshared::flight_epolls(indexes, same) {
        let ep = crate::fdobjs::new_epoll().with_context(|| format!("pid {} fd {}, an epoll instance in flight", e.at.0, e.at.1))?;
        files.insert(e.at, (ep, None));
        fillers.insert(e.at);
        out.extend(e.adds.into_iter().map(|(entry, by)| EpollAdd { epoll: e.at, entry, by }));
    }
    Ok(out)
}

/// Make once each deleted file that processes of the tree hold (`unshared::tree_deleted`), with
/// the data the first holder's image stores, and open it for every holder (into `files`): once
/// for holders that are one open file description (`same`), at its offset; each other holder
/// its own open, with its flags and offset. Every open is made before the inode gets its
/// mode, times and seals.
fn share_deleted(set: &Path, m: &Manifest, indexes: &[(i32, Index)], same: &[Vec<(i32, i32)>], euid: u32, files: &mut SharedFiles) -> Result<()> {
    let list = ckpt_image::unshared::tree_deleted(indexes);
    let mut made = ckpt_kinds::deleted::Recreated::default();
    let r = list.iter().try_for_each(|(_, holders)| -> Result<()> {
        // (A process holding it as an fd stores its data; of those holding it only in flight,
        // the lowest pid does, and any that found no lower one: `unshared::stores_data`.)
        let stores = |at: &(i32, i32)| state(indexes, *at).is_some_and(|f| ckpt_image::unshared::stores_data(at.0, f));
        let first = holders.iter().copied().find(|at| at.1 >= 0).or_else(|| holders.iter().copied().find(stores)).unwrap_or(holders[0]);
        let owner = first.0;
        let image = m.live().find(|(p, _)| p.pid == owner).map(|(_, i)| set.join(i)).ok_or_else(|| anyhow!("internal: no image of process {owner}"))?;
        let reader = ckpt_image::trust::read_owned(&image, euid).with_context(|| format!("{}", image.display()))?;
        // The record that says where its image stores the data (its first fd of the inode).
        let with_data = reader.index.fds.iter().find_map(|f| match &f.kind {
            FdKind::Deleted(d) if state(indexes, first).is_some_and(|h| matches!(&h.kind, FdKind::Deleted(o) if (o.dev, o.ino) == (d.dev, d.ino))) && !d.chunks.is_empty() => Some(d.clone()),
            _ => None,
        });
        for &at in holders {
            let Some(f) = state(indexes, at).filter(|_| !files.contains_key(&at)) else { continue };
            let FdKind::Deleted(d) = &f.kind else { continue };
            let d = with_data.as_ref().unwrap_or(d);
            let fd = made.open(d, f.flags, &reader).map_err(|e| anyhow!("pid {} fd {}: {e}", at.0, at.1))?;
            if f.flags & libc::O_PATH == 0 {
                // SAFETY: fd is ours.
                unsafe { libc::lseek(fd, f.pos, libc::SEEK_SET) };
            }
            let alone = [at];
            let group = same.iter().find(|g| g.contains(&at)).map_or(&alone[..], |g| &g[..]);
            for &h in group {
                files.insert(h, (fd, None));
            }
        }
        Ok(())
    });
    made.finish();
    r
}

/// Make once each POSIX message queue that processes of the tree hold (`unshared::tree_mqueues`),
/// with the messages the image of the holder that read them stores (the lowest pid holding it
/// at the cut), and open it for every holder (into `files`): once for holders that are one open
/// file description (`same`), each other holder its own open, with its access mode and
/// O_NONBLOCK. A queue that had been removed is removed again once every holder has it open.
fn share_mqueues(indexes: &[(i32, Index)], same: &[Vec<(i32, i32)>], files: &mut SharedFiles) -> Result<()> {
    let mut made = ckpt_kinds::mqueue::Queues::default();
    for (_, holders) in ckpt_image::unshared::tree_mqueues(indexes) {
        let queue = |at: (i32, i32)| match state(indexes, at).map(|f| &f.kind) {
            Some(FdKind::Mqueue(q)) => Some(&**q),
            _ => None,
        };
        let Some(first) = queue(holders[0]) else { continue };
        let with = holders.iter().filter_map(|&at| queue(at)).find(|q| !q.messages.is_empty()).unwrap_or(first);
        for &at in &holders {
            let Some(f) = state(indexes, at).filter(|_| !files.contains_key(&at)) else { continue };
            let fd = made.open(with, f.flags).map_err(|e| anyhow!("pid {} fd {}: {e}", at.0, at.1))?;
            let alone = [at];
            let group = same.iter().find(|g| g.contains(&at)).map_or(&alone[..], |g| &g[..]);
            for &h in group {
                files.insert(h, (fd, None));
            }
        }
    }
    Ok(made.finish()?)
}

/// Fd `fd` of process `pid` in `indexes` (not a dup).
fn state(indexes: &[(i32, Index)], (pid, fd): (i32, i32)) -> Option<&ckpt_image::FdState> {
    indexes.iter().find(|(p, _)| *p == pid)?.1.fds.iter().find(|f| f.fd == fd && f.dup_of.is_none())
}

/// Whether this process adds the interest list of the tree's shared epoll instance at its fd
/// `fd` (one holder does, `unshared::epoll_filler`).
pub fn fills_epoll(fd: i32) -> bool {
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    SHARED.get().is_some_and(|s| s.fillers.contains(&(me, fd)))
}

/// The tree's pidfds of threads that one process holds of another's (`handpidfds`).
pub fn handoffs() -> &'static [crate::handpidfds::Handoff] {
    SHARED.get().map_or(&[], |s| &s.handoffs[..])
}

/// The entries of epoll instances only in flight in other processes that this process adds
/// with its fds of their files (`EpollAdd`), with our fd of each instance (the tree's, as
/// inherited).
pub fn epoll_adds() -> Vec<(RawFd, &'static EpollAdd)> {
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    let Some(s) = SHARED.get() else { return Vec::new() };
    s.epoll_adds.iter().filter(|a| a.by.0 == me).filter_map(|a| Some((s.files.get(&a.epoll)?.0, a))).collect()
}

/// Whether entry `e` of this process's epoll instance in flight `fd` is added by another
/// process (`EpollAdd`), not by this one.
pub fn epoll_added_elsewhere(fd: i32, e: &ckpt_image::EpollEntry) -> bool {
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    SHARED.get().is_some_and(|s| s.epoll_adds.iter().any(|a| a.epoll == (me, fd) && a.entry == *e))
}

/// This process's inotify instance in flight `fd` with the paths of the watches another
/// process added, which that one's runtime saw (`Shared::inotify_paths`).
pub fn inotify_with_paths(fd: i32) -> Option<&'static ckpt_image::FdState> {
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    SHARED.get()?.inotify_paths.get(&(me, fd))
}

/// The tree's open file for this process's fd `fd`, when the tree shares it: our fd and the size
/// to cut the file back to.
pub fn shared_file(fd: i32) -> Option<(RawFd, Option<u64>)> {
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    SHARED.get()?.files.get(&(me, fd)).copied()
}

/// clone3 a process with pid `pid` (as a child of our parent with `sibling`; sharing our fd
/// table with `files`; `exit_signal`: what its parent gets when it ends, 0: nothing); 0 in the
/// child.
fn clone_with_pid(pid: i32, sibling: bool, files: bool, exit_signal: i32) -> Result<i32> {
    let tid = [pid];
    let flags = if sibling { libc::CLONE_PARENT as u64 } else { 0 } | if files { libc::CLONE_FILES as u64 } else { 0 };
    // clone3 refuses an exit signal with CLONE_PARENT (EINVAL): the sibling gets our own (SIGCHLD;
    // `exit_signals_made` refused a set that needs another one).
    let exit_signal = if sibling { 0 } else { exit_signal as u64 };
    let a = ckpt_ns::CloneArgs { flags, exit_signal, set_tid: tid.as_ptr() as u64, set_tid_size: 1, ..Default::default() };
    // SAFETY: a fork-like clone3 of this single-threaded process; the child continues here.
    let r = unsafe { libc::syscall(libc::SYS_clone3, &a as *const ckpt_ns::CloneArgs, std::mem::size_of::<ckpt_ns::CloneArgs>()) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        let who = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default().lines().take(8).collect::<Vec<_>>().join("; ");
        bail!("cannot create process {pid} of the tree: {e} ({who})");
    }
    Ok(r as i32)
}

/// Make process `pid` with `clone_with_pid` and wait until it has done its part of making the
/// tree (`handover`): its pid in the creator, None in the new process.
fn make(pid: i32, sibling: bool, files: bool, exit_signal: i32) -> Result<Option<i32>> {
    // (A process that shares our fd table is waited for still: it stages and makes its
    // children with our fds.)
    if !crate::handover::serial() && !files {
        let r = clone_with_pid(pid, sibling, files, exit_signal)?;
        return Ok((r != 0).then_some(r));
    }
    let done = crate::handover::Done::new()?;
    let r = clone_with_pid(pid, sibling, files, exit_signal)?;
    if r == 0 {
        done.adopt();
        return Ok(None);
    }
    done.wait(&SHARED.get().expect("in a tree").barrier.failed)?;
    Ok(Some(r))
}

/// Do what the plan says process (or session helper) `pid` does: create its children and
/// orphans, call setsid at its turn; returns in every process of the tree with its record.
/// A process stages its image before it makes its first child (`stage_before_children`).
fn spawn_children(m: &Manifest, plan: &Plan, pid: i32, set: &Path) -> Result<TreeProc> {
    // (Its time namespace first: while it is single-threaded and holds the capabilities.)
    crate::treetime::take(m, pid)?;
    become_vouched(m, plan, pid, set)?;
    let me = m.procs.iter().find(|p| p.pid == pid).cloned();
    let mut staged = false;
    for step in plan.steps(pid) {
        match *step {
            Step::Setsid => {
                setsid(pid)?;
                take_ctty(m, pid);
            }
            Step::Child(k) => {
                if !staged {
                    staged = true;
                    stage_before_children(m, plan, pid, set)?;
                }
                if make(k, false, m.table_parent(k) == Some(pid), m.exit_signal(k))?.is_none() {
                    crate::cowshare::inherited(true);
                    return spawn_children(m, plan, k, set);
                }
            }
            Step::Sibling(k) => {
                if make(k, true, false, libc::SIGCHLD)?.is_none() {
                    crate::cowshare::inherited(false);
                    return spawn_children(m, plan, k, set);
                }
            }
            Step::Orphan(k) => {
                if make_via(m, pid, k, None, me.is_none())? {
                    crate::cowshare::inherited(false);
                    return spawn_children(m, plan, k, set);
                }
            }
            Step::Deliver(k, q) => {
                if make_via(m, pid, k, Some(q), false)? {
                    crate::cowshare::inherited(false);
                    return spawn_children(m, plan, k, set);
                }
            }
            Step::GroupHelper(g) => {
                if make_via(m, pid, g, None, me.is_none())? {
                    lead_group(g);
                }
            }
            Step::SessionHelper(s) => match make(s, false, false, libc::SIGCHLD)? {
                None => {
                    crate::cowshare::inherited(false);
                    setsid(s)?;
                    return spawn_children(m, plan, s, set);
                }
                Some(h) => reap(h),
            },
        }
    }
    crate::handover::done();
    match me {
        Some(me) => Ok(me),
        // A session helper that made its orphans: it exits (its creator reaps it), they are
        // init's.
        // SAFETY: leaving the helper process.
        None => unsafe { libc::_exit(0) },
    }
}

/// A process of root's tree that ran as another user (`vouched`) takes on, as soon as it is
/// made, the ids the coordinator saw it run as: everything its restart does from its image
/// (which it wrote itself: the files it maps and opens, its sockets) is done as that user, as
/// when that user restarts its own image. Its image chain is opened first, as root (the set is
/// root's). One that makes processes at the restart (its children) would need root's
/// privileges for their ids afterwards: refused in one line.
fn become_vouched(m: &Manifest, plan: &Plan, pid: i32, set: &Path) -> Result<()> {
    let Some(ids) = vouched(pid) else { return Ok(()) };
    if plan.steps(pid).iter().any(|s| !matches!(s, Step::Setsid)) {
        bail!("{}: process {pid} ran as uid {} (not the tree's user) and has processes to make at the restart: ckpt-restart, as root, restores such a process only without children", set.display(), ids.uids[1]);
    }
    let Some((_, image)) = m.live().find(|(p, _)| p.pid == pid) else { return Ok(()) };
    crate::open_as_root(&set.join(image), ids.uids[1])?;
    crate::creds::apply(&crate::creds::from_ids(ids))
}

/// Process `pid` is about to make its children: it stages its image first, so that they start
/// from its staged memory and share what they did not change with it, copy-on-write
/// (`cowshare`). Only a live process restored from its image (not one run again) with a live
/// child, and only when new threads cannot take ids the set needs (`Shared::early`).
fn stage_before_children(m: &Manifest, plan: &Plan, pid: i32, set: &Path) -> Result<()> {
    let s = SHARED.get().expect("in a tree");
    let live = |k: i32| m.live().any(|(p, _)| p.pid == k);
    let has_live_child = plan.steps(pid).iter().any(|st| matches!(*st, Step::Child(k) if live(k)));
    if !s.early || !has_live_child || m.reexec.contains(&pid) {
        return Ok(());
    }
    let Some((_, image)) = m.live().find(|(p, _)| p.pid == pid) else { return Ok(()) };
    crate::stage_early(&set.join(image))
}

/// Make process `pid` so that its parent is init (`to` None) or process `to`, above us: from
/// init's child (the root) a sibling is init's child; a session helper (`helper`) exits after
/// making them; anyone else makes it through a helper that exits once it is made, while `to` is
/// a child subreaper. True in the new process.
fn make_via(m: &Manifest, creator: i32, pid: i32, to: Option<i32>, helper: bool) -> Result<bool> {
    if to.is_none() && (creator == m.root || helper) {
        return Ok(make(pid, creator == m.root, false, libc::SIGCHLD)?.is_none());
    }
    let failed = &SHARED.get().expect("in a tree").barrier.failed;
    let Some(h) = make(helper_id(), false, false, libc::SIGCHLD)? else {
        if make(pid, false, false, libc::SIGCHLD)?.is_none() {
            return Ok(true);
        }
        if let Some(q) = to {
            crate::handover::become_subreaper(q, true, failed)?;
        }
        crate::handover::done();
        // SAFETY: leaving the helper: its child becomes init's, or `to`'s.
        unsafe { libc::_exit(0) }
    };
    reap(h);
    if let Some(q) = to {
        crate::handover::become_subreaper(q, false, failed)?;
    }
    Ok(false)
}

/// A group helper: lead process group `g` until every process of the tree has joined its own.
fn lead_group(g: i32) -> ! {
    let s = SHARED.get().expect("in a tree");
    // SAFETY: making our own process group.
    if unsafe { libc::setpgid(0, 0) } != 0 {
        ckpt_kinds::say!("ckpt-restart: cannot make process group {g} again: {}", std::io::Error::last_os_error());
        fail();
    }
    s.barrier.led.fetch_add(1, Ordering::AcqRel);
    futex(&s.barrier.led, libc::FUTEX_WAKE, i32::MAX as u32);
    crate::handover::done();
    let _ = wait_count(&s.barrier.joined, s.total, "in their process groups");
    // SAFETY: leaving the helper (init reaps it); the group lives on in its members.
    unsafe { libc::_exit(0) }
}

/// A pid for a helper process: above every id of the set (nothing of the tree needs it).
fn helper_id() -> i32 {
    let s = SHARED.get().expect("in a tree");
    s.max_id + 1 + s.barrier.helpers.fetch_add(1, Ordering::AcqRel) as i32
}

fn reap(pid: i32) {
    let mut st = 0;
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(pid, &mut st, 0) };
}

fn setsid(pid: i32) -> Result<()> {
    // SAFETY: plain process-attribute calls on ourselves.
    if unsafe { libc::getsid(0) } != pid && unsafe { libc::setsid() } < 0 {
        bail!("process {pid}: cannot make its session again: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// The session leader `sid`, right after its setsid: take the session's controlling terminal
/// again when it was one of the tree's pseudo-terminals, before the session's other processes
/// are created (they inherit it then; processes made before would not have it).
fn take_ctty(m: &Manifest, sid: i32) {
    let Some(c) = m.ctty.iter().find(|c| c.sid == sid) else { return };
    let Some(&(_, idx)) = SHARED.get().and_then(|s| s.ptys.get(&c.index)) else {
        ckpt_kinds::say!("ckpt-restart: warning: the controlling terminal of session {sid}, /dev/pts/{}, is not a pseudo-terminal of the tree: the session has none after the restart", c.index);
        return;
    };
    let path = std::ffi::CString::new(format!("/dev/pts/{idx}")).expect("no NUL");
    // SAFETY: opening the tree's slave, making it our controlling terminal, closing our fd.
    let ok = unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        let ok = fd >= 0 && libc::ioctl(fd, libc::TIOCSCTTY, 0) == 0;
        if fd >= 0 {
            libc::close(fd);
        }
        ok
    };
    if !ok {
        ckpt_kinds::say!("ckpt-restart: warning: session {sid} cannot take its controlling terminal /dev/pts/{idx} again: {}", std::io::Error::last_os_error());
    }
}

/// Once every process is in its process group: a session leader whose controlling terminal is
/// back makes its foreground process group the one it was (TIOCSCTTY made it the leader's).
fn foreground(m: &Manifest, pid: i32) {
    let Some(c) = m.ctty.iter().find(|c| c.sid == pid && c.fg > 0 && c.fg != pid) else { return };
    // SAFETY: /dev/tty is our controlling terminal (none: the open fails); tcsetpgrp to a
    // group of our session, from its foreground group (so no SIGTTOU); closing our fd.
    let ok = unsafe {
        let fd = libc::open(c"/dev/tty".as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        let ok = fd >= 0 && libc::tcsetpgrp(fd, c.fg) == 0;
        if fd >= 0 {
            libc::close(fd);
        }
        ok || fd < 0
    };
    if !ok {
        ckpt_kinds::say!("ckpt-restart: warning: session {pid}: cannot make process group {} its terminal's foreground again: {}", c.fg, std::io::Error::last_os_error());
    }
}

/// Exit with wait status `status` (an exit code or a fatal signal, without a core file).
fn exit_as(status: i32) -> ! {
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        // SAFETY: changing our own limits and disposition, then signalling ourselves.
        unsafe {
            let none = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            libc::setrlimit(libc::RLIMIT_CORE, &none);
            libc::signal(sig, libc::SIG_DFL);
            let mut s: libc::sigset_t = std::mem::zeroed();
            libc::sigaddset(&mut s, sig);
            libc::sigprocmask(libc::SIG_UNBLOCK, &s, std::ptr::null_mut());
            libc::kill(libc::getpid(), sig);
        }
    }
    // SAFETY: leaving this process.
    unsafe { libc::_exit(libc::WEXITSTATUS(status)) }
}

/// Take the process's group once every process exists: leaders first (everyone meets at
/// `grouped`), then the members join (a group's ids are inside the namespace; 0: outside it,
/// ckpt-restart's, which every process has already).
fn enter_group(p: &TreeProc) -> Result<()> {
    let s = SHARED.get().expect("in a tree");
    // SAFETY: plain process-attribute calls on ourselves.
    if p.pgid == p.pid && unsafe { libc::getpgrp() } != p.pid && unsafe { libc::setpgid(0, 0) } != 0 {
        bail!("process {}: cannot lead its process group again: {}", p.pid, std::io::Error::last_os_error());
    }
    meet(&s.barrier.grouped, s.total, "in their process groups")?;
    wait_count(&s.barrier.led, s.group_helpers, "in their process groups")?;
    // SAFETY: as above.
    if p.pgid != 0 && unsafe { libc::getpgrp() } != p.pgid && unsafe { libc::setpgid(0, p.pgid) } != 0 {
        bail!("process {}: cannot join its process group {}: {}", p.pid, p.pgid, std::io::Error::last_os_error());
    }
    meet(&s.barrier.joined, s.total, "in their process groups")
}

/// Whether our fd `f` (0 to 2) was not the stdio the tree was given but the process's own (a
/// shell's background job's /dev/null): restored as its image says, not left ckpt-restart's.
/// In a tree the set's manifest says (`ownstdio` lines); a program alone, its image
/// (`FdState::own_stdio`).
pub fn own_stdio(f: &ckpt_image::FdState) -> bool {
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    match SHARED.get() {
        Some(s) => s.own_stdio.contains(&(me, f.fd)),
        None => f.own_stdio(),
    }
}

/// Whether fd `f` is a pipe the tree's processes share (made before they were forked).
pub fn shared_pipe(f: &ckpt_image::FdState) -> bool {
    matches!(&f.kind, FdKind::Pipe { ino, .. } if SHARED.get().is_some_and(|s| s.pipes.has(*ino)))
}

/// Whether fd `f` is a socket the tree's processes share (made before they were forked).
pub fn shared_socket(f: &ckpt_image::FdState) -> bool {
    matches!(&f.kind, FdKind::Socket(s) if SHARED.get().is_some_and(|t| t.sockets.has(s.ino)))
}

/// Whether fd `f` is a pseudo-terminal (master or slave) of a pair the tree's processes share.
pub fn shared_pty(f: &ckpt_image::FdState) -> bool {
    let FdKind::Tty(t) = &f.kind else { return false };
    SHARED.get().is_some_and(|s| s.ptys.contains_key(&t.index) && (t.kind != ckpt_image::TtyKind::Outside || !t.foreign && ckpt_kinds::tty::pts_index(t.rdev) == Some(t.index)))
}

/// The processes of root's tree that ran as other users, with the ids the coordinator saw at the
/// cut (the manifest's `ids` lines; set only when we are root).
static VOUCHED: OnceLock<Vec<(i32, ckpt_image::tree::ProcIds)>> = OnceLock::new();

/// The ids process `pid` of the tree being restarted ran as, if it ran as another user in root's
/// tree (its restart takes them on before it opens anything: main.rs `run`).
pub fn vouched(pid: i32) -> Option<&'static ckpt_image::tree::ProcIds> {
    VOUCHED.get()?.iter().find(|v| v.0 == pid).map(|v| &v.1)
}

/// The uid the image at `path` (`PID.ckpt` of a set) must have been taken by: the vouched
/// process's effective uid, else ours.
pub fn taker(path: &Path) -> u32 {
    let pid = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".ckpt")).and_then(|n| n.parse().ok());
    pid.and_then(vouched).map_or_else(ckpt_image::trust::euid, |ids| ids.uids[1])
}

/// Whether this process is one of a tree being restarted.
pub fn in_tree() -> bool {
    SHARED.get().is_some()
}

/// Whether fd `f`'s pipe is one the tree shares (its reader is not fed from outside).
pub fn shares_pipe(ix: &Index, fd: i32) -> bool {
    ix.fds.iter().any(|f| f.fd == fd && shared_pipe(f))
}
