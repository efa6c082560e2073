//! Process-wide attributes recorded in each image (ckpt_image::ProcAttrs): prctl settings
//! (child subreaper, THP disable, KSM merge), oom_score_adj, loginuid, membarrier registrations,
//! and the program's executable. (Per-thread ones, no_new_privs and personality among them, are in
//! threadattrs.rs.) ckpt-restart sets them again
//! (restarter/src/attrs.rs). Read with the threads stopped: raw system calls and /proc only.

use crate::sys::{self, syscall};
use ckpt_image::{FileId, ProcAttrs};
use std::sync::atomic::{AtomicPtr, Ordering};

const PR_GET_MEMORY_MERGE: i32 = 68;
const MEMBARRIER_CMD_GET_REGISTRATIONS: i32 = 1 << 9;

/// The executable the program was started as, and its identity then: /proc/self/exe of a
/// restarted program is ckpt-restart's unless the restart could set it, so the first one is
/// kept (in memory, which images carry).
static EXE: AtomicPtr<(Vec<u8>, FileId)> = AtomicPtr::new(std::ptr::null_mut());

/// At startup (constructor): remember /proc/self/exe.
pub fn init() {
    let exe = sys::cpath(&[b"/proc/self/exe"]);
    let Ok(path) = sys::readlink(&exe) else { return };
    // SAFETY: all-zero stat and statfs structs are valid out-parameters.
    let (mut st, mut fs): (libc::stat, libc::statfs) = unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
    if syscall!(libc::SYS_newfstatat, libc::AT_FDCWD, exe.as_ptr(), &mut st as *mut libc::stat, 0).is_err() {
        return;
    }
    let _ = syscall!(libc::SYS_statfs, exe.as_ptr(), &mut fs as *mut libc::statfs);
    let old = EXE.swap(Box::into_raw(Box::new((path, FileId::new(&st, fs.f_type)))), Ordering::AcqRel);
    if !old.is_null() {
        // SAFETY: set from Box::into_raw above, by an earlier init of this process image.
        drop(unsafe { Box::from_raw(old) });
    }
}

fn prctl_get(option: i32) -> u32 {
    syscall!(libc::SYS_prctl, option, 0, 0, 0, 0).map_or(0, |v| v as u32)
}

/// The attributes now (checkpoint thread, world stopped).
pub fn capture() -> ProcAttrs {
    let mut subreaper: i32 = 0;
    let _ = syscall!(libc::SYS_prctl, libc::PR_GET_CHILD_SUBREAPER, &mut subreaper as *mut i32);
    let oom = sys::read_file(&sys::cpath(&[b"/proc/self/oom_score_adj"])).unwrap_or_default();
    let oom_score_adj = std::str::from_utf8(&oom).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
    let login = sys::read_file(&sys::cpath(&[b"/proc/self/loginuid"])).unwrap_or_default();
    let loginuid = std::str::from_utf8(&login).ok().and_then(|s| s.trim().parse().ok());
    // SAFETY: EXE is null or a leaked Box that is never freed while the process image lives.
    let (exe, exe_id) = unsafe { EXE.load(Ordering::Acquire).as_ref() }.cloned().unwrap_or_default();
    ProcAttrs {
        child_subreaper: subreaper != 0,
        thp_disable: prctl_get(libc::PR_GET_THP_DISABLE),
        memory_merge: prctl_get(PR_GET_MEMORY_MERGE) == 1,
        oom_score_adj,
        membarrier: syscall!(libc::SYS_membarrier, MEMBARRIER_CMD_GET_REGISTRATIONS, 0, 0).map_or(0, |v| v as u32),
        exe,
        exe_id,
        loginuid,
    }
}
