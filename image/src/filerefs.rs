//! Which pages of a private file mapping are references to a file that the image itself restores.
//!
//! A page of a MAP_PRIVATE file mapping that the program never wrote is the file's page: the
//! program sees whatever the file holds, including later writes through a MAP_SHARED mapping of
//! the same file. An image stores every page (inside the file) of a writable shared mapping, and
//! a restart writes them back into the file, so the file ranges of those mappings hold exactly
//! what they held at checkpoint time. The private mapping's unwritten pages inside those ranges
//! therefore stay references to the file, as in the running program; the runtime stores the
//! private mapping's other pages inside the file too, so that a restart of such a region does
//! not depend on the rest of the file (which the program may have rewritten after the checkpoint).
//! Both sides compute the ranges with this module: the runtime from /proc/self/maps, the
//! restarter from the image's regions.

use crate::model::{Backing, Region};

const PAGE: u64 = 4096;

/// Pages of a mapping inside its file: `len` bytes mapped at file `offset` of a file of `size` bytes.
pub fn pages_in_file(offset: u64, len: u64, size: u64) -> u64 {
    size.saturating_sub(offset).div_ceil(PAGE).min(len / PAGE)
}

/// Runs (first page, pages) of a mapping at file `offset` of `npages` pages that lie inside one
/// of the file ranges `ranges` ([start, end) file offsets, any order, may overlap).
pub fn covered_runs(offset: u64, npages: u64, ranges: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let end = offset + npages * PAGE;
    let mut clipped: Vec<(u64, u64)> = ranges
        .iter()
        .map(|&(s, e)| (s.max(offset), e.min(end)))
        .filter(|(s, e)| s < e)
        .map(|(s, e)| ((s - offset) / PAGE, (e - offset).div_ceil(PAGE)))
        .collect();
    clipped.sort_unstable();
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for (first, stop) in clipped {
        match runs.last_mut() {
            Some((s, n)) if first <= *s + *n => *n = (*n).max(stop - *s),
            _ => runs.push((first, stop - first)),
        }
    }
    runs
}

/// The file ranges that an image restores for `path`: those of its writable shared mappings of
/// the file, inside the file.
pub fn restored_ranges(regions: &[Region], path: &[u8]) -> Vec<(u64, u64)> {
    regions
        .iter()
        .filter_map(|r| match &r.backing {
            Backing::File { path: p, offset, size, shared: true, .. } if p == path && r.prot & WRITE != 0 => {
                Some((*offset, offset + pages_in_file(*offset, r.len(), *size) * PAGE))
            }
            _ => None,
        })
        .collect()
}

const WRITE: u32 = 2; // PROT_WRITE

/// Whether a restart of the private file mapping `regions[i]` depends on nothing but the image:
/// each of its pages inside the file is stored, or lies in a range of the file that the image
/// restores. Such a region needs no check that its file is unchanged since the checkpoint.
pub fn private_mapping_restored(regions: &[Region], i: usize) -> bool {
    let r = &regions[i];
    let Backing::File { path, offset, size, shared: false, .. } = &r.backing else { return false };
    let ranges = restored_ranges(regions, path);
    if ranges.is_empty() {
        return false;
    }
    let mut have = covered_runs(*offset, r.len() / PAGE, &ranges);
    have.extend(r.chunks.iter().map(|c| (c.offset / PAGE, c.raw_len.div_ceil(PAGE))));
    have.sort_unstable();
    let need = pages_in_file(*offset, r.len(), *size);
    let mut next = 0;
    for (first, n) in have {
        if first > next {
            break;
        }
        next = next.max(first + n);
    }
    next >= need
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Chunk, Codec};

    fn region(start: u64, pages: u64, prot: u32, shared: bool, offset: u64, chunks: &[(u64, u64)]) -> Region {
        Region {
            start,
            end: start + pages * PAGE,
            prot,
            name: b"/f".to_vec(),
            backing: Backing::File { path: b"/f".to_vec(), offset, size: 10 * PAGE, mtime: 0, shared },
            chunks: chunks
                .iter()
                .map(|&(p, n)| Chunk::plain(p * PAGE, n * PAGE, 0, 0, Codec::Zero, 0))
                .collect(),
            inherit: false,
            attrs: Default::default(),
        }
    }

    #[test]
    fn covered_runs_clip_and_merge() {
        assert_eq!(covered_runs(0, 10, &[(0, PAGE)]), [(0, 1)]);
        assert_eq!(covered_runs(2 * PAGE, 4, &[(0, 3 * PAGE), (5 * PAGE, 9 * PAGE)]), [(0, 1), (3, 1)]);
        assert_eq!(covered_runs(0, 10, &[(4 * PAGE, 6 * PAGE), (PAGE, 5 * PAGE)]), [(1, 5)]);
        assert!(covered_runs(0, 2, &[(5 * PAGE, 6 * PAGE)]).is_empty());
    }

    #[test]
    fn private_mapping_is_restored_when_covered_or_stored() {
        // Shared writable mapping of file pages 0..4; a private one of pages 2..8 (6 pages).
        let shared = region(0x10000, 4, 3, true, 0, &[(0, 4)]);
        let private = |chunks: &[(u64, u64)]| region(0x100000, 6, 1, false, 2 * PAGE, chunks);
        assert!(!private_mapping_restored(&[shared.clone(), private(&[])], 1), "pages 4..8 of the file are neither stored nor restored");
        assert!(private_mapping_restored(&[shared.clone(), private(&[(2, 4)])], 1));
        assert!(!private_mapping_restored(&[shared.clone(), private(&[(2, 3)])], 1));
        // A read-only shared mapping restores nothing; without a shared mapping, nothing either.
        let ro = region(0x10000, 4, 1, true, 0, &[]);
        assert!(!private_mapping_restored(&[ro, private(&[(2, 4)])], 1));
        assert!(!private_mapping_restored(&[private(&[(0, 6)])], 0));
    }
}
