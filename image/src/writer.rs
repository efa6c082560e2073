//! Writes an image: a placeholder header, chunks as they come, then the index and the real
//! header, then fsync. The caller creates the file under a temporary name and renames it.

use crate::{checksum, Chunk, Codec, Compressor, Header, ImageError, Index, Result, HEADER_LEN, VERSION};
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

/// Bytes of memory per chunk: large enough for zstd to do well, small enough to parallelize.
pub const CHUNK_SIZE: usize = 1 << 20;

pub struct Writer {
    file: File,
    pos: u64,
    comp: Compressor,
    buf: Vec<u8>,
    raw_total: u64,
}

impl Writer {
    /// Start an image in `file` (empty, opened for writing), compressing with zstd `level`.
    pub fn new(mut file: File, level: i32) -> Result<Self> {
        file.write_all(&[0u8; HEADER_LEN])?;
        Ok(Writer {
            file,
            pos: HEADER_LEN as u64,
            comp: Compressor::new(level)?,
            buf: vec![0u8; Compressor::bound(CHUNK_SIZE)],
            raw_total: 0,
        })
    }

    /// Store `data` (at most CHUNK_SIZE bytes) as the bytes at `offset` of some region.
    pub fn write_chunk(&mut self, offset: u64, data: &[u8]) -> Result<Chunk> {
        assert!(data.len() <= CHUNK_SIZE, "chunk larger than CHUNK_SIZE");
        self.raw_total += data.len() as u64;
        if is_zero(data) {
            return Ok(Chunk { offset, raw_len: data.len() as u64, file_offset: self.pos, stored_len: 0, codec: Codec::Zero, hash: checksum(&[]) });
        }
        let n = self.comp.compress(data, &mut self.buf)?;
        // Incompressible data is stored raw: cheaper to restore and no larger.
        let (codec, stored): (Codec, &[u8]) = if n >= data.len() - data.len() / 32 { (Codec::Raw, data) } else { (Codec::Zstd, &self.buf[..n]) };
        let chunk = Chunk { offset, raw_len: data.len() as u64, file_offset: self.pos, stored_len: stored.len() as u64, codec, hash: checksum(stored) };
        self.file.write_all(stored)?;
        self.pos += stored.len() as u64;
        Ok(chunk)
    }

    /// Bytes of memory passed to write_chunk so far.
    pub fn raw_bytes(&self) -> u64 {
        self.raw_total
    }

    /// Bytes written to the file so far.
    pub fn stored_bytes(&self) -> u64 {
        self.pos
    }

    /// Write the index and the header and make the file durable. Returns the file and its size.
    pub fn finish(mut self, index: &Index) -> Result<(File, u64)> {
        let bytes = postcard::to_allocvec(index).map_err(|e| ImageError::Corrupt(format!("cannot encode index: {e}")))?;
        let index_offset = self.pos;
        self.file.write_all(&bytes)?;
        let header = Header {
            version: VERSION,
            index_offset,
            index_len: bytes.len() as u64,
            index_hash: checksum(&bytes),
            data_len: index_offset - HEADER_LEN as u64,
        };
        self.file.write_all_at(&header.encode(), 0)?;
        self.file.sync_all()?;
        let total = index_offset + bytes.len() as u64;
        self.file.seek(SeekFrom::Start(total))?;
        Ok((self.file, total))
    }
}

fn is_zero(data: &[u8]) -> bool {
    // Compare in u64 words: this runs over every stored page.
    let (pre, mid, post) = unsafe {
        // SAFETY: u64 has no invalid bit patterns; align_to only reinterprets the aligned middle.
        data.align_to::<u64>()
    };
    pre.iter().all(|&b| b == 0) && mid.iter().all(|&w| w == 0) && post.iter().all(|&b| b == 0)
}
