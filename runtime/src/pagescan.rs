//! The PAGEMAP_SCAN ioctl on /proc/self/pagemap (Linux 6.7): which pages of a range are
//! present, swapped, file pages, guard pages (MADV_GUARD_INSTALL) or written since they were
//! write-protected, as ranges. Unlike reading pagemap (8 bytes per page), the kernel skips
//! unpopulated page tables whole, so a huge sparse reservation (2 TiB of MAP_NORESERVE holding
//! a few MiB) costs what it holds.
//!
//! Callers pass the range buffer: the dirty-page code runs where nothing may be allocated.

use crate::maps::PAGE;
use crate::sys::syscall;

pub const PAGEMAP_SCAN: u64 = 0xC060_6610;
/// Page categories (include/uapi/linux/fs.h).
pub const PAGE_IS_WRITTEN: u64 = 1 << 1;
pub const PAGE_IS_FILE: u64 = 1 << 2;
pub const PAGE_IS_PRESENT: u64 = 1 << 3;
pub const PAGE_IS_SWAPPED: u64 = 1 << 4;
pub const PAGE_IS_GUARD: u64 = 1 << 8;

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct PageRegion {
    pub start: u64,
    pub end: u64,
    pub categories: u64,
}

#[repr(C)]
#[derive(Default)]
pub struct PmScanArg {
    pub size: u64,
    pub flags: u64,
    pub start: u64,
    pub end: u64,
    pub walk_end: u64,
    pub vec: u64,
    pub vec_len: u64,
    pub max_pages: u64,
    pub category_inverted: u64,
    pub category_mask: u64,
    pub category_anyof_mask: u64,
    pub return_mask: u64,
}

/// What to ask for: pages matching all of `mask` (after flipping `inverted`) and any of
/// `anyof` (0: any), reporting the categories in `ret`, with scan `flags`.
#[derive(Clone, Copy, Default)]
pub struct Query {
    pub flags: u64,
    pub inverted: u64,
    pub mask: u64,
    pub anyof: u64,
    pub ret: u64,
}

/// Scan [start, end): call `f(first_page, pages, categories)` for each matching range (pages
/// from `start`), in order. Err(errno): the ioctl failed on its first call (ENOTTY or EINVAL:
/// the kernel has no PAGEMAP_SCAN; EPERM with PM_SCAN_CHECK_WPASYNC: not registered for
/// asynchronous write-protect).
pub fn scan(pagemap: i32, start: u64, end: u64, q: Query, buf: &mut [PageRegion], mut f: impl FnMut(u64, u64, u64)) -> Result<(), i32> {
    let mut at = start;
    while at < end {
        let mut arg = PmScanArg {
            size: std::mem::size_of::<PmScanArg>() as u64,
            flags: q.flags,
            start: at,
            end,
            vec: buf.as_mut_ptr() as u64,
            vec_len: buf.len() as u64,
            category_inverted: q.inverted,
            category_mask: q.mask,
            category_anyof_mask: q.anyof,
            return_mask: q.ret,
            ..Default::default()
        };
        let n = syscall!(libc::SYS_ioctl, pagemap, PAGEMAP_SCAN, &mut arg as *mut PmScanArg)? as usize;
        for r in &buf[..n.min(buf.len())] {
            f((r.start - start) / PAGE, (r.end - r.start) / PAGE, r.categories);
        }
        if arg.walk_end <= at {
            break; // no progress: should not happen; what we have is all we know
        }
        at = arg.walk_end;
    }
    Ok(())
}

/// Append the run (first, n) to `runs`, merging it with the last one when they touch.
pub fn push_run(runs: &mut Vec<(u64, u64)>, first: u64, n: u64) {
    match runs.last_mut() {
        Some((s, l)) if *s + *l == first => *l += n,
        _ => runs.push((first, n)),
    }
}

/// `runs` without the pages of `holes` (both sorted runs of (first, n)).
pub fn subtract(runs: &[(u64, u64)], holes: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::with_capacity(runs.len());
    for &(s, n) in runs {
        let mut at = s;
        let end = s + n;
        for &(hs, hn) in holes.iter().filter(|&&(hs, hn)| hs < end && hs + hn > s) {
            if hs > at {
                push_run(&mut out, at, hs - at);
            }
            at = at.max(hs + hn);
        }
        if at < end {
            push_run(&mut out, at, end - at);
        }
    }
    out
}

/// The pages of either `a` or `b` (sorted runs of (first, n)), as sorted runs.
pub fn union(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut all: Vec<(u64, u64)> = a.iter().chain(b).copied().collect();
    all.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(all.len());
    for (s, n) in all {
        match out.last_mut() {
            Some((ls, ln)) if s <= *ls + *ln => *ln = (*ln).max(s + n - *ls),
            _ => out.push((s, n)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtract_cuts_holes() {
        assert_eq!(subtract(&[(0, 10)], &[(2, 3), (8, 5)]), vec![(0, 2), (5, 3)]);
        assert_eq!(subtract(&[(0, 4), (6, 2)], &[]), vec![(0, 4), (6, 2)]);
        assert_eq!(subtract(&[(3, 2)], &[(0, 10)]), vec![]);
    }

    #[test]
    fn union_merges_overlaps() {
        assert_eq!(union(&[(0, 2), (10, 2)], &[(1, 4), (12, 1), (20, 1)]), vec![(0, 5), (10, 3), (20, 1)]);
        assert_eq!(union(&[], &[(3, 1)]), vec![(3, 1)]);
    }
}
