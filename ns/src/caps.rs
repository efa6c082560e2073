//! Capabilities of the processes init starts. The program (ckpt-run) gets the bounding set the
//! outer process has, as it would have had without a namespace.
//!
//! The restarting process: Creating threads with chosen ids (clone3 set_tid)
//! needs CAP_CHECKPOINT_RESTORE in the user namespace that owns the pid namespace, which init
//! holds (it is the namespace's first process) but an ordinary user's process loses at execve.
//! Init raises it as an ambient capability for the process it starts, so the restarter keeps it
//! across its execve; the runtime drops it in every thread once the threads exist, before the
//! program runs again.

pub const CAP_CHECKPOINT_RESTORE: u32 = 40;
pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_SETGID: u32 = 6;
pub const CAP_SETUID: u32 = 7;

#[repr(C)]
struct Header {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const V3: u32 = 0x2008_0522;

/// Whether the calling thread holds `cap` (effective).
pub fn has(cap: u32) -> bool {
    let mut h = Header { version: V3, pid: 0 };
    let mut d = [Data::default(); 2];
    // SAFETY: capget with a version-3 header and two data words.
    let ok = unsafe { libc::syscall(libc::SYS_capget, &mut h as *mut Header, d.as_mut_ptr()) } == 0;
    ok && d[(cap / 32) as usize].effective & (1 << (cap % 32)) != 0
}

/// Keep `cap` across the next execve: add it to the inheritable set and raise it as ambient.
pub fn keep_across_exec(cap: u32) -> std::io::Result<()> {
    let mut h = Header { version: V3, pid: 0 };
    let mut d = [Data::default(); 2];
    // SAFETY: capget/capset with a version-3 header and two data words.
    unsafe {
        if libc::syscall(libc::SYS_capget, &mut h as *mut Header, d.as_mut_ptr()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        d[(cap / 32) as usize].inheritable |= 1 << (cap % 32);
        if libc::syscall(libc::SYS_capset, &mut h as *mut Header, d.as_ptr()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_RAISE, cap as libc::c_ulong, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The calling thread's capability bounding set, as a bit mask.
pub fn bounding_set() -> u64 {
    // SAFETY: PR_CAPBSET_READ only reads; it fails (EINVAL) past the last capability.
    (0..64u32).filter(|&c| unsafe { libc::prctl(libc::PR_CAPBSET_READ, c as libc::c_ulong, 0, 0, 0) } == 1).fold(0, |m, c| m | 1 << c)
}

/// Drop from the bounding set every capability not in `keep` (needs CAP_SETPCAP). In a new
/// user namespace the set is full; the program gets the one it had outside, so that it looks
/// the same inside (and root's program holds, inside, what root holds outside).
pub fn limit_bounding(keep: u64) {
    for c in (0..64u32).filter(|&c| keep & (1 << c) == 0) {
        // SAFETY: dropping a capability from our own bounding set.
        unsafe { libc::prctl(libc::PR_CAPBSET_DROP, c as libc::c_ulong, 0, 0, 0) };
    }
}
