//! The time namespaces of a restarted tree's processes (the manifest's `timens` lines): a
//! process that was in a time namespace other than the tree's (born after its parent's
//! unshare(CLONE_NEWTIME), zdtm timens_nested) is put in one with the same offsets over the
//! restarted tree's namespace, which init made so that the tree's clocks go on (ckpt_ns
//! timens): its CLOCK_MONOTONIC and CLOCK_BOOTTIME go on from where it saw them, as far from
//! its parent's as before. Processes that shared a namespace share the new one.
//!
//! Each process does it itself, as soon as it is made and before anything else (still
//! single-threaded, as setns to a time namespace needs, and with ckpt-restart's capabilities in
//! its user namespace, before a vouched process takes its user's ids): the first of a namespace
//! makes it (unshare(CLONE_NEWTIME) gives it a namespace for its children, whose offsets it sets
//! before any process is in it, then setns into it), the next ones enter the first one's. A
//! process of the tree's namespace made by one in another goes back to the tree's (init's for
//! its children). A tree with such namespaces is made one process at a time (tree.rs asks
//! handover for it), so a namespace is always made before the next of its processes looks for
//! it in the shared list (`Made`).
//!
//! An fd a process held open on a time namespace (/proc/PID/ns/time, kept across a fork: zdtm
//! timens_nested's child holds its parent's old one) is opened on the namespace made for it:
//! the tree's (the manifest's `treetime`) or one of the `timens` lines' (`ns_fd`). Any other
//! stays refused (fds.rs).

use anyhow::{anyhow, bail, Result};
use ckpt_image::tree::{Manifest, TimeNs};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;

const SLOTS: usize = 250;

/// The namespaces made so far, in memory every process of the tree shares (MAP_SHARED):
/// (the namespace's inode at the cut, the process that is in the new one).
#[repr(C)]
struct Made {
    count: AtomicU32,
    ns: [AtomicU64; SLOTS],
    pid: [AtomicI32; SLOTS],
    /// 1: the process has it for its children (`Manifest::timens_kids`), not as its own.
    kids: [AtomicU32; SLOTS],
}

static MADE: OnceLock<&'static Made> = OnceLock::new();
/// The tree's time namespace at the cut (its inode).
static TREE: OnceLock<u64> = OnceLock::new();

/// Before the tree is made, in its root: the shared list, when the set has `timens` lines.
pub fn init(m: &Manifest) -> Result<()> {
    if let Some(ns) = m.tree_time {
        let _ = TREE.set(ns);
    }
    if m.timens.is_empty() {
        return Ok(());
    }
    let len = std::mem::size_of::<Made>();
    // SAFETY: a new anonymous shared mapping, zero-filled (an empty list), never unmapped.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1, 0) };
    if p == libc::MAP_FAILED {
        bail!("cannot map the list of the tree's time namespaces: {}", std::io::Error::last_os_error());
    }
    // SAFETY: zeroed memory is a valid Made (atomics of zero); it lives for the process.
    let made: &'static Made = unsafe { &*(p as *const Made) };
    MADE.set(made).map_err(|_| anyhow!("internal: the time namespace list was made twice"))
}

fn link(path: &str) -> Option<String> {
    std::fs::read_link(path).ok().map(|l| l.to_string_lossy().into_owned())
}

/// setns into the time namespace at `path` (/proc/PID/ns/...).
fn enter(path: &str) -> Result<()> {
    let f = std::fs::File::open(path).map_err(|e| anyhow!("cannot open {path}: {e}"))?;
    // SAFETY: setns with an fd we own; this process is single-threaded here.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWTIME) } != 0 {
        bail!("cannot enter the time namespace {path}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// In process `pid`, as soon as it is made: put it in its time namespace.
pub fn take(m: &Manifest, pid: i32) -> Result<()> {
    let Some(made) = MADE.get() else { return Ok(()) };
    let own = link("/proc/self/ns/time");
    let Some(t) = m.time_ns_of(pid) else {
        // The tree's namespace: init's for its children.
        if own.is_some() && own != link("/proc/1/ns/time_for_children") {
            enter("/proc/1/ns/time_for_children")?;
        }
        return take_kids(m, pid);
    };
    if let Some(path) = made_for(t.ns) {
        if own.is_none() || own != link(&path) {
            enter(&path)?;
        }
        return Ok(());
    }
    make(made, pid, t, false)?;
    enter("/proc/self/ns/time_for_children")
}

/// Make the time namespace `t` this process will make its children in, and note it.
fn make(made: &Made, pid: i32, t: &TimeNs, kids: bool) -> Result<()> {
    let n = (made.count.load(Ordering::Acquire) as usize).min(SLOTS);
    if n == SLOTS {
        bail!("process {pid}: the tree has more than {SLOTS} time namespaces of its own, which a restart does not make");
    }
    let tree = std::fs::read_to_string("/proc/1/timens_offsets").ok().and_then(|s| ckpt_ns::timens::parse_offsets(&s));
    let Some(tree) = tree else { bail!("process {pid}: the restarted tree's clock offsets (/proc/1/timens_offsets) cannot be read") };
    let off = ckpt_ns::Clocks { monotonic: tree.monotonic + t.monotonic, boottime: tree.boottime + t.boottime };
    // SAFETY: unshare only changes the namespace our children would be made in.
    if unsafe { libc::unshare(libc::CLONE_NEWTIME) } != 0 {
        bail!("process {pid}: cannot make its time namespace again: unshare(CLONE_NEWTIME): {}", std::io::Error::last_os_error());
    }
    std::fs::write("/proc/self/timens_offsets", ckpt_ns::timens::format_offsets(off)).map_err(|e| anyhow!("process {pid}: cannot set the clock offsets of its time namespace: {e}"))?;
    made.ns[n].store(t.ns, Ordering::Release);
    made.pid[n].store(pid, Ordering::Release);
    made.kids[n].store(u32::from(kids), Ordering::Release);
    made.count.store(n as u32 + 1, Ordering::Release);
    Ok(())
}

/// In process `pid`, once in its own time namespace (`take`): the namespace for its children
/// it had, when processes of the tree are in it (`Manifest::timens_kids`). Its runtime finds it
/// made and keeps it (runtime/src/timens.rs). One that a process of it made first (made before
/// this one) cannot be this one's for its children: refused in one line.
fn take_kids(m: &Manifest, pid: i32) -> Result<()> {
    let (Some(made), Some(t)) = (MADE.get(), m.kids_time_ns_of(pid)) else { return Ok(()) };
    if made_for(t.ns).is_some() {
        bail!("process {pid}: its time namespace for children was made again before it, by another process in it (made before it at this restart), and cannot be its namespace for children too: the tree cannot be restarted with its time namespaces shared");
    }
    make(made, pid, t, true)
}

/// The path of the restarted tree's namespace that stands for time namespace `ino` of the cut.
fn made_for(ino: u64) -> Option<String> {
    if TREE.get() == Some(&ino) {
        return Some("/proc/1/ns/time_for_children".into());
    }
    let made = MADE.get()?;
    let n = (made.count.load(Ordering::Acquire) as usize).min(SLOTS);
    let i = (0..n).find(|&i| made.ns[i].load(Ordering::Acquire) == ino)?;
    let kind = if made.kids[i].load(Ordering::Acquire) == 1 { "time_for_children" } else { "time" };
    Some(format!("/proc/{}/ns/{kind}", made.pid[i].load(Ordering::Acquire)))
}

/// For an fd the image describes by its link `link`: when it is open on a time namespace the
/// restart made again (`time:[INODE]`), the path of that one (None: not such an fd). Every
/// process of the tree is made (and in its namespace) before any restores its fds.
pub fn ns_path(link: &[u8]) -> Option<String> {
    let ino = std::str::from_utf8(link.strip_prefix(b"time:[")?.strip_suffix(b"]")?).ok()?.parse::<u64>().ok()?;
    made_for(ino)
}

/// A new fd of ours on the time namespace at `path` (`ns_path`).
pub fn open_ns(path: &str) -> Result<std::os::fd::RawFd> {
    let f = std::fs::File::open(path).map_err(|e| anyhow!("cannot open the time namespace {path} again: {e}"))?;
    Ok(std::os::fd::IntoRawFd::into_raw_fd(f))
}
