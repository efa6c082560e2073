//! POSIX AIO (aio_read, aio_write, aio_fsync, lio_listio, aio_suspend, aio_cancel, and their
//! *64 names) done by the runtime instead of glibc. glibc's helper threads block every signal,
//! the stop signal too, so a program with a request in flight (a read of a socket that waits
//! for data: zdtm socket_aio) could not be checkpointed. Here requests wait in a table of the
//! runtime's memory and worker threads of the runtime's own do them: ordinary threads the stop
//! signal reaches, checkpointed and recreated at restart like any other, so a request in flight
//! at checkpoint time is in flight after a restart too and completes then (a worker blocked in
//! its read is restarted like any blocked call). As glibc does, requests on one fd are done one
//! at a time in the order they came, results go into the aiocb's own fields (`__error_code`,
//! `__return_value`: glibc's aio_error and aio_return read them), and a completion notifies as
//! its sigevent says (a signal with SI_ASYNCIO, a new thread, nothing) and wakes aio_suspend.
//! Workers block every signal of the program's (glibc's block all) and end after a second idle.

use crate::hooks::RealFn;
use crate::sigevthread::SigEvent;
use crate::sys::{self, syscall};
use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicUsize, Ordering};

/// Requests queued or running at once (glibc has no limit but memory; EAGAIN beyond).
const MAX: usize = 256;
/// Worker threads at most (glibc's default aio_threads is 20).
const WORKERS: u32 = 20;
const IDLE_MS: u64 = 1000;

// What a request does (glibc's public LIO_READ, LIO_WRITE; then its own DSYNC and SYNC).
const OP_READ: i32 = 0;
const OP_WRITE: i32 = 1;
const OP_NOP: i32 = 2;
const OP_DSYNC: i32 = 3;
const OP_SYNC: i32 = 4;

const SI_ASYNCIO: i32 = -4;
const AIO_CANCELED: c_int = 0;
const AIO_NOTCANCELED: c_int = 1;
const AIO_ALLDONE: c_int = 2;
const LIO_WAIT: c_int = 0;

/// glibc's struct aiocb on x86-64 (aiocb64 is the same).
#[repr(C)]
pub struct AioCb {
    fildes: c_int,
    lio_opcode: c_int,
    reqprio: c_int,
    buf: *mut c_void,
    nbytes: usize,
    sigevent: SigEvent,
    next_prio: *mut c_void,
    abs_prio: c_int,
    policy: c_int,
    error_code: c_int,
    return_value: isize,
    offset: i64,
    reserved: [u8; 32],
}

const _: () = assert!(std::mem::size_of::<SigEvent>() == 64 && std::mem::size_of::<AioCb>() == 168);

/// One request: the aiocb (0: free slot), what to do, its lio_listio group (+1; 0: none), and
/// whether a worker runs it.
struct Slot {
    cb: AtomicUsize,
    op: AtomicI32,
    group: AtomicU32,
    running: AtomicBool,
    /// Order of arrival, so that requests on one fd run in that order.
    seq: AtomicU32,
}

/// A lio_listio(LIO_NOWAIT) with a notification: what is left, and the notification.
struct Group {
    left: AtomicU32,
    ev: std::cell::UnsafeCell<SigEvent>,
    pid: AtomicI32,
}

// SAFETY: a group's sigevent is written before its requests are queued and read by the worker
// that finishes the last one.
unsafe impl Sync for Group {}

static SLOTS: [Slot; MAX] = [const { Slot { cb: AtomicUsize::new(0), op: AtomicI32::new(0), group: AtomicU32::new(0), running: AtomicBool::new(false), seq: AtomicU32::new(0) } }; MAX];
static GROUPS: [Group; 64] = [const {
    Group { left: AtomicU32::new(0), ev: std::cell::UnsafeCell::new(SigEvent { value: 0, signo: 0, notify: 0, func_or_tid: 0, attributes: std::ptr::null(), pad: [0; 4] }), pid: AtomicI32::new(0) }
}; 64];
/// The table's lock (hooks and workers; never held across a blocking call; taken by a fork
/// too: forklock.rs).
pub(crate) static LOCK: crate::forklock::RawLock = crate::forklock::RawLock::new();
static NEXT_SEQ: AtomicU32 = AtomicU32::new(0);
/// Bumped when a request is queued (idle workers wait on it).
static QUEUED: AtomicU32 = AtomicU32::new(0);
/// Bumped when a request completes (aio_suspend and lio_listio wait on it).
static DONE: AtomicU32 = AtomicU32::new(0);
static WORKERS_NOW: AtomicU32 = AtomicU32::new(0);
static IDLE: AtomicU32 = AtomicU32::new(0);

fn lock() {
    LOCK.lock();
}

fn unlock() {
    LOCK.unlock();
}

/// In a forked child: no workers; what was queued belongs to the parent (as with glibc, whose
/// threads do not survive a fork either).
pub fn after_fork() {
    for s in &SLOTS {
        s.cb.store(0, Ordering::Release);
        s.running.store(false, Ordering::Release);
    }
    WORKERS_NOW.store(0, Ordering::Release);
    IDLE.store(0, Ordering::Release);
}

fn now_ms() -> u64 {
    crate::checkpoint::now_ns() / 1_000_000
}

fn fail(e: c_int) -> c_int {
    sys::set_errno(e);
    -1
}

/// Queue `cb` (its fields set to "in progress"); starts a worker when too few are idle.
fn enqueue(cb: *mut AioCb, op: i32, group: u32) -> Result<(), c_int> {
    // SAFETY: the program's aiocb, which must stay valid until the request completes (POSIX).
    unsafe {
        std::ptr::addr_of_mut!((*cb).return_value).write_volatile(0);
        std::ptr::addr_of_mut!((*cb).error_code).write_volatile(libc::EINPROGRESS);
    }
    lock();
    let Some(s) = SLOTS.iter().find(|s| s.cb.load(Ordering::Relaxed) == 0) else {
        unlock();
        return Err(libc::EAGAIN);
    };
    s.op.store(op, Ordering::Relaxed);
    s.group.store(group, Ordering::Relaxed);
    s.running.store(false, Ordering::Relaxed);
    s.seq.store(NEXT_SEQ.fetch_add(1, Ordering::Relaxed), Ordering::Relaxed);
    s.cb.store(cb as usize, Ordering::Release);
    QUEUED.fetch_add(1, Ordering::AcqRel);
    // A worker more when the requests waiting outnumber the idle workers (an idle one woken for
    // an earlier request may be about to block in it).
    let waiting = SLOTS.iter().filter(|s| s.cb.load(Ordering::Relaxed) != 0 && !s.running.load(Ordering::Relaxed)).count();
    let start = waiting > IDLE.load(Ordering::Relaxed) as usize && WORKERS_NOW.load(Ordering::Relaxed) < WORKERS;
    if start {
        WORKERS_NOW.fetch_add(1, Ordering::Relaxed);
    }
    unlock();
    sys::futex_wake(&QUEUED);
    if start && !crate::sigevthread::start_runtime_thread(worker_main) {
        lock();
        WORKERS_NOW.fetch_sub(1, Ordering::Relaxed);
        let alone = WORKERS_NOW.load(Ordering::Relaxed) == 0;
        if alone {
            // Nobody could do it: take it back.
            s.cb.store(0, Ordering::Release);
        }
        unlock();
        if alone {
            return Err(libc::EAGAIN);
        }
    }
    Ok(())
}

/// The oldest queued request whose fd has none running (under the lock), marked running.
fn take() -> Option<&'static Slot> {
    let fd_of = |s: &Slot| {
        // SAFETY: a queued request's aiocb is valid until it completes.
        unsafe { (*(s.cb.load(Ordering::Relaxed) as *const AioCb)).fildes }
    };
    let busy = |fd: c_int| SLOTS.iter().any(|s| s.cb.load(Ordering::Relaxed) != 0 && s.running.load(Ordering::Relaxed) && fd_of(s) == fd);
    let first = SLOTS
        .iter()
        .filter(|s| s.cb.load(Ordering::Relaxed) != 0 && !s.running.load(Ordering::Relaxed))
        .filter(|s| !busy(fd_of(s)))
        .min_by_key(|s| s.seq.load(Ordering::Relaxed).wrapping_sub(NEXT_SEQ.load(Ordering::Relaxed)))?;
    first.running.store(true, Ordering::Relaxed);
    Some(first)
}

extern "C" fn worker_main(_: *mut c_void) -> *mut c_void {
    let _ = syscall!(libc::SYS_prctl, libc::PR_SET_NAME, c"ckpt-aio".as_ptr());
    loop {
        lock();
        let seen = QUEUED.load(Ordering::Acquire);
        if let Some(s) = take() {
            unlock();
            run(s);
            continue;
        }
        IDLE.fetch_add(1, Ordering::Relaxed);
        unlock();
        let waited = now_ms();
        sys::futex_wait(&QUEUED, seen, Some(IDLE_MS));
        lock();
        IDLE.fetch_sub(1, Ordering::Relaxed);
        let idle_long = QUEUED.load(Ordering::Acquire) == seen && now_ms() >= waited + IDLE_MS;
        if idle_long {
            WORKERS_NOW.fetch_sub(1, Ordering::Relaxed);
            unlock();
            return std::ptr::null_mut();
        }
        unlock();
    }
}

/// A system call retried through EINTR (as glibc's TEMP_FAILURE_RETRY): (result, errno).
fn retry(f: impl Fn() -> sys::SysResult<i64>) -> (isize, c_int) {
    loop {
        match f() {
            Ok(n) => return (n as isize, 0),
            Err(libc::EINTR) => continue,
            Err(e) => return (-1, e),
        }
    }
}

/// Do request `s`, store its result, notify, free the slot.
fn run(s: &Slot) {
    let cb = s.cb.load(Ordering::Acquire) as *mut AioCb;
    // SAFETY: the program's aiocb, valid until the request completes.
    let (fd, buf, n, off) = unsafe { ((*cb).fildes, (*cb).buf as u64, (*cb).nbytes, (*cb).offset) };
    let (r, e) = match s.op.load(Ordering::Relaxed) {
        OP_READ => match retry(|| syscall!(libc::SYS_pread64, fd, buf, n, off)) {
            (-1, libc::ESPIPE) => retry(|| syscall!(libc::SYS_read, fd, buf, n)),
            x => x,
        },
        OP_WRITE => match retry(|| syscall!(libc::SYS_pwrite64, fd, buf, n, off)) {
            (-1, libc::ESPIPE) => retry(|| syscall!(libc::SYS_write, fd, buf, n)),
            x => x,
        },
        OP_DSYNC => retry(|| syscall!(libc::SYS_fdatasync, fd)),
        OP_SYNC => retry(|| syscall!(libc::SYS_fsync, fd)),
        _ => (-1, libc::EINVAL),
    };
    complete(s, cb, r, e);
}

/// Store a request's result (`r`, errno `e`), notify, free its slot, wake the waiters.
fn complete(s: &Slot, cb: *mut AioCb, r: isize, e: c_int) {
    // SAFETY: the program's aiocb; the error code last, which aio_error polls.
    let ev = unsafe {
        std::ptr::addr_of_mut!((*cb).return_value).write_volatile(r);
        std::ptr::addr_of_mut!((*cb).error_code).write_volatile(e);
        (*cb).sigevent
    };
    let group = s.group.load(Ordering::Relaxed);
    lock();
    s.cb.store(0, Ordering::Release);
    s.running.store(false, Ordering::Relaxed);
    unlock();
    notify(&ev, sys::getpid());
    if group > 0 {
        let g = &GROUPS[group as usize - 1];
        if g.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            // SAFETY: written before the group's requests were queued.
            let gev = unsafe { *g.ev.get() };
            notify(&gev, g.pid.load(Ordering::Relaxed));
        }
    }
    DONE.fetch_add(1, Ordering::AcqRel);
    sys::futex_wake(&DONE);
    sys::futex_wake(&QUEUED);
}

/// Notify as `ev` says: a queued signal with SI_ASYNCIO (from `pid`, the submitter), or a new
/// thread that calls the function with its value (every signal of the program's blocked, as
/// glibc's notification threads inherit its helper's mask).
fn notify(ev: &SigEvent, pid: i32) {
    match ev.notify {
        libc::SIGEV_SIGNAL => {
            // siginfo: si_signo (0), si_errno (4), si_code (8), si_pid (16), si_uid (20), si_value (24).
            let uid = syscall!(libc::SYS_getuid).unwrap_or(0) as u32;
            let mut info = [0u64; 16];
            info[0] = ev.signo as u32 as u64;
            info[1] = SI_ASYNCIO as u32 as u64;
            info[2] = pid as u32 as u64 | (uid as u64) << 32;
            info[3] = ev.value;
            let _ = syscall!(libc::SYS_rt_sigqueueinfo, sys::getpid(), ev.signo, info.as_ptr());
        }
        libc::SIGEV_THREAD => {
            let mut ss: usize = 0;
            if !ev.attributes.is_null() {
                // SAFETY: the program's attribute object (it must outlive the request).
                unsafe { libc::pthread_attr_getstacksize(ev.attributes, &mut ss) };
            }
            crate::sigevthread::start_notice(ev.func_or_tid as usize, ev.value, !0, ss);
        }
        _ => {}
    }
}

static REAL: [RealFn; 12] = [
    RealFn::new(b"aio_read\0"),
    RealFn::new(b"aio_read64\0"),
    RealFn::new(b"aio_write\0"),
    RealFn::new(b"aio_write64\0"),
    RealFn::new(b"aio_fsync\0"),
    RealFn::new(b"aio_fsync64\0"),
    RealFn::new(b"aio_suspend\0"),
    RealFn::new(b"aio_suspend64\0"),
    RealFn::new(b"aio_cancel\0"),
    RealFn::new(b"aio_cancel64\0"),
    RealFn::new(b"lio_listio\0"),
    RealFn::new(b"lio_listio64\0"),
];

pub fn resolve() {
    for r in &REAL {
        r.get();
    }
}

/// Submit `cb` as `op`, or glibc's own when the runtime is not active (`real`: its index).
fn submit(cb: *mut AioCb, op: i32, real: usize) -> c_int {
    if !crate::is_active() {
        type F = unsafe extern "C" fn(*mut AioCb) -> c_int;
        // SAFETY: forwarding to libc's function of the same signature.
        return unsafe { std::mem::transmute::<usize, F>(REAL[real].get())(cb) };
    }
    if cb.is_null() {
        return fail(libc::EINVAL);
    }
    // SAFETY: the program's aiocb.
    let prio = unsafe { (*cb).reqprio };
    if !(0..=20).contains(&prio) {
        return fail(libc::EINVAL);
    }
    match enqueue(cb, op, 0) {
        Ok(()) => 0,
        Err(e) => fail(e),
    }
}

/// # Safety
/// libc's contract for aio_read.
#[no_mangle]
pub unsafe extern "C" fn aio_read(cb: *mut AioCb) -> c_int {
    submit(cb, OP_READ, 0)
}

/// # Safety
/// libc's contract for aio_read64.
#[no_mangle]
pub unsafe extern "C" fn aio_read64(cb: *mut AioCb) -> c_int {
    submit(cb, OP_READ, 1)
}

/// # Safety
/// libc's contract for aio_write.
#[no_mangle]
pub unsafe extern "C" fn aio_write(cb: *mut AioCb) -> c_int {
    submit(cb, OP_WRITE, 2)
}

/// # Safety
/// libc's contract for aio_write64.
#[no_mangle]
pub unsafe extern "C" fn aio_write64(cb: *mut AioCb) -> c_int {
    submit(cb, OP_WRITE, 3)
}

fn fsync_as(op: c_int, cb: *mut AioCb, real: usize) -> c_int {
    if !crate::is_active() {
        type F = unsafe extern "C" fn(c_int, *mut AioCb) -> c_int;
        // SAFETY: forwarding to libc's function of the same signature.
        return unsafe { std::mem::transmute::<usize, F>(REAL[real].get())(op, cb) };
    }
    let kind = match op {
        libc::O_DSYNC => OP_DSYNC,
        libc::O_SYNC => OP_SYNC,
        _ => return fail(libc::EINVAL),
    };
    // SAFETY: the program's aiocb (null checked first).
    if cb.is_null() || syscall!(libc::SYS_fcntl, unsafe { (*cb).fildes }, libc::F_GETFL).is_err() {
        return fail(libc::EBADF);
    }
    match enqueue(cb, kind, 0) {
        Ok(()) => 0,
        Err(e) => fail(e),
    }
}

/// # Safety
/// libc's contract for aio_fsync.
#[no_mangle]
pub unsafe extern "C" fn aio_fsync(op: c_int, cb: *mut AioCb) -> c_int {
    fsync_as(op, cb, 4)
}

/// # Safety
/// libc's contract for aio_fsync64.
#[no_mangle]
pub unsafe extern "C" fn aio_fsync64(op: c_int, cb: *mut AioCb) -> c_int {
    fsync_as(op, cb, 5)
}

fn in_progress(cb: *const AioCb) -> bool {
    // SAFETY: the program's aiocb (non-null).
    unsafe { std::ptr::addr_of!((*cb).error_code).read_volatile() == libc::EINPROGRESS }
}

/// Wait until one request of `list` is done, or `timeout` (relative) passes: 0, or -1 with
/// EAGAIN (timeout) or EINTR (a signal).
fn suspend(list: *const *const AioCb, n: c_int, timeout: *const libc::timespec, real: usize) -> c_int {
    if !crate::is_active() {
        type F = unsafe extern "C" fn(*const *const AioCb, c_int, *const libc::timespec) -> c_int;
        // SAFETY: forwarding to libc's function of the same signature.
        return unsafe { std::mem::transmute::<usize, F>(REAL[real].get())(list, n, timeout) };
    }
    // SAFETY: the program's array of n aiocb pointers (entries may be null).
    let cbs = unsafe { std::slice::from_raw_parts(list, n.max(0) as usize) };
    let end = (!timeout.is_null()).then(|| {
        // SAFETY: the program's timespec.
        let t = unsafe { *timeout };
        crate::checkpoint::now_ns().saturating_add((t.tv_sec.max(0) as u64).saturating_mul(1_000_000_000)).saturating_add(t.tv_nsec.max(0) as u64)
    });
    loop {
        let seen = DONE.load(Ordering::Acquire);
        if cbs.iter().any(|&cb| !cb.is_null() && !in_progress(cb)) || cbs.iter().all(|cb| cb.is_null()) {
            return 0;
        }
        let left = match end {
            Some(e) => match e.checked_sub(crate::checkpoint::now_ns()).filter(|&l| l > 0) {
                Some(l) => Some(libc::timespec { tv_sec: (l / 1_000_000_000) as i64, tv_nsec: (l % 1_000_000_000) as i64 }),
                None => return fail(libc::EAGAIN),
            },
            None => None,
        };
        let tsp = left.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
        if let Err(libc::EINTR) = syscall!(libc::SYS_futex, DONE.as_ptr(), libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG, seen, tsp, 0, 0) {
            return fail(libc::EINTR);
        }
    }
}

/// # Safety
/// libc's contract for aio_suspend.
#[no_mangle]
pub unsafe extern "C" fn aio_suspend(list: *const *const AioCb, n: c_int, timeout: *const libc::timespec) -> c_int {
    suspend(list, n, timeout, 6)
}

/// # Safety
/// libc's contract for aio_suspend64.
#[no_mangle]
pub unsafe extern "C" fn aio_suspend64(list: *const *const AioCb, n: c_int, timeout: *const libc::timespec) -> c_int {
    suspend(list, n, timeout, 7)
}

fn cancel(fd: c_int, cb: *mut AioCb, real: usize) -> c_int {
    if !crate::is_active() {
        type F = unsafe extern "C" fn(c_int, *mut AioCb) -> c_int;
        // SAFETY: forwarding to libc's function of the same signature.
        return unsafe { std::mem::transmute::<usize, F>(REAL[real].get())(fd, cb) };
    }
    // SAFETY: the program's aiocb, when given.
    if syscall!(libc::SYS_fcntl, fd, libc::F_GETFL).is_err() || (!cb.is_null() && unsafe { (*cb).fildes } != fd) {
        return fail(libc::EBADF);
    }
    let (mut found, mut running) = (false, false);
    let mut cancelled: [usize; MAX] = [0; MAX];
    let mut k = 0;
    lock();
    for s in &SLOTS {
        let c = s.cb.load(Ordering::Relaxed);
        // SAFETY: a queued request's aiocb.
        if c == 0 || unsafe { (*(c as *const AioCb)).fildes } != fd || (!cb.is_null() && c != cb as usize) {
            continue;
        }
        found = true;
        if s.running.load(Ordering::Relaxed) {
            running = true;
        } else {
            // Taken out of the queue now; completed as cancelled below (out of the lock).
            s.running.store(true, Ordering::Relaxed);
            cancelled[k] = s as *const Slot as usize;
            k += 1;
        }
    }
    unlock();
    for &s in &cancelled[..k] {
        // SAFETY: a slot of SLOTS, marked running by us above.
        let s = unsafe { &*(s as *const Slot) };
        complete(s, s.cb.load(Ordering::Acquire) as *mut AioCb, -1, libc::ECANCELED);
    }
    match (found, running) {
        (false, _) => AIO_ALLDONE,
        (true, true) => AIO_NOTCANCELED,
        (true, false) => AIO_CANCELED,
    }
}

/// # Safety
/// libc's contract for aio_cancel.
#[no_mangle]
pub unsafe extern "C" fn aio_cancel(fd: c_int, cb: *mut AioCb) -> c_int {
    cancel(fd, cb, 8)
}

/// # Safety
/// libc's contract for aio_cancel64.
#[no_mangle]
pub unsafe extern "C" fn aio_cancel64(fd: c_int, cb: *mut AioCb) -> c_int {
    cancel(fd, cb, 9)
}

fn listio(mode: c_int, list: *const *mut AioCb, n: c_int, sev: *const SigEvent, real: usize) -> c_int {
    if !crate::is_active() {
        type F = unsafe extern "C" fn(c_int, *const *mut AioCb, c_int, *const SigEvent) -> c_int;
        // SAFETY: forwarding to libc's function of the same signature.
        return unsafe { std::mem::transmute::<usize, F>(REAL[real].get())(mode, list, n, sev) };
    }
    if (mode != LIO_WAIT && mode != 1) || n < 0 {
        return fail(libc::EINVAL);
    }
    // SAFETY: the program's array of n aiocb pointers (entries may be null).
    let cbs: Vec<*mut AioCb> = unsafe { std::slice::from_raw_parts(list, n as usize) }
        .iter()
        .copied()
        // SAFETY: non-null entries are the program's aiocbs.
        .filter(|&cb| !cb.is_null() && unsafe { (*cb).lio_opcode } != OP_NOP)
        .collect();
    // SAFETY: as above.
    if cbs.iter().any(|&cb| !matches!(unsafe { (*cb).lio_opcode }, OP_READ | OP_WRITE)) {
        return fail(libc::EINVAL);
    }
    // A notification once all are done (LIO_NOWAIT with a signal or a thread): a group.
    // SAFETY: the program's sigevent, when given.
    let wants = mode != LIO_WAIT && !sev.is_null() && unsafe { (*sev).notify } != libc::SIGEV_NONE;
    let mut group = 0u32;
    if wants && !cbs.is_empty() {
        let Some(i) = GROUPS.iter().position(|g| g.left.compare_exchange(0, u32::MAX, Ordering::AcqRel, Ordering::Relaxed).is_ok()) else {
            return fail(libc::EAGAIN);
        };
        // SAFETY: the group is ours (left was 0); the program's sigevent.
        unsafe { *GROUPS[i].ev.get() = *sev };
        GROUPS[i].pid.store(sys::getpid(), Ordering::Relaxed);
        GROUPS[i].left.store(cbs.len() as u32, Ordering::Release);
        group = i as u32 + 1;
    } else if wants {
        // SAFETY: the program's sigevent.
        notify(unsafe { &*sev }, sys::getpid());
    }
    let mut failed = false;
    for (k, &cb) in cbs.iter().enumerate() {
        // SAFETY: the program's aiocb.
        let op = unsafe { (*cb).lio_opcode };
        if let Err(e) = enqueue(cb, op, group) {
            // SAFETY: as above: this one (and those after it) never ran.
            unsafe {
                (*cb).error_code = e;
                (*cb).return_value = -1;
            }
            failed = true;
            if group > 0 && GROUPS[group as usize - 1].left.fetch_sub((cbs.len() - k) as u32, Ordering::AcqRel) == (cbs.len() - k) as u32 {
                // SAFETY: the program's sigevent.
                notify(unsafe { &*sev }, sys::getpid());
            }
            break;
        }
    }
    if failed {
        return fail(libc::EAGAIN);
    }
    if mode == LIO_WAIT {
        loop {
            let seen = DONE.load(Ordering::Acquire);
            if cbs.iter().all(|&cb| !in_progress(cb)) {
                break;
            }
            if let Err(libc::EINTR) = syscall!(libc::SYS_futex, DONE.as_ptr(), libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG, seen, 0, 0, 0) {
                return fail(libc::EINTR);
            }
        }
        // SAFETY: the program's aiocbs, done now.
        if cbs.iter().any(|&cb| unsafe { (*cb).error_code } != 0) {
            return fail(libc::EIO);
        }
    }
    0
}

/// # Safety
/// libc's contract for lio_listio.
#[no_mangle]
pub unsafe extern "C" fn lio_listio(mode: c_int, list: *const *mut AioCb, n: c_int, sev: *const SigEvent) -> c_int {
    listio(mode, list, n, sev, 10)
}

/// # Safety
/// libc's contract for lio_listio64.
#[no_mangle]
pub unsafe extern "C" fn lio_listio64(mode: c_int, list: *const *mut AioCb, n: c_int, sev: *const SigEvent) -> c_int {
    listio(mode, list, n, sev, 11)
}
