//! mq_notify, seen and (for SIGEV_THREAD) done by the runtime.
//!
//! The kernel shows a POSIX message queue's registration (its kind, signal and process, in the
//! queue's file) but not the sigev_value the program gave, which a restart needs to register it
//! again and which the checkpoint needs to put it back after reading the queue's messages
//! (ckpt-kinds' mqueue). This hook notes, per queue (by inode), the registration made through
//! libc; the checkpoint trusts it only if the kernel still shows one of that kind for this
//! process.
//!
//! SIGEV_THREAD: glibc's helper thread blocks every signal, so no checkpoint could stop it
//! (DMTCP's posix-mq2). As for timers (`sigevthread`), the runtime does it instead: the kernel
//! sends a SIGEV_THREAD notification as a 32-byte cookie on a netlink socket; ours (a runtime
//! fd) raises SIGTIMER at the runtime's timer helper thread when a cookie arrives (O_ASYNC,
//! F_SETSIG, F_SETOWN_EX), which reads it and starts a thread that calls the program's function
//! with its value, as glibc does. After a restart the socket is made again and each
//! registration still in force at the checkpoint is made again through the program's fd of it.

use crate::hooks::RealFn;
use crate::log::{log, ALWAYS};
use crate::sigevthread::SigEvent;
use crate::sys::{self, syscall};
use std::ffi::c_int;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};

const MAX: usize = 64;
/// The kernel's cookie length and the values of its last byte.
const COOKIE_LEN: usize = 32;
const NOTIFY_WOKENUP: u8 = 1;
/// The signal our socket raises at the helper (glibc's SIGTIMER: see `sigevthread`).
const SIGTIMER: c_int = 32;
/// fcntl's, which the libc crate lacks.
const F_SETSIG: c_int = 10;
const F_SETOWN_EX: c_int = 15;
const F_OWNER_TID: c_int = 0;

struct Reg {
    /// 0: free; else the queue's inode.
    ino: AtomicU64,
    notify: AtomicI32,
    signo: AtomicI32,
    value: AtomicU64,
    /// SIGEV_THREAD: the function, the creating thread's signal mask, the stack size asked.
    func: AtomicUsize,
    mask: AtomicU64,
    stack_size: AtomicUsize,
    /// Changes each time the slot is taken, so that a cookie of an old registration is ignored.
    gen: AtomicU32,
    /// The program's fd of the queue at the last checkpoint that found the registration in
    /// force (-1: not in force), through which a restart registers it again.
    fd: AtomicI32,
}

static REGS: [Reg; MAX] = [const {
    Reg {
        ino: AtomicU64::new(0),
        notify: AtomicI32::new(0),
        signo: AtomicI32::new(0),
        value: AtomicU64::new(0),
        func: AtomicUsize::new(0),
        mask: AtomicU64::new(0),
        stack_size: AtomicUsize::new(0),
        gen: AtomicU32::new(0),
        fd: AtomicI32::new(-1),
    }
}; MAX];
/// The registrations' lock (taken by a fork too: forklock.rs).
pub(crate) static LOCK: crate::forklock::RawLock = crate::forklock::RawLock::new();
/// Our netlink socket for SIGEV_THREAD notifications (-1: none yet).
static SOCK: AtomicI32 = AtomicI32::new(-1);

static REAL_MQ_NOTIFY: RealFn = RealFn::new(b"mq_notify\0");

pub fn resolve() {
    REAL_MQ_NOTIFY.get();
}

/// In a forked child: the parent's registrations are not the child's, nor is its socket.
pub fn after_fork() {
    for r in &REGS {
        r.ino.store(0, Ordering::Release);
    }
    let s = SOCK.swap(-1, Ordering::AcqRel);
    if s >= 0 {
        sys::close_inherited(s);
    }
}

/// Whether `fd` is our netlink socket.
pub fn is_own_fd(fd: i32) -> bool {
    fd >= 0 && SOCK.load(Ordering::Relaxed) == fd
}

fn lock() {
    LOCK.lock();
}

fn unlock() {
    LOCK.unlock();
}

/// The registration made on the queue of inode `ino`: (sigev_notify, signal, value).
pub fn registered(ino: u64) -> Option<(i32, i32, u64)> {
    let r = REGS.iter().find(|r| ino != 0 && r.ino.load(Ordering::Acquire) == ino)?;
    Some((r.notify.load(Ordering::Acquire), r.signo.load(Ordering::Acquire), r.value.load(Ordering::Acquire)))
}

/// At checkpoint time: the registration on the queue of inode `ino` is in force (the kernel
/// shows it), and `fd` is the program's fd of the queue.
pub fn in_force(ino: u64, fd: i32) {
    if let Some(r) = REGS.iter().find(|r| ino != 0 && r.ino.load(Ordering::Acquire) == ino) {
        r.fd.store(fd, Ordering::Release);
    }
}

/// Before a checkpoint reads the fd table: no registration is known in force until it is found.
pub fn before_checkpoint() {
    for r in &REGS {
        r.fd.store(-1, Ordering::Release);
    }
}

/// Register the notification of the queue of inode `ino` again through fd `fd` (after the
/// checkpoint took it off to read the messages, or closed an fd of its own of the queue).
pub fn register_again(fd: i32, ino: u64) -> Result<(), i32> {
    let slot = REGS.iter().position(|r| ino != 0 && r.ino.load(Ordering::Acquire) == ino).ok_or(libc::ENOENT)?;
    kernel_register(fd, slot)
}

/// Make the kernel registration of slot `slot` on fd `fd`.
fn kernel_register(fd: i32, slot: usize) -> Result<(), i32> {
    let r = &REGS[slot];
    let notify = r.notify.load(Ordering::Acquire);
    let mut cookie = [0u8; COOKIE_LEN];
    let ev = if notify == libc::SIGEV_THREAD {
        let sock = SOCK.load(Ordering::Acquire);
        if sock < 0 {
            return Err(libc::EBADF);
        }
        cookie[0..8].copy_from_slice(&(slot as u64).to_ne_bytes());
        cookie[8..12].copy_from_slice(&r.gen.load(Ordering::Acquire).to_ne_bytes());
        SigEvent { value: cookie.as_ptr() as u64, signo: sock, notify, func_or_tid: 0, attributes: std::ptr::null(), pad: [0; 4] }
    } else {
        SigEvent { value: r.value.load(Ordering::Acquire), signo: r.signo.load(Ordering::Acquire), notify, func_or_tid: 0, attributes: std::ptr::null(), pad: [0; 4] }
    };
    // (The kernel copies the cookie at once.)
    syscall!(libc::SYS_mq_notify, fd, &ev as *const SigEvent).map(|_| ())
}

/// Our netlink socket, made if needed, raising SIGTIMER at the helper thread.
fn socket() -> Result<i32, i32> {
    let s = SOCK.load(Ordering::Acquire);
    if s >= 0 {
        return Ok(s);
    }
    let tid = crate::sigevthread::helper_tid()?;
    let fd = syscall!(libc::SYS_socket, libc::AF_NETLINK, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, libc::NETLINK_ROUTE)? as i32;
    let fd = sys::own(sys::move_high(fd));
    // struct f_owner_ex: the kind of owner, its id.
    let owner: [c_int; 2] = [F_OWNER_TID, tid];
    let armed = syscall!(libc::SYS_fcntl, fd, F_SETSIG, SIGTIMER)
        .and_then(|_| syscall!(libc::SYS_fcntl, fd, F_SETOWN_EX, owner.as_ptr()))
        .and_then(|_| syscall!(libc::SYS_fcntl, fd, libc::F_GETFL))
        .and_then(|fl| syscall!(libc::SYS_fcntl, fd, libc::F_SETFL, fl | libc::O_ASYNC as i64));
    if let Err(e) = armed {
        sys::close(fd);
        return Err(e);
    }
    SOCK.store(fd, Ordering::Release);
    Ok(fd)
}

/// On the helper thread, told that our socket has cookies: start the notification of each.
pub fn ready() {
    let sock = SOCK.load(Ordering::Acquire);
    if sock < 0 {
        return;
    }
    let mut buf = [0u8; COOKIE_LEN];
    while let Ok(n) = syscall!(libc::SYS_recvfrom, sock, buf.as_mut_ptr(), buf.len(), libc::MSG_DONTWAIT, 0, 0) {
        if n as usize != COOKIE_LEN || buf[COOKIE_LEN - 1] != NOTIFY_WOKENUP {
            continue; // NOTIFY_REMOVED: the program closed the queue
        }
        let slot = u64::from_ne_bytes(buf[0..8].try_into().unwrap_or_default()) as usize;
        let gen = u32::from_ne_bytes(buf[8..12].try_into().unwrap_or_default());
        let Some(r) = REGS.get(slot).filter(|r| r.ino.load(Ordering::Acquire) != 0 && r.gen.load(Ordering::Acquire) == gen) else { continue };
        // The kernel dropped the registration as it fired.
        let (func, value, mask, ss) = (r.func.load(Ordering::Acquire), r.value.load(Ordering::Acquire), r.mask.load(Ordering::Acquire), r.stack_size.load(Ordering::Acquire));
        r.ino.store(0, Ordering::Release);
        crate::sigevthread::start_notice(func, value, mask, ss);
    }
}

/// After a restart (threads recreated, `helper` the helper thread's tid now): a new socket, and
/// every SIGEV_THREAD registration the checkpoint found in force made again.
pub fn after_restart(helper: impl Fn(i32) -> i32) {
    let old = SOCK.swap(-1, Ordering::AcqRel);
    let live: Vec<usize> = (0..MAX).filter(|&i| REGS[i].ino.load(Ordering::Acquire) != 0 && REGS[i].notify.load(Ordering::Acquire) == libc::SIGEV_THREAD && REGS[i].fd.load(Ordering::Acquire) >= 0).collect();
    if live.is_empty() && old < 0 {
        return;
    }
    crate::sigevthread::helper_restarted(helper);
    for i in live {
        let r = socket().and_then(|_| kernel_register(REGS[i].fd.load(Ordering::Acquire), i));
        if let Err(e) = r {
            log!(ALWAYS, "warning: an mq_notify registration (SIGEV_THREAD) could not be made again: {}", std::io::Error::from_raw_os_error(e));
        }
    }
}

fn note(ino: u64, ev: Option<&SigEvent>) {
    lock();
    let slot = REGS.iter().position(|r| r.ino.load(Ordering::Acquire) == ino);
    match ev {
        // (glibc's own SIGEV_THREAD, with the runtime not active: not one ckpt can make again.)
        Some(ev) if ev.notify != libc::SIGEV_THREAD => {
            if let Some(r) = slot.or_else(|| REGS.iter().position(|r| r.ino.load(Ordering::Acquire) == 0)).map(|i| &REGS[i]) {
                r.notify.store(ev.notify, Ordering::Release);
                r.signo.store(ev.signo, Ordering::Release);
                r.value.store(ev.value, Ordering::Release);
                r.gen.fetch_add(1, Ordering::AcqRel);
                r.ino.store(ino, Ordering::Release);
            }
        }
        _ => {
            if let Some(i) = slot {
                REGS[i].ino.store(0, Ordering::Release);
            }
        }
    }
    unlock();
}

/// # Safety
/// libc's contract for mq_notify.
#[no_mangle]
pub unsafe extern "C" fn mq_notify(mqd: c_int, sev: *const libc::sigevent) -> c_int {
    type F = unsafe extern "C" fn(c_int, *const libc::sigevent) -> c_int;
    let _g = crate::gate::enter();
    // SAFETY: sigevent is 64 bytes; read it as the kernel's layout.
    let ev = unsafe { sev.cast::<SigEvent>().as_ref() };
    let Ok(st) = sys::fstat(mqd) else {
        // SAFETY: forwarding to libc (which says EBADF).
        return unsafe { std::mem::transmute::<usize, F>(REAL_MQ_NOTIFY.get())(mqd, sev) };
    };
    if let Some(ev) = ev.filter(|e| e.notify == libc::SIGEV_THREAD && crate::is_active()) {
        return thread_notify(mqd, st.st_ino, ev);
    }
    // SAFETY: forwarding to libc.
    let r = unsafe { std::mem::transmute::<usize, F>(REAL_MQ_NOTIFY.get())(mqd, sev) };
    if r == 0 {
        note(st.st_ino, ev);
    }
    r
}

/// mq_notify with SIGEV_THREAD, done by the runtime.
fn thread_notify(mqd: c_int, ino: u64, ev: &SigEvent) -> c_int {
    if let Err(e) = socket() {
        sys::set_errno(e);
        return -1;
    }
    let mut mask = [0u64; 16];
    // SAFETY: querying the calling thread's mask through the hook (the program's view).
    unsafe { crate::sighooks::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), mask.as_mut_ptr() as *mut libc::sigset_t) };
    let mut ss: usize = 0;
    if !ev.attributes.is_null() {
        // SAFETY: the program's attribute object.
        unsafe { libc::pthread_attr_getstacksize(ev.attributes, &mut ss) };
    }
    // A slot of its own first (the cookie names it), held (ino u64::MAX) until the kernel took
    // the registration: then it is the queue's (an earlier one of ours is gone), else free again.
    lock();
    let Some(slot) = REGS.iter().position(|r| r.ino.load(Ordering::Acquire) == 0) else {
        unlock();
        sys::set_errno(libc::ENOMEM);
        return -1;
    };
    let r = &REGS[slot];
    r.ino.store(u64::MAX, Ordering::Release);
    unlock();
    r.notify.store(libc::SIGEV_THREAD, Ordering::Release);
    r.signo.store(0, Ordering::Release);
    r.value.store(ev.value, Ordering::Release);
    r.func.store(ev.func_or_tid as usize, Ordering::Release);
    r.mask.store(mask[0], Ordering::Release);
    r.stack_size.store(ss, Ordering::Release);
    r.gen.fetch_add(1, Ordering::AcqRel);
    match kernel_register(mqd, slot) {
        Ok(()) => {
            lock();
            for (i, o) in REGS.iter().enumerate() {
                if i != slot && o.ino.load(Ordering::Acquire) == ino {
                    o.ino.store(0, Ordering::Release);
                }
            }
            r.ino.store(ino, Ordering::Release);
            unlock();
            0
        }
        Err(e) => {
            r.ino.store(0, Ordering::Release);
            sys::set_errno(e);
            -1
        }
    }
}
