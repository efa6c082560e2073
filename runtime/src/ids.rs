//! Exact process and thread ids: what the runtime records at checkpoint time so that a restart
//! can give the program its ids back, and the restart-time decisions that depend on it.
//!
//! ckpt-run starts the program in a user+pid namespace of its own (ckpt-ns) and ckpt-restart
//! recreates one, creating the restarting process with the program's old pid; the runtime then
//! creates the threads with their old tids (clone3 set_tid, which needs CAP_CHECKPOINT_RESTORE:
//! the restarter keeps it as an ambient capability) and gives every thread the capabilities it
//! had at checkpoint time (for an ordinary user: none), before the program runs again. Where the
//! pid could not be had (no namespace), ids are virtual (vids.rs).
//!
//! Recorded here (static, part of the memory image): the pid at checkpoint time, each thread's
//! capability sets, and the pid that tools outside the namespace know (ckpt-run's or
//! ckpt-restart's). Written into the image's index: `ckpt_image::Ids`.

use crate::log::{log, ERROR};
use crate::sys::{self, syscall};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};

const CAP_CHECKPOINT_RESTORE: u32 = 40;
const CAP_SYS_ADMIN: u32 = 21;
const MAX_THREADS: usize = 512;

/// A thread's capability sets, as /proc/PID/task/TID/status shows them.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Caps {
    tid: i32,
    inh: u64,
    prm: u64,
    eff: u64,
    bnd: u64,
    amb: u64,
}

struct Table {
    caps: [Caps; MAX_THREADS],
    n: usize,
}

struct Cell(UnsafeCell<Table>);
// SAFETY: written only by the checkpoint thread with every other thread stopped; read on the
// restart path, where each thread reads its own entry after the table was restored in memory.
unsafe impl Sync for Cell {}

static CAPS: Cell = Cell(UnsafeCell::new(Table { caps: [Caps { tid: 0, inh: 0, prm: 0, eff: 0, bnd: 0, amb: 0 }; MAX_THREADS], n: 0 }));
/// getpid() when the last image was taken.
static PID_AT_CHECKPOINT: AtomicI32 = AtomicI32::new(0);
/// The pid outside tools know the program by (0: our own).
static OUTER_PID: AtomicI32 = AtomicI32::new(0);
/// Warned once that capabilities could not be given back.
static WARNED: AtomicBool = AtomicBool::new(false);
/// Device and inode of the image directory as the outer process checked it (0: none).
static TRUSTED_DIR: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// At startup: the outer process's pid (namespace mode only) and the image directory it checked.
pub fn init(outer: Option<i32>, dir: (u64, u64)) {
    OUTER_PID.store(outer.unwrap_or(0), Ordering::Relaxed);
    trust_dir(if outer.is_some() { dir } else { (0, 0) });
}

fn trust_dir((dev, ino): (u64, u64)) {
    TRUSTED_DIR[0].store(dev, Ordering::Relaxed);
    TRUSTED_DIR[1].store(ino, Ordering::Relaxed);
}

/// After a restart: the restarter's outer process (0: no namespace) and the image directory it
/// checked. Its pid may equal ours (a tree nested in another's namespace, whose outer process
/// got the number the program had there): still our outer process, the coordinator's name.
pub fn restarted(outer_pid: u64, dir: (u64, u64)) {
    let outer = i32::try_from(outer_pid).unwrap_or(0);
    OUTER_PID.store(outer, Ordering::Relaxed);
    trust_dir(if outer != 0 { dir } else { (0, 0) });
}

/// Our outer process and the image directory it checked, now (a restart changes both: the
/// settings ckpt-run gave are the first run's), for a program a member of the tree execs or
/// spawns; None without a namespace.
pub fn for_launch() -> Option<(i32, u64, u64)> {
    in_namespace().then(|| (outer_pid(), TRUSTED_DIR[0].load(Ordering::Relaxed), TRUSTED_DIR[1].load(Ordering::Relaxed)))
}

/// Whether a directory whose owner shows as `uid` is the image directory the outer process
/// checked from outside our user namespace: here a directory of root's (a sticky /tmp) shows
/// as the overflow uid, like one of any other user that is not mapped.
pub fn trusted_dir(uid: u32, dev: u64, ino: u64) -> bool {
    let overflow = sys::read_file(&sys::cpath(&[b"/proc/sys/kernel/overflowuid"]))
        .ok()
        .and_then(|t| std::str::from_utf8(&t).ok()?.trim().parse::<u32>().ok())
        .unwrap_or(65534);
    uid == overflow && dev != 0 && TRUSTED_DIR[0].load(Ordering::Relaxed) == dev && TRUSTED_DIR[1].load(Ordering::Relaxed) == ino
}

/// Whether we see ids through a user namespace that does not map every id onto itself.
fn in_user_namespace() -> bool {
    let map = sys::read_file(&sys::cpath(&[b"/proc/self/uid_map"])).unwrap_or_default();
    let words: Vec<&[u8]> = map.split(|b| b.is_ascii_whitespace()).filter(|w| !w.is_empty()).collect();
    words != [&b"0"[..], b"0", b"4294967295"]
}

/// The pid tools outside know the program by: the outer process's, or ours.
pub fn outer_pid() -> i32 {
    match OUTER_PID.load(Ordering::Relaxed) {
        0 => sys::getpid(),
        p => p,
    }
}

/// Whether the program runs in a namespace of ckpt's (an outer process stands for it).
pub fn in_namespace() -> bool {
    OUTER_PID.load(Ordering::Relaxed) != 0
}

/// Start of a checkpoint (threads stopped): forget the previous capability table.
pub fn begin_capture() {
    // SAFETY: see Cell.
    unsafe { (*CAPS.0.get()).n = 0 };
    PID_AT_CHECKPOINT.store(sys::getpid(), Ordering::Relaxed);
}

/// Record a thread's capabilities from its /proc status text (checkpoint, threads stopped).
pub fn note_thread(tid: i32, status: &[u8]) {
    let v = |k| crate::kstate::value(status, k, 16).unwrap_or(0);
    let c = Caps { tid, inh: v("CapInh:"), prm: v("CapPrm:"), eff: v("CapEff:"), bnd: v("CapBnd:"), amb: v("CapAmb:") };
    // SAFETY: see Cell.
    let t = unsafe { &mut *CAPS.0.get() };
    if t.n < MAX_THREADS {
        t.caps[t.n] = c;
        t.n += 1;
    }
}

fn clock_ns(id: i32) -> i64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    let _ = syscall!(libc::SYS_clock_gettime, id, &mut ts as *mut libc::timespec);
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// What the image says about ids (checkpoint, threads stopped).
pub fn image_ids(ckpt_tid: i32) -> ckpt_image::Ids {
    ckpt_image::Ids {
        namespace: in_namespace(),
        outer_pid: outer_pid(),
        virtual_ids: crate::vids::translating_now(),
        ckpt_tid,
        monotonic_ns: clock_ns(libc::CLOCK_MONOTONIC),
        boottime_ns: clock_ns(libc::CLOCK_BOOTTIME),
        signal: crate::config().map_or(0, |c| c.signal),
        stop_signal: crate::triggers::stop_signal(),
        user_namespace: in_user_namespace(),
        image_dir: crate::config().map(|c| c.dir.clone()).unwrap_or_default(),
    }
}

/// The kernel's capability header and data (version 3: two 32-bit words per set).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    eff: u32,
    prm: u32,
    inh: u32,
}
const CAP_V3: u32 = 0x2008_0522;

fn capget() -> Option<(u64, u64, u64)> {
    let mut h = CapHeader { version: CAP_V3, pid: 0 };
    let mut d = [CapData::default(); 2];
    syscall!(libc::SYS_capget, &mut h as *mut CapHeader, d.as_mut_ptr()).ok()?;
    let join = |f: fn(&CapData) -> u32| u64::from(f(&d[0])) | u64::from(f(&d[1])) << 32;
    Some((join(|c| c.eff), join(|c| c.prm), join(|c| c.inh)))
}

fn capset(eff: u64, prm: u64, inh: u64) -> Result<(), i32> {
    let mut h = CapHeader { version: CAP_V3, pid: 0 };
    let d = [CapData { eff: eff as u32, prm: prm as u32, inh: inh as u32 }, CapData { eff: (eff >> 32) as u32, prm: (prm >> 32) as u32, inh: (inh >> 32) as u32 }];
    syscall!(libc::SYS_capset, &mut h as *mut CapHeader, d.as_ptr()).map(|_| ())
}

/// Whether this restart can give the program its exact ids: we have its old pid (ckpt-restart
/// created us with it) and may choose thread ids (CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN over
/// our pid namespace: in a user namespace of ours, or as root).
pub fn exact_restart() -> bool {
    let pid = PID_AT_CHECKPOINT.load(Ordering::Relaxed);
    let may = |eff: u64| eff & (1 << CAP_CHECKPOINT_RESTORE | 1 << CAP_SYS_ADMIN) != 0;
    pid != 0 && sys::getpid() == pid && capget().is_some_and(|(eff, _, _)| may(eff))
}

/// Give the calling thread (tid `old` at checkpoint time) the capabilities it had then; a
/// thread that was not recorded gets those of the first recorded one. Restart path, each thread
/// for itself (capabilities are per thread), once no thread needs to be created any more.
pub fn restore_caps(old: i32) {
    // SAFETY: see Cell (read-only on the restart path).
    let t = unsafe { &*CAPS.0.get() };
    let Some(want) = t.caps[..t.n].iter().find(|c| c.tid == old).or(t.caps[..t.n].first()).copied() else { return };
    let Some((eff, prm, inh)) = capget() else { return };
    let amb_set = |cap: u64| syscall!(libc::SYS_prctl, libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_IS_SET, cap, 0, 0).unwrap_or(0) != 0;
    if (eff, prm, inh) == (want.eff, want.prm, want.inh) && want.amb == 0 && !(0..64).any(amb_set) {
        return;
    }
    let mut ok = true;
    // The bounding set can only shrink (needs CAP_SETPCAP, so before the rest).
    for cap in 0..64u64 {
        if want.bnd & (1 << cap) == 0 && syscall!(libc::SYS_prctl, libc::PR_CAPBSET_READ, cap, 0, 0, 0) == Ok(1) {
            ok &= syscall!(libc::SYS_prctl, libc::PR_CAPBSET_DROP, cap, 0, 0, 0).is_ok();
        }
    }
    let _ = syscall!(libc::SYS_prctl, libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    if want.amb != 0 {
        ok &= capset(eff, prm, want.inh | inh).is_ok();
        for cap in (0..64u64).filter(|c| want.amb & (1 << c) != 0) {
            ok &= syscall!(libc::SYS_prctl, libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_RAISE, cap, 0, 0).is_ok();
        }
    }
    ok &= capset(want.eff, want.prm, want.inh).is_ok();
    if !ok && !WARNED.swap(true, Ordering::Relaxed) {
        let held = capget().map_or(0, |c| c.0);
        log!(ERROR, "warning: the restarted program's capabilities differ from those at checkpoint time (effective {:#x}, bounding {:#x} at checkpoint time; effective {held:#x} now)", want.eff, want.bnd);
    }
}
