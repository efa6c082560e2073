//! The images a set's increments build on. Each process of a tree writes an increment over its
//! own image in the previous set (its runtime keeps the page hashes, as a process alone does),
//! so every set directory holds, next to each process's newest image `PID.ckpt`, the older
//! images of that process its chain needs, `PID.ckpt.1`, `PID.ckpt.2`, ... (the generation
//! names a process alone uses in its directory): a set is one directory a restart reads alone.
//!
//! Before any process is asked to stop, `link_previous` hard-links every image of the newest set
//! into the new set's temporary directory one generation down (`PID.ckpt` becomes `PID.ckpt.1`):
//! no byte is copied, and the previous set stays as it was (a crash at any moment leaves it
//! complete). A process whose parent image is there writes an increment over it; one born
//! since, or whose image is gone, writes a full image. Once every image is written, `prune`
//! removes the older images no newest image builds on (found by the parent hash in their
//! headers), and those of processes gone; then the manifest commits the set. Rotating or
//! removing an older set never breaks a newer one: its parents are its own links.
//!
//! Where hard links cannot be made (a file system without them) the images are not linked and
//! every process writes a full image, as before.

use ckpt_image::{generation_file_name, parse_image_name, Header, HEADER_LEN, MAX_CHAIN};
use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// The images of set directory `dir`: (pid name, generation) -> (header index_hash, parent).
/// Only regular files of ours whose header reads.
fn images(dir: &Path) -> HashMap<(Vec<u8>, u32), (u64, u64)> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let mut out = HashMap::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return out };
    for e in rd.flatten() {
        let f = e.file_name();
        let Some((name, i)) = parse_image_name(f.as_bytes()) else { continue };
        if !name.iter().all(u8::is_ascii_digit) {
            continue;
        }
        let p = e.path();
        let Ok(file) = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(&p) else { continue };
        let Ok(m) = file.metadata() else { continue };
        if !m.is_file() || m.uid() != euid {
            continue;
        }
        let mut b = [0u8; HEADER_LEN];
        use std::os::unix::fs::FileExt;
        let got = file.read_at(&mut b, 0).unwrap_or(0);
        if let Ok(h) = Header::decode(&b[..got], m.len()) {
            out.insert((name.to_vec(), i), (h.index_hash, h.parent));
        }
    }
    out
}

/// Link the images of the set `prev` (the newest set, if it is one) into the new set's
/// temporary directory `tmp`, each one generation older. Returns how many were linked.
pub fn link_previous(prev: &Path, tmp: &Path) -> usize {
    if !ckpt_image::tree::is_set(prev) {
        return 0;
    }
    let mut linked = 0;
    for (name, i) in images(prev).into_keys() {
        if i + 1 > MAX_CHAIN as u32 {
            continue;
        }
        let from = prev.join(std::ffi::OsStr::from_bytes(&generation_file_name(&name, i)));
        let to = tmp.join(std::ffi::OsStr::from_bytes(&generation_file_name(&name, i + 1)));
        // linkat without AT_SYMLINK_FOLLOW: a symbolic link (not ours: `images` skips them)
        // would be linked as itself, never followed.
        match std::fs::hard_link(&from, &to) {
            Ok(()) => linked += 1,
            Err(e) => {
                if std::env::var_os("CKPT_LOG").is_some_and(|v| v == "debug") {
                    eprintln!("ckpt: cannot link {} into the new set ({e}): its process writes a full image", from.display());
                }
            }
        }
    }
    linked
}

/// Remove from the set directory `dir` the older images (`PID.ckpt.N`) that no newest image
/// (`PID.ckpt`) builds on, through its chain of parents.
pub fn prune(dir: &Path) {
    let all = images(dir);
    let mut needed: Vec<(Vec<u8>, u32)> = Vec::new();
    for ((name, i), (_, parent)) in &all {
        if *i != 0 {
            continue;
        }
        let mut want = *parent;
        // (A chain never loops for long: at most MAX_CHAIN steps.)
        for _ in 0..MAX_CHAIN {
            if want == 0 {
                break;
            }
            let Some((key, (_, up))) = all.iter().find(|((n, _), (hash, _))| n == name && *hash == want) else { break };
            needed.push(key.clone());
            want = *up;
        }
    }
    for (name, i) in all.keys().filter(|(_, i)| *i != 0) {
        if !needed.iter().any(|(n, j)| n == name && j == i) {
            let _ = std::fs::remove_file(dir.join(std::ffi::OsStr::from_bytes(&generation_file_name(name, *i))));
        }
    }
    // Images of the previous set that no header could be read from are not ours to keep either.
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let f = e.file_name();
            if let Some((name, i)) = parse_image_name(f.as_bytes()) {
                if i != 0 && !all.contains_key(&(name.to_vec(), i)) && e.file_type().is_ok_and(|t| t.is_file()) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal image file: a header with `hash` and `parent` (no index: enough for `images`).
    fn fake(p: &Path, hash: u64, parent: u64) {
        let mut b = ckpt_image::Header { version: ckpt_image::VERSION, index_offset: HEADER_LEN as u64, index_len: 0, index_hash: hash, data_len: 0, parent }.encode().to_vec();
        b.extend_from_slice(&[0u8; 16]);
        std::fs::write(p, b).unwrap();
    }

    #[test]
    fn links_one_generation_down_and_prunes_what_no_chain_needs() {
        let d = std::env::temp_dir().join(format!("ckpt-setchain-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let (prev, tmp) = (d.join("app.ckpt"), d.join("app.ckpt.tmp.x"));
        std::fs::create_dir_all(&prev).unwrap();
        std::fs::create_dir_all(&tmp).unwrap();
        std::fs::write(prev.join("tree"), "ckpt-tree 1\n").unwrap();
        // Process 10: full image 1, increment 2 over it. Process 11: a full image. 12: gone next.
        fake(&prev.join("10.ckpt.1"), 1, 0);
        fake(&prev.join("10.ckpt"), 2, 1);
        fake(&prev.join("11.ckpt"), 3, 0);
        fake(&prev.join("12.ckpt"), 4, 0);
        assert_eq!(link_previous(&prev, &tmp), 4);
        assert!(tmp.join("10.ckpt.2").is_file() && tmp.join("10.ckpt.1").is_file() && tmp.join("11.ckpt.1").is_file());
        // 10 writes an increment over 2; 11 a full image (its chain was long enough); 12 is gone.
        fake(&tmp.join("10.ckpt"), 5, 2);
        fake(&tmp.join("11.ckpt"), 6, 0);
        prune(&tmp);
        let mut left: Vec<String> = std::fs::read_dir(&tmp).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        assert_eq!(left, ["10.ckpt", "10.ckpt.1", "10.ckpt.2", "11.ckpt"]);
        // The previous set is untouched.
        assert!(prev.join("10.ckpt.1").is_file() && prev.join("12.ckpt").is_file());
        // Not a set: nothing linked.
        assert_eq!(link_previous(&d.join("nothing"), &tmp), 0);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
