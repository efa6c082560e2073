//! The page hash table: the 128-bit xxh3 hash of every page with data (not all zero) of the
//! private anonymous memory an image holds, which the runtime compares pages with to write an
//! increment (runtime/src/pagehash.rs). It is never stored in an image: the runtime builds it
//! while it writes an image, and `ckpt-restart` builds it while it stages one and hands it over,
//! so that the restarted program's next checkpoint can be an increment.
//!
//! Layout, in 64-bit words: the number of covered ranges R and of entries N; R ranges (start,
//! end) of addresses (sorted, disjoint: where the table is the whole truth, a page it does not
//! list held zeros); N entries (page address, hash word 0, hash word 1), sorted by address.

/// A page's hash.
pub type PageHash = [u64; 2];

/// Words before the ranges.
pub const HEAD: usize = 2;

/// xxh3-128 of one page.
pub fn hash(page: &[u8]) -> PageHash {
    let h = xxhash_rust::xxh3::xxh3_128(page);
    [h as u64, (h >> 64) as u64]
}

/// The hash of a page of zeros.
pub fn zero() -> PageHash {
    static ZERO: std::sync::OnceLock<PageHash> = std::sync::OnceLock::new();
    *ZERO.get_or_init(|| hash(&[0u8; 4096]))
}

/// Words of a table with `ranges` ranges and `entries` entries.
pub fn words(ranges: usize, entries: usize) -> usize {
    HEAD + 2 * ranges + 3 * entries
}

/// Write the header and ranges of a table into `w`; returns where its entries start (in words).
pub fn write_head(w: &mut [u64], ranges: &[(u64, u64)], entries: usize) -> usize {
    w[0] = ranges.len() as u64;
    w[1] = entries as u64;
    for (k, r) in ranges.iter().enumerate() {
        w[HEAD + 2 * k] = r.0;
        w[HEAD + 2 * k + 1] = r.1;
    }
    HEAD + 2 * ranges.len()
}

/// The hash the table `w` lists for the page at `page` (None: not listed: zeros, where the table
/// covers it).
pub fn lookup(w: &[u64], page: u64) -> Option<PageHash> {
    let (r, n) = (*w.first()? as usize, *w.get(1)? as usize);
    let start = HEAD.checked_add(r.checked_mul(2)?)?;
    let entries = w.get(start..start.checked_add(n.checked_mul(3)?)?)?;
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if entries[3 * mid] < page {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    (lo < n && entries[3 * lo] == page).then(|| [entries[3 * lo + 1], entries[3 * lo + 2]])
}

/// Sort and merge ranges that overlap or touch.
pub fn merge(ranges: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut v = ranges.to_vec();
    v.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(v.len());
    for (s, e) in v {
        match out.last_mut() {
            Some(l) if s <= l.1 => l.1 = l.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_finds_listed_pages_only() {
        let entries = [(0x1000u64, [1u64, 2u64]), (0x3000, [3, 4]), (0x8000, [5, 6])];
        let mut w = vec![0u64; words(1, entries.len())];
        let mut k = write_head(&mut w, &[(0x1000, 0x9000)], entries.len());
        for (page, h) in entries {
            w[k..k + 3].copy_from_slice(&[page, h[0], h[1]]);
            k += 3;
        }
        assert_eq!(lookup(&w, 0x1000), Some([1, 2]));
        assert_eq!(lookup(&w, 0x3000), Some([3, 4]));
        assert_eq!(lookup(&w, 0x8000), Some([5, 6]));
        assert_eq!(lookup(&w, 0x2000), None);
        assert_eq!(lookup(&w, 0x9000), None);
        assert_eq!(lookup(&w[..3], 0x1000), None);
    }
}
