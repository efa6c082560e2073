//! Committing a finished image as the newest generation (rotating the older ones, keeping
//! `--keep N` in all), the one-line report of each checkpoint, and the record of the last image
//! (for `ckpt-ctl status` and `checkpoint --wait`). Naming: see ckpt_image's generations module.
//!
//! Everything here runs on the checkpoint thread with raw system calls. The last-image record is
//! a fixed buffer: allocations made during a checkpoint are freed when it ends.

use crate::checkpoint::strerror;
use crate::imgdir::Dir;
use crate::log::{log, ALWAYS, ERROR};
use crate::sys;
use ckpt_image::generation_file_name;
use ckpt_image::progress::Size;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use crate::forklock::Mutex;

static KEEP: AtomicU32 = AtomicU32::new(2);

/// The image of the last complete checkpoint of a step (its header hash; 0: none): never pruned.
static PROTECT: AtomicU64 = AtomicU64::new(0);

pub fn protect(hash: u64) {
    PROTECT.store(hash, Ordering::Relaxed);
}

pub fn set_keep(k: u32) {
    KEEP.store(k.max(1), Ordering::Relaxed);
}

/// DIR/NAME.ckpt, the newest image's path.
pub fn newest_path(dir: &[u8], name: &[u8]) -> Vec<u8> {
    [dir, b"/", &generation_file_name(name, 0)].concat()
}

/// Generations past `keep` that may still be needed as parents of kept increments: a chain is
/// never longer than this (incremental.rs caps it).
pub const MAX_CHAIN: u32 = 64;

/// Make the complete image `tmp` (a file of ours in `dir`) the newest generation of `name`. At
/// every step a complete image of the newest checkpoint so far exists under one of the
/// generation names. Every older generation moves one step down; then those past `keep` go,
/// except the images a kept increment builds on (found by the parent hash in their headers).
///
/// Any step that fails stops the commit with a message (the caller removes `tmp`): the newest
/// complete image stays where it is, and no image an increment builds on is overwritten or
/// removed. Only regular files of ours are moved: a generation name taken by anything else
/// (another user's file in a shared directory) fails the checkpoint before anything moves.
pub fn commit(dir: &Dir, tmp: &[u8], name: &[u8]) -> Result<(), String> {
    let keep = KEEP.load(Ordering::Relaxed);
    let last = keep + MAX_CHAIN;
    let gen = |i: u32| generation_file_name(name, i);
    for i in 0..=last {
        dir.own_file(&gen(i))?;
    }
    let failed = |what: &str, n: &[u8], e: i32| format!("cannot {what} {}: {}", dir.show(n), strerror(e));
    for i in (1..last).rev() {
        match dir.rename(&gen(i), &gen(i + 1)) {
            Ok(()) | Err(libc::ENOENT) => {}
            Err(e) => return Err(failed("rotate", &gen(i), e)),
        }
    }
    let (newest, first) = (gen(0), gen(1));
    match dir.unlink(&first) {
        Ok(()) | Err(libc::ENOENT) => {}
        Err(e) => return Err(failed("remove", &first, e)),
    }
    // A second name for the current newest, so it stays complete while the new one moves in.
    match dir.link(&newest, &first) {
        Ok(()) | Err(libc::ENOENT) => {}
        Err(_) => dir.rename(&newest, &first).map_err(|e| failed("rotate", &newest, e))?,
    }
    dir.rename(tmp, &newest).map_err(|e| failed("rename the new image onto", &newest, e))?;
    prune(dir, name, keep, last);
    dir.fsync().map_err(|e| format!("cannot sync the image directory: {}", strerror(e)))
}

/// (index_hash, parent) from the header of generation `i`, if it is a readable image of ours.
fn header_of(dir: &Dir, name: &[u8], i: u32) -> Option<(u64, u64)> {
    let fd = dir.open_own(&generation_file_name(name, i))?;
    let mut b = [0u8; ckpt_image::HEADER_LEN];
    let got = sys::pread(fd, &mut b, 0).unwrap_or(0);
    let st = sys::fstat(fd);
    sys::close(fd);
    let h = ckpt_image::Header::decode(&b[..got], st.ok()?.st_size as u64).ok()?;
    Some((h.index_hash, h.parent))
}

/// Remove generations `keep..=last` that no kept image needs as a parent. The new image is in
/// place already: a file that cannot be removed is reported, and the checkpoint stands.
fn prune(dir: &Dir, name: &[u8], keep: u32, last: u32) {
    let heads: Vec<Option<(u64, u64)>> = (0..=last).map(|i| header_of(dir, name, i)).collect();
    let mut needed: Vec<bool> = (0..=last).map(|i| i < keep).collect();
    let mut work: Vec<usize> = (0..keep.min(last + 1) as usize).collect();
    let protected = PROTECT.load(Ordering::Relaxed);
    if let Some(j) = heads.iter().position(|h| protected != 0 && h.is_some_and(|(hash, _)| hash == protected)) {
        needed[j] = true;
        work.push(j);
    }
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
            let n = generation_file_name(name, i);
            match dir.unlink(&n) {
                Ok(()) | Err(libc::ENOENT) => {}
                Err(e) => log!(ERROR, "cannot remove the old image {}: {}", dir.show(&n), strerror(e)),
            }
        }
    }
}

/// Whether an image with header hash `hash` is among the generations of `name` in `dir` (an
/// increment's parent must be, for the increment to be restartable).
pub fn has_image(dir: &Dir, name: &[u8], hash: u64) -> bool {
    (0..=KEEP.load(Ordering::Relaxed) + MAX_CHAIN).any(|i| header_of(dir, name, i).is_some_and(|(h, _)| h == hash))
}

const PATH_MAX: usize = 4096;

pub(crate) struct Last {
    path: [u8; PATH_MAX],
    len: usize,
}

pub(crate) static LAST: Mutex<Last> = Mutex::new(Last { path: [0; PATH_MAX], len: 0 });
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The tests change the process-wide `keep`: one at a time.
    static KEEP_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// An empty directory for a test, open as the runtime opens it.
    fn fresh_dir(tag: &str) -> (std::path::PathBuf, Dir) {
        let dir = std::env::temp_dir().join(format!("ckpt-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let d = Dir::open(dir.to_str().unwrap().as_bytes(), false).unwrap();
        (dir, d)
    }

    const TMP: &[u8] = b"app.ckpt.tmp.0";

    #[test]
    fn commit_rotates_and_keeps_n() {
        let _one = KEEP_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let (dir, d) = fresh_dir("gen");
        set_keep(3);
        for i in 1..=5 {
            std::fs::write(dir.join("app.ckpt.tmp.0"), format!("{i}")).unwrap();
            commit(&d, TMP, b"app").unwrap();
        }
        let read = |n: &str| std::fs::read_to_string(dir.join(n)).unwrap();
        assert_eq!((read("app.ckpt"), read("app.ckpt.1"), read("app.ckpt.2")), ("5".into(), "4".into(), "3".into()));
        let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.file_name()).collect();
        names.sort();
        assert_eq!(names, ["app.ckpt", "app.ckpt.1", "app.ckpt.2"]);
        set_keep(1);
        std::fs::write(dir.join("app.ckpt.tmp.0"), "6").unwrap();
        commit(&d, TMP, b"app").unwrap();
        assert_eq!(read("app.ckpt"), "6");
        assert!(!dir.join("app.ckpt.1").exists(), "keep 1: no older generation that nothing needs");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn commit_fails_before_moving_anything_when_a_name_is_taken() {
        let _one = KEEP_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let (dir, d) = fresh_dir("taken");
        set_keep(2);
        for i in 1..=2 {
            std::fs::write(dir.join("app.ckpt.tmp.0"), format!("{i}")).unwrap();
            commit(&d, TMP, b"app").unwrap();
        }
        // Something that is not an image of ours where app.ckpt.1 would move to.
        std::fs::create_dir(dir.join("app.ckpt.2")).unwrap();
        std::fs::write(dir.join("app.ckpt.tmp.0"), "3").unwrap();
        let e = commit(&d, TMP, b"app").unwrap_err();
        assert!(e.contains("app.ckpt.2") && e.contains("not a regular file"), "{e}");
        let read = |n: &str| std::fs::read_to_string(dir.join(n)).unwrap();
        assert_eq!((read("app.ckpt"), read("app.ckpt.1")), ("2".into(), "1".into()), "nothing moved");
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
        let (dir, d) = fresh_dir("chain");
        set_keep(1);
        // A full image (1), two increments over it (2, 3), a new full image (4), an increment (5).
        for (hash, parent) in [(1, 0), (2, 1), (3, 2), (4, 0), (5, 4)] {
            fake_image(&dir.join("app.ckpt.tmp.0"), hash, parent);
            commit(&d, TMP, b"app").unwrap();
            assert!(has_image(&d, b"app", hash));
            if parent != 0 {
                assert!(has_image(&d, b"app", parent), "the parent of {hash} is kept");
            }
        }
        let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["app.ckpt", "app.ckpt.1"], "5 and its parent 4; the old chain is gone");
        assert!(!has_image(&d, b"app", 3));
        set_keep(2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
