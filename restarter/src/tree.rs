//! Restarting a process tree from an image set (`NAME.ckpt/` with its manifest, see
//! ckpt_image::tree), inside the namespace ckpt-restart made: this process was created with
//! the root's pid by init. It makes the kernel objects that several processes of the tree
//! share (pipes and socketpairs between them (`treeshare`), shared memory inherited by fork), then creates the tree with
//! the exact pids (clone3 set_tid), parents before children, so that each process is its old
//! parent's child again (orphans become init's, CLONE_PARENT); zombies are processes that exit
//! at once with their status and are left for their parent to reap. Every process inherits the
//! shared objects, takes its process group and session, and restores its own image with the
//! single-process path, which places those objects at its fd numbers and maps the shared memory
//! from them. All of them wait at one barrier before they switch to their images, so that no
//! process runs (and writes shared memory, or a pipe) before every other is staged.

use anyhow::{anyhow, bail, Context, Result};
use ckpt_image::tree::{Manifest, ProcState, TreeProc};
use ckpt_image::{FdKind, Index, SharedMem};
use std::collections::HashMap;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// What every process of the tree inherits from the one that made it.
struct Shared {
    pipes: ckpt_kinds::pipe::Pipes,
    sockets: crate::treeshare::TreeSockets,
    /// Shared memory objects by device and inode: a memfd each.
    shm: HashMap<(u64, u64), RawFd>,
    /// The barrier page (MAP_SHARED) and how many processes meet there.
    barrier: &'static Barrier,
    live: u32,
    /// Processes in the set (zombies too).
    total: u32,
    /// The highest process and thread id of the set.
    max_id: i32,
}

#[repr(C)]
struct Barrier {
    ready: AtomicU32,
    failed: AtomicU32,
    /// Processes created so far: nobody starts threads (staging) before all are, since a thread
    /// would take a pid that a process of the set needs.
    created: AtomicU32,
}

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
    let (_, image) = m.live().find(|(p, _)| p.pid == m.root).ok_or_else(|| anyhow!("{}: the root process has no image", set.display()))?;
    Ok((set.join(image), m))
}

/// Where the restarted tree's coordinator commits its sets: next to `set`, under its name.
pub fn target(set: &Path, generation: u64) -> Option<ckpt_ns::TreeTarget> {
    let name = ckpt_image::parse_image_name(set.file_name()?.as_encoded_bytes())?.0.to_vec();
    let dir = std::path::absolute(set.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))).ok()?;
    Some(ckpt_ns::TreeTarget { dir, name, keep: 2, generation })
}

/// The pipes made for the tree (empty outside a tree's restart).
pub fn pipes() -> ckpt_kinds::pipe::Pipes {
    SHARED.get().map(|s| s.pipes.clone()).unwrap_or_default()
}

/// New fds of ours for the sockets of fd table `fds` that the tree shares (none outside a
/// tree's restart), by inode.
pub fn sockets(fds: &[ckpt_image::FdState]) -> Result<HashMap<u64, RawFd>> {
    SHARED.get().map_or(Ok(HashMap::new()), |s| s.sockets.of(fds))
}

/// The tree's memfd and offset for the shared memory region at `start` of `index`.
pub fn shared_memory(shared: &[SharedMem], start: u64) -> Option<(RawFd, u64)> {
    let s = SHARED.get()?;
    let m = shared.iter().find(|m| m.start == start)?;
    Some((*s.shm.get(&(m.dev, m.ino))?, m.offset))
}

/// Wait until every process of the tree is ready to switch (no-op outside a tree).
pub fn barrier() -> Result<()> {
    let Some(s) = SHARED.get() else { return Ok(()) };
    meet(&s.barrier.ready, s.live, "ready to run")
}

/// Count ourselves in `word` and wait until `n` processes are.
fn meet(word: &AtomicU32, n: u32, what: &str) -> Result<()> {
    let b = SHARED.get().expect("in a tree").barrier;
    word.fetch_add(1, Ordering::AcqRel);
    futex(word, libc::FUTEX_WAKE, i32::MAX as u32);
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

fn futex(word: &AtomicU32, op: i32, val: u32) {
    let ts = libc::timespec { tv_sec: 1, tv_nsec: 0 };
    // SAFETY: a futex on a word of the shared barrier page (not FUTEX_PRIVATE: several processes).
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), op, val, &ts as *const libc::timespec, 0, 0) };
}

/// Restart the tree of `set` (we are its root, created by init with the root's pid). Returns
/// in every process of the tree with the image it restores (then `run` restores it). Objects
/// its processes share that the restart cannot share again (`unshared`) refuse the set, unless
/// `lossy` (--ignore-missing-files): then a warning names each.
pub fn build(set: &Path, lossy: bool) -> Result<PathBuf> {
    let m = Manifest::read(set).ok_or_else(|| anyhow!("{}: not a process-tree image set", set.display()))?.map_err(|e| anyhow!(e))?;
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    if me != m.root {
        bail!("{}: a process tree is restarted only with its exact ids (in a namespace of its own); here the root would get pid {me}, not {}", set.display(), m.root);
    }
    let euid = ckpt_image::trust::euid();
    let mut indexes: Vec<(i32, Index)> = Vec::new();
    for (p, image) in m.live() {
        let path = set.join(image);
        let r = ckpt_image::trust::read_owned(&path, euid).with_context(|| format!("{}", path.display()))?;
        indexes.push((p.pid, r.index));
    }
    refuse_unshared(&indexes, lossy)?;
    // The namespace's System V objects (every image records them all: the root's are used).
    if let Some((_, ix)) = indexes.iter().find(|(pid, _)| *pid == m.root) {
        crate::sysv_objects(ix)?;
    }
    let mut shared = make_shared(&indexes, m.live().count() as u32)?;
    shared.total = m.procs.len() as u32;
    let ids = indexes.iter().flat_map(|(pid, ix)| ix.threads.iter().map(|t| t.tid).chain([*pid, ix.ids.ckpt_tid]));
    shared.max_id = ids.chain(m.procs.iter().map(|p| p.pid)).max().unwrap_or(0);
    SHARED.set(shared).map_err(|_| anyhow!("internal: the tree was built twice"))?;
    let mine = spawn_children(&m, m.root, true)?;
    let s = SHARED.get().expect("set above");
    meet(&s.barrier.created, s.total, "created")?;
    if mine.pid == m.root {
        // New processes and threads (the restarted programs' own, our staging threads) get ids
        // above every id of the set, which its processes take again with set_tid.
        let _ = std::fs::write("/proc/sys/kernel/ns_last_pid", s.max_id.to_string());
    }
    Ok(set.join(image_of(&mine)))
}

/// Refuse a tree whose processes share objects that would come back separate (or warn, `lossy`).
fn refuse_unshared(indexes: &[(i32, Index)], lossy: bool) -> Result<()> {
    let found = ckpt_image::unshared::find(indexes);
    if lossy {
        for u in &found {
            eprintln!("ckpt-restart: warning: {}; they come back as {} (ckpt cannot share them again yet)", u.what, u.instead);
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

/// The pipes found in the fd tables of two processes or more, and every shared memory object.
fn make_shared(indexes: &[(i32, Index)], live: u32) -> Result<Shared> {
    let shared_pipes = ckpt_image::unshared::tree_pipes(indexes);
    let mut pipes = ckpt_kinds::pipe::Pipes::default();
    for (_, ix) in indexes {
        for f in ix.fds.iter().filter(|f| f.dup_of.is_none()) {
            if matches!(&f.kind, FdKind::Pipe { ino, .. } if shared_pipes.contains(ino)) {
                pipes.prepare(f, &ix.fds).map_err(|e| anyhow!("{e}"))?;
            }
        }
    }
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
    let sockets = crate::treeshare::TreeSockets::make(indexes)?;
    Ok(Shared { pipes, sockets, shm, barrier, live, total: 0, max_id: 0 })
}

/// clone3 a process with pid `pid` (as a child of our parent with `sibling`); 0 in the child.
fn clone_with_pid(pid: i32, sibling: bool) -> Result<i32> {
    let tid = [pid];
    let flags = if sibling { libc::CLONE_PARENT as u64 } else { 0 };
    let a = ckpt_ns::CloneArgs { flags, exit_signal: libc::SIGCHLD as u64, set_tid: tid.as_ptr() as u64, set_tid_size: 1, ..Default::default() };
    // SAFETY: a fork-like clone3 of this single-threaded process; the child continues here.
    let r = unsafe { libc::syscall(libc::SYS_clone3, &a as *const ckpt_ns::CloneArgs, std::mem::size_of::<ckpt_ns::CloneArgs>()) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        let who = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default().lines().take(8).collect::<Vec<_>>().join("; ");
        bail!("cannot create process {pid} of the tree: {e} ({who})");
    }
    Ok(r as i32)
}

/// Create the children of `pid` (and, from the root, the processes whose parent was init),
/// each creating its own; returns in every live process with its record.
fn spawn_children(m: &Manifest, pid: i32, root: bool) -> Result<TreeProc> {
    let me = m.procs.iter().find(|p| p.pid == pid).cloned().ok_or_else(|| anyhow!("process {pid} is not in the set"))?;
    // Our group and session first: the children inherit them or join them.
    enter_groups(&me)?;
    let mut kids: Vec<(TreeProc, bool)> = m.children_of(pid).map(|p| (p.clone(), false)).collect();
    if root {
        kids.extend(m.children_of(0).filter(|p| p.pid != pid).map(|p| (p.clone(), true)));
    }
    // Zombies last: their pids must not be taken when a live process is created.
    kids.sort_by_key(|(p, _)| (matches!(p.state, ProcState::Zombie { .. }), p.pid));
    for (k, orphan) in kids {
        if clone_with_pid(k.pid, orphan)? == 0 {
            if let ProcState::Zombie { status } = k.state {
                if let Some(s) = SHARED.get() {
                    s.barrier.created.fetch_add(1, Ordering::AcqRel);
                    futex(&s.barrier.created, libc::FUTEX_WAKE, i32::MAX as u32);
                }
                exit_as(status);
            }
            return spawn_children(m, k.pid, false);
        }
    }
    Ok(me)
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

/// Take the process's session and process group (ids inside the namespace; 0: outside it, as
/// ckpt-restart's, which every process has already).
fn enter_groups(p: &TreeProc) -> Result<()> {
    // SAFETY: plain process-attribute calls on ourselves.
    unsafe {
        if p.sid == p.pid && libc::getsid(0) != p.pid && libc::setsid() < 0 {
            bail!("process {}: cannot make its session again: {}", p.pid, std::io::Error::last_os_error());
        }
        if p.pgid != 0 && libc::getpgrp() != p.pgid && libc::setpgid(0, p.pgid) != 0 {
            bail!("process {}: cannot join its process group {}: {}", p.pid, p.pgid, std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Whether fd `f` is a pipe the tree's processes share (made before they were forked).
pub fn shared_pipe(f: &ckpt_image::FdState) -> bool {
    matches!(&f.kind, FdKind::Pipe { ino, .. } if SHARED.get().is_some_and(|s| s.pipes.has(*ino)))
}

/// Whether this process is one of a tree being restarted.
pub fn in_tree() -> bool {
    SHARED.get().is_some()
}

/// Whether fd `f`'s pipe is one the tree shares (its reader is not fed from outside).
pub fn shares_pipe(ix: &Index, fd: i32) -> bool {
    ix.fds.iter().any(|f| f.fd == fd && shared_pipe(f))
}
