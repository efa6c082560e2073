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
const CAP_SETGID: u32 = 6;
const CAP_SETUID: u32 = 7;
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
    /// prctl(PR_GET_SECUREBITS), which the thread read itself at its stop (`note_secbits`).
    secbits: u32,
    secbits_known: bool,
}

struct Table {
    caps: [Caps; MAX_THREADS],
    n: usize,
}

struct Cell(UnsafeCell<Table>);
// SAFETY: written only by the checkpoint thread with every other thread stopped; read on the
// restart path, where each thread reads its own entry after the table was restored in memory.
unsafe impl Sync for Cell {}

static CAPS: Cell = Cell(UnsafeCell::new(Table { caps: [Caps { tid: 0, inh: 0, prm: 0, eff: 0, bnd: 0, amb: 0, secbits: 0, secbits_known: false }; MAX_THREADS], n: 0 }));
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

/// Securebits, which /proc does not show: each stopped thread reads its own in its stop
/// handler (`note_secbits`, by the index of its slot), the checkpoint thread in
/// `begin_capture`. Each entry is tid << 32 | KNOWN | bits; 0: none.
static SECBITS: [AtomicU64; MAX_THREADS] = [const { AtomicU64::new(0) }; MAX_THREADS];
static OWN_SECBITS: AtomicU64 = AtomicU64::new(0);
const SECBITS_KNOWN: u64 = 1 << 31;

fn read_secbits(tid: i32) -> u64 {
    // (A seccomp filter of the program's may forbid prctl: then they stay unknown.)
    syscall!(libc::SYS_prctl, libc::PR_GET_SECUREBITS, 0, 0, 0, 0).map_or(0, |b| (tid as u32 as u64) << 32 | SECBITS_KNOWN | (b as u64 & 0xffff))
}

/// At the start of a stop, before any thread is signaled: forget the last stop's securebits.
pub fn forget_secbits() {
    for e in &SECBITS {
        e.store(0, Ordering::Relaxed);
    }
}

/// In the stop handler of thread `tid`, which claimed slot `idx` (raw system call, no
/// allocation): its securebits.
pub fn note_secbits(idx: usize, tid: i32) {
    if let Some(e) = SECBITS.get(idx) {
        e.store(read_secbits(tid), Ordering::Release);
    }
}

/// Whether thread `tid`'s securebits are known, and them.
fn secbits_of(tid: i32) -> (bool, u32) {
    let own = OWN_SECBITS.load(Ordering::Acquire);
    let e = std::iter::once(own).chain(SECBITS.iter().map(|e| e.load(Ordering::Acquire))).find(|&e| e != 0 && (e >> 32) as i32 == tid).unwrap_or(0);
    (e & SECBITS_KNOWN != 0, (e & 0xffff) as u32)
}

/// Start of a checkpoint (threads stopped): forget the previous capability table.
pub fn begin_capture() {
    // SAFETY: see Cell.
    unsafe { (*CAPS.0.get()).n = 0 };
    OWN_SECBITS.store(read_secbits(sys::gettid()), Ordering::Release);
    PID_AT_CHECKPOINT.store(sys::getpid(), Ordering::Relaxed);
}

/// Record a thread's capabilities from its /proc status text (checkpoint, threads stopped).
pub fn note_thread(tid: i32, status: &[u8]) {
    let v = |k| crate::kstate::value(status, k, 16).unwrap_or(0);
    let (secbits_known, secbits) = secbits_of(tid);
    let c = Caps { tid, inh: v("CapInh:"), prm: v("CapPrm:"), eff: v("CapEff:"), bnd: v("CapBnd:"), amb: v("CapAmb:"), secbits, secbits_known };
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
/// our pid namespace: in a user namespace of ours, or as root). A process of root's that took
/// on other ids holds them permitted only (ckpt-restart kept them through the switch of ids):
/// CAP_CHECKPOINT_RESTORE is made effective here, until each thread's own capabilities are
/// back (`restore_caps`).
pub fn exact_restart() -> bool {
    let pid = PID_AT_CHECKPOINT.load(Ordering::Relaxed);
    if pid == 0 || sys::getpid() != pid {
        return false;
    }
    let Some((eff, prm, inh)) = capget() else { return false };
    let cr = 1u64 << CAP_CHECKPOINT_RESTORE;
    eff & (cr | 1 << CAP_SYS_ADMIN) != 0 || (prm & cr != 0 && capset(eff | cr, prm, inh).is_ok())
}

/// The capabilities recorded for thread `old` (a thread not recorded: the first recorded one).
fn wanted(old: i32) -> Option<Caps> {
    // SAFETY: see Cell (read-only on the restart path).
    let t = unsafe { &*CAPS.0.get() };
    t.caps[..t.n].iter().find(|c| c.tid == old).or(t.caps[..t.n].first()).copied()
}

/// The calling thread's bounding and ambient sets, from its /proc status (one file read, no
/// prctl: a seccomp filter the thread shares may forbid prctl, or kill at it); None: not read.
fn bounding_ambient_now() -> Option<(u64, u64)> {
    let status = sys::read_file(&sys::cpath(&[b"/proc/thread-self/status"])).ok()?;
    Some((crate::kstate::value(&status, "CapBnd:", 16)?, crate::kstate::value(&status, "CapAmb:", 16)?))
}

/// Give the calling thread (tid `old` at checkpoint time) the capabilities and securebits it
/// had then; a thread that was not recorded gets those of the first recorded one. Restart path,
/// each thread for itself (capabilities are per thread), once no thread needs to be created
/// any more. With `keep_admin` (the thread installs seccomp filters again without
/// no_new_privs, which needs CAP_SYS_ADMIN), CAP_SYS_ADMIN stays effective and permitted if the
/// thread holds it now (a process of root's that dropped to other ids: ckpt-restart kept its
/// permitted set through the switch of ids); the returned mask then says so, and `drop_kept`
/// takes it away once the filters are in.
///
/// The order makes each step allowed: every permitted capability effective first (dropping
/// from the bounding set and setting securebits need CAP_SETPCAP), the bounding set, the
/// ambient set (before securebits, which may forbid raising it), securebits, then the
/// effective, permitted and inheritable sets. A thread left with a capability it did not have
/// ends the restarted process with one line; one that lacks one it had is a warning.
pub fn restore_caps(old: i32, keep_admin: bool) -> u64 {
    let Some((eff, prm, inh)) = capget() else { return 0 };
    let Some(want) = wanted(old) else {
        // None recorded: what the kernel leaves a process that took on ids none of which is
        // root's (ckpt-restart kept root's permitted set through the switch for the program).
        let (mut r, mut e, mut s) = (0u32, 0u32, 0u32);
        let _ = syscall!(libc::SYS_getresuid, &mut r as *mut u32, &mut e as *mut u32, &mut s as *mut u32);
        if r != 0 && e != 0 && s != 0 && (eff | prm) != 0 {
            let _ = syscall!(libc::SYS_prctl, libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
            let _ = capset(0, 0, inh);
        }
        return 0;
    };
    let admin = 1u64 << CAP_SYS_ADMIN;
    let kept = if keep_admin && prm & admin != 0 && want.eff & admin == 0 { admin } else { 0 };
    let (bnd, amb) = bounding_ambient_now().unwrap_or((want.bnd, want.amb));
    // Securebits are read only when the thread had some (the restart's are none: ckpt-restart
    // clears SECBIT_KEEP_CAPS after the switch of ids, execve the rest but the locked ones).
    let secbits = if want.secbits_known && want.secbits != 0 { syscall!(libc::SYS_prctl, libc::PR_GET_SECUREBITS, 0, 0, 0, 0).map_or(want.secbits, |b| b as u32) } else { want.secbits };
    let set_secbits = secbits != want.secbits;
    let drop_bnd = bnd & !want.bnd;
    if (eff, prm, inh) == (want.eff | kept, want.prm | kept, want.inh) && amb == want.amb && !set_secbits && drop_bnd == 0 {
        return kept;
    }
    let mut ok = true;
    if eff != prm {
        let _ = capset(prm, prm, inh);
    }
    // The bounding set can only shrink.
    for cap in (0..64u64).filter(|c| drop_bnd & (1 << c) != 0) {
        ok &= syscall!(libc::SYS_prctl, libc::PR_CAPBSET_DROP, cap, 0, 0, 0).is_ok();
    }
    if amb != want.amb {
        let _ = syscall!(libc::SYS_prctl, libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    }
    if want.amb != 0 && amb != want.amb {
        ok &= capset(prm, prm, want.inh | inh).is_ok();
        for cap in (0..64u64).filter(|c| want.amb & (1 << c) != 0) {
            ok &= syscall!(libc::SYS_prctl, libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_RAISE, cap, 0, 0).is_ok();
        }
    }
    if set_secbits {
        ok &= syscall!(libc::SYS_prctl, libc::PR_SET_SECUREBITS, want.secbits, 0, 0, 0).is_ok();
    }
    if capset(want.eff | kept, want.prm | kept, want.inh).is_err() {
        // A permitted capability it had is not ours to give (the permitted set only shrinks):
        // at least none it did not have.
        ok = false;
        let _ = capset((want.eff | kept) & prm, (want.prm | kept) & prm, want.inh & inh);
    }
    let (e, p, _) = capget().unwrap_or((0, 0, 0));
    if e & !(want.eff | kept) != 0 || p & !(want.prm | kept) != 0 {
        end(&format!("thread {old}: it keeps capabilities it did not have at checkpoint time (effective {e:#x}, permitted {p:#x}; it had {:#x}, {:#x}): the restarted program must not run with them; it ends here", want.eff, want.prm));
    }
    if !ok && !WARNED.swap(true, Ordering::Relaxed) {
        log!(ERROR, "warning: the restarted program's capabilities differ from those at checkpoint time (effective {:#x}, bounding {:#x} at checkpoint time; effective {e:#x} now)", want.eff, want.bnd);
    }
    kept
}

/// The restarted process must not go on: one line (the first thread to find so says it), then
/// exit.
pub fn end(line: &str) {
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, Ordering::AcqRel) {
        log!(ERROR, "{line}");
    }
    let _ = syscall!(libc::SYS_exit_group, 1);
}

/// Make the capabilities of `mask` that the calling thread holds permitted effective.
fn raise(mask: u64) {
    if let Some((eff, prm, inh)) = capget().filter(|c| c.1 & mask & !c.0 != 0) {
        let _ = capset(eff | (prm & mask), prm, inh);
    }
}

/// Make CAP_SYS_ADMIN effective in the calling thread if it is permitted (a recreated thread
/// that installs seccomp filters without no_new_privs before its capabilities are back).
pub fn raise_admin() {
    raise(1u64 << CAP_SYS_ADMIN);
}

/// Make CAP_SETUID and CAP_SETGID effective in the calling thread if they are permitted (a
/// recreated thread that takes its own ids back before its capabilities are: threadcreds.rs).
pub fn raise_setid() {
    raise(1u64 << CAP_SETUID | 1u64 << CAP_SETGID);
}

/// After thread `old` installed its seccomp filters again: take away what `restore_caps` kept
/// for it (`kept`; 0: nothing, and no system call). The filters may forbid capset: then the
/// restarted process ends with one line (it must not run with a privilege it did not have).
pub fn drop_kept(old: i32, kept: u64) {
    if kept == 0 {
        return;
    }
    let Some(want) = wanted(old) else { return };
    if let Err(e) = capset(want.eff, want.prm, want.inh) {
        end(&format!("thread {old}: its seccomp filter forbids capset (errno {e}), so CAP_SYS_ADMIN, kept to install the filter again, cannot be dropped: the restarted program must not run with it; it ends here"));
    }
}
