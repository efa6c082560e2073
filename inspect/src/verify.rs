//! `--verify`: read every chunk (memory and deleted files' data) of every image of the chain, check its xxh3 and decompress it;
//! stop at the first bad one.

use anyhow::{anyhow, Result};
use ckpt_image::{Chain, Decompressor, CHUNK_SIZE};

/// What a successful verification covered.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Verified {
    /// Images of the chain (1: a full image).
    pub images: usize,
    pub chunks: u64,
    pub stored_bytes: u64,
}

pub fn all(chain: &Chain) -> Result<Verified> {
    let mut dec = Decompressor::new()?;
    let mut scratch = Vec::new();
    let mut dst = vec![0u8; CHUNK_SIZE];
    let mut v = Verified { images: chain.images().len(), chunks: 0, stored_bytes: 0 };
    for (k, (reader, path)) in chain.images().iter().zip(chain.paths()).enumerate() {
        let which = if k == 0 { String::new() } else { format!("{} (an image it builds on): ", path.display()) };
        for (ri, r) in reader.index.regions.iter().enumerate() {
            for (ci, c) in r.chunks.iter().enumerate() {
                reader.read_chunk(c, &mut dst[..c.raw_len as usize], &mut dec, &mut scratch).map_err(|e| {
                    anyhow!(
                        "{which}bad chunk {ci} of region {ri} ({:#x}-{:#x} {}), memory offset {:#x}, file offset {}: {e}",
                        r.start,
                        r.end,
                        r.name_lossy(),
                        c.offset,
                        c.file_offset
                    )
                })?;
                v.chunks += 1;
                // A packed frame's bytes once: its first chunk starts it.
                if c.frame_skip == 0 {
                    v.stored_bytes += c.stored_len;
                }
            }
        }
        for d in reader.index.deleted_files() {
            for (ci, c) in d.chunks.iter().enumerate() {
                reader.read_chunk(c, &mut dst[..c.raw_len as usize], &mut dec, &mut scratch).map_err(|e| {
                    anyhow!("{which}bad chunk {ci} of deleted file {}, file offset {:#x} in it, image offset {}: {e}", String::from_utf8_lossy(&d.path), c.offset, c.file_offset)
                })?;
                v.chunks += 1;
                v.stored_bytes += c.stored_len;
            }
        }
    }
    Ok(v)
}
