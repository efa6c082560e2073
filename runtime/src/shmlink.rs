//! Mappings of memfds and deleted files, kept connected across a restart. The image restores a
//! shared mapping of such a file as shared anonymous memory and a private one as private memory,
//! with the right contents; but two mappings of the same memfd (a ring buffer mapped twice)
//! would then be two separate copies, the memfd's fd would no longer see writes through the
//! mapping, and the pages of a private mapping that the program never wrote would no longer
//! see later writes through a shared mapping or the fd. After the restart this module maps each
//! of them again from one file: the program's own fd for it when it still has one (restored
//! with the contents it had at checkpoint time), else a new memfd filled from the shared
//! mappings. A private mapping gets back, over the file, the pages the program had written
//! (recorded at checkpoint time from pagemap) and those no shared mapping holds.

use crate::log::{log, DEBUG};
use crate::maps::{self, PAGE};
use crate::sys::{self, syscall};
use std::cell::UnsafeCell;

const MAX: usize = 64;
/// Runs of written pages recorded for all private mappings together; a private mapping whose
/// runs do not fit stays a private copy (right at the restart, deaf to later writes).
const MAX_RUNS: usize = 4096;

#[derive(Clone, Copy)]
struct Link {
    start: u64,
    len: u64,
    offset: u64,
    prot: u32,
    inode: u64,
    /// The program's fd for the same file, or -1.
    fd: i32,
    /// A MAP_PRIVATE mapping: its written pages are RUNS[first..first + count] (pages from
    /// `start`); None: not connected again (too many runs).
    private: Option<(usize, usize)>,
    shared: bool,
}

struct Saved {
    links: [Link; MAX],
    n: usize,
    runs: [(u64, u64); MAX_RUNS],
    nruns: usize,
}
struct Cell(UnsafeCell<Saved>);
// SAFETY: written by the checkpoint thread with the world stopped; read on the restart path
// before any other thread runs.
unsafe impl Sync for Cell {}
const NONE: Link = Link { start: 0, len: 0, offset: 0, prot: 0, inode: 0, fd: -1, private: None, shared: false };
static SAVED: Cell = Cell(UnsafeCell::new(Saved { links: [NONE; MAX], n: 0, runs: [(0, 0); MAX_RUNS], nruns: 0 }));

/// Record the mappings of deleted files (checkpoint thread, world stopped).
pub fn save() {
    // SAFETY: see Cell.
    let s = unsafe { &mut *SAVED.0.get() };
    s.n = 0;
    s.nruns = 0;
    let Ok(entries) = maps::read_maps() else { return };
    let fds = sys::list_dir(&sys::cpath(&[b"/proc/thread-self/fd"])).unwrap_or_default();
    let pagemap = sys::open(&sys::cpath(&[b"/proc/thread-self/pagemap"]), libc::O_RDONLY, 0).unwrap_or(-1);
    for m in entries {
        if m.inode == 0 || !m.name.ends_with(b" (deleted)") || m.name.starts_with(b"/SYSV") || m.name == ckpt_kinds::aio::RING_NAME || s.n == MAX {
            continue;
        }
        let fd = fds
            .iter()
            .filter(|n| sys::readlink(&sys::cpath(&[b"/proc/thread-self/fd/", n])).is_ok_and(|l| l == m.name))
            .filter_map(|n| std::str::from_utf8(n).ok()?.parse::<i32>().ok())
            .find(|&fd| {
                // SAFETY: an all-zero stat is a valid out-parameter.
                let mut st: libc::stat = unsafe { std::mem::zeroed() };
                syscall!(libc::SYS_fstat, fd, &mut st as *mut libc::stat).is_ok() && st.st_ino == m.inode
            })
            .unwrap_or(-1);
        let private = if m.shared || pagemap < 0 {
            None
        } else {
            let written = maps::copied_pages(pagemap, &m);
            (s.nruns + written.len() <= MAX_RUNS).then(|| {
                let first = s.nruns;
                s.runs[first..first + written.len()].copy_from_slice(&written);
                s.nruns += written.len();
                (first, written.len())
            })
        };
        s.links[s.n] = Link { start: m.start, len: m.end - m.start, offset: m.offset, prot: m.prot, inode: m.inode, fd, private, shared: m.shared };
        s.n += 1;
    }
    if pagemap >= 0 {
        sys::close(pagemap);
    }
}

/// Map them again from one file per inode (restart path, single thread).
pub fn restore() {
    // SAFETY: see Cell.
    let s = unsafe { &*SAVED.0.get() };
    let links = &s.links[..s.n];
    for (i, l) in links.iter().enumerate() {
        if links[..i].iter().any(|p| p.inode == l.inode) {
            continue; // this inode's group was handled with its first mapping
        }
        let group = || links.iter().filter(|x| x.inode == l.inode);
        let has_fd = group().any(|x| x.fd >= 0);
        let shared = group().filter(|x| x.shared).count();
        let views = group().filter(|x| x.private.is_some()).count();
        // Nothing else can see the file: the restored copies are right as they are.
        if !has_fd && (shared == 0 || (shared == 1 && views == 0)) {
            continue;
        }
        let (file, own) = match group().find(|x| x.fd >= 0) {
            Some(x) => (x.fd, false),
            None => {
                let Ok(f) = syscall!(libc::SYS_memfd_create, c"ckpt-shared".as_ptr(), libc::MFD_CLOEXEC) else { continue };
                let f = f as i32;
                let size = group().map(|x| x.offset + x.len).max().unwrap_or(0);
                let _ = syscall!(libc::SYS_ftruncate, f, size);
                for x in group().filter(|x| x.shared && x.prot & libc::PROT_READ as u32 != 0) {
                    let _ = syscall!(libc::SYS_pwrite64, f, x.start, x.len, x.offset);
                }
                (f, true)
            }
        };
        for x in group().filter(|x| x.shared) {
            let r = sys::mmap(x.start as usize, x.len as usize, x.prot as i32, libc::MAP_SHARED | libc::MAP_FIXED, file, x.offset as i64);
            if let Err(e) = r {
                log!(DEBUG, "cannot map {:#x} shared again: errno {e}", x.start);
            }
        }
        for x in group() {
            if let Some((first, n)) = x.private {
                // Without the program's fd, the new file holds only what the shared mappings hold.
                let held = |pg: u64| {
                    let at = x.offset + pg * PAGE;
                    has_fd || group().any(|y| y.shared && y.offset <= at && at < y.offset + y.len)
                };
                if let Err(e) = view(x, file, &s.runs[first..first + n], held) {
                    log!(DEBUG, "cannot map {:#x} privately again: errno {e}", x.start);
                }
            }
        }
        if own {
            sys::close(file);
        }
    }
}

/// Map the private mapping `x` from `file` again, with its current contents in the pages the
/// program wrote (`written`) and in those the file does not hold (`held` is false): built aside,
/// then moved over the old mapping in one mremap.
fn view(x: &Link, file: i32, written: &[(u64, u64)], held: impl Fn(u64) -> bool) -> Result<(), i32> {
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let len = x.len as usize;
    let fresh = sys::mmap(0, len, rw, libc::MAP_PRIVATE, file, x.offset as i64)?;
    let mine = |pg: u64| !held(pg) || written.iter().any(|&(s, n)| s <= pg && pg < s + n);
    let readable = x.prot & libc::PROT_READ as u32 != 0;
    if !readable {
        // Make the old contents readable for the copy (they are ours: the restored mapping).
        let _ = syscall!(libc::SYS_mprotect, x.start, len, libc::PROT_READ);
    }
    for pg in (0..x.len / PAGE).filter(|&pg| mine(pg)) {
        // SAFETY: both pages lie inside mappings of ours of `len` bytes, readable and writable.
        unsafe { std::ptr::copy_nonoverlapping((x.start + pg * PAGE) as *const u8, (fresh as u64 + pg * PAGE) as *mut u8, PAGE as usize) };
    }
    let _ = syscall!(libc::SYS_mprotect, fresh, len, x.prot);
    let flags = libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED;
    if let Err(e) = syscall!(libc::SYS_mremap, fresh, len, len, flags, x.start) {
        sys::munmap(fresh, len);
        if !readable {
            let _ = syscall!(libc::SYS_mprotect, x.start, len, x.prot);
        }
        return Err(e);
    }
    Ok(())
}
