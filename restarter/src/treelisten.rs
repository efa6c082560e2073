//! The listeners of every process of a step task's tree across the step's restart (issue 14,
//! docs/multinode.md part 6). Only the task's program, the tree's root, meets the other tasks;
//! a listener of a process below it (a rank of an orted or a hydra_pmi_proxy) is reported
//! here: once its fds are back, each process of the tree puts its listeners (old name, new
//! name) in a shared area the root mapped before it made the tree; the root waits for every
//! process's, reports them to the step as its task's (stepaddrs), and puts the map the
//! rendezvous gives back in the same area, from which every process hands it to its runtime's
//! `connect` hook (RestartInfo::addr_map) as the root does. A tree that is no task of a step
//! has no area (nothing changes for it).

use anyhow::{bail, Result};
use ckpt_step::addrmap::{self, Listener, Report};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// Room for the reports of the tree's processes and, apart, for the map.
const REPORTS_MAX: usize = 1 << 20;
const MAP_MAX: usize = crate::plan::ADDR_MAP_MAX;
const HEAD: usize = 4096;

#[repr(C)]
struct Head {
    /// Bytes of the report area taken so far.
    used: AtomicU32,
    /// Processes that put their report.
    reported: AtomicU32,
    /// 1 once the root put the map (`map_len` bytes).
    mapped: AtomicU32,
    map_len: AtomicU32,
}

struct Tree {
    /// The shared area (HEAD, reports, map), mapped before the tree was made.
    base: usize,
    root: i32,
    /// The processes that restore an image (they all come by here).
    live: u32,
}

static TREE: OnceLock<Tree> = OnceLock::new();

/// In the root of a step task's tree, before it makes the tree's processes: the shared area
/// for `live` processes.
pub fn init(root: i32, live: u32) -> Result<()> {
    // SAFETY: a new shared anonymous mapping, never unmapped by us (the switch unmaps it).
    let p = unsafe { libc::mmap(std::ptr::null_mut(), HEAD + REPORTS_MAX + MAP_MAX, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE, -1, 0) };
    if p == libc::MAP_FAILED {
        bail!("cannot map the area for the listeners of the tree: {}", std::io::Error::last_os_error());
    }
    if TREE.set(Tree { base: p as usize, root, live }).is_err() {
        bail!("internal: the tree's listeners area was made twice");
    }
    Ok(())
}

/// Whether this process belongs to a step task's tree (the root included).
pub fn in_step() -> bool {
    TREE.get().is_some()
}

fn head(t: &Tree) -> &'static Head {
    // SAFETY: the area's first page, zeroed by mmap, valid for the life of the process.
    unsafe { &*(t.base as *const Head) }
}

/// Put this process's listeners in the area.
fn put(t: &Tree, listeners: Vec<Listener>) -> Result<()> {
    let b = addrmap::encode(&[Report { listeners, ..Default::default() }]);
    let h = head(t);
    let at = h.used.fetch_add(4 + b.len() as u32, Ordering::AcqRel) as usize;
    if at + 4 + b.len() > REPORTS_MAX {
        bail!("the listeners of the tree's processes take more than {REPORTS_MAX} bytes: they cannot be reported to the step");
    }
    // SAFETY: [at, at + 4 + len) of the report area is ours alone (fetch_add above).
    unsafe {
        let p = (t.base + HEAD + at) as *mut u8;
        std::ptr::copy_nonoverlapping((b.len() as u32).to_le_bytes().as_ptr(), p, 4);
        std::ptr::copy_nonoverlapping(b.as_ptr(), p.add(4), b.len());
    }
    h.reported.fetch_add(1, Ordering::AcqRel);
    crate::tree::futex(&h.reported, libc::FUTEX_WAKE, i32::MAX as u32);
    Ok(())
}

/// The root (or a task whose program is no tree): `mine` and the listeners of every other
/// process of the tree, once each has put its own.
pub fn gather(mine: Vec<Listener>) -> Result<Vec<Listener>> {
    let Some(t) = TREE.get() else { return Ok(mine) };
    put(t, mine)?;
    let h = head(t);
    crate::tree::wait_count(&h.reported, t.live, "restored with their listeners")?;
    let used = (h.used.load(Ordering::Acquire) as usize).min(REPORTS_MAX);
    // SAFETY: every process put its report (counted after it wrote it).
    let area = unsafe { std::slice::from_raw_parts((t.base + HEAD) as *const u8, used) };
    let mut all = Vec::new();
    let mut at = 0;
    while at + 4 <= used {
        let n = u32::from_le_bytes(area[at..at + 4].try_into().expect("4 bytes")) as usize;
        let Some(reports) = area.get(at + 4..at + 4 + n).and_then(addrmap::decode) else { bail!("internal: an unreadable report of listeners of the tree") };
        all.extend(reports.into_iter().flat_map(|r| r.listeners));
        at += 4 + n;
    }
    Ok(all)
}

/// The root: the map for the runtimes of the tree's processes (`Map::encode`, at most
/// ADDR_MAP_MAX bytes: stepaddrs checks).
pub fn hand_out(map: &[u8]) {
    let Some(t) = TREE.get() else { return };
    let n = map.len().min(MAP_MAX);
    // SAFETY: the map area is the root's to write until `mapped` says it is written.
    unsafe { std::ptr::copy_nonoverlapping(map.as_ptr(), (t.base + HEAD + REPORTS_MAX) as *mut u8, n) };
    let h = head(t);
    h.map_len.store(n as u32, Ordering::Release);
    h.mapped.store(1, Ordering::Release);
    crate::tree::futex(&h.mapped, libc::FUTEX_WAKE, i32::MAX as u32);
}

/// A process of the tree other than its root: put its listeners and wait for the map the
/// root hands out (None: this process is not in a step task's tree, or is its root).
pub fn share(listeners: Vec<Listener>) -> Result<Option<Vec<u8>>> {
    let Some(t) = TREE.get() else { return Ok(None) };
    // SAFETY: getpid has no preconditions.
    if unsafe { libc::getpid() } == t.root {
        return Ok(None);
    }
    put(t, listeners)?;
    let h = head(t);
    crate::tree::wait_count(&h.mapped, 1, "told where the step's listeners are")?;
    let n = h.map_len.load(Ordering::Acquire) as usize;
    // SAFETY: the root wrote n bytes there before it set `mapped`.
    Ok(Some(unsafe { std::slice::from_raw_parts((t.base + HEAD + REPORTS_MAX) as *const u8, n) }.to_vec()))
}
