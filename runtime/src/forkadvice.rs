//! Memory the program asked fork not to copy (MADV_DONTFORK) or to give a child empty
//! (MADV_WIPEONFORK): a forked snapshot would not see what it holds. The `madvise` hook (and
//! `syscall(SYS_madvise)`, through threadattrs' hook) notes that the program asked; its
//! checkpoints then read each region's flags (smaps) while the threads are stopped, and the
//! advice is lifted for the instant of the snapshot's fork and set again right after, so the
//! snapshot holds those regions like any other and the image records their advice.
//! MAP_DROPPABLE memory (which the kernel wipes in a child and may drop at any time) is left
//! as the kernel makes it: it comes back empty, as after memory pressure.

use crate::hooks::RealFn;
use crate::maps::MapEntry;
use crate::sys::syscall;
use ckpt_image::vm;
use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicBool, Ordering};

static REAL_MADVISE: RealFn = RealFn::new(b"madvise\0");
static ASKED: AtomicBool = AtomicBool::new(false);

type MadviseFn = unsafe extern "C" fn(*mut c_void, usize, c_int) -> c_int;

pub fn resolve() {
    REAL_MADVISE.get();
}

/// Whether the program has asked for MADV_DONTFORK or MADV_WIPEONFORK (the flag is in the
/// image's memory: a restarted program whose memory has such advice still says so).
pub fn asked() -> bool {
    ASKED.load(Ordering::Relaxed)
}

/// Note an madvise call of the program's that succeeded.
pub fn note(advice: i64) {
    if advice == i64::from(libc::MADV_DONTFORK) || advice == i64::from(libc::MADV_WIPEONFORK) {
        ASKED.store(true, Ordering::Relaxed);
    }
}

/// # Safety
/// libc's contract for madvise.
#[no_mangle]
pub unsafe extern "C" fn madvise(addr: *mut c_void, len: usize, advice: c_int) -> c_int {
    // SAFETY: forwarding to libc's madvise with the caller's arguments.
    let r = unsafe { std::mem::transmute::<usize, MadviseFn>(REAL_MADVISE.get())(addr, len, advice) };
    if r == 0 {
        note(i64::from(advice));
    }
    r
}

/// Advice lifted for a fork: (start, length, advice to set again).
pub struct Lifted(Vec<(u64, u64, i32)>);

/// Lift MADV_DONTFORK and MADV_WIPEONFORK from `regions` (read with their flags) for a fork
/// (threads stopped); `Lifted::restore` sets them again.
pub fn lift(regions: &[(MapEntry, bool)]) -> Lifted {
    let mut v = Vec::new();
    for (m, _) in regions.iter().filter(|(m, _)| m.flags & vm::DROPPABLE == 0) {
        for (flag, lift, again) in [(vm::DONTFORK, libc::MADV_DOFORK, libc::MADV_DONTFORK), (vm::WIPEONFORK, libc::MADV_KEEPONFORK, libc::MADV_WIPEONFORK)] {
            if m.flags & flag != 0 && syscall!(libc::SYS_madvise, m.start, m.end - m.start, lift).is_ok() {
                v.push((m.start, m.end - m.start, again));
            }
        }
    }
    Lifted(v)
}

impl Lifted {
    pub fn restore(self) {
        for (start, len, advice) in self.0 {
            let _ = syscall!(libc::SYS_madvise, start, len, advice);
        }
    }
}
