//! Changing finished images in place: rewriting the index (tools and tests that simulate another
//! machine or a damaged image) and recomputing checksums after a deliberate change (fuzzing).

use crate::{checksum, Header, ImageError, Index, Result, HEADER_LEN};
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Decode the image at `path`, let `edit` change its index, and write the new index and header
/// back (the chunk data is left alone). Not atomic: meant for copies, tools and tests.
pub fn rewrite_index(path: &Path, edit: impl FnOnce(&mut Index)) -> Result<()> {
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    let file_len = file.metadata()?.len();
    let mut hb = vec![0u8; HEADER_LEN.min(file_len as usize)];
    file.read_exact_at(&mut hb, 0)?;
    let mut header = Header::decode(&hb, file_len)?;
    let mut ib = vec![0u8; header.index_len as usize];
    file.read_exact_at(&mut ib, header.index_offset)?;
    if checksum(&ib) != header.index_hash {
        return Err(ImageError::Corrupt("index checksum mismatch".into()));
    }
    let mut index: Index = postcard::from_bytes(&ib).map_err(|e| ImageError::Corrupt(format!("index does not decode: {e}")))?;
    edit(&mut index);
    let bytes = postcard::to_allocvec(&index).map_err(|e| ImageError::Corrupt(format!("cannot encode index: {e}")))?;
    file.write_all_at(&bytes, header.index_offset)?;
    file.set_len(header.index_offset + bytes.len() as u64)?;
    header.index_len = bytes.len() as u64;
    header.index_hash = checksum(&bytes);
    file.write_all_at(&header.encode(), 0)?;
    file.sync_all()?;
    Ok(())
}

/// Recompute the index checksum (if the header locates an index inside `image`) and the header
/// checksum of an image held in memory, so that a deliberately changed image gets past the
/// checksums and exercises the decoding and validation behind them.
pub fn reseal(image: &mut [u8]) {
    if image.len() < HEADER_LEN {
        return;
    }
    let u64at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]));
    let (off, len) = (u64at(image, 16), u64at(image, 24));
    if let Some(end) = off.checked_add(len).filter(|&e| e <= image.len() as u64) {
        let h = checksum(&image[off as usize..end as usize]);
        image[32..40].copy_from_slice(&h.to_le_bytes());
    }
    let h = checksum(&image[0..56]);
    image[56..64].copy_from_slice(&h.to_le_bytes());
}
