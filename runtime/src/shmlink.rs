//! Shared mappings of memfds and deleted files, kept shared across a restart. The image
//! restores such a mapping as shared anonymous memory with the right contents, but two mappings
//! of the same memfd (a ring buffer mapped twice) would then be two separate copies, and the
//! memfd's fd would no longer see writes through the mapping. After the restart this module maps
//! each of them again from one file: the program's own fd for it when it still has one (restored
//! with the contents it had at checkpoint time), else a new memfd filled from the mappings.
//!
//! Private mappings of a deleted file the program still has an fd on are mapped from that fd
//! again too, so that what the program writes through the fd shows in the pages it has not
//! written through the mapping, as before: the pages that differ from the file (its own copies)
//! are put back over the file's.

use crate::log::{log, DEBUG};
use crate::maps;
use crate::sys::{self, syscall};
use std::cell::UnsafeCell;

const MAX: usize = 64;

#[derive(Clone, Copy)]
struct Link {
    start: u64,
    len: u64,
    offset: u64,
    prot: u32,
    inode: u64,
    /// The program's fd for the same file, or -1.
    fd: i32,
    shared: bool,
}

struct Saved {
    links: [Link; MAX],
    n: usize,
}
struct Cell(UnsafeCell<Saved>);
// SAFETY: written by the checkpoint thread with the world stopped; read on the restart path
// before any other thread runs.
unsafe impl Sync for Cell {}
const NONE: Link = Link { start: 0, len: 0, offset: 0, prot: 0, inode: 0, fd: -1, shared: false };
static SAVED: Cell = Cell(UnsafeCell::new(Saved { links: [NONE; MAX], n: 0 }));

/// Record the shared mappings of deleted files (checkpoint thread, world stopped).
pub fn save() {
    // SAFETY: see Cell.
    let s = unsafe { &mut *SAVED.0.get() };
    s.n = 0;
    let Ok(entries) = maps::read_maps() else { return };
    let fds = sys::list_dir(&sys::cpath(&[b"/proc/self/fd"])).unwrap_or_default();
    for m in entries {
        if m.inode == 0 || !m.name.ends_with(b" (deleted)") || m.name.starts_with(b"/SYSV") || m.name == ckpt_kinds::aio::RING_NAME || s.n == MAX {
            continue;
        }
        let fd = fds
            .iter()
            .filter(|n| sys::readlink(&sys::cpath(&[b"/proc/self/fd/", n])).is_ok_and(|l| l == m.name))
            .filter_map(|n| std::str::from_utf8(n).ok()?.parse::<i32>().ok())
            .find(|&fd| {
                // SAFETY: an all-zero stat is a valid out-parameter.
                let mut st: libc::stat = unsafe { std::mem::zeroed() };
                syscall!(libc::SYS_fstat, fd, &mut st as *mut libc::stat).is_ok() && st.st_ino == m.inode
            })
            .unwrap_or(-1);
        if !m.shared && fd < 0 {
            continue; // nothing else can change the file under a private mapping
        }
        s.links[s.n] = Link { start: m.start, len: m.end - m.start, offset: m.offset, prot: m.prot, inode: m.inode, fd, shared: m.shared };
        s.n += 1;
    }
}

/// Map them again from one file per inode (restart path, single thread).
pub fn restore() {
    // SAFETY: see Cell.
    let s = unsafe { &*SAVED.0.get() };
    for x in s.links[..s.n].iter().filter(|x| !x.shared) {
        if let Err(e) = remap_private(x) {
            log!(DEBUG, "cannot map {:#x} from its file again: errno {e}", x.start);
        }
    }
    let shared: Vec<Link> = s.links[..s.n].iter().filter(|x| x.shared).copied().collect();
    let links = &shared[..];
    for (i, l) in links.iter().enumerate() {
        if links[..i].iter().any(|p| p.inode == l.inode) {
            continue; // this inode's group was handled with its first mapping
        }
        let group = || links.iter().filter(|x| x.inode == l.inode);
        if l.fd < 0 && group().count() < 2 {
            continue; // one mapping, no fd: nothing else can see it, the anonymous copy is right
        }
        let (file, own) = match group().find(|x| x.fd >= 0) {
            Some(x) => (x.fd, false),
            None => {
                let Ok(f) = syscall!(libc::SYS_memfd_create, c"ckpt-shared".as_ptr(), libc::MFD_CLOEXEC) else { continue };
                let f = f as i32;
                let size = group().map(|x| x.offset + x.len).max().unwrap_or(0);
                let _ = syscall!(libc::SYS_ftruncate, f, size);
                for x in group().filter(|x| x.prot & libc::PROT_READ as u32 != 0) {
                    let _ = syscall!(libc::SYS_pwrite64, f, x.start, x.len, x.offset);
                }
                (f, true)
            }
        };
        for x in group() {
            let r = sys::mmap(x.start as usize, x.len as usize, x.prot as i32, libc::MAP_SHARED | libc::MAP_FIXED, file, x.offset as i64);
            if let Err(e) = r {
                log!(DEBUG, "cannot map {:#x} shared again: errno {e}", x.start);
            }
        }
        if own {
            sys::close(file);
        }
    }
}

/// Map the private mapping `x` from the program's fd on its file again, keeping the pages that
/// differ from the file (copied on write before the checkpoint) as they are.
fn remap_private(x: &Link) -> Result<(), i32> {
    const PAGE: u64 = 4096;
    // SAFETY: an all-zero stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    syscall!(libc::SYS_fstat, x.fd, &mut st as *mut libc::stat)?;
    // Pages past the end of the file stay as they are (the file's would fault).
    let len = ((st.st_size as u64).saturating_sub(x.offset).div_ceil(PAGE) * PAGE).min(x.len);
    if len == 0 {
        return Ok(());
    }
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let view = sys::mmap(0, len as usize, libc::PROT_READ, libc::MAP_PRIVATE, x.fd, x.offset as i64)?;
    let keep = sys::mmap(0, len as usize, rw, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0).inspect_err(|_| sys::munmap(view, len as usize))?;
    let r = (|| {
        syscall!(libc::SYS_mprotect, x.start, len, libc::PROT_READ)?;
        let mut own = Vec::new();
        for off in (0..len).step_by(PAGE as usize) {
            // SAFETY: both pages are mapped readable, PAGE bytes each.
            let (a, b) = unsafe { (std::slice::from_raw_parts((x.start + off) as *const u8, PAGE as usize), std::slice::from_raw_parts((view as u64 + off) as *const u8, PAGE as usize)) };
            if a != b {
                // SAFETY: keep has room at off.
                unsafe { std::ptr::copy_nonoverlapping(a.as_ptr(), (keep as u64 + off) as *mut u8, PAGE as usize) };
                own.push(off);
            }
        }
        sys::mmap(x.start as usize, len as usize, rw, libc::MAP_PRIVATE | libc::MAP_FIXED, x.fd, x.offset as i64)?;
        for off in own {
            // SAFETY: the region is mapped writable again; keep holds the page.
            unsafe { std::ptr::copy_nonoverlapping((keep as u64 + off) as *const u8, (x.start + off) as *mut u8, PAGE as usize) };
        }
        Ok(())
    })();
    let _ = syscall!(libc::SYS_mprotect, x.start, x.len, x.prot);
    sys::munmap(view, len as usize);
    sys::munmap(keep, len as usize);
    r
}
