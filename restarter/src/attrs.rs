//! Giving the program back its process-wide attributes and each region's flags (the image's
//! `ProcAttrs` and `RegionAttrs`). What survives the address-space switch is set before it
//! (child subreaper, oom_score_adj, loginuid, membarrier registrations); what concerns the program's
//! memory is done by the switch once the memory is in place (`region_ops`, `late_ops`): guard
//! pages, madvise advice, mlock, mseal; THP disable, KSM merge and the executable. (Per-thread
//! attributes are set by each recreated thread: runtime/src/threadattrs.rs.)
//!
//! Region flags are restored by system calls that succeeded on the same kernel (the restart
//! checks that it is the same vdso, hence the same kernel build) within the same rlimits (set
//! before the switch), so the switch does not stop on them. What an unprivileged process may not
//! do is said in one warning line: a lower oom_score_adj than ckpt-restart's, and the executable
//! (/proc/self/exe), which needs CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN in the user namespace
//! (inside a user namespace of ckpt's own; otherwise /proc/self/exe stays ckpt-restart).

use crate::switch::Op;
use anyhow::{bail, Result};
use ckpt_image::{vm, Backing, FileId, ProcAttrs, Region};
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;

const PAGE: u64 = 4096;
const MADV_GUARD_INSTALL: u64 = 102;
const MLOCK_ONFAULT: u64 = 1;
const SYS_MSEAL: i64 = 462;
const PR_SET_MEMORY_MERGE: u64 = 67;

/// Set what lives on across the switch. Warns about what cannot be set.
pub fn apply(p: &ProcAttrs) {
    // SAFETY: prctl and membarrier calls that only change this process's attributes.
    unsafe {
        if p.child_subreaper {
            libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        }
        for bit in 0..32 {
            if p.membarrier & (1 << bit) != 0 && libc::syscall(libc::SYS_membarrier, 1u32 << bit, 0, 0) != 0 {
                ckpt_kinds::say!("ckpt-restart: warning: membarrier registration {:#x} cannot be made again: {}", 1u32 << bit, std::io::Error::last_os_error());
            }
        }
    }
    set_oom_score_adj(p.oom_score_adj);
    if let Some(uid) = p.loginuid {
        set_loginuid(uid);
    }
}

/// /proc/self/loginuid (the audit login uid; new threads inherit it from this one): setting it
/// needs CAP_AUDIT_CONTROL (root), unless it is unset and the kernel lets a process set its own
/// once. It is normally the same for every process of a user's login session.
fn set_loginuid(want: u32) {
    let path = "/proc/self/loginuid";
    let now: Option<u32> = std::fs::read_to_string(path).ok().and_then(|s| s.trim().parse().ok());
    if now.is_none_or(|n| n == want) {
        return;
    }
    if let Err(e) = std::fs::write(path, want.to_string()) {
        ckpt_kinds::say!("ckpt-restart: warning: loginuid {want} cannot be restored ({e}; it needs CAP_AUDIT_CONTROL): it stays {}", now.unwrap_or(u32::MAX));
    }
}

/// /proc/self/oom_score_adj: raising it is allowed, lowering it below what ckpt-restart has
/// needs CAP_SYS_RESOURCE.
fn set_oom_score_adj(want: i32) {
    let path = "/proc/self/oom_score_adj";
    let now: i32 = std::fs::read_to_string(path).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
    if now == want {
        return;
    }
    if let Err(e) = std::fs::write(path, want.to_string()) {
        ckpt_kinds::say!("ckpt-restart: warning: oom_score_adj {want} cannot be restored ({e}; lowering it needs CAP_SYS_RESOURCE): it stays {now}");
    }
}

/// Mapping flags at staging or mapping time: MAP_NORESERVE, MAP_GROWSDOWN, MAP_DROPPABLE
/// (which replaces MAP_PRIVATE).
pub fn map_flags(r: &Region) -> i32 {
    let f = r.attrs.flags;
    let mut flags = if f & vm::DROPPABLE != 0 { MAP_DROPPABLE } else { libc::MAP_PRIVATE };
    if f & vm::NORESERVE != 0 {
        flags |= libc::MAP_NORESERVE;
    }
    if f & vm::GROWSDOWN != 0 || r.name == b"[stack]" {
        flags |= libc::MAP_GROWSDOWN;
    }
    flags
}

const MAP_DROPPABLE: i32 = 0x08;

/// Anonymous regions that the switch maps empty must get their memory then: one that reserves
/// swap space (no MAP_NORESERVE) and can be written is charged to the system's commit limit. See
/// now, before anything is changed, that such a mapping is possible.
pub fn check_empty(r: &Region) -> Result<()> {
    if r.attrs.flags & vm::NORESERVE != 0 || r.prot & libc::PROT_WRITE as u32 == 0 {
        return Ok(());
    }
    // SAFETY: a fresh mapping anywhere, removed at once.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), r.len() as usize, libc::PROT_READ | libc::PROT_WRITE, map_flags(r) & !libc::MAP_GROWSDOWN | libc::MAP_ANONYMOUS, -1, 0) };
    if p == libc::MAP_FAILED {
        bail!("region {:#x}-{:#x} ({} MiB) cannot be mapped again: {}", r.start, r.end, r.len() >> 20, std::io::Error::last_os_error());
    }
    // SAFETY: unmapping what we just mapped.
    unsafe { libc::munmap(p, r.len() as usize) };
    Ok(())
}

/// Number of operations `region_ops` may produce for these regions.
pub fn max_region_ops(regions: &[Region]) -> usize {
    regions.iter().map(|r| r.attrs.guards.len() + r.attrs.flags.count_ones() as usize + 2).sum()
}

/// System calls that give the regions, now in place, their guard pages, advice and locks;
/// sealing (mseal) comes last of all (`seal_ops`).
pub fn region_ops(regions: &[Region]) -> Vec<Op> {
    let mut ops = Vec::new();
    let advice = [
        (vm::DONTFORK, libc::MADV_DONTFORK),
        (vm::DONTDUMP, libc::MADV_DONTDUMP),
        (vm::WIPEONFORK, libc::MADV_WIPEONFORK),
        (vm::HUGEPAGE, libc::MADV_HUGEPAGE),
        (vm::NOHUGEPAGE, libc::MADV_NOHUGEPAGE),
        (vm::MERGEABLE, libc::MADV_MERGEABLE),
        (vm::SEQUENTIAL, libc::MADV_SEQUENTIAL),
        (vm::RANDOM, libc::MADV_RANDOM),
    ];
    for r in regions.iter().filter(|r| r.backing != Backing::Special) {
        // Guard pages first: installing one fails on a locked region.
        for &(first, n) in &r.attrs.guards {
            ops.push(Op::new(libc::SYS_madvise, &[r.start + first * PAGE, n * PAGE, MADV_GUARD_INSTALL], false));
        }
        for (bit, adv) in advice {
            if r.attrs.flags & bit != 0 {
                ops.push(Op::new(libc::SYS_madvise, &[r.start, r.len(), adv as u64], false));
            }
        }
        if r.attrs.flags & vm::LOCKONFAULT != 0 {
            ops.push(Op::new(libc::SYS_mlock2, &[r.start, r.len(), MLOCK_ONFAULT], false));
        } else if r.attrs.flags & vm::LOCKED != 0 {
            ops.push(Op::new(libc::SYS_mlock, &[r.start, r.len()], false));
        }
    }
    ops
}

/// mseal the regions that were sealed: after every other change to them.
pub fn seal_ops(regions: &[Region]) -> Vec<Op> {
    regions.iter().filter(|r| r.attrs.flags & vm::SEALED != 0).map(|r| Op::new(SYS_MSEAL, &[r.start, r.len(), 0], false)).collect()
}

/// Whether the image has guard pages and this kernel cannot install them (before Linux 6.13):
/// refuse rather than restart a program whose guard pages would be ordinary memory.
pub fn check_guards(regions: &[Region]) -> Result<()> {
    let Some(r) = regions.iter().find(|r| !r.attrs.guards.is_empty()) else { return Ok(()) };
    // SAFETY: a scratch page of ours, guarded and removed.
    let ok = unsafe {
        let p = libc::mmap(std::ptr::null_mut(), PAGE as usize, libc::PROT_READ, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0);
        let ok = p != libc::MAP_FAILED && libc::madvise(p, PAGE as usize, MADV_GUARD_INSTALL as i32) == 0;
        if p != libc::MAP_FAILED {
            libc::munmap(p, PAGE as usize);
        }
        ok
    };
    if !ok {
        bail!("region {:#x}-{:#x} has guard pages (MADV_GUARD_INSTALL), which this kernel cannot make", r.start, r.end);
    }
    Ok(())
}

/// Process attributes that concern memory, set once it is in place: THP disable, KSM for the
/// whole process. `exe_map`: the address of a prctl_mm_map naming the executable
/// and the fd it names (see `exe_fd`).
pub fn late_ops(p: &ProcAttrs, exe_map: Option<(u64, u64, RawFd)>) -> Vec<Op> {
    let mut ops = Vec::new();
    if p.thp_disable != 0 {
        // Bit 0: disabled; the bits above are PR_SET_THP_DISABLE's flags (PR_THP_DISABLE_EXCEPT_ADVISED).
        ops.push(Op::new(libc::SYS_prctl, &[libc::PR_SET_THP_DISABLE as u64, 1, u64::from(p.thp_disable & !1), 0, 0], false));
    }
    if p.memory_merge {
        ops.push(Op::new(libc::SYS_prctl, &[PR_SET_MEMORY_MERGE, 1, 0, 0, 0], false));
    }
    if let Some((map_at, map_len, fd)) = exe_map {
        ops.push(Op::new(libc::SYS_prctl, &[libc::PR_SET_MM as u64, libc::PR_SET_MM_MAP as u64, map_at, map_len, 0], false));
        ops.push(Op::new(libc::SYS_close, &[fd as u64], false));
    }
    ops
}

/// Whether we may set the executable: CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN in our user
/// namespace (effective).
fn may_set_exe() -> bool {
    use ckpt_ns::caps::{has, CAP_CHECKPOINT_RESTORE, CAP_SYS_ADMIN};
    has(CAP_CHECKPOINT_RESTORE) || has(CAP_SYS_ADMIN)
}

/// An fd on the program's executable, at a number above all of the program's (`above`), when
/// the restart may make it /proc/self/exe and it is the same file as at checkpoint time.
/// Otherwise None, and /proc/self/exe stays ckpt-restart.
pub fn exe_fd(p: &ProcAttrs, above: RawFd, same_boot: bool) -> Option<RawFd> {
    if p.exe.is_empty() || !may_set_exe() {
        return None;
    }
    let path = std::path::Path::new(std::ffi::OsStr::from_bytes(&p.exe));
    let f = std::fs::File::open(path).ok()?;
    use std::os::fd::AsRawFd;
    // SAFETY: all-zero stat and statfs are valid out-parameters; f is open.
    let (mut st, mut fs): (libc::stat, libc::statfs) = unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
    // SAFETY: as above.
    unsafe {
        libc::fstat(f.as_raw_fd(), &mut st);
        libc::fstatfs(f.as_raw_fd(), &mut fs);
    }
    if !p.exe_id.same_file(&FileId::new(&st, fs.f_type), same_boot) {
        ckpt_kinds::say!("ckpt-restart: warning: {} is not the program's executable any more: /proc/self/exe stays ckpt-restart", path.display());
        return None;
    }
    // SAFETY: duplicating our own fd above the program's numbers.
    let fd = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_DUPFD_CLOEXEC, above) };
    (fd >= 0).then_some(fd)
}
