//! Blocked system calls that a checkpoint interrupts: epoll_wait, poll, select, nanosleep, pause,
//! sigsuspend, sigtimedwait, futex, semop, msgrcv, reads with a timeout... The stop signal's
//! handler makes such a call return EINTR (under SA_RESTART the kernel restarts only ERESTARTSYS
//! calls, and its restart block does not survive the handler). This module makes the
//! interruption invisible, in the running program and after a restart, for every thread.
//!
//! Before signalling a thread, the checkpoint thread reads /proc/self/task/TID/syscall
//! (`observe`): the only place that names the blocked call (orig_rax is not in the signal frame).
//! A thread found running may enter a call just before the signal comes; it is looked at again
//! for a moment, and a call /proc could not name is known by its site when that is a
//! `mov $NR, %eax; syscall` that /proc has shown blocked in NR before, or that lies in libc's
//! wrapper for NR (learnt from its code at start: a program's first checkpoint knows them too).
//! In the stop handler, before the thread parks (so that the image holds the result), `prepare`
//! matches the frame (rip right after a `syscall` instruction, rax = -EINTR, same sp and
//! arguments) against that record, plans the call again with the time that was left, and
//! rewrites the frame: after rt_sigreturn the thread enters `resume` as if `resume` were a signal
//! handler called on that very frame (rsp at the frame's return address, libc's __restore_rt).
//! `resume` puts the original registers back into the frame first (so an unwinder, for thread
//! cancellation, sees a signal frame over the program's call), re-issues the call, stores its
//! result in the frame's rax and returns: __restore_rt restores every register, the FPU state
//! and the signal mask, and the program continues after its `syscall` instruction with the
//! call's real result.
//!
//! Time: a call's remaining time comes from the kernel where it writes it back (select, pselect,
//! ppoll, nanosleep's `rem`, which glibc's sleep() points at its request), else from the start
//! time the wait hooks record (waithooks.rs), else the whole timeout is waited again (later,
//! never earlier). It is kept as a CLOCK_MONOTONIC deadline; at restart every live deadline is
//! moved by the time between the checkpoint and the restart (`after_restart`), so the call waits
//! what was left when the image was taken, on any boot.
//!
//! Signals: `resume` runs with every signal blocked but the stop signal. Calls that take a signal
//! mask (pause and poll/select/epoll_wait, turned into sigsuspend/ppoll/pselect6/epoll_pwait) get
//! the program's mask atomically, as the original call had it; for the others the program's mask
//! is set just before the call, after checking that no signal for the program is pending (one
//! that arrived during the checkpoint: the call then returns EINTR, as it would have). A call the
//! program's own signal interrupts returns EINTR; one that the next checkpoint interrupts (the
//! stop handler finds rip in `ckpt_reissue`) is issued again.

use crate::sys::syscall;
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU32, AtomicU64, Ordering};

const MAX: usize = crate::threads::MAX_THREADS;
const EINTR: i64 = -(libc::EINTR as i64);
/// The stop signal's bit in a kernel sigset.
const STOP_BIT: u64 = crate::sighooks::stop_bit();
/// Restarts this program has been through (a record of another process's clock is not ours).
static RESTARTS: AtomicU64 = AtomicU64::new(0);
/// CLOCK_MONOTONIC (ns) when the threads of the last checkpoint had all stopped.
static STOPPED_AT: AtomicU64 = AtomicU64::new(0);

// ---- what /proc said about each thread before it was signalled ----

#[derive(Clone, Copy, Default)]
struct Seen {
    nr: i64,
    args: [u64; 6],
    sp: u64,
    pc: u64,
}

struct SeenTable(UnsafeCell<[Seen; MAX]>);
// SAFETY: entry i is written by the checkpoint thread before it publishes SEEN_TID[i] (release)
// and signals the thread; the thread reads it after seeing its tid there (acquire).
unsafe impl Sync for SeenTable {}
static SEEN: SeenTable = SeenTable(UnsafeCell::new([Seen { nr: 0, args: [0; 6], sp: 0, pc: 0 }; MAX]));
static SEEN_TID: [AtomicI32; MAX] = [const { AtomicI32::new(0) }; MAX];
static NSEEN: AtomicU32 = AtomicU32::new(0);

/// A new stop begins: forget what the last one saw.
pub fn reset() {
    WAIT_BUDGET.store(WAIT_FOR_BLOCKED_NS, Ordering::Relaxed);
    let n = (NSEEN.swap(0, Ordering::AcqRel) as usize).min(MAX);
    for t in &SEEN_TID[..n] {
        t.store(0, Ordering::Relaxed);
    }
}

/// All threads have stopped: the moment the image's deadlines are measured from.
pub fn stopped() {
    STOPPED_AT.store(crate::checkpoint::now_ns(), Ordering::Release);
}

/// How long, in all, a checkpoint waits for running threads to block (see `observe`).
const WAIT_FOR_BLOCKED_NS: u64 = 2_000_000;
/// ... and for one thread.
const WAIT_PER_THREAD_NS: u64 = 100_000;
/// What is left of WAIT_FOR_BLOCKED_NS in this checkpoint.
static WAIT_BUDGET: AtomicU64 = AtomicU64::new(0);

/// Record the system call `tid` is blocked in, if any (checkpoint thread, just before it sends
/// the thread the stop signal). A thread found running may enter a call right before the signal
/// comes, and that call could not be told: a running thread is looked at again, for a short
/// while, until it blocks (busy threads that wait in short calls are caught in one), else it
/// is signalled running (threads that compute, and rarely make a call).
pub fn observe(tid: i32) {
    let path = crate::sys::cpath(&[b"/proc/self/task/", &crate::sys::decimal(tid), b"/syscall"]);
    let t0 = crate::checkpoint::now_ns();
    let seen = loop {
        // (The program's threads run: one that forks now gives its child a copy of this fd,
        // which the child closes as it does read_file's.)
        let mut buf = [0u8; 256];
        let Ok(n) = crate::sys::read_start(&path, &mut buf) else { return };
        if let Some(seen) = parse_syscall_line(&buf[..n]) {
            break seen;
        }
        let spent = crate::checkpoint::now_ns() - t0;
        if spent > WAIT_PER_THREAD_NS || spent > WAIT_BUDGET.load(Ordering::Relaxed) {
            let left = WAIT_BUDGET.load(Ordering::Relaxed);
            WAIT_BUDGET.store(left.saturating_sub(spent), Ordering::Relaxed);
            return;
        }
        let _ = syscall!(libc::SYS_sched_yield);
    };
    let spent = crate::checkpoint::now_ns() - t0;
    WAIT_BUDGET.store(WAIT_BUDGET.load(Ordering::Relaxed).saturating_sub(spent), Ordering::Relaxed);
    record(tid, seen);
}

/// What /proc said of thread `tid` before it was signalled, as another process read it: the
/// coordinator of a process tree, while this process was stopped by job control (tree.rs).
/// Taken before `observe` looks at the thread (the first record of a thread is its own).
pub fn adopt(tid: i32, line: &[u8]) {
    if let Some(seen) = parse_syscall_line(line) {
        record(tid, seen);
    }
}

fn record(tid: i32, seen: Seen) {
    learn(seen.pc, seen.nr);
    let i = NSEEN.fetch_add(1, Ordering::AcqRel) as usize;
    if i >= MAX {
        return;
    }
    // SAFETY: index i was claimed above; see SeenTable.
    unsafe { (*SEEN.0.get())[i] = seen };
    SEEN_TID[i].store(tid, Ordering::Release);
}

/// "nr arg1 .. arg6 sp pc" (hex but nr), as /proc/PID/task/TID/syscall prints a blocked call;
/// None for "running" or "-1 sp pc" (blocked outside a system call).
fn parse_syscall_line(line: &[u8]) -> Option<Seen> {
    let text = std::str::from_utf8(line).ok()?;
    let mut it = text.split_ascii_whitespace();
    let nr: i64 = it.next()?.parse().ok()?;
    if nr < 0 {
        return None;
    }
    let mut v = [0u64; 8];
    for x in v.iter_mut() {
        *x = u64::from_str_radix(it.next()?.strip_prefix("0x")?, 16).ok()?;
    }
    Some(Seen { nr, args: [v[0], v[1], v[2], v[3], v[4], v[5]], sp: v[6], pc: v[7] })
}

// ---- system call sites ----
//
// A thread the checkpoint thread found running may enter a call just before the stop signal
// comes: that call returns EINTR at once and /proc never named it. For the usual sites, glibc's
// wrappers, the number can still be known: `mov $NR, %eax; syscall` names it in the code, and a
// site that /proc has shown blocked with that very number is taken to be such a site. Both
// must agree before a call is issued again on the strength of a site alone; libc's wrappers'
// sites are learnt at start from the function named for the call (`learn_libc_sites`).

const SITES: usize = 256;
static SITE_PC: [AtomicU64; SITES] = [const { AtomicU64::new(0) }; SITES];
/// The number /proc showed at that site (-1: more than one: a site that takes it from a register).
static SITE_NR: [AtomicI64; SITES] = [const { AtomicI64::new(0) }; SITES];

/// The number a `mov $NR, %eax` right before the `syscall` instruction that ends at `pc` loads.
fn coded_nr(pc: u64) -> Option<i64> {
    // The 7 bytes must lie in the page of the syscall instruction (or it may start a mapping).
    if pc < 7 || (pc - 7) / 4096 != (pc - 1) / 4096 {
        return None;
    }
    // SAFETY: the thread was stopped in a system call at pc: its code page is mapped.
    let b = unsafe { std::ptr::read_unaligned((pc - 7) as *const [u8; 7]) };
    (b[0] == 0xb8 && b[5..] == [0x0f, 0x05]).then(|| u32::from_le_bytes([b[1], b[2], b[3], b[4]]) as i64)
}

fn site_slot(pc: u64) -> Option<usize> {
    let h = (pc.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as usize % SITES;
    (0..SITES).map(|k| (h + k) % SITES).find(|&i| {
        let p = SITE_PC[i].load(Ordering::Acquire);
        p == pc || p == 0
    })
}

/// /proc showed a thread blocked in call `nr` at `pc` (checkpoint thread).
fn learn(pc: u64, nr: i64) {
    if coded_nr(pc) != Some(nr) {
        return;
    }
    let Some(i) = site_slot(pc) else { return };
    if SITE_PC[i].load(Ordering::Acquire) == 0 {
        SITE_NR[i].store(nr, Ordering::Relaxed);
        SITE_PC[i].store(pc, Ordering::Release);
    } else if SITE_NR[i].load(Ordering::Relaxed) != nr {
        SITE_NR[i].store(-1, Ordering::Relaxed);
    }
}

/// libc's wrappers of the calls `plan` issues again, with the number each one's own code loads.
const WRAPPERS: &[(&[u8], i64)] = &[
    (b"poll\0", libc::SYS_poll),
    (b"ppoll\0", libc::SYS_ppoll),
    (b"select\0", libc::SYS_select),
    // (glibc's select makes pselect6.)
    (b"select\0", libc::SYS_pselect6),
    (b"pselect\0", libc::SYS_pselect6),
    (b"epoll_wait\0", libc::SYS_epoll_wait),
    (b"epoll_pwait\0", libc::SYS_epoll_pwait),
    (b"epoll_pwait2\0", libc::SYS_epoll_pwait2),
    (b"nanosleep\0", libc::SYS_nanosleep),
    (b"clock_nanosleep\0", libc::SYS_clock_nanosleep),
    (b"pause\0", libc::SYS_pause),
    (b"sigsuspend\0", libc::SYS_rt_sigsuspend),
    (b"sigtimedwait\0", libc::SYS_rt_sigtimedwait),
    (b"sigwaitinfo\0", libc::SYS_rt_sigtimedwait),
    (b"semop\0", libc::SYS_semtimedop),
    (b"semtimedop\0", libc::SYS_semtimedop),
    (b"msgrcv\0", libc::SYS_msgrcv),
    (b"msgsnd\0", libc::SYS_msgsnd),
    (b"mq_timedreceive\0", libc::SYS_mq_timedreceive),
    (b"mq_timedsend\0", libc::SYS_mq_timedsend),
    (b"io_getevents\0", libc::SYS_io_getevents),
    (b"read\0", libc::SYS_read),
    (b"readv\0", libc::SYS_readv),
    (b"pread64\0", libc::SYS_pread64),
    (b"preadv\0", libc::SYS_preadv),
    (b"write\0", libc::SYS_write),
    (b"writev\0", libc::SYS_writev),
    (b"recv\0", libc::SYS_recvfrom),
    (b"recvfrom\0", libc::SYS_recvfrom),
    (b"recvmsg\0", libc::SYS_recvmsg),
    (b"recvmmsg\0", libc::SYS_recvmmsg),
    (b"send\0", libc::SYS_sendto),
    (b"sendto\0", libc::SYS_sendto),
    (b"sendmsg\0", libc::SYS_sendmsg),
    (b"sendmmsg\0", libc::SYS_sendmmsg),
    (b"accept\0", libc::SYS_accept),
    (b"accept4\0", libc::SYS_accept4),
    (b"connect\0", libc::SYS_connect),
    (b"wait4\0", libc::SYS_wait4),
    (b"waitpid\0", libc::SYS_wait4),
    (b"waitid\0", libc::SYS_waitid),
    (b"flock\0", libc::SYS_flock),
];

/// How far into a wrapper its call sites are looked for.
const WRAPPER_SCAN: usize = 512;

/// At init (one thread, before any checkpoint): the call sites of libc's wrappers are learnt from
/// their code, each `mov $NR, %eax; syscall` in the function named for NR. /proc alone taught a
/// site only once it had shown a thread blocked there: at a program's first checkpoint, a thread
/// that /proc showed running (under load, one woken from its poll() but not yet on a CPU, still
/// in the call) and that the stop signal interrupted in its call got EINTR (busy_sleepers, once in
/// the full suite).
pub fn learn_libc_sites() {
    for &(name, nr) in WRAPPERS {
        // SAFETY: a NUL-terminated name; dlsym outside a checkpoint.
        let f = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr() as *const libc::c_char) } as u64;
        if f == 0 {
            continue;
        }
        let mut code = [0u8; WRAPPER_SCAN];
        let n = read_own(f, &mut code);
        for i in 1..n.saturating_sub(6) {
            // A REX prefix before 0xb8 makes it another register's mov (mov $NR, %r8d).
            if code[i] == 0xb8 && code[i + 5..i + 7] == [0x0f, 0x05] && !(0x40..=0x4f).contains(&code[i - 1]) {
                learn(f + i as u64 + 7, nr);
            }
        }
    }
}

/// Up to `buf.len()` bytes of this process's memory at `addr`, without faulting past the end of
/// a mapping (process_vm_readv stops at the first piece it cannot read): how many were read.
fn read_own(addr: u64, buf: &mut [u8; WRAPPER_SCAN]) -> usize {
    const PIECE: usize = 64;
    let base = buf.as_mut_ptr();
    // SAFETY: offsets inside buf.
    let local: [libc::iovec; WRAPPER_SCAN / PIECE] = std::array::from_fn(|k| libc::iovec { iov_base: unsafe { base.add(k * PIECE) }.cast(), iov_len: PIECE });
    let remote: [libc::iovec; WRAPPER_SCAN / PIECE] = std::array::from_fn(|k| libc::iovec { iov_base: (addr as usize + k * PIECE) as *mut libc::c_void, iov_len: PIECE });
    match syscall!(libc::SYS_process_vm_readv, crate::sys::getpid(), local.as_ptr(), local.len(), remote.as_ptr(), remote.len(), 0) {
        Ok(n) => (n as usize).min(WRAPPER_SCAN),
        Err(_) => 0,
    }
}

/// The call a thread interrupted at `pc` was in, known from its site alone.
fn site_nr(pc: u64) -> Option<i64> {
    let i = site_slot(pc)?;
    let nr = SITE_NR[i].load(Ordering::Relaxed);
    (SITE_PC[i].load(Ordering::Acquire) == pc && nr >= 0 && coded_nr(pc) == Some(nr)).then_some(nr)
}

fn seen_of(tid: i32) -> Option<Seen> {
    let n = (NSEEN.load(Ordering::Acquire) as usize).min(MAX);
    let i = SEEN_TID[..n].iter().position(|t| t.load(Ordering::Acquire) == tid)?;
    // SAFETY: published entry (see SeenTable); the checkpoint thread no longer writes it.
    Some(unsafe { (*SEEN.0.get())[i] })
}

/// Whether a thread was seen blocked in read or readv of an fd for which `same(fd)` holds, in
/// the stop under way: its call is made again as it was, past every read hook (inotifyq.rs).
pub fn reading(same: &dyn Fn(i32) -> bool) -> bool {
    let n = (NSEEN.load(Ordering::Acquire) as usize).min(MAX);
    (0..n).filter(|&i| SEEN_TID[i].load(Ordering::Acquire) != 0).any(|i| {
        // SAFETY: published entry (see SeenTable).
        let s = unsafe { (*SEEN.0.get())[i] };
        (s.nr == libc::SYS_read || s.nr == libc::SYS_readv) && same(s.args[0] as i32)
    })
}

// ---- records of re-issued calls ----

/// How a re-issued call waits.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// No timeout, or an absolute one in the arguments.
    Plain,
    /// Until `deadline`, passed as a timespec pointer (&Rec::ts) in argument `arg`.
    Timespec { arg: usize },
    /// Until `deadline`, passed as milliseconds in argument `arg`.
    Millis { arg: usize },
}

/// After the call: what the program's memory must show.
#[derive(Clone, Copy, PartialEq, Eq)]
enum After {
    Nothing,
    /// nanosleep/clock_nanosleep: on EINTR, the time left into this timespec (if not null).
    RemOnEintr(u64),
    /// ppoll/pselect6: the time left into this timespec, whatever the result.
    Timespec(u64),
    /// select: the time left into this timeval.
    Timeval(u64),
}

#[repr(C)]
struct Rec {
    used: AtomicU32,
    /// Set by the stop handler when a checkpoint interrupted this record's call.
    ckpt: AtomicU32,
    nr: i64,
    args: [u64; 6],
    wait: Wait,
    after: After,
    /// The call sets the signal mask itself (sigsuspend, ppoll, pselect6, epoll_pwait).
    atomic_mask: bool,
    /// CLOCK_MONOTONIC deadline in ns (Timespec/Millis waits and write-backs).
    deadline: u64,
    /// The frame, and what `prepare` changed in it.
    uc: u64,
    rip: u64,
    rsp: u64,
    rdi: u64,
    sigmask: u64,
    /// The program's signal mask during the call (sanitized), and pselect6's {mask, size}.
    mask: u64,
    sigarg: [u64; 2],
    ts: libc::timespec,
}

struct Pool(UnsafeCell<[Rec; MAX]>);
// SAFETY: a record is claimed with a compare-exchange on `used` by the stop handler of one thread
// and afterwards touched only by that thread (its `resume`, and its stop handler when a later
// checkpoint interrupts the call), until `resume` releases it; `after_restart` runs while no
// other thread exists.
unsafe impl Sync for Pool {}

static POOL: Pool = Pool(UnsafeCell::new([const { Rec {
    used: AtomicU32::new(0),
    ckpt: AtomicU32::new(0),
    nr: 0,
    args: [0; 6],
    wait: Wait::Plain,
    after: After::Nothing,
    atomic_mask: false,
    deadline: 0,
    uc: 0,
    rip: 0,
    rsp: 0,
    rdi: 0,
    sigmask: 0,
    mask: 0,
    sigarg: [0; 2],
    ts: libc::timespec { tv_sec: 0, tv_nsec: 0 },
} }; MAX]));

fn claim() -> Option<&'static mut Rec> {
    // SAFETY: see Pool; only the `used` flag is looked at before the claim succeeds.
    let pool = unsafe { &mut *POOL.0.get() };
    let r = pool.iter_mut().find(|r| r.used.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Relaxed).is_ok())?;
    r.ckpt.store(0, Ordering::Relaxed);
    Some(r)
}

/// At restart (one thread): a deadline measured on the old process's clock now counts the time
/// that was left when the image was taken.
pub fn after_restart() {
    RESTARTS.fetch_add(1, Ordering::AcqRel);
    let now = crate::checkpoint::now_ns();
    let then = STOPPED_AT.load(Ordering::Acquire);
    // SAFETY: see Pool: no other thread runs yet.
    for r in unsafe { (*POOL.0.get()).iter_mut() } {
        if r.used.load(Ordering::Acquire) != 0 && r.deadline != 0 {
            r.deadline = now + r.deadline.saturating_sub(then);
        }
    }
}

/// How many restarts this program has been through (for records taken on another clock).
pub fn restarts() -> u64 {
    RESTARTS.load(Ordering::Acquire)
}

// ---- the stop handler's part ----

fn greg(uc: *mut libc::ucontext_t, r: libc::c_int) -> &'static mut i64 {
    // SAFETY: uc is the signal frame the kernel gave the handler, in this thread's memory.
    unsafe { &mut (*uc).uc_mcontext.gregs[r as usize] }
}

fn frame_mask(uc: *mut libc::ucontext_t) -> &'static mut u64 {
    // SAFETY: the first 8 bytes of uc_sigmask are the kernel's sigset.
    unsafe { &mut *(std::ptr::addr_of_mut!((*uc).uc_sigmask) as *mut u64) }
}

/// In the stop handler of thread `tid`, before it parks: if the frame shows a call that the stop
/// signal interrupted, plan it again and make the thread enter `resume` after rt_sigreturn.
pub fn prepare(uc: *mut libc::ucontext_t, tid: i32) {
    let rip = *greg(uc, libc::REG_RIP) as u64;
    let rax = *greg(uc, libc::REG_RAX);
    if rip == reissue_end() {
        // One of our own re-issued calls: `resume` issues it again.
        if rax == EINTR {
            // SAFETY: ckpt_reissue keeps its record in rbx across the system call.
            let rec = unsafe { &*(*greg(uc, libc::REG_RBX) as *const Rec) };
            rec.ckpt.store(1, Ordering::Release);
        }
        return;
    }
    if rax != EINTR {
        return;
    }
    let regs = [libc::REG_RDI, libc::REG_RSI, libc::REG_RDX, libc::REG_R10, libc::REG_R8, libc::REG_R9].map(|r| *greg(uc, r) as u64);
    let nr = match seen_of(tid) {
        Some(seen) if seen.pc == rip && seen.sp == *greg(uc, libc::REG_RSP) as u64 && seen.args == regs => {
            // SAFETY: the kernel stopped this thread at pc after a system call: the two bytes
            // before it are the instruction that entered the kernel, mapped code.
            if unsafe { std::ptr::read_unaligned((rip - 2) as *const [u8; 2]) } != [0x0f, 0x05] {
                return; // int 0x80 or sysenter: another system call table
            }
            seen.nr
        }
        // Not the call /proc showed (the thread was running, or left it since): its site may
        // still tell. The syscall instruction cleared rcx to the return address.
        _ if *greg(uc, libc::REG_RCX) as u64 == rip => match crate::sud::call_at(rip, *greg(uc, libc::REG_RBX) as u64) {
            // Made through syscall user dispatch (sud.rs): its record is at hand. (A thread
            // that /proc showed running entered its poll() just before a background
            // snapshot's instant: the program saw EINTR.)
            Some(call) if call[1..] == regs => call[0] as i64,
            _ => match site_nr(rip) {
                Some(nr) => nr,
                None => return,
            },
        },
        _ => return,
    };
    let Some(rec) = claim() else { return };
    let origmask = crate::sud::program_mask(*frame_mask(uc));
    if !plan(rec, nr, regs, origmask) {
        rec.used.store(0, Ordering::Release);
        return;
    }
    rec.uc = uc as u64;
    rec.rip = rip;
    rec.rsp = *greg(uc, libc::REG_RSP) as u64;
    rec.rdi = regs[0];
    rec.sigmask = origmask;
    *greg(uc, libc::REG_RIP) = resume as *const () as usize as i64;
    *greg(uc, libc::REG_RSP) = uc as i64 - 8; // the frame's return address: __restore_rt
    *greg(uc, libc::REG_RDI) = rec as *mut Rec as i64;
    *frame_mask(uc) = !(STOP_BIT | crate::sud::SIGSYS_BIT);
}

/// The program's mask as a call must see it: never blocking the stop signal.
fn sanitize(mask: u64) -> u64 {
    crate::sighooks::sanitize_mask(mask)
}

/// A word the program passed a pointer to (null: 0).
fn read_u64(ptr: u64) -> u64 {
    if ptr == 0 {
        return 0;
    }
    // SAFETY: the pointer was valid for the interrupted call, which read it.
    unsafe { std::ptr::read_unaligned(ptr as *const u64) }
}

/// A signal mask the program passed (null: `dflt`), sanitized.
fn user_mask(ptr: u64, dflt: u64) -> u64 {
    if ptr == 0 {
        return dflt;
    }
    sanitize(read_u64(ptr))
}

fn ts_ns(ptr: u64) -> Option<u64> {
    if ptr == 0 {
        return None;
    }
    // SAFETY: a timespec the interrupted call was given (and read).
    let ts = unsafe { std::ptr::read_unaligned(ptr as *const libc::timespec) };
    Some(ts.tv_sec.max(0) as u64 * 1_000_000_000 + ts.tv_nsec.clamp(0, 999_999_999) as u64)
}

fn tv_ns(ptr: u64) -> Option<u64> {
    if ptr == 0 {
        return None;
    }
    // SAFETY: a timeval the interrupted select was given (and updated).
    let tv = unsafe { std::ptr::read_unaligned(ptr as *const libc::timeval) };
    Some(tv.tv_sec.max(0) as u64 * 1_000_000_000 + tv.tv_usec.clamp(0, 999_999) as u64 * 1000)
}

/// The deadline of a wait of `timeout` ns that the kernel did not write back: from the start time
/// the wait hooks recorded for this call, else from now (the whole timeout again).
fn hooked_deadline(kind: crate::waithooks::Kind, timeout: u64, now: u64) -> u64 {
    match crate::waithooks::started(kind, timeout) {
        Some(start) => start.saturating_add(timeout),
        None => now.saturating_add(timeout),
    }
}

/// Fill `rec` with the call to issue instead of `nr(args)`; false when we do not handle it.
fn plan(rec: &mut Rec, nr: i64, args: [u64; 6], origmask: u64) -> bool {
    use crate::waithooks::Kind;
    let now = crate::checkpoint::now_ns();
    rec.nr = nr;
    rec.args = args;
    rec.wait = Wait::Plain;
    rec.after = After::Nothing;
    rec.atomic_mask = false;
    rec.deadline = 0;
    rec.mask = sanitize(origmask);
    let this = rec as *mut Rec;
    // SAFETY: taking addresses of fields of a record in a static pool.
    let (mask_p, sigarg_p) = unsafe { (std::ptr::addr_of!((*this).mask) as u64, std::ptr::addr_of!((*this).sigarg) as u64) };
    let timed = |rec: &mut Rec, deadline: Option<u64>, arg: usize, millis: bool| {
        if let Some(d) = deadline {
            rec.deadline = d.max(1);
            rec.wait = if millis { Wait::Millis { arg } } else { Wait::Timespec { arg } };
        }
    };
    match nr {
        libc::SYS_pause => {
            rec.nr = libc::SYS_rt_sigsuspend;
            rec.args = [mask_p, 8, 0, 0, 0, 0];
            rec.atomic_mask = true;
        }
        libc::SYS_rt_sigsuspend => {
            rec.mask = user_mask(args[0], rec.mask);
            rec.args[0] = mask_p;
            rec.atomic_mask = true;
        }
        libc::SYS_poll => {
            rec.nr = libc::SYS_ppoll;
            rec.args = [args[0], args[1], 0, mask_p, 8, 0];
            rec.atomic_mask = true;
            let ms = args[2] as i32;
            let d = (ms >= 0).then(|| hooked_deadline(Kind::Poll, ms as u64 * 1_000_000, now));
            timed(rec, d, 2, false);
        }
        libc::SYS_ppoll => {
            rec.mask = user_mask(args[3], rec.mask);
            rec.args[3] = mask_p;
            rec.args[4] = 8;
            rec.atomic_mask = true;
            timed(rec, ts_ns(args[2]).map(|t| now + t), 2, false);
            if args[2] != 0 {
                rec.after = After::Timespec(args[2]);
            }
        }
        libc::SYS_select => {
            rec.nr = libc::SYS_pselect6;
            rec.sigarg = [mask_p, 8];
            rec.args = [args[0], args[1], args[2], args[3], 0, sigarg_p];
            rec.atomic_mask = true;
            timed(rec, tv_ns(args[4]).map(|t| now + t), 4, false);
            if args[4] != 0 {
                rec.after = After::Timeval(args[4]);
            }
        }
        libc::SYS_pselect6 => {
            // The sixth argument points at {const sigset_t *ss, size_t size}.
            let ss = read_u64(args[5]);
            rec.mask = user_mask(ss, rec.mask);
            rec.sigarg = [mask_p, 8];
            rec.args[5] = sigarg_p;
            rec.atomic_mask = true;
            timed(rec, ts_ns(args[4]).map(|t| now + t), 4, false);
            if args[4] != 0 {
                rec.after = After::Timespec(args[4]);
            }
        }
        libc::SYS_epoll_wait | libc::SYS_epoll_pwait => {
            if nr == libc::SYS_epoll_pwait {
                rec.mask = user_mask(args[4], rec.mask);
            }
            rec.nr = libc::SYS_epoll_pwait;
            rec.args = [args[0], args[1], args[2], args[3], mask_p, 8];
            rec.atomic_mask = true;
            let ms = args[3] as i32;
            let d = (ms >= 0).then(|| hooked_deadline(Kind::Epoll, ms as u64 * 1_000_000, now));
            timed(rec, d, 3, true);
        }
        libc::SYS_epoll_pwait2 => {
            rec.mask = user_mask(args[4], rec.mask);
            rec.args[4] = mask_p;
            rec.args[5] = 8;
            rec.atomic_mask = true;
            timed(rec, ts_ns(args[3]).map(|t| hooked_deadline(Kind::Epoll, t, now)), 3, false);
        }
        libc::SYS_nanosleep => return sleep(rec, libc::CLOCK_MONOTONIC, args[0], args[1], now),
        libc::SYS_clock_nanosleep => {
            if args[1] & libc::TIMER_ABSTIME as u64 != 0 {
                return true; // an absolute deadline: the same call again
            }
            return sleep(rec, args[0] as i32, args[2], args[3], now);
        }
        libc::SYS_rt_sigtimedwait => {
            // Waiting for the stop signal would take it from us.
            rec.sigarg[0] = read_u64(args[0]) & !STOP_BIT;
            // SAFETY: address of a field of a static record.
            rec.args[0] = unsafe { std::ptr::addr_of!((*this).sigarg) } as u64;
            timed(rec, ts_ns(args[2]).map(|t| hooked_deadline(Kind::SigWait, t, now)), 2, false);
        }
        libc::SYS_semtimedop => timed(rec, ts_ns(args[3]).map(|t| hooked_deadline(Kind::Semop, t, now)), 3, false),
        libc::SYS_futex => {
            // FUTEX_WAIT's timeout is relative; the other commands' are absolute or absent.
            const FUTEX_CMD: u64 = 0x7f;
            if args[1] & FUTEX_CMD == libc::FUTEX_WAIT as u64 {
                timed(rec, ts_ns(args[3]).map(|t| now + t), 3, false);
            }
        }
        libc::SYS_io_getevents => timed(rec, ts_ns(args[4]).map(|t| now + t), 4, false),
        // The same call again (no timeout, an absolute one, or a socket timeout that starts over).
        libc::SYS_read
        | libc::SYS_readv
        | libc::SYS_preadv
        | libc::SYS_pread64
        | libc::SYS_write
        | libc::SYS_writev
        | libc::SYS_recvfrom
        | libc::SYS_recvmsg
        | libc::SYS_recvmmsg
        | libc::SYS_sendto
        | libc::SYS_sendmsg
        | libc::SYS_sendmmsg
        | libc::SYS_accept
        | libc::SYS_accept4
        | libc::SYS_connect
        | libc::SYS_semop
        | libc::SYS_msgrcv
        | libc::SYS_msgsnd
        | libc::SYS_mq_timedreceive
        | libc::SYS_mq_timedsend
        | libc::SYS_wait4
        | libc::SYS_waitid
        | libc::SYS_flock
        | libc::SYS_fcntl
        | libc::SYS_open
        | libc::SYS_openat => {}
        _ => return false,
    }
    true
}

/// nanosleep / relative clock_nanosleep(clock): sleep what was left (the kernel wrote it to a
/// non-null `rem`; glibc's sleep() makes `rem` its request), on EINTR report it in `rem`.
fn sleep(rec: &mut Rec, clock: i32, req: u64, rem: u64, now: u64) -> bool {
    let left = match ts_ns(rem) {
        Some(t) => now + t,
        None => match ts_ns(req) {
            Some(t) => hooked_deadline(crate::waithooks::Kind::Sleep, t, now),
            None => return false,
        },
    };
    rec.deadline = left.max(1);
    rec.after = After::RemOnEintr(rem);
    if clock == libc::CLOCK_MONOTONIC || clock == libc::CLOCK_REALTIME {
        // ppoll sleeps with the program's mask set atomically.
        let this = rec as *mut Rec;
        // SAFETY: address of a field of a static record.
        let mask_p = unsafe { std::ptr::addr_of!((*this).mask) } as u64;
        rec.nr = libc::SYS_ppoll;
        rec.args = [0, 0, 0, mask_p, 8, 0];
        rec.atomic_mask = true;
        rec.wait = Wait::Timespec { arg: 2 };
    } else {
        rec.nr = libc::SYS_clock_nanosleep;
        rec.args = [clock as u64, 0, 0, 0, 0, 0];
        rec.wait = Wait::Timespec { arg: 2 };
    }
    true
}

// ---- after rt_sigreturn: the re-issued call ----

std::arch::global_asm!(
    // i64 ckpt_reissue(nr, const u64 *args, rec, const u64 *mask): if mask is not null, set it
    // as the signal mask; then the system call nr(args). rbx holds rec across the call, where
    // the stop handler looks for it when a checkpoint interrupts the call.
    ".globl ckpt_reissue",
    ".type ckpt_reissue,@function",
    "ckpt_reissue:",
    ".cfi_startproc",
    "    push rbx",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_rel_offset rbx, 0",
    "    push r12",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_rel_offset r12, 0",
    "    push r13",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_rel_offset r13, 0",
    "    mov rbx, rdx",
    "    mov r12, rsi",
    "    mov r13, rdi",
    "    test rcx, rcx",
    "    jz 2f",
    "    mov rsi, rcx",
    "    mov edi, 2", // SIG_SETMASK
    "    xor edx, edx",
    "    mov r10d, 8",
    "    mov eax, 14", // rt_sigprocmask
    "    syscall",
    "2:",
    "    mov rax, r13",
    "    mov rdi, [r12]",
    "    mov rsi, [r12 + 8]",
    "    mov rdx, [r12 + 16]",
    "    mov r10, [r12 + 24]",
    "    mov r8, [r12 + 32]",
    "    mov r9, [r12 + 40]",
    "    syscall",
    ".globl ckpt_reissue_end",
    "ckpt_reissue_end:",
    "    pop r13",
    ".cfi_adjust_cfa_offset -8",
    ".cfi_restore r13",
    "    pop r12",
    ".cfi_adjust_cfa_offset -8",
    ".cfi_restore r12",
    "    pop rbx",
    ".cfi_adjust_cfa_offset -8",
    ".cfi_restore rbx",
    "    ret",
    ".cfi_endproc",
    ".size ckpt_reissue, . - ckpt_reissue",
);

extern "C" {
    fn ckpt_reissue(nr: i64, args: *const u64, rec: u64, mask: *const u64) -> i64;
    fn ckpt_reissue_end();
}

pub(crate) fn reissue_end() -> u64 {
    ckpt_reissue_end as *const () as usize as u64
}

fn set_timespec(ptr: u64, ns: u64) {
    let ts = libc::timespec { tv_sec: (ns / 1_000_000_000) as i64, tv_nsec: (ns % 1_000_000_000) as i64 };
    // SAFETY: a timespec of the program's call, writable (the kernel wrote it, or will).
    unsafe { std::ptr::write_unaligned(ptr as *mut libc::timespec, ts) };
}

/// Whether a signal the program does not block is pending for this thread.
fn signal_pending(mask: u64) -> bool {
    let mut set: u64 = 0;
    let _ = syscall!(libc::SYS_rt_sigpending, &mut set as *mut u64, 8);
    set & !mask & !STOP_BIT != 0
}

/// Entered by rt_sigreturn of a frame `prepare` rewrote, like a signal handler on that frame:
/// returning goes through __restore_rt, which restores the frame.
extern "C" fn resume(rec: &mut Rec) {
    let uc = rec.uc as *mut libc::ucontext_t;
    *greg(uc, libc::REG_RIP) = rec.rip as i64;
    *greg(uc, libc::REG_RSP) = rec.rsp as i64;
    *greg(uc, libc::REG_RDI) = rec.rdi as i64;
    *frame_mask(uc) = rec.sigmask;
    let result = run(rec);
    // Dispatch may have begun, or ended, while the call was re-issued.
    crate::sud::returning_to(frame_mask(uc));
    *greg(uc, libc::REG_RAX) = result;
    rec.used.store(0, Ordering::Release);
}

fn run(rec: &mut Rec) -> i64 {
    let r = loop {
        if !rec.atomic_mask && signal_pending(rec.mask) {
            break EINTR; // a signal for the program arrived while it was stopped
        }
        let now = crate::checkpoint::now_ns();
        let left = rec.deadline.saturating_sub(now);
        match rec.wait {
            Wait::Plain => {}
            Wait::Timespec { arg } => {
                rec.ts = libc::timespec { tv_sec: (left / 1_000_000_000) as i64, tv_nsec: (left % 1_000_000_000) as i64 };
                rec.args[arg] = std::ptr::addr_of!(rec.ts) as u64;
            }
            Wait::Millis { arg } => rec.args[arg] = left.div_ceil(1_000_000).min(i32::MAX as u64),
        }
        let mask = if rec.atomic_mask { std::ptr::null() } else { std::ptr::addr_of!(rec.mask) };
        let this: *const Rec = rec;
        // SAFETY: the arguments are the program's own call's (or ours pointing into this record).
        let r = unsafe { ckpt_reissue(rec.nr, rec.args.as_ptr(), this as u64, mask) };
        if r == EINTR && rec.ckpt.swap(0, Ordering::AcqRel) != 0 {
            continue; // a checkpoint, not the program's signal
        }
        break r;
    };
    let left = rec.deadline.saturating_sub(crate::checkpoint::now_ns());
    match rec.after {
        After::Nothing => {}
        After::RemOnEintr(p) => {
            if r == EINTR && p != 0 {
                set_timespec(p, left);
            }
        }
        After::Timespec(p) => set_timespec(p, left),
        After::Timeval(p) => {
            let tv = libc::timeval { tv_sec: (left / 1_000_000_000) as i64, tv_usec: ((left % 1_000_000_000) / 1000) as i64 };
            // SAFETY: select's timeval, which the kernel updated before.
            unsafe { std::ptr::write_unaligned(p as *mut libc::timeval, tv) };
        }
    }
    // A sleep that ran out is a success (ppoll, standing in for it, returns 0 too).
    if matches!(rec.after, After::RemOnEintr(_)) && r >= 0 {
        return 0;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::parse_syscall_line;

    #[test]
    fn proc_syscall_lines() {
        let s = parse_syscall_line(b"232 0x3 0x7f095d544ec4 0x1 0x1388 0x0 0x7fff01a070a7 0x7f095d544e80 0x7f095d651f36\n").unwrap();
        assert_eq!(s.nr, 232);
        assert_eq!(s.args, [3, 0x7f095d544ec4, 1, 5000, 0, 0x7fff01a070a7]);
        assert_eq!(s.sp, 0x7f095d544e80);
        assert_eq!(s.pc, 0x7f095d651f36);
        assert!(parse_syscall_line(b"running\n").is_none());
        assert!(parse_syscall_line(b"-1 0x7ffc 0x4005\n").is_none());
        assert!(parse_syscall_line(b"").is_none());
    }
}
