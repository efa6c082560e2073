//! Flattening a chain: one full image (no parent, `meta.chain` 1, nothing inherited) with the
//! same memory as the whole chain, so that a single file can be moved to another node.

use crate::{Chain, FdKind, ImageError, LayerBuf, Result, Writer, CHUNK_SIZE};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// zstd level of flattened images: the runtime's.
const LEVEL: i32 = 1;

/// What `flatten` wrote.
#[derive(Debug, Clone, Copy)]
pub struct Flattened {
    /// Images of the chain it was made from.
    pub images: usize,
    /// Bytes of memory stored (as chunks, zero chunks included).
    pub saved_bytes: u64,
    pub file_bytes: u64,
}

/// Write the memory and state of `chain` as one full image at `out`: created with mode 0600
/// under a new temporary name (`out` + `.tmp.<random>`, O_EXCL|O_NOFOLLOW) and renamed onto `out` once complete and synced.
/// Each region is rebuilt window by window (`CHUNK_SIZE` bytes of memory): the layers touching
/// the window are applied, and chunks are written only for the ranges some layer covered.
pub fn flatten(chain: &Chain, out: &Path) -> Result<Flattened> {
    if let Ok(m) = std::fs::metadata(out) {
        for p in &chain.paths()[1..] {
            if std::fs::metadata(p).is_ok_and(|a| a.dev() == m.dev() && a.ino() == m.ino()) {
                return Err(ImageError::Io(std::io::Error::other(format!(
                    "{} is an image the chain builds on; write the flattened image elsewhere",
                    out.display()
                ))));
            }
        }
    }
    // A new file of ours under an unpredictable name: nothing planted next to OUT (a symbolic
    // link, another user's file) is followed, truncated or renamed into place.
    let mut tmp: PathBuf = out.to_path_buf();
    tmp.as_mut_os_string().push(format!(".tmp.{:016x}", random()));
    let file = OpenOptions::new().write(true).create_new(true).mode(0o600).custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW).open(&tmp)?;
    let done = file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(ImageError::from).and_then(|()| write(chain, file)).and_then(|saved| {
        let file_bytes = std::fs::metadata(&tmp)?.len();
        std::fs::rename(&tmp, out)?;
        let dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        File::open(dir)?.sync_all()?;
        Ok(Flattened { images: chain.images().len(), saved_bytes: saved, file_bytes })
    });
    if done.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    done
}

/// 64 bits from the kernel's random source (the clock if it fails).
fn random() -> u64 {
    let mut x: u64 = 0;
    // SAFETY: getrandom writes at most 8 bytes into x.
    let n = unsafe { libc::getrandom(&mut x as *mut u64 as *mut libc::c_void, 8, 0) };
    if n != 8 {
        x = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64) ^ u64::from(std::process::id());
    }
    x
}

/// Write the image into `file`; returns the bytes of memory stored.
fn write(chain: &Chain, file: File) -> Result<u64> {
    let mut w = Writer::new(file, LEVEL)?;
    let mut index = chain.index().clone();
    index.meta.chain = 1;
    let mut buf = LayerBuf::new()?;
    let mut window = vec![0u8; CHUNK_SIZE];
    for (ri, r) in index.regions.iter_mut().enumerate() {
        r.inherit = false;
        r.chunks.clear();
        if chain.layers(ri).is_empty() {
            continue;
        }
        let mut off = 0;
        while off < r.len() {
            let n = (r.len() - off).min(CHUNK_SIZE as u64);
            let win = &mut window[..n as usize];
            for (s, e) in chain.read_range(ri, off, win, &mut buf)? {
                r.chunks.push(w.write_chunk(s, &win[(s - off) as usize..(e - off) as usize])?);
            }
            off += n;
        }
    }
    // Deleted files' data is the newest image's own: copied chunk by chunk.
    let newest = chain.newest();
    let (mut dec, mut stored) = (crate::Decompressor::new()?, Vec::new());
    for f in index.fds.iter_mut() {
        let FdKind::Deleted(d) = &mut f.kind else { continue };
        for c in d.chunks.iter_mut() {
            let data = &mut window[..c.raw_len as usize];
            newest.read_chunk(c, data, &mut dec, &mut stored)?;
            *c = w.write_chunk(c.offset, data)?;
        }
    }
    let saved = w.raw_bytes();
    w.finish(&index)?;
    Ok(saved)
}
