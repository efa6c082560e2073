//! Which pages changed since the last image, for incremental images: a table of the 128-bit
//! xxh3 hash of every page with data (not all zero) that the last image holds in the regions
//! that can be tracked (private anonymous memory, `eligible`).
//!
//! An increment stores, of a tracked region that the table covers entirely, the pages whose hash
//! differs from the table's (a page the table does not list held zeros), and inherits the others
//! from its parent; a region the table does not cover is stored whole. The writer hashes every
//! page it reads of a tracked region, full image or increment, and so builds the table for the
//! next checkpoint, which replaces the old one only once the image is committed.
//!
//! Content is compared instead of asking the kernel which pages were written (a user-mode
//! userfaultfd with asynchronous write-protect, which this module replaced): the background
//! snapshot (bgsnap.rs) write-protects memory with a *synchronous* userfaultfd, and a region can
//! be registered with one userfaultfd only; switching between the two leaves a moment in which a
//! write is seen by neither, unless the program is stopped for as long as a walk of its page
//! tables takes (~60 ms per GiB here). Hashing costs ~0.1 s per GiB of CPU in the writer threads
//! instead, while the program runs, and nothing between checkpoints.
//!
//! The table lives in memory of its own: built by the writer (in the snapshot child too, so the
//! work area is a shared mapping made before the snapshot), then sorted into a private mapping.
//! Neither is part of any image (`ranges`). After a restart, `ckpt-restart` hands over the
//! table of the memory it restored (ckpt_image::pagetable), built while it staged the image.

use crate::maps::{MapEntry, PAGE};
use crate::sys;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

pub use ckpt_image::pagetable::{hash, zero, PageHash as Hash};
use ckpt_image::pagetable;

/// One page with data: its address and hash.
#[repr(C)]
#[derive(Clone, Copy)]
struct Entry {
    page: u64,
    hash: Hash,
}

/// A job's block in the work area starts with a marker entry: `page` MARK, `hash[0]` the number
/// of entries that follow.
const MARK: u64 = u64::MAX;

/// Whether region `m` can be tracked: private anonymous memory that is not the runtime's (the
/// scratch arena; `own`: the checkpoint thread's own stack, which changes while the image is
/// written).
pub fn eligible(m: &MapEntry, scratch: bool, own: bool) -> bool {
    !scratch && !own && !m.shared && m.inode == 0 && m.prot != 0 && !m.name.starts_with(b"[v")
}

/// A sorted table (the baseline of the next increment).
#[derive(Clone, Copy)]
pub struct Table {
    base: usize,
    len: usize,
}

/// The layout of a table mapping is ckpt_image::pagetable's.
const HEAD: usize = pagetable::HEAD;

impl Table {
    fn words(&self) -> &[u64] {
        // SAFETY: base..base+len is our mapping, read-only once built, alive while CURRENT holds it.
        unsafe { std::slice::from_raw_parts(self.base as *const u64, self.len / 8) }
    }

    fn ranges(&self) -> &[[u64; 2]] {
        let w = self.words();
        let n = w[0] as usize;
        // SAFETY: the ranges follow the header, inside the mapping (checked when built).
        unsafe { std::slice::from_raw_parts(w[HEAD..].as_ptr() as *const [u64; 2], n) }
    }

    fn entries(&self) -> &[Entry] {
        let w = self.words();
        let (n, m) = (w[0] as usize, w[1] as usize);
        // SAFETY: the entries follow the ranges, inside the mapping (checked when built).
        unsafe { std::slice::from_raw_parts(w[HEAD + 2 * n..].as_ptr() as *const Entry, m) }
    }

    /// Whether the table covers all of [start, end): the last image held tracked memory there.
    pub fn covers(&self, start: u64, end: u64) -> bool {
        let mut at = start;
        for r in self.ranges() {
            if r[0] <= at && at < r[1] {
                at = r[1];
                if at >= end {
                    return true;
                }
            }
        }
        at >= end
    }

    /// Index of the first entry at or after `page`.
    pub fn seek(&self, page: u64) -> usize {
        self.entries().partition_point(|e| e.page < page)
    }

    /// The entry at index `i`, if any: (page, hash).
    pub fn at(&self, i: usize) -> Option<(u64, Hash)> {
        self.entries().get(i).map(|e| (e.page, e.hash))
    }

    /// Pages with data in [start, end) that the table lists.
    pub fn pages_in(&self, start: u64, end: u64) -> impl Iterator<Item = u64> + '_ {
        self.entries()[self.seek(start)..].iter().take_while(move |e| e.page < end).map(|e| e.page)
    }
}

/// The table for the next increment (0: none).
static CURRENT: AtomicUsize = AtomicUsize::new(0);
static CURRENT_LEN: AtomicUsize = AtomicUsize::new(0);

/// The current table, if there is one.
pub fn baseline() -> Option<Table> {
    let base = CURRENT.load(Ordering::Acquire);
    (base != 0).then(|| Table { base, len: CURRENT_LEN.load(Ordering::Acquire) })
}

/// Where the tables are (none of it belongs in an image).
pub fn ranges() -> Vec<(u64, u64)> {
    let mut v = Vec::new();
    if let Some(t) = baseline() {
        v.push((t.base as u64, (t.base + t.len) as u64));
    }
    v
}

/// After a restart: take over the table the restarter built of the restored memory (`base`,
/// `len`: a mapping of ours now; 0: none). Returns whether there is one.
pub fn adopt(base: u64, len: u64) -> bool {
    if base == 0 || len < (HEAD * 8) as u64 {
        return false;
    }
    let _ = sys::syscall!(libc::SYS_mprotect, base, len, libc::PROT_READ);
    CURRENT_LEN.store(len as usize, Ordering::Release);
    CURRENT.store(base as usize, Ordering::Release);
    true
}

/// Forget the table (after a restart its mapping came back empty: unmap it; in a forked child it
/// is the parent's business: keep the child's copy mapped, unused).
pub fn forget(unmap: bool) {
    let base = CURRENT.swap(0, Ordering::AcqRel);
    let len = CURRENT_LEN.swap(0, Ordering::AcqRel);
    if unmap && base != 0 {
        sys::munmap(base, len);
    }
}

/// The area the writer fills for one checkpoint: a shared mapping (the snapshot child writes it
/// for its parent), blocks of entries reserved by the writer threads as they go.
pub struct Work {
    base: usize,
    len: usize,
    /// Entries the area holds.
    cap: usize,
    ranges: Vec<(u64, u64)>,
}

// Word 0 of the work area: the next free entry (atomic); word 1: set when a block did not fit.
const WORK_HEAD: usize = 2;

impl Work {
    /// An area for the tracked regions `ranges` (sorted) holding up to `pages` pages with data
    /// (the process's anonymous resident and swapped pages: an upper bound).
    pub fn new(ranges: Vec<(u64, u64)>, pages: u64) -> Result<Work, i32> {
        let cap = (pages as usize) * 2 + 4096;
        let len = (WORK_HEAD * 8 + cap * std::mem::size_of::<Entry>()).div_ceil(PAGE as usize) * PAGE as usize;
        let base = sys::mmap(0, len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE, -1, 0)?;
        Ok(Work { base, len, cap, ranges })
    }

    fn counter(&self, i: usize) -> &AtomicU64 {
        // SAFETY: the first words of our mapping, used only atomically.
        unsafe { &*((self.base + 8 * i) as *const AtomicU64) }
    }

    /// Reserve a block for `n` entries; None when the area is full (the table is then dropped).
    pub fn block(&self, n: usize) -> Option<Block<'_>> {
        let at = self.counter(0).fetch_add(n as u64 + 1, Ordering::AcqRel) as usize;
        if at + n + 1 > self.cap {
            self.counter(1).store(1, Ordering::Release);
            return None;
        }
        // SAFETY: entries at..at+n+1 of the area are ours alone.
        let e = unsafe { std::slice::from_raw_parts_mut((self.base + WORK_HEAD * 8) as *mut Entry, self.cap) };
        e[at] = Entry { page: MARK, hash: [0, 0] };
        Some(Block { entries: &mut e[at..at + n + 1], used: 0 })
    }

    /// The image is committed: sort the blocks into a new table, which replaces the current one.
    pub fn commit(self) {
        if self.counter(1).load(Ordering::Acquire) != 0 {
            log_dropped();
            forget(true);
            self.discard();
            return;
        }
        let used = (self.counter(0).load(Ordering::Acquire) as usize).min(self.cap);
        // SAFETY: the first `used` entries were written by the writer, which is done.
        let all = unsafe { std::slice::from_raw_parts((self.base + WORK_HEAD * 8) as *const Entry, used) };
        // Blocks: (first page, index of the marker, entries).
        let mut blocks: Vec<(u64, usize, usize)> = Vec::new();
        let mut i = 0;
        let mut total = 0;
        while i < used {
            let n = all[i].hash[0] as usize;
            if all[i].page != MARK || i + 1 + n > used {
                break;
            }
            if n > 0 {
                blocks.push((all[i + 1].page, i + 1, n));
                total += n;
            }
            i += 1 + n;
        }
        blocks.sort_unstable_by_key(|b| b.0);
        let merged = pagetable::merge(&self.ranges);
        let words = pagetable::words(merged.len(), total);
        let len = (words * 8).div_ceil(PAGE as usize) * PAGE as usize;
        let Ok(base) = sys::mmap(0, len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0) else {
            log_dropped();
            forget(true);
            self.discard();
            return;
        };
        // SAFETY: our fresh mapping of `len` bytes.
        let w = unsafe { std::slice::from_raw_parts_mut(base as *mut u64, words) };
        let first = pagetable::write_head(w, &merged, total);
        // SAFETY: the entries part of the same mapping.
        let out = unsafe { std::slice::from_raw_parts_mut(w[first..].as_mut_ptr() as *mut Entry, total) };
        let mut at = 0;
        for (_, from, n) in blocks {
            out[at..at + n].copy_from_slice(&all[from..from + n]);
            at += n;
        }
        let _ = sys::syscall!(libc::SYS_mprotect, base, len, libc::PROT_READ);
        forget(true);
        CURRENT_LEN.store(len, Ordering::Release);
        CURRENT.store(base, Ordering::Release);
        self.discard();
    }

    /// The checkpoint failed: the current table stays.
    pub fn discard(self) {
        sys::munmap(self.base, self.len);
    }
}

fn log_dropped() {
    crate::log::log!(crate::log::DEBUG, "page hashes did not fit their area: the next image is a full one");
}

/// A writer thread's block of entries for one job (pages in address order).
pub struct Block<'a> {
    entries: &'a mut [Entry],
    used: usize,
}

impl Block<'_> {
    /// Record page `page` with hash `h` (pages of zeros are not recorded).
    pub fn push(&mut self, page: u64, h: Hash) {
        if h != zero() && self.used + 1 < self.entries.len() {
            self.used += 1;
            self.entries[self.used] = Entry { page, hash: h };
        }
    }
}

impl Drop for Block<'_> {
    fn drop(&mut self) {
        // The marker says how many entries follow; the rest of the block is skipped.
        let n = self.entries.len() - 1;
        self.entries[0].hash = [self.used as u64, 0];
        for e in &mut self.entries[self.used + 1..=n] {
            *e = Entry { page: MARK, hash: [0, 0] };
        }
    }
}

/// Anonymous pages the process holds in memory or swap (RssAnon + VmSwap), an upper bound on the
/// pages with data of its private anonymous memory.
pub fn anon_pages() -> u64 {
    let status = sys::read_file(&sys::cpath(&[b"/proc/self/status"])).unwrap_or_default();
    let field = |name: &[u8]| -> u64 {
        let Some(i) = status.windows(name.len()).position(|w| w == name) else { return 0 };
        let digits: Vec<u8> = status[i + name.len()..].iter().copied().skip_while(|b| b.is_ascii_whitespace()).take_while(u8::is_ascii_digit).collect();
        std::str::from_utf8(&digits).ok().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
    };
    (field(b"RssAnon:") + field(b"VmSwap:")) / 4
}
