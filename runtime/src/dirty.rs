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

const PAGEMAP_SCAN: u64 = 0xC060_6610;
const PAGE_IS_WRITTEN: u64 = 1 << 1;
const PM_SCAN_WP_MATCHING: u64 = 1 << 0;
const PM_SCAN_CHECK_WPASYNC: u64 = 1 << 1;

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

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct PageRegion {
    start: u64,
    end: u64,
    categories: u64,
}

#[repr(C)]
#[derive(Default)]
struct PmScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
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
    let fd = match syscall!(libc::SYS_userfaultfd, UFFD_USER_MODE_ONLY | libc::O_CLOEXEC as i64 | libc::O_NONBLOCK as i64) {
        Ok(fd) => fd as i32,
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
    if full {
        for ((m, _), &ok) in maps.iter().zip(eligible) {
            if ok && !overlaps(armed, m) {
                arm(uffd, m);
            }
        }
        return vec![Track::Whole; maps.len()];
    }
    let pagemap = match sys::open(&sys::cpath(&[b"/proc/thread-self/pagemap"]), libc::O_RDONLY, 0) {
        Ok(fd) => fd,
        Err(_) => return vec![Track::Whole; maps.len()],
    };
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
                    arm(uffd, m);
                    Track::Whole
                }
            }
        })
        .collect();
    sys::close(pagemap);
    out
}

/// Written pages of a tracked region as runs relative to its start; protects them again.
/// EPERM: the region is not tracked.
fn written(pagemap: i32, m: &MapEntry, vec: &mut [PageRegion]) -> Result<Vec<(u64, u64)>, i32> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    let mut at = m.start;
    while at < m.end {
        let mut arg = PmScanArg {
            size: std::mem::size_of::<PmScanArg>() as u64,
            flags: PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
            start: at,
            end: m.end,
            vec: vec.as_mut_ptr() as u64,
            vec_len: vec.len() as u64,
            category_mask: PAGE_IS_WRITTEN,
            return_mask: PAGE_IS_WRITTEN,
            ..Default::default()
        };
        let n = syscall!(libc::SYS_ioctl, pagemap, PAGEMAP_SCAN, &mut arg as *mut PmScanArg)? as usize;
        for r in &vec[..n.min(vec.len())] {
            let (first, end) = ((r.start - m.start) / PAGE, (r.end - m.start) / PAGE);
            match runs.last_mut() {
                Some((s, l)) if *s + *l == first => *l = end - *s,
                _ => runs.push((first, end - first)),
            }
        }
        if arg.walk_end <= at {
            break; // no progress: should not happen; the runs so far are all we know
        }
        at = arg.walk_end;
    }
    Ok(runs)
}

/// Register a region for write-protect tracking and protect all of it.
fn arm(uffd: i32, m: &MapEntry) {
    let range = || UffdioRange { start: m.start, len: m.end - m.start };
    let mut reg = UffdioRegister { range: range(), mode: UFFDIO_REGISTER_MODE_WP, ioctls: 0 };
    if let Err(e) = syscall!(libc::SYS_ioctl, uffd, UFFDIO_REGISTER, &mut reg as *mut UffdioRegister) {
        log!(DEBUG, "region {:#x}-{:#x} cannot be tracked (errno {e}); stored whole each time", m.start, m.end);
        return;
    }
    let mut wp = UffdioWriteprotect { range: range(), mode: UFFDIO_WRITEPROTECT_MODE_WP };
    if let Err(e) = syscall!(libc::SYS_ioctl, uffd, UFFDIO_WRITEPROTECT, &mut wp as *mut UffdioWriteprotect) {
        log!(DEBUG, "region {:#x}-{:#x} cannot be write-protected (errno {e})", m.start, m.end);
    }
}

fn overlaps(ranges: &[(u64, u64)], m: &MapEntry) -> bool {
    ranges.iter().any(|&(s, e)| s < m.end && e > m.start)
}

/// Whether the region's mapping is registered for asynchronous write-protect (a scan of its
/// first page with PM_SCAN_CHECK_WPASYNC fails with EPERM when it is not).
fn registered(pagemap: i32, m: &MapEntry) -> bool {
    let mut one = [PageRegion::default(); 1];
    let mut arg = PmScanArg {
        size: std::mem::size_of::<PmScanArg>() as u64,
        flags: PM_SCAN_CHECK_WPASYNC,
        start: m.start,
        end: m.start + PAGE,
        vec: one.as_mut_ptr() as u64,
        vec_len: 1,
        category_mask: PAGE_IS_WRITTEN,
        return_mask: PAGE_IS_WRITTEN,
        ..Default::default()
    };
    syscall!(libc::SYS_ioctl, pagemap, PAGEMAP_SCAN, &mut arg as *mut PmScanArg).is_ok()
}

/// Before the threads are stopped for a checkpoint: arm what does not need the stop, so that
/// the pause does not pay for write-protecting memory (~20 ms per GiB here). For a full image
/// (`full`) every eligible region (writes from now on go to the next increment, which at worst
/// holds a few pages more than needed); otherwise the regions not tracked yet (new since the
/// last checkpoint), which the image stores whole anyway. Returns the ranges armed, for
/// `scan_and_arm`. `skip` (the scratch arena) and the region holding our stack are left alone.
pub fn pre_arm(full: bool, skip: &ScratchRanges) -> Vec<(u64, u64)> {
    let Some(uffd) = uffd() else { return Vec::new() };
    let pagemap = if full {
        -1
    } else {
        match sys::open(&sys::cpath(&[b"/proc/thread-self/pagemap"]), libc::O_RDONLY, 0) {
            Ok(fd) => fd,
            Err(_) => return Vec::new(),
        }
    };
    let mut armed = Vec::new();
    each_eligible(skip, |m| {
        if full || !registered(pagemap, m) {
            arm(uffd, m);
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
    each_eligible(skip, |m| arm(uffd, m))
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
    Some(MapEntry { start, end, prot: if special { 0 } else { prot }, shared: perms.get(3) == Some(&b's'), offset: 0, inode, dev: 0, name: Vec::new() })
}
