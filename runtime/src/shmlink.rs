//! Shared mappings of memfds and deleted files, kept shared across a restart. The image
//! restores such a mapping as shared anonymous memory with the right contents, but two mappings
//! of the same memfd (a ring buffer mapped twice) would then be two separate copies, and the
//! memfd's fd would no longer see writes through the mapping. After the restart this module maps
//! each of them again from one file: the program's own fd for it when it still has one (restored
//! with the contents it had at checkpoint time), else a new memfd filled from the mappings.

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
}

struct Saved {
    links: [Link; MAX],
    n: usize,
}
struct Cell(UnsafeCell<Saved>);
// SAFETY: written by the checkpoint thread with the world stopped; read on the restart path
// before any other thread runs.
unsafe impl Sync for Cell {}
const NONE: Link = Link { start: 0, len: 0, offset: 0, prot: 0, inode: 0, fd: -1 };
static SAVED: Cell = Cell(UnsafeCell::new(Saved { links: [NONE; MAX], n: 0 }));

/// Record the shared mappings of deleted files (checkpoint thread, world stopped).
pub fn save() {
    // SAFETY: see Cell.
    let s = unsafe { &mut *SAVED.0.get() };
    s.n = 0;
    let Ok(entries) = maps::read_maps() else { return };
    let fds = sys::list_dir(&sys::cpath(&[b"/proc/thread-self/fd"])).unwrap_or_default();
    for m in entries {
        if !m.shared || m.inode == 0 || !m.name.ends_with(b" (deleted)") || m.name.starts_with(b"/SYSV") || s.n == MAX {
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
        s.links[s.n] = Link { start: m.start, len: m.end - m.start, offset: m.offset, prot: m.prot, inode: m.inode, fd };
        s.n += 1;
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
