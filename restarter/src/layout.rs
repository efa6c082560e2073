//! Address-space bookkeeping for the restart: our own mappings, the image's, and free holes
//! that overlap neither (for staging memory and the switch routine).

use anyhow::{bail, Context, Result};

pub const PAGE: u64 = 4096;
/// Lowest and highest addresses we use or unmap (x86-64, 4-level page tables).
pub const USER_LO: u64 = 0x10000;
pub const USER_HI: u64 = 0x7fff_ffff_f000;

#[derive(Debug, Clone)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub name: String,
}

/// Our own mappings, from /proc/self/maps.
pub fn own_maps() -> Result<Vec<Mapping>> {
    let text = std::fs::read_to_string("/proc/self/maps").context("cannot read /proc/self/maps")?;
    let mut v = Vec::new();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let Some(range) = it.next() else { continue };
        let name = it.nth(4).unwrap_or("").to_string();
        let Some((a, b)) = range.split_once('-') else { continue };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else { continue };
        v.push(Mapping { start, end, name });
    }
    Ok(v)
}

/// Find `len` bytes of address space (page aligned) that intersect none of `busy`, preferring
/// high addresses below the usual mmap area so that the kernel's own choices rarely collide.
pub fn find_hole(busy: &[(u64, u64)], len: u64) -> Result<u64> {
    let mut b: Vec<(u64, u64)> = busy.iter().copied().filter(|(s, e)| e > s).collect();
    b.sort();
    // Merge, with a guard page of slack around everything.
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (s, e) in b {
        let (s, e) = (s.saturating_sub(PAGE), e + PAGE);
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    // Walk gaps from the top down.
    let mut hi = USER_HI;
    for &(s, e) in merged.iter().rev() {
        if e < hi && hi - e >= len {
            return Ok((hi - len) & !(PAGE - 1));
        }
        hi = hi.min(s);
    }
    if hi > USER_LO && hi - USER_LO >= len {
        return Ok((hi - len) & !(PAGE - 1));
    }
    bail!("no free address range of {} MiB for staging the image", len >> 20)
}

/// Address ranges in [USER_LO, USER_HI) not covered by `keep`.
pub fn complement(keep: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut k: Vec<(u64, u64)> = keep.to_vec();
    k.sort();
    let mut out = Vec::new();
    let mut cur = 0u64;
    for (s, e) in k {
        if s > cur {
            out.push((cur, s));
        }
        cur = cur.max(e);
    }
    if cur < USER_HI {
        out.push((cur, USER_HI));
    }
    out
}

pub fn page_up(n: u64) -> u64 {
    (n + PAGE - 1) & !(PAGE - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hole_avoids_busy_ranges() {
        let busy = [(0x7fff_0000_0000, USER_HI), (0x7ff0_0000_0000, 0x7ff0_1000_0000)];
        let h = find_hole(&busy, 1 << 30).unwrap();
        for (s, e) in busy {
            assert!(h + (1 << 30) <= s || h >= e, "hole {h:#x} overlaps {s:#x}-{e:#x}");
        }
    }

    #[test]
    fn complement_covers_the_rest() {
        let c = complement(&[(0x1000, 0x2000), (0x5000, 0x6000)]);
        assert_eq!(c, vec![(0, 0x1000), (0x2000, 0x5000), (0x6000, USER_HI)]);
    }
}
