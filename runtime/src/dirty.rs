//! Dirty-page tracking for incremental images: which pages of the program's private anonymous
//! memory were written since the last checkpoint.
//!
//! A userfaultfd in user mode (UFFD_USER_MODE_ONLY: no privilege needed) with asynchronous
//! write-protect (WP_ASYNC: the kernel resolves the fault itself, the program never waits; and
//! WP_UNPOPULATED: pages never touched are protected too). A region becomes tracked when a
//! checkpoint registers and write-protects it; from then on a write clears the page's protection.
//! At the next checkpoint one PAGEMAP_SCAN ioctl per region returns the pages that are no longer
//! protected (PAGE_IS_WRITTEN) and protects them again (PM_SCAN_WP_MATCHING) atomically.
//!
//! Measured on this kernel (6.18): pages dropped with MADV_DONTNEED and pages that a region grew
//! by in place (mremap, brk) show as written though absent: they are stored (as zeros), so an
//! increment never lets an older image's data show through where the program emptied memory.
//! A region that was unmapped and mapped again, or moved by mremap, loses its registration; the
//! scan then fails with EPERM (PM_SCAN_CHECK_WPASYNC) and the region is stored whole and
//! registered again. Forked children inherit no tracking.
//!
//! Everything here runs on the checkpoint thread: `pre_arm` while the program runs, just before a
//! checkpoint stops it, `scan_and_arm` with the threads stopped.

use crate::alloc::ScratchRanges;
use crate::log::{log, DEBUG};
use crate::maps::{MapEntry, PAGE};
use crate::pagescan::{self, PageRegion, Query, PAGE_IS_GUARD, PAGE_IS_PRESENT, PAGE_IS_SWAPPED, PAGE_IS_WRITTEN, PM_SCAN_CHECK_WPASYNC, PM_SCAN_WP_MATCHING};
use crate::sys::{self, syscall};
use std::sync::atomic::{AtomicI32, Ordering};

const UFFD_USER_MODE_ONLY: i64 = 1;
const UFFD_API: u64 = 0xAA;
const UFFD_FEATURE_WP_UNPOPULATED: u64 = 1 << 13;
const UFFD_FEATURE_WP_ASYNC: u64 = 1 << 15;
const UFFDIO_API: u64 = 0xC018_AA3F;
const UFFDIO_REGISTER: u64 = 0xC020_AA00;
const UFFDIO_WRITEPROTECT: u64 = 0xC018_AA06;
const UFFDIO_REGISTER_MODE_WP: u64 = 2;
const UFFDIO_WRITEPROTECT_MODE_WP: u64 = 1;

#[repr(C)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioRange {
    start: u64,
    len: u64,
}

#[repr(C)]
struct UffdioRegister {
    range: UffdioRange,
    mode: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioWriteprotect {
    range: UffdioRange,
    mode: u64,
}

/// The userfaultfd: -1 not created yet, -2 unavailable here (tracking off for good).
static UFFD: AtomicI32 = AtomicI32::new(-1);

/// What a checkpoint knows about one region's pages.
#[derive(Debug, Clone)]
pub enum Track {
    /// Tracked since the previous checkpoint: these runs of pages (first page from the region's
    /// start, count) were written or emptied since; all others are as the previous image has them.
    Dirty(Vec<(u64, u64)>),
    /// Not tracked (new, moved, not eligible, or tracking unavailable): store it whole.
    Whole,
}

/// Whether `fd` is the runtime's userfaultfd (not part of the program's fd table).
pub fn is_own_fd(fd: i32) -> bool {
    fd >= 0 && UFFD.load(Ordering::Relaxed) == fd
}

/// Forget the tracking state (a restart: the fd number in restored memory means nothing now;
/// a forked child: the tracking belongs to the parent).
pub fn forget(close: bool) {
    let fd = UFFD.swap(-1, Ordering::AcqRel);
    if close && fd >= 0 {
        sys::close(fd);
    }
}

fn uffd() -> Option<i32> {
    match UFFD.load(Ordering::Acquire) {
        -2 => return None,
        fd if fd >= 0 => return Some(fd),
        _ => {}
    }
    // Out of the program's way: a restarted program's lowest free fd numbers are its own.
    let fd = match syscall!(libc::SYS_userfaultfd, UFFD_USER_MODE_ONLY | libc::O_CLOEXEC as i64 | libc::O_NONBLOCK as i64) {
        Ok(fd) => sys::own(sys::move_high(fd as i32)),
        Err(e) => {
            log!(DEBUG, "no dirty-page tracking (userfaultfd: errno {e}): every image is a full one");
            UFFD.store(-2, Ordering::Release);
            return None;
        }
    };
    let mut api = UffdioApi { api: UFFD_API, features: UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED, ioctls: 0 };
    if let Err(e) = syscall!(libc::SYS_ioctl, fd, UFFDIO_API, &mut api as *mut UffdioApi) {
        log!(DEBUG, "no dirty-page tracking (asynchronous write-protect: errno {e}): every image is a full one");
        sys::close(fd);
        UFFD.store(-2, Ordering::Release);
        return None;
    }
    UFFD.store(fd, Ordering::Release);
    Some(fd)
}

/// Whether a region can be tracked: private anonymous memory that is not the runtime's (scratch
/// arena, the checkpoint thread's own stack, which changes while the image is written).
pub fn eligible(m: &MapEntry, scratch: bool, own_stack: bool) -> bool {
    !scratch && !own_stack && !m.shared && m.inode == 0 && m.prot != 0 && !m.name.starts_with(b"[v")
}

/// For each region: the pages written since the last checkpoint (protecting them again), or
/// Whole; regions not tracked yet become tracked (registered and write-protected) from now on.
/// `eligible[i]` says whether region i may be tracked at all. Call with the threads stopped, as
/// the last thing before the snapshot: writes after the scan belong to the next checkpoint.
///
/// `armed` are the ranges `pre_arm` armed just before the threads were stopped: regions that
/// overlap one are stored whole and need nothing more (a region armed there may have merged
/// with a tracked neighbour, whose scan would miss the new part's earlier writes). For a full
/// image (`full`) no scan is needed at all: only regions that appeared since `pre_arm` are armed.
pub fn scan_and_arm(maps: &[(MapEntry, bool)], eligible: &[bool], armed: &[(u64, u64)], full: bool) -> Vec<Track> {
    let Some(uffd) = uffd() else { return vec![Track::Whole; maps.len()] };
    let pagemap = open_pagemap();
    if full || pagemap < 0 {
        for ((m, _), &ok) in maps.iter().zip(eligible) {
            if ok && !overlaps(armed, m) {
                arm(uffd, pagemap, m);
            }
        }
        if pagemap >= 0 {
            sys::close(pagemap);
        }
        return vec![Track::Whole; maps.len()];
    }
    let mut vec = vec![PageRegion::default(); 4096];
    let out = maps
        .iter()
        .zip(eligible)
        .map(|((m, _), &ok)| {
            if !ok || overlaps(armed, m) {
                return Track::Whole;
            }
            match written(pagemap, m, &mut vec) {
                Ok(runs) => Track::Dirty(runs),
                Err(e) => {
                    if e != libc::EPERM {
                        log!(DEBUG, "region {:#x}-{:#x}: scan failed (errno {e}); stored whole", m.start, m.end);
                    }
                    arm(uffd, pagemap, m);
                    Track::Whole
                }
            }
        })
        .collect();
    sys::close(pagemap);
    out
}

/// Written pages of a tracked region as runs relative to its start; protects them again.
/// EPERM: the region is not tracked. Guard pages (MADV_GUARD_INSTALL) are never written (they
/// show as such: they are markers that were never write-protected) and are left out.
fn written(pagemap: i32, m: &MapEntry, vec: &mut [PageRegion]) -> Result<Vec<(u64, u64)>, i32> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    let q = Query {
        flags: PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
        inverted: PAGE_IS_GUARD,
        mask: PAGE_IS_WRITTEN | PAGE_IS_GUARD,
        ret: PAGE_IS_WRITTEN,
        ..Default::default()
    };
    pagescan::scan(pagemap, m.start, m.end, q, vec, |first, n, _| pagescan::push_run(&mut runs, first, n))?;
    Ok(runs)
}

/// Regions up to this size are always tracked.
const SMALL: u64 = 1 << 30;
/// A larger region is tracked when at least 1/SPARSE of it holds data and at most FAR_MAX of it
/// does not.
const SPARSE: u64 = 8;
const FAR_MAX: u64 = 64 << 30;

/// Whether tracking a region that is not tracked yet is worth its cost. Write-protecting marks
/// every page, present or not (8 bytes of page table each, ~9 ms per GiB): for a huge sparse
/// reservation (2 TiB of MAP_NORESERVE holding a few MiB: sanitizers, the JVM) that would cost
/// gigabytes and seconds, and later scans would walk all of it. Such a region is not tracked:
/// each image stores its pages with data (found cheaply with PAGEMAP_SCAN), which is what it
/// holds. Does not allocate.
fn worth_tracking(pagemap: i32, m: &MapEntry) -> bool {
    let len = m.end - m.start;
    if len <= SMALL || pagemap < 0 {
        return true;
    }
    let mut buf = [PageRegion::default(); 64];
    let mut held = 0u64;
    let q = Query { anyof: PAGE_IS_PRESENT | PAGE_IS_SWAPPED, ret: PAGE_IS_PRESENT, ..Default::default() };
    if pagescan::scan(pagemap, m.start, m.end, q, &mut buf, |_, n, _| held += n * PAGE).is_err() {
        return true; // no PAGEMAP_SCAN: no dirty tracking either (scans need it)
    }
    held * SPARSE >= len && len - held <= FAR_MAX
}

/// Register a region for write-protect tracking and protect all of it, unless it is not tracked
/// yet and not worth tracking (`worth_tracking`). Returns whether it is tracked now.
fn arm(uffd: i32, pagemap: i32, m: &MapEntry) -> bool {
    if !registered(pagemap, m) && !worth_tracking(pagemap, m) {
        log!(DEBUG, "region {:#x}-{:#x} is a sparse reservation: not tracked, its pages with data are stored each time", m.start, m.end);
        return false;
    }
    let range = || UffdioRange { start: m.start, len: m.end - m.start };
    let mut reg = UffdioRegister { range: range(), mode: UFFDIO_REGISTER_MODE_WP, ioctls: 0 };
    if let Err(e) = syscall!(libc::SYS_ioctl, uffd, UFFDIO_REGISTER, &mut reg as *mut UffdioRegister) {
        log!(DEBUG, "region {:#x}-{:#x} cannot be tracked (errno {e}); stored whole each time", m.start, m.end);
        return false;
    }
    let mut wp = UffdioWriteprotect { range: range(), mode: UFFDIO_WRITEPROTECT_MODE_WP };
    if let Err(e) = syscall!(libc::SYS_ioctl, uffd, UFFDIO_WRITEPROTECT, &mut wp as *mut UffdioWriteprotect) {
        log!(DEBUG, "region {:#x}-{:#x} cannot be write-protected (errno {e})", m.start, m.end);
    }
    true
}

/// /proc/thread-self/pagemap, opened without allocating; -1 if it cannot be.
fn open_pagemap() -> i32 {
    syscall!(libc::SYS_openat, libc::AT_FDCWD, c"/proc/thread-self/pagemap".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC).map_or(-1, |fd| fd as i32)
}

fn overlaps(ranges: &[(u64, u64)], m: &MapEntry) -> bool {
    ranges.iter().any(|&(s, e)| s < m.end && e > m.start)
}

/// Whether the region's mapping is registered for asynchronous write-protect (a scan of its
/// first page with PM_SCAN_CHECK_WPASYNC fails with EPERM when it is not).
fn registered(pagemap: i32, m: &MapEntry) -> bool {
    let mut one = [PageRegion::default(); 1];
    let q = Query { flags: PM_SCAN_CHECK_WPASYNC, mask: PAGE_IS_WRITTEN, ret: PAGE_IS_WRITTEN, ..Default::default() };
    pagemap >= 0 && pagescan::scan(pagemap, m.start, m.start + PAGE, q, &mut one, |_, _, _| {}).is_ok()
}

/// Before the threads are stopped for a checkpoint: arm what does not need the stop, so that
/// the pause does not pay for write-protecting memory (~20 ms per GiB here). For a full image
/// (`full`) every eligible region (writes from now on go to the next increment, which at worst
/// holds a few pages more than needed); otherwise the regions not tracked yet (new since the
/// last checkpoint), which the image stores whole anyway. Returns the ranges armed, for
/// `scan_and_arm`. `skip` (the scratch arena) and the region holding our stack are left alone.
pub fn pre_arm(full: bool, skip: &ScratchRanges) -> Vec<(u64, u64)> {
    let Some(uffd) = uffd() else { return Vec::new() };
    let pagemap = open_pagemap();
    let mut armed = Vec::new();
    each_eligible(skip, |m| {
        if (full || !registered(pagemap, m)) && arm(uffd, pagemap, m) {
            armed.push((m.start, m.end));
        }
    });
    if pagemap >= 0 {
        sys::close(pagemap);
    }
    armed
}

/// Right after a restart, before anything writes memory: track every eligible region, so that
/// the next checkpoint can be an increment over the image the program came from (its memory is
/// exactly that image's). Runs without allocating (an allocation would write the heap before
/// it is tracked). `skip` (the scratch arena) and the region holding our stack are left alone.
/// Returns whether tracking is on.
pub fn arm_restored(skip: &ScratchRanges) -> bool {
    let Some(uffd) = uffd() else { return false };
    let pagemap = open_pagemap();
    let ok = each_eligible(skip, |m| {
        arm(uffd, pagemap, m);
    });
    if pagemap >= 0 {
        sys::close(pagemap);
    }
    ok
}

/// Call `f` on every region of /proc/thread-self/maps that `eligible` accepts, except `skip` and the
/// region holding the caller's stack. Parses from a buffer on the stack, without allocating.
/// Returns whether all of the maps could be read.
fn each_eligible(skip: &ScratchRanges, mut f: impl FnMut(&MapEntry)) -> bool {
    let here = &f as *const _ as u64;
    // SAFETY: a NUL-terminated path; a plain open.
    let Ok(fd) = syscall!(libc::SYS_openat, libc::AT_FDCWD, c"/proc/thread-self/maps".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) else { return false };
    let fd = fd as i32;
    let mut buf = [0u8; 32 * 1024];
    let mut have = 0usize;
    let mut ok = true;
    loop {
        let n = match sys::read(fd, &mut buf[have..]) {
            Ok(n) => n,
            Err(_) => {
                ok = false;
                break;
            }
        };
        have += n;
        let mut used = 0;
        while let Some(nl) = buf[used..have].iter().position(|&b| b == b'\n') {
            if let Some(m) = parse_line(&buf[used..used + nl]) {
                let ours = skip.overlaps(m.start, m.end) || (m.start <= here && here < m.end);
                if eligible(&m, false, ours) {
                    f(&m);
                }
            }
            used += nl + 1;
        }
        buf.copy_within(used..have, 0);
        have -= used;
        if n == 0 || have == buf.len() {
            break;
        }
    }
    sys::close(fd);
    ok
}

/// One line of /proc/thread-self/maps, without the name (an empty Vec does not allocate); the name's
/// first bytes decide eligibility, so "[v..." names get a marker name.
fn parse_line(line: &[u8]) -> Option<MapEntry> {
    let mut f = line.split(|&b| b == b' ').filter(|s| !s.is_empty());
    let range = f.next()?;
    let perms = f.next()?;
    let _offset = f.next()?;
    let _dev = f.next()?;
    let inode = f.next()?;
    let name = f.next().unwrap_or(b"");
    let dash = range.iter().position(|&b| b == b'-')?;
    let hex = |s: &[u8]| s.iter().try_fold(0u64, |v, &c| Some(v * 16 + (c as char).to_digit(16)? as u64));
    let (start, end) = (hex(&range[..dash])?, hex(&range[dash + 1..])?);
    let mut prot = 0;
    for (i, p) in [libc::PROT_READ, libc::PROT_WRITE, libc::PROT_EXEC].into_iter().enumerate() {
        if perms.get(i).is_some_and(|&c| c != b'-') {
            prot |= p as u32;
        }
    }
    let inode = inode.iter().try_fold(0u64, |v, &c| Some(v * 10 + (c as char).to_digit(10)? as u64))?;
    // Special mappings ([vdso], [vvar], [vsyscall]) must not be tracked; eligible() checks the
    // name's start, and a static name does not allocate.
    let special = name.starts_with(b"[v");
    Some(MapEntry { start, end, prot: if special { 0 } else { prot }, shared: perms.get(3) == Some(&b's'), offset: 0, inode, dev: 0, name: Vec::new(), flags: 0 })
}
