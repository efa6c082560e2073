//! `--verify`: read every chunk, check its xxh3 and decompress it; stop at the first bad one.

use anyhow::{anyhow, Result};
use ckpt_image::{Decompressor, Reader, CHUNK_SIZE};

/// What a successful verification covered.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Verified {
    pub chunks: u64,
    pub stored_bytes: u64,
}

pub fn all(reader: &Reader) -> Result<Verified> {
    let mut dec = Decompressor::new()?;
    let mut scratch = Vec::new();
    let mut dst = vec![0u8; CHUNK_SIZE];
    let mut v = Verified { chunks: 0, stored_bytes: 0 };
    for (ri, r) in reader.index.regions.iter().enumerate() {
        for (ci, c) in r.chunks.iter().enumerate() {
            reader.read_chunk(c, &mut dst[..c.raw_len as usize], &mut dec, &mut scratch).map_err(|e| {
                anyhow!(
                    "bad chunk {ci} of region {ri} ({:#x}-{:#x} {}), memory offset {:#x}, file offset {}: {e}",
                    r.start,
                    r.end,
                    r.name_lossy(),
                    c.offset,
                    c.file_offset
                )
            })?;
            v.chunks += 1;
            v.stored_bytes += c.stored_len;
        }
    }
    Ok(v)
}
