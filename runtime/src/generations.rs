//! Committing a finished image as the newest generation (rotating the older ones, keeping
//! `--keep N` in all), the one-line report of each checkpoint, and the record of the last image
//! (for `ckpt-ctl status` and `checkpoint --wait`). Naming: see ckpt_image's generations module.
//!
//! Everything here runs on the checkpoint thread with raw system calls. The last-image record is
//! a fixed buffer: allocations made during a checkpoint are freed when it ends.

use crate::log::{log, ALWAYS};
use crate::sys::{self, syscall};
use ckpt_image::generation_file_name;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;

static KEEP: AtomicU32 = AtomicU32::new(2);

pub fn set_keep(k: u32) {
    KEEP.store(k.max(1), Ordering::Relaxed);
}

/// DIR/NAME.ckpt, the newest image's path.
pub fn newest_path(dir: &[u8], name: &[u8]) -> Vec<u8> {
    [dir, b"/", &generation_file_name(name, 0)].concat()
}

fn generation_path(dir: &[u8], name: &[u8], i: u32) -> std::ffi::CString {
    sys::cpath(&[dir, b"/", &generation_file_name(name, i)])
}

/// Generations past `keep` that may still be needed as parents of kept increments: a chain is
/// never longer than this (incremental.rs caps it).
pub const MAX_CHAIN: u32 = 64;

/// Make the complete image at `tmp` the newest generation of `name` in `dir`. At every step a
/// complete image of the newest checkpoint so far exists under one of the generation names.
/// Every older generation moves one step down; then those past `keep` go, except the images
/// a kept increment builds on (found by the parent hash in their headers).
pub fn commit(tmp: &std::ffi::CStr, dir: &[u8], name: &[u8]) -> Result<(), i32> {
    let keep = KEEP.load(Ordering::Relaxed);
    let last = keep + MAX_CHAIN;
    let newest = generation_path(dir, name, 0);
    for i in (1..last).rev() {
        let (from, to) = (generation_path(dir, name, i), generation_path(dir, name, i + 1));
        let _ = syscall!(libc::SYS_rename, from.as_ptr(), to.as_ptr());
    }
    let first = generation_path(dir, name, 1);
    let _ = syscall!(libc::SYS_unlink, first.as_ptr());
    // A second name for the current newest, so it stays complete while the new one moves in.
    match syscall!(libc::SYS_link, newest.as_ptr(), first.as_ptr()) {
        Ok(_) | Err(libc::ENOENT) => {}
        Err(_) => {
            let _ = syscall!(libc::SYS_rename, newest.as_ptr(), first.as_ptr());
        }
    }
    syscall!(libc::SYS_rename, tmp.as_ptr(), newest.as_ptr())?;
    prune(dir, name, keep, last);
    if let Ok(d) = sys::open(&sys::cpath(&[dir]), libc::O_RDONLY | libc::O_DIRECTORY, 0) {
        let _ = syscall!(libc::SYS_fsync, d);
        sys::close(d);
    }
    Ok(())
}

/// (index_hash, parent) from the header of generation `i`, if it is a readable image.
fn header_of(dir: &[u8], name: &[u8], i: u32) -> Option<(u64, u64)> {
    let fd = sys::open(&generation_path(dir, name, i), libc::O_RDONLY, 0).ok()?;
    let mut b = [0u8; ckpt_image::HEADER_LEN];
    let got = sys::pread(fd, &mut b, 0).unwrap_or(0);
    // SAFETY: an all-zero struct stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let stat = syscall!(libc::SYS_fstat, fd, &mut st as *mut libc::stat);
    sys::close(fd);
    stat.ok()?;
    let h = ckpt_image::Header::decode(&b[..got], st.st_size as u64).ok()?;
    Some((h.index_hash, h.parent))
}

/// Remove generations `keep..=last` that no kept image needs as a parent.
fn prune(dir: &[u8], name: &[u8], keep: u32, last: u32) {
    let heads: Vec<Option<(u64, u64)>> = (0..=last).map(|i| header_of(dir, name, i)).collect();
    let mut needed: Vec<bool> = (0..=last).map(|i| i < keep).collect();
    let mut work: Vec<usize> = (0..keep.min(last + 1) as usize).collect();
    while let Some(i) = work.pop() {
        let Some((_, parent)) = heads[i] else { continue };
        if parent == 0 {
            continue;
        }
        if let Some(j) = heads.iter().position(|h| h.is_some_and(|(hash, _)| hash == parent)) {
            if !needed[j] {
                needed[j] = true;
                work.push(j);
            }
        }
    }
    for i in keep..=last {
        if !needed[i as usize] {
            let path = generation_path(dir, name, i);
            let _ = syscall!(libc::SYS_unlink, path.as_ptr());
        }
    }
}

/// Whether an image with header hash `hash` is among the generations of `name` in `dir` (an
/// increment's parent must be, for the increment to be restartable).
pub fn has_image(dir: &[u8], name: &[u8], hash: u64) -> bool {
    (0..=KEEP.load(Ordering::Relaxed) + MAX_CHAIN).any(|i| header_of(dir, name, i).is_some_and(|(h, _)| h == hash))
}

const PATH_MAX: usize = 4096;

struct Last {
    path: [u8; PATH_MAX],
    len: usize,
}

static LAST: Mutex<Last> = Mutex::new(Last { path: [0; PATH_MAX], len: 0 });
static LAST_SIZE: AtomicU64 = AtomicU64::new(0);

/// Remember the image just written (for `ckpt-ctl status` and `checkpoint --wait`).
pub fn remember(path: &[u8], stored: u64) {
    if let Ok(mut l) = LAST.lock() {
        let n = path.len().min(PATH_MAX);
        l.path[..n].copy_from_slice(&path[..n]);
        l.len = n;
    }
    LAST_SIZE.store(stored, Ordering::Relaxed);
}

/// Report a committed image on stderr (always: one line per checkpoint). Printed by whoever
/// committed it: the snapshot child, or the checkpoint thread.
pub fn report(gen: u64, path: &[u8], raw: u64, stored: u64, total_ms: u64, paused_ms: u64, increment: bool) {
    log!(
        ALWAYS,
        "checkpoint {gen}: {} ({}{} of memory, {} on disk, {total_ms} ms, program paused {paused_ms} ms)",
        String::from_utf8_lossy(path),
        if increment { "increment: " } else { "" },
        Size(raw),
        Size(stored)
    );
}

/// Path of the last image this program wrote (empty: none yet), copied into `out`.
pub fn last_path() -> Vec<u8> {
    LAST.lock().map(|l| l.path[..l.len].to_vec()).unwrap_or_default()
}

/// Bytes as a short human figure: 812 B, 3.4 MiB, 1.2 GiB.
pub struct Size(pub u64);

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.0;
        if b < 1024 {
            write!(f, "{b} B")
        } else if b < 1 << 20 {
            write!(f, "{:.1} KiB", b as f64 / 1024.0)
        } else if b < 1 << 30 {
            write!(f, "{:.1} MiB", b as f64 / (1u64 << 20) as f64)
        } else {
            write!(f, "{:.2} GiB", b as f64 / (1u64 << 30) as f64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tests change the process-wide `keep`: one at a time.
    static KEEP_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// An empty directory for a test, and the path of `app`'s temporary image in it.
    fn fresh_dir(tag: &str) -> (std::path::PathBuf, std::ffi::CString) {
        let dir = std::env::temp_dir().join(format!("ckpt-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let tmp = sys::cpath(&[dir.to_str().unwrap().as_bytes(), b"/app.ckpt.tmp"]);
        (dir, tmp)
    }

    #[test]
    fn commit_rotates_and_keeps_n() {
        let _one = KEEP_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let (dir, tmp) = fresh_dir("gen");
        let d = dir.to_str().unwrap().as_bytes();
        set_keep(3);
        for i in 1..=5 {
            std::fs::write(dir.join("app.ckpt.tmp"), format!("{i}")).unwrap();
            commit(&tmp, d, b"app").unwrap();
        }
        let read = |n: &str| std::fs::read_to_string(dir.join(n)).unwrap();
        assert_eq!((read("app.ckpt"), read("app.ckpt.1"), read("app.ckpt.2")), ("5".into(), "4".into(), "3".into()));
        let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.file_name()).collect();
        names.sort();
        assert_eq!(names, ["app.ckpt", "app.ckpt.1", "app.ckpt.2"]);
        set_keep(1);
        std::fs::write(dir.join("app.ckpt.tmp"), "6").unwrap();
        commit(&tmp, d, b"app").unwrap();
        assert_eq!(read("app.ckpt"), "6");
        assert!(!dir.join("app.ckpt.1").exists(), "keep 1: no older generation that nothing needs");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A minimal image file: just a header whose index_hash is `hash` and parent `parent`.
    fn fake_image(path: &std::path::Path, hash: u64, parent: u64) {
        let h = ckpt_image::Header { version: ckpt_image::VERSION, index_offset: 64, index_len: 0, index_hash: hash, data_len: 0, parent };
        std::fs::write(path, h.encode()).unwrap();
    }

    #[test]
    fn commit_keeps_the_parents_of_kept_increments() {
        let _one = KEEP_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let (dir, tmp) = fresh_dir("chain");
        let d = dir.to_str().unwrap().as_bytes();
        set_keep(1);
        // A full image (1), two increments over it (2, 3), a new full image (4), an increment (5).
        for (hash, parent) in [(1, 0), (2, 1), (3, 2), (4, 0), (5, 4)] {
            fake_image(&dir.join("app.ckpt.tmp"), hash, parent);
            commit(&tmp, d, b"app").unwrap();
            assert!(has_image(d, b"app", hash));
            if parent != 0 {
                assert!(has_image(d, b"app", parent), "the parent of {hash} is kept");
            }
        }
        let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["app.ckpt", "app.ckpt.1"], "5 and its parent 4; the old chain is gone");
        assert!(!has_image(d, b"app", 3));
        set_keep(2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
