//! Seccomp filters the program installs. The kernel does not give a filter back without
//! CAP_SYS_ADMIN, so the libc entry points that install one, prctl(PR_SET_SECCOMP,
//! SECCOMP_MODE_FILTER) and syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER) (the `syscall` hook is
//! in threadattrs.rs), note each filter's BPF program, its flags and the filter it was stacked
//! on in a table of the runtime's own memory, which the image holds.
//!
//! Each thread, when it stops, finds the chain of filters it runs under: the kernel's count
//! (Seccomp_filters in /proc/thread-self/status, less those the process had when it started,
//! which a restart's own environment gives too) is the chain's length; the chain is the one the
//! thread installed last itself or a TSYNC gave it, or else the only noted filter at that
//! depth (a thread inherits its creator's chain). A thread whose chain cannot be told, or that
//! runs under a filter installed some other way (a raw system call), makes the checkpoint
//! refuse in one line naming it: its restart would run without its filter.
//!
//! Strict mode (read, write, exit and rt_sigreturn only) is stopped another way (threads.rs,
//! `stop_strict`); the checkpoint thread notes it in the thread's `Mine` (`set_strict`), and the
//! thread that replaces it enters strict mode again as the very last call before it returns
//! into the program (`reinstall`). The libc entry points that enter it (prctl, syscall) note the
//! thread's attributes first, which it can no longer read itself (`strict_call`).
//!
//! After a restart each recreated thread installs its chain again, root first, as the last
//! thing before it returns into the program (after no_new_privs is set again: a filter could
//! forbid the runtime's own calls). The filters every program thread ran under (the longest
//! chain all of them share: one inherited or given by a TSYNC) are shared again, as the kernel
//! shares a filter only between a thread and the threads it creates after installing it: one
//! recreated thread installs that shared part once its own state is back, then creates the
//! others (threads.rs, `spawn_deferred`), which inherit it and install only the rest of their
//! chain. A TSYNC the program asks for after a restart then works as before (the kernel
//! requires every other thread to run under an ancestor of the caller's filter). The checkpoint
//! thread runs under none of them (it never did unless a TSYNC gave it some: then it no longer
//! does).

use crate::gate;
use crate::log::{log, ERROR};
use crate::sys::{self, syscall};
use std::cell::{Cell, UnsafeCell};
use std::ffi::c_long;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU32, AtomicU64, Ordering};

const SECCOMP_MODE_STRICT: c_long = 1;
const SECCOMP_MODE_FILTER: c_long = 2;
const SECCOMP_SET_MODE_STRICT: c_long = 0;
const SECCOMP_SET_MODE_FILTER: c_long = 1;
const FLAG_TSYNC: u32 = 1;
const FLAG_LOG: u32 = 2;
const FLAG_SPEC_ALLOW: u32 = 4;
const FLAG_NEW_LISTENER: u32 = 8;

const MAX_FILTERS: usize = 64;
/// Bytes of BPF programs the table holds (a program is at most 4096 instructions of 8 bytes).
const POOL: usize = 256 * 1024;
/// No parent: the filter is the first of the program's in its chain.
const ROOT: i32 = -1;
/// The filter it was stacked on is not known: its chain cannot be given back.
const UNKNOWN: i32 = -2;

#[derive(Clone, Copy)]
struct Node {
    parent: i32,
    depth: u32,
    flags: u32,
    off: u32,
    /// Instructions (struct sock_filter, 8 bytes each).
    len: u32,
}

struct Table {
    nodes: [Node; MAX_FILTERS],
    pool: [u8; POOL],
}

struct Shared(UnsafeCell<Table>);
// SAFETY: nodes are appended under LOCK and published through COUNT; a published node and its
// pool bytes are never written again.
unsafe impl Sync for Shared {}

static TABLE: Shared = Shared(UnsafeCell::new(Table { nodes: [Node { parent: 0, depth: 0, flags: 0, off: 0, len: 0 }; MAX_FILTERS], pool: [0; POOL] }));
static COUNT: AtomicU32 = AtomicU32::new(0);
static POOL_USED: AtomicU32 = AtomicU32::new(0);
/// Appending to the table (taken by a fork too: forklock.rs).
pub(crate) static LOCK: crate::forklock::RawLock = crate::forklock::RawLock::new();
/// A filter was installed that the table could not hold (or a listener's): no checkpoint.
static LOST: AtomicBool = AtomicBool::new(false);
static SEQ: AtomicU32 = AtomicU32::new(1);
/// The last TSYNC install: sequence << 32 | (node + 1); 0: none.
static TSYNC: AtomicU64 = AtomicU64::new(0);
/// Filters every thread of the process had when it started (or was restarted): not ours.
static BASE: AtomicU32 = AtomicU32::new(0);
/// The first thread found at a stop whose filters cannot be given back (0: none), and why.
static REFUSED: AtomicI32 = AtomicI32::new(0);
static WHY: AtomicU32 = AtomicU32::new(0);
const WHY_UNSEEN: u32 = 2;
const WHY_LOST: u32 = 3;

/// Per thread: the last filter it installed itself (sequence << 32 | (node + 1)), and the chain
/// top it was found under at its last stop (node + 1; 0: none), which a restart installs.
/// Strict mode: `entering` from just before the thread asks for it through libc (kept if it
/// took), with the attributes it had then (`attrs`, valid when `noted`); `strict`, set by the
/// checkpoint thread while the thread is stopped, says it ran in strict mode at its last stop.
struct Mine {
    own: Cell<u64>,
    top: Cell<u32>,
    entering: Cell<bool>,
    noted: Cell<bool>,
    attrs: Cell<ckpt_image::ThreadAttrs>,
    strict: AtomicBool,
}

thread_local! {
    static MINE: Mine = const {
        Mine {
            own: Cell::new(0),
            top: Cell::new(0),
            entering: Cell::new(false),
            noted: Cell::new(false),
            attrs: Cell::new(ckpt_image::ThreadAttrs::ZERO),
            strict: AtomicBool::new(false),
        }
    };
}

/// Where MINE lies from the thread pointer (static TLS: the same offset in every thread), so
/// that a signal handler finds it without __tls_get_addr (see threadattrs.rs).
static MINE_TLS_OFFSET: AtomicI64 = AtomicI64::new(i64::MIN);

fn mine() -> Option<&'static Mine> {
    mine_at(sys::arch_get_fs())
}

/// The `Mine` of the thread whose TLS base is `fs`: the caller's own, or that of a thread
/// stopped (or not yet running) whose fields the checkpoint or restart code reads or sets.
fn mine_at(fs: u64) -> Option<&'static Mine> {
    let off = MINE_TLS_OFFSET.load(Ordering::Relaxed);
    if off == i64::MIN || fs == 0 {
        return None;
    }
    // SAFETY: MINE of that thread, at the same offset from its thread pointer as in the thread
    // that measured it (static TLS); it lives as long as the thread. Another thread touches it
    // only while its owner is parked in the stop handler or not running yet.
    Some(unsafe { &*((fs as i64).wrapping_add(off) as *const Mine) })
}

/// In the stop handler (no system call): whether the calling thread asked for strict mode
/// through libc (it may be in it: only read and write are safe).
pub fn entering() -> bool {
    sys::glibc_thread_pointer().and_then(mine_at).is_some_and(|m| m.entering.get())
}

/// The attributes thread `fs` (TLS base; stopped) had when it entered strict mode through
/// libc, which it cannot have changed since; None: it entered some other way.
pub fn noted_attrs(fs: u64) -> Option<ckpt_image::ThreadAttrs> {
    mine_at(fs).filter(|m| m.noted.get()).map(|m| m.attrs.get())
}

/// On the checkpoint thread, thread `fs` (TLS base) stopped: whether it runs in strict mode,
/// which the thread that replaces it at a restart enters again (`reinstall`).
pub fn set_strict(fs: u64, on: bool) {
    if let Some(m) = mine_at(fs) {
        m.strict.store(on, Ordering::Release);
    }
}

/// Enter strict mode the way the program asked (`enter`): the thread's attributes are noted
/// first (it cannot read them once in strict mode), and it is marked `entering`, so that its
/// stop handler makes no other call than read and write from now on, whether or not the
/// checkpoint thread saw it in strict mode yet.
fn strict_call(enter: impl FnOnce() -> c_long) -> c_long {
    let Some(m) = mine() else { return enter() };
    m.attrs.set(crate::threadattrs::capture());
    m.noted.set(true);
    m.entering.set(true);
    let r = enter();
    if r != 0 {
        m.entering.set(false);
    }
    r
}

/// In the constructor, on the main thread.
pub fn resolve() {
    let at = MINE.with(|m| m as *const Mine as i64);
    MINE_TLS_OFFSET.store(at.wrapping_sub(sys::arch_get_fs() as i64), Ordering::Relaxed);
    BASE.store(own_count().unwrap_or(0), Ordering::Relaxed);
}

/// After a restart, on the checkpoint thread, before it recreates the others: the filters the
/// restart's environment gives every thread.
/// Whether the program installed a seccomp filter since it started (background snapshots then
/// fall back to a forked one: a filter may forbid what syscall user dispatch needs).
pub fn installed() -> bool {
    COUNT.load(Ordering::Relaxed) > 0 || LOST.load(Ordering::Relaxed)
}

pub fn after_restart() {
    BASE.store(own_count().unwrap_or(0), Ordering::Relaxed);
}

/// The calling thread's seccomp mode, filter count and no_new_privs (Seccomp, Seccomp_filters
/// and NoNewPrivs in its status; raw system calls and a stack buffer: a signal handler calls
/// this). None: /proc cannot be read.
pub fn own_status() -> Option<(u32, u32, u32)> {
    let fd = sys::open(c"/proc/thread-self/status", libc::O_RDONLY, 0).ok()?;
    let mut buf = [0u8; 4096];
    let mut n = 0;
    while n < buf.len() {
        match sys::read(fd, &mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    sys::close(fd);
    let field = |key: &[u8]| -> Option<u32> {
        let i = buf[..n].windows(key.len()).position(|w| w == key)? + key.len();
        let digits = buf[i..n].iter().skip_while(|b| b.is_ascii_whitespace()).take_while(|b| b.is_ascii_digit());
        Some(digits.fold(0u32, |v, d| v.wrapping_mul(10).wrapping_add((d - b'0') as u32)))
    };
    Some((field(b"\nSeccomp:")?, field(b"\nSeccomp_filters:")?, field(b"\nNoNewPrivs:")?))
}

fn own_count() -> Option<u32> {
    own_status().map(|s| s.1)
}

fn node(i: i32) -> Node {
    // SAFETY: a published node (i < COUNT), never written again.
    unsafe { (*TABLE.0.get()).nodes[i as usize] }
}

fn seq_node(v: u64) -> Option<(u32, i32)> {
    (v != 0).then(|| ((v >> 32) as u32, (v as u32) as i32 - 1))
}

/// The top of the chain of `depth` filters the calling thread runs under: what it or a TSYNC
/// installed last, if that is as deep, else the only noted filter at that depth. None: it
/// cannot be told.
fn find_top(depth: u32) -> Option<i32> {
    if depth == 0 {
        return Some(ROOT);
    }
    let own = mine().and_then(|m| seq_node(m.own.get()));
    let known = match (own, seq_node(TSYNC.load(Ordering::Acquire))) {
        (Some(a), Some(b)) => Some(if a.0 > b.0 { a.1 } else { b.1 }),
        (a, b) => a.or(b).map(|x| x.1),
    };
    if let Some(k) = known.filter(|&k| node(k).depth == depth) {
        return Some(k);
    }
    let n = COUNT.load(Ordering::Acquire) as i32;
    let mut at = (0..n).filter(|&i| node(i).depth == depth);
    match (at.next(), at.next()) {
        (Some(i), None) => Some(i),
        _ => None,
    }
}

/// Whether every filter of the chain ending at `top` is known.
fn complete(mut top: i32) -> bool {
    while top >= 0 {
        top = node(top).parent;
    }
    top == ROOT
}

#[repr(C)]
struct SockFprog {
    len: u16,
    filter: *const u8,
}

/// Install a filter the way the program asked (`install`), and note it when it took.
fn noted(flags: u32, prog: c_long, install: impl FnOnce() -> c_long) -> c_long {
    let _g = gate::enter();
    let r = install();
    let took = if flags & FLAG_TSYNC != 0 { r == 0 } else { r >= 0 };
    if !took {
        return r;
    }
    if flags & FLAG_NEW_LISTENER != 0 {
        LOST.store(true, Ordering::Release);
        return r;
    }
    let depth = own_count().map(|c| c.saturating_sub(BASE.load(Ordering::Relaxed)));
    LOCK.lock();
    let i = COUNT.load(Ordering::Relaxed) as usize;
    // SAFETY: the program's sock_fprog, which the kernel has just read.
    let p = unsafe { &*(prog as *const SockFprog) };
    let bytes = p.len as usize * 8;
    let off = POOL_USED.load(Ordering::Relaxed) as usize;
    match depth {
        Some(d) if d > 0 && i < MAX_FILTERS && off + bytes <= POOL => {
            let parent = find_top(d - 1).unwrap_or(UNKNOWN);
            // SAFETY: slot i and pool bytes off.. are unpublished and ours under LOCK; the
            // program's filter array has p.len instructions.
            unsafe {
                let t = &mut *TABLE.0.get();
                std::ptr::copy_nonoverlapping(p.filter, t.pool.as_mut_ptr().add(off), bytes);
                t.nodes[i] = Node { parent, depth: d, flags, off: off as u32, len: p.len as u32 };
            }
            POOL_USED.store((off + bytes) as u32, Ordering::Relaxed);
            COUNT.store(i as u32 + 1, Ordering::Release);
            let v = ((SEQ.fetch_add(1, Ordering::Relaxed) as u64) << 32) | (i as u64 + 1);
            if let Some(m) = mine() {
                m.own.set(v);
            }
            if flags & FLAG_TSYNC != 0 {
                TSYNC.store(v, Ordering::Release);
            }
        }
        _ => LOST.store(true, Ordering::Release),
    }
    LOCK.unlock();
    r
}

/// From the `syscall` hook: seccomp(2) through libc's syscall().
pub fn seccomp_call(op: c_long, flags: c_long, prog: c_long, install: impl FnOnce() -> c_long) -> c_long {
    match op {
        SECCOMP_SET_MODE_FILTER => noted(flags as u32, prog, install),
        SECCOMP_SET_MODE_STRICT if flags == 0 && prog == 0 => strict_call(install),
        _ => install(),
    }
}

static REAL_PRCTL: crate::hooks::RealFn = crate::hooks::RealFn::new(b"prctl\0");
type PrctlFn = unsafe extern "C" fn(libc::c_int, libc::c_ulong, libc::c_ulong, libc::c_ulong, libc::c_ulong) -> libc::c_int;

/// libc's prctl(): passed on unchanged; a seccomp filter it installs is noted.
/// (Declared with five arguments: on x86-64 a variadic call passes them as a plain call does.)
///
/// # Safety
/// libc's contract for prctl.
#[no_mangle]
pub unsafe extern "C" fn prctl(option: libc::c_int, a: libc::c_ulong, b: libc::c_ulong, c: libc::c_ulong, d: libc::c_ulong) -> libc::c_int {
    // SAFETY: forwarding to libc's prctl with the same arguments.
    let real = || unsafe { std::mem::transmute::<usize, PrctlFn>(REAL_PRCTL.get())(option, a, b, c, d) };
    if option == libc::PR_SET_SECCOMP && a as c_long == SECCOMP_MODE_FILTER {
        return noted(0, b as c_long, || real() as c_long) as libc::c_int;
    }
    if option == libc::PR_SET_SECCOMP && a as c_long == SECCOMP_MODE_STRICT {
        return strict_call(|| real() as c_long) as libc::c_int;
    }
    real()
}

/// Whether thread `tid` runs in seccomp strict mode (read, write, exit and sigreturn only: the
/// stop handler's first other call would end the thread, silently). Before it is signaled.
pub fn strict_mode(tid: i32) -> bool {
    strict_in(&sys::read_file(&sys::cpath(&[b"/proc/self/task/", &sys::decimal(tid), b"/status"])).unwrap_or_default())
}

/// Whether a /proc status text says strict mode.
pub fn strict_in(status: &[u8]) -> bool {
    status.windows(11).any(|w| w == b"\nSeccomp:\t1")
}

/// Whether a thread of the process runs in strict mode now (a background snapshot cannot
/// dispatch its calls: it cannot turn syscall user dispatch on).
pub fn any_strict() -> bool {
    let names = sys::list_dir(&sys::cpath(&[b"/proc/self/task"])).unwrap_or_default();
    names.iter().filter_map(|n| std::str::from_utf8(n).ok()?.parse::<i32>().ok()).any(strict_mode)
}

/// At a stop: forget the last stop's verdict.
pub fn reset() {
    REFUSED.store(0, Ordering::Release);
}

fn refuse(tid: i32, why: u32) {
    if REFUSED.compare_exchange(0, tid, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
        WHY.store(why, Ordering::Release);
    }
}

/// In the stop handler (raw system calls, no allocation): the chain the thread runs under.
pub fn at_stop(tid: i32) {
    let Some(m) = mine() else { return };
    m.top.set(0);
    let status = own_status();
    // Without /proc: prctl, which a filter may forbid too (then the thread surely has one).
    let mode = status.map(|s| s.0 as i64).unwrap_or_else(|| syscall!(libc::SYS_prctl, libc::PR_GET_SECCOMP, 0, 0, 0, 0).unwrap_or(2));
    match mode {
        // (Strict mode: such a thread stops through threads::stop_strict, never here.)
        0 | 1 => {}
        _ => {
            if LOST.load(Ordering::Acquire) {
                return refuse(tid, WHY_LOST);
            }
            let top = match status {
                Some((_, c, _)) => c.checked_sub(BASE.load(Ordering::Relaxed)).and_then(find_top),
                None => mine().and_then(|m| seq_node(m.own.get())).map(|x| x.1),
            };
            match top {
                Some(t) if t == ROOT || (t >= 0 && complete(t)) => m.top.set((t + 1) as u32),
                _ => refuse(tid, WHY_UNSEEN),
            }
        }
    }
}

/// After every thread stopped: why the checkpoint cannot be taken, if it cannot.
pub fn refusal() -> Option<String> {
    let tid = REFUSED.load(Ordering::Acquire);
    if tid == 0 {
        return None;
    }
    let what = match WHY.load(Ordering::Acquire) {
        WHY_LOST => "runs under a seccomp filter ckpt could not note (more than 64 filters, 256 KiB of them, or a user-notification listener)",
        _ => "runs under a seccomp filter ckpt did not see installed (a raw system call?) or cannot tell apart",
    };
    Some(format!("thread {tid} {what}: a restart would run it without its filter; no checkpoint is taken"))
}

/// The chain ending at `top`, root first: (nodes, count).
fn chain_of(top: i32) -> ([i32; MAX_FILTERS], usize) {
    let mut chain = [0i32; MAX_FILTERS];
    let mut n = 0;
    let mut at = top;
    while at >= 0 && n < MAX_FILTERS {
        chain[n] = at;
        n += 1;
        at = node(at).parent;
    }
    chain[..n].reverse();
    (chain, n)
}

/// The last filter of the chain every recreated thread shares (node + 1; 0: none), which the
/// thread that creates the others installs (`install_shared`).
static SHARED: AtomicU32 = AtomicU32::new(0);

/// At a restart, before the threads of `fs_bases` (their TLS bases, in the image) are made
/// again: whether they all ran under a common chain of filters (two threads at least), which
/// one of them must install before it creates the others so that they share it again.
pub fn plan_shared(fs_bases: impl Iterator<Item = u64>) -> bool {
    SHARED.store(0, Ordering::Relaxed);
    let off = MINE_TLS_OFFSET.load(Ordering::Relaxed);
    if off == i64::MIN {
        return false;
    }
    let mut common: Option<([i32; MAX_FILTERS], usize)> = None;
    let mut threads = 0;
    for fs in fs_bases {
        // SAFETY: MINE of that thread, in its TLS, restored with the image's memory; nothing
        // runs on it yet.
        let top = unsafe { &*((fs as i64).wrapping_add(off) as *const Mine) }.top.get() as i32 - 1;
        if top < 0 {
            return false;
        }
        let (chain, n) = chain_of(top);
        threads += 1;
        common = Some(match common {
            None => (chain, n),
            Some((c, k)) => (c, c[..k].iter().zip(&chain[..n]).take_while(|(a, b)| a == b).count()),
        });
    }
    match common {
        Some((c, k)) if k > 0 && threads > 1 => {
            SHARED.store(c[k - 1] as u32 + 1, Ordering::Relaxed);
            true
        }
        _ => false,
    }
}

/// Install filters `chain` (root first); a filter that does not take ends the restarted
/// process with one line naming thread `old_tid`: it must not run without it.
fn install_chain(chain: &[i32], old_tid: i32) {
    for &i in chain {
        let f = node(i);
        // SAFETY: the pool bytes of a published node.
        let filter = unsafe { (std::ptr::addr_of!((*TABLE.0.get()).pool) as *const u8).add(f.off as usize) };
        let prog = SockFprog { len: f.len as u16, filter };
        if let Err(e) = syscall!(libc::SYS_seccomp, SECCOMP_SET_MODE_FILTER, f.flags & (FLAG_LOG | FLAG_SPEC_ALLOW), &prog as *const SockFprog) {
            log!(ERROR, "thread {old_tid}: its seccomp filter cannot be installed again (errno {e}): the restarted program must not run without it; it ends here");
            let _ = syscall!(libc::SYS_exit_group, 1);
        }
    }
}

/// The recreated thread `old_tid` that creates the others, before it does: install the chain
/// they all share (`plan_shared`), which they inherit.
pub fn install_shared(old_tid: i32) {
    let top = SHARED.load(Ordering::Relaxed) as i32 - 1;
    if top >= 0 {
        let (chain, n) = chain_of(top);
        install_chain(&chain[..n], old_tid);
    }
}

/// Whether the calling (recreated) thread installs filters again (`install_shared` or
/// `reinstall`), which needs no_new_privs or CAP_SYS_ADMIN; strict mode needs neither.
pub fn has_chain() -> bool {
    mine().is_some_and(|m| m.top.get() != 0 && !m.strict.load(Ordering::Acquire))
}

/// A restarted thread, the last thing before it returns into the program (no_new_privs is
/// set again by now): install the chain it ran under, root first, but the part it shares with
/// every thread (installed already, `install_shared`); or enter strict mode, if it ran in it,
/// as the very last call (the caller then only returns through its signal frame, with
/// rt_sigreturn, which strict mode allows).
pub fn reinstall(old_tid: i32) {
    let Some(m) = mine() else { return };
    if m.strict.load(Ordering::Acquire) {
        if let Err(e) = syscall!(libc::SYS_prctl, libc::PR_SET_SECCOMP, SECCOMP_MODE_STRICT, 0, 0, 0) {
            log!(ERROR, "thread {old_tid}: seccomp strict mode cannot be entered again (errno {e}): the restarted program must not run without it; it ends here");
            let _ = syscall!(libc::SYS_exit_group, 1);
        }
        return;
    }
    let top = m.top.get() as i32 - 1;
    if top < 0 {
        return;
    }
    let (chain, n) = chain_of(top);
    let shared = SHARED.load(Ordering::Relaxed) as i32 - 1;
    let from = chain[..n].iter().position(|&i| i == shared).map_or(0, |p| p + 1);
    install_chain(&chain[from..n], old_tid);
    m.own.set(((SEQ.fetch_add(1, Ordering::Relaxed) as u64) << 32) | (top as u64 + 1));
}
